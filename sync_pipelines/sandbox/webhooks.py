"""Outgoing webhooks: a vendor-neutral delivery loop, and the Xero emitter built on it (xero.md §6).

Each vendor's subscription is a DeliveryLoop. Events are queued in the store inside the transaction that changed
the record, so a rolled-back write announces nothing and a queued event survives a restart. One daemon thread per
subscription claims deliveries off the queue in order (claiming logs the exact body and headers, so a delivery can
be replayed), then posts each until the receiver accepts it or the attempts run out. A vendor supplies only how a
delivery is claimed and recorded; sandbox/intercom/webhooks.py is the other vendor.

Xero's deliveries are signed batches of INVOICE and CONTACT events; the queue's sqlite sequence numbers are the
firstEventSequence and lastEventSequence a payload carries.
"""

import base64
import hashlib
import hmac
import ipaddress
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from typing import Any
from urllib.parse import urlsplit

import requests
import tenacity

from sync_pipelines.sandbox.dates import event_date_string, parse_net
from sync_pipelines.sandbox.store import COLLECTIONS, Store, dumps

# xero.md §6: Invoices and Contacts have webhook categories; Payments and BankTransactions have none.
CATEGORIES = {"Invoices": "INVOICE", "Contacts": "CONTACT"}
_COLLECTION_OF = {category: collection for collection, category in CATEGORIES.items()}
# xero.md §3.2: derived contact flags change without the contact being edited, so they are not a change.
_DERIVED = {"Contacts": ("IsCustomer", "IsSupplier")}
BATCH_SIZE = 100
TIMEOUT_SECONDS = 5  # xero.md §6, intercom.md §9: a receiver has about 5 s to answer
MAX_BACKOFF_SECONDS = 30
ITR_PROBES = 4  # half signed correctly, half mis-signed
_FLUSH_POLL_SECONDS = 0.02


def sign(key: str, body: bytes) -> str:
    """Base64 HMAC-SHA256 of the raw body, keyed with the key string's UTF-8 bytes (xero.md §6)."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


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
            self._wake.wait()
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


def _visible(collection: str, record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in _DERIVED.get(collection, ())}


class WebhookEmitter(DeliveryLoop):
    """The Xero app's one webhook subscription: a delivery URL (None: not subscribed) and a signing key."""

    def __init__(
        self,
        store: Store,
        url: str | None,
        key: str,
        attempts: int,
        backoff_seconds: float,
    ):
        super().__init__(url, attempts, backoff_seconds, "sandbox-webhooks")
        self.store = store
        self.key = key
        self.base_url: str | None = None  # the server sets it once it listens; resourceUrls point back at it

    # -- queueing (called by the ledger inside the writer's transaction) ---------------------

    def observe(self, conn: sqlite3.Connection, collection: str, record: dict) -> None:
        """CREATE for a new invoice or contact, UPDATE for a visible change to one; archive, void and delete
        are UPDATEs too (xero.md §6, §7). eventDateUtc is the record's new UpdatedDateUTC."""
        category = CATEGORIES.get(collection)
        if category is None or self.url is None:
            return
        record_id = record[COLLECTIONS[collection][1]]
        previous = self.store.get(collection, record_id, conn)
        if previous is not None and _visible(collection, previous) == _visible(collection, record):
            return
        event_type = "CREATE" if previous is None else "UPDATE"
        self.store.queue_event(conn, category, record_id, event_type, parse_net(record["UpdatedDateUTC"]))
        self.wake()

    def subscribe(self, url: str | None) -> None:
        """Point deliveries at a receiver; with none there is no subscription and queued events are dropped."""
        self.url = check_url(url)
        if self.url is None:
            self.store.discard_queue()
        self.wake()

    # -- the delivery loop's side ---------------------------------------------------------------

    def _claim(self, url: str) -> tuple[int, bytes, dict[str, str]] | None:
        """Everything queued, up to 100 events, as one signed payload keyed by its firstEventSequence."""
        rows = self.store.queued_events(BATCH_SIZE)
        if not rows:
            return None
        first, last = rows[0][0], rows[-1][0]
        tenant_id = self.store.meta_get("tenant_id")
        payload = {
            "events": [self._event(tenant_id, *row) for row in rows],
            "firstEventSequence": first,
            "lastEventSequence": last,
            "entropy": secrets.token_urlsafe(15),
        }
        # Compact JSON: a receiver that re-serialises before checking the HMAC fails, as with Xero.
        body = dumps(payload).encode()
        signature = sign(self.key, body)
        self.store.log_delivery(first, last, len(rows), body, signature)
        return first, body, {"x-xero-signature": signature}

    def _note(self, key: int, outcome: int | str, delivered: bool) -> None:
        self.store.note_attempt(key, outcome, delivered)

    def queue_length(self) -> int:
        return self.store.queue_length()

    def _event(
        self, tenant_id: str, sequence: int, category: str, resource_id: str, event_type: str, event_ms: int
    ) -> dict:
        """The seven fields of an event, in the order of Xero's example (xero.md §6)."""
        return {
            "resourceUrl": f"{self.base_url}/xero/api/api.xro/2.0/{_COLLECTION_OF[category]}/{resource_id}",
            "resourceId": resource_id,
            "eventDateUtc": event_date_string(event_ms),
            "eventType": event_type,
            "eventCategory": category,
            "tenantId": tenant_id,
            "tenantType": "ORGANISATION",
        }

    # -- admin operations ---------------------------------------------------------------------

    def redeliver(self, first: int) -> int | str | None:
        """Post a logged delivery's exact body and signature again, like a Xero replay; None if unknown."""
        logged = self.store.delivery(first)
        if logged is None or self.url is None:
            return None
        body, signature = logged
        outcome = post(self.url, body, {"x-xero-signature": signature})
        self.store.note_attempt(first, outcome, accepted(outcome))
        return outcome

    def intent_to_receive(self) -> dict[str, Any]:
        """Empty-event probes in random order, some signed with the key and some with another; the receiver
        passes with 200 for every good signature and 401 for every bad one (xero.md §6)."""
        if self.url is None:
            raise ValueError("no webhook url is configured")
        signed = [True, False] * (ITR_PROBES // 2)
        secrets.SystemRandom().shuffle(signed)
        probes = []
        for good in signed:
            payload = {
                "events": [],
                "firstEventSequence": 0,
                "lastEventSequence": 0,
                "entropy": secrets.token_urlsafe(15),
            }
            body = dumps(payload).encode()
            key = self.key if good else secrets.token_urlsafe(24)
            probes.append({"signed": good, "status": post(self.url, body, {"x-xero-signature": sign(key, body)})})
        passed = all(probe["status"] == (200 if probe["signed"] else 401) for probe in probes)
        return {"passed": passed, "probes": probes}
