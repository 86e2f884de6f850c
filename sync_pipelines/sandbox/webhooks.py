"""Outgoing webhooks: the vendor-neutral delivery loop every vendor's subscription runs on.

Each vendor's subscription is a DeliveryLoop. Events are queued in the store inside the transaction that changed
the record, so a rolled-back write announces nothing and a queued event survives a restart. One daemon thread per
subscription claims deliveries off the queue in order (claiming logs the exact body and headers, so a delivery can
be replayed), then posts each until the receiver accepts it or the attempts run out. A vendor supplies only how a
delivery is claimed and recorded: sandbox/xero/webhooks.py and sandbox/intercom/webhooks.py.
"""

import ipaddress
import threading
import time
from abc import ABC, abstractmethod
from typing import Any
from urllib.parse import urlsplit

import requests
import tenacity

TIMEOUT_SECONDS = 5  # xero.md §6, intercom.md §9: a receiver has about 5 s to answer
MAX_BACKOFF_SECONDS = 30
_FLUSH_POLL_SECONDS = 0.02


def check_url(url: Any) -> str | None:
    """A delivery URL must be http(s) on a loopback host: the sandbox never sends data off the machine."""
    if url is None:
        return None
    parts = urlsplit(url) if isinstance(url, str) else None
    host = (parts.hostname or "") if parts else ""
    if parts is None or parts.scheme not in ("http", "https") or not (host == "localhost" or _is_loopback(host)):
        raise ValueError(f"the webhook url must be http(s) on a loopback host, not {url!r}")
    return url


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def post(url: str, body: bytes, headers: dict[str, str]) -> int | str:
    """One POST of a JSON body: the status code, or the error's name when no response came back."""
    try:
        response = requests.post(
            url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=TIMEOUT_SECONDS
        )
    except requests.RequestException as exc:
        return type(exc).__name__
    return response.status_code


def accepted(outcome: int | str) -> bool:
    return isinstance(outcome, int) and 200 <= outcome < 300  # xero.md §6: 200, and docs now accept any 2xx


class DeliveryLoop(ABC):
    """One webhook subscription's delivery thread: a URL (None: not subscribed), attempts and backoff.

    Each vendor says how a delivery is taken off its queue into its log (_claim), how an attempt is recorded
    (_note) and how many wait (queue_length).
    """

    def __init__(self, url: str | None, attempts: int, backoff_seconds: float, name: str):
        self.url = check_url(url)
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.name = name
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._delivering = False
        self._thread: threading.Thread | None = None

    # -- what a vendor supplies ---------------------------------------------------------------

    @abstractmethod
    def _claim(self, url: str) -> tuple[Any, bytes, dict[str, str]] | None:
        """(log key, exact body, headers) of the next delivery, moved from the queue to the log; None if none."""

    @abstractmethod
    def _note(self, key: Any, outcome: int | str, delivered: bool) -> None:
        """Record one delivery attempt's outcome in the log."""

    @abstractmethod
    def queue_length(self) -> int:
        """How many deliveries wait."""

    def seconds_to_next_due(self) -> float | None:
        """How long until a delivery put back for later is due; None when none is (the thread sleeps until woken)."""
        return None

    # -- the delivery thread ------------------------------------------------------------------

    def wake(self) -> None:
        """Called after queueing: the thread posts what is new."""
        self._wake.set()

    def start(self) -> None:
        self._stopping.clear()
        self._wake.set()  # events queued before a restart go out first
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT_SECONDS * 2)
        self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.seconds_to_next_due())
            self._wake.clear()
            while not self._stopping.is_set() and self._deliver_next():
                pass

    def _deliver_next(self) -> bool:
        """Claim and post one delivery; False when nothing was queued."""
        url = self.url
        if url is None:
            return False
        self._delivering = True  # before the delivery leaves the queue, so idle() never sees neither
        try:
            claimed = self._claim(url)
            if claimed is None:
                return False
            self._send(url, *claimed)
            return True
        finally:
            self._delivering = False

    def _send(self, url: str, key: Any, body: bytes, headers: dict[str, str]) -> None:
        """Retry a failed delivery with the same body and headers, backing off from backoff_seconds, doubling up
        to 30 s, for at most `attempts` tries; then give up on it (xero.md §6: Xero retries for 24 h)."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts) | tenacity.stop_when_event_set(self._stopping),
            wait=tenacity.wait_exponential(multiplier=self.backoff_seconds, max=MAX_BACKOFF_SECONDS),
            retry=tenacity.retry_if_result(lambda delivered: not delivered),
            sleep=self._stopping.wait,
            retry_error_callback=lambda state: False,
        )
        retrying(self._attempt, url, key, body, headers)

    def _attempt(self, url: str, key: Any, body: bytes, headers: dict[str, str]) -> bool:
        outcome = post(url, body, headers)
        self._note(key, outcome, accepted(outcome))
        return accepted(outcome)

    def idle(self) -> bool:
        """Nothing queued and nothing being posted (the queue is read first: see _deliver_next)."""
        return self.url is None or (self.queue_length() == 0 and not self._delivering)

    def wait_idle(self, timeout: float) -> bool:
        """Poll until idle or the deadline passes; lets tests and demos wait for deliveries deterministically."""
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            time.sleep(_FLUSH_POLL_SECONDS)
        return True
