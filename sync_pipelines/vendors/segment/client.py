"""Segment Tracking API client: byte-bounded batches, local drop rules, retries, per-message outcome."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging

import requests

from sync_pipelines.vendors.delivery import DeliveryReport
from sync_pipelines.vendors.retrying import RetryableResponse, retry_after_seconds, retrying
from sync_pipelines.vendors.segment import settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SendStats:
    """Requests and bytes this client has sent, for run metadata."""

    calls: int = 0
    bytes_sent: int = 0
    retries: int = 0


def _serialise(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def drop_reason(message: dict) -> str | None:
    """Why Segment would accept this message with a 200 and then silently drop it, or None (segment.md §2, §3, §10)."""
    if not isinstance(message, dict) or message.get("type") not in settings.MESSAGE_TYPES:
        return "invalid_type"
    message_id = message.get("messageId")
    # Segment would assign a messageId itself, but ours is the idempotency key (segment.md §4).
    if not isinstance(message_id, str) or not message_id:
        return "missing_message_id"
    if len(message_id) > settings.MAX_MESSAGE_ID_CHARS:
        return "message_id_too_long"
    if not message.get("userId") and not message.get("anonymousId"):
        return "no_user_anon_id"
    if message["type"] == "track" and not message.get("event"):
        return "missing_event"
    if message["type"] == "group" and not message.get("groupId"):
        return "missing_group_id"
    if message["type"] == "alias" and not message.get("previousId"):
        return "missing_previous_id"
    try:
        size = len(_serialise(message))
    except (TypeError, ValueError):
        return "invalid_json"
    if size > settings.MAX_EVENT_BYTES:
        return "message_too_large"
    return None


class SegmentClient:
    """Sends messages through /v1/batch, the only endpoint analytics-python uses (segment.md §5)."""

    def __init__(
        self,
        api_url: str,
        write_key: str,
        timeout: float = 15,
        max_attempts: int = 8,
        max_batch_bytes: int = settings.WORKING_BATCH_BYTES,
    ) -> None:
        if not 0 < max_batch_bytes <= settings.MAX_BATCH_BYTES:
            raise ValueError(f"max_batch_bytes must be within 1..{settings.MAX_BATCH_BYTES} (segment.md §2)")
        # segment.md §5: the host is given without /v1; a trailing slash would double it.
        self._url = api_url.rstrip("/") + settings.BATCH_PATH
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._max_batch_bytes = max_batch_bytes
        self._session = requests.Session()
        # segment.md §1, §10: Basic auth keeps the write key out of event payloads.
        self._session.auth = (write_key, "")
        self._session.headers["Content-Type"] = "application/json"
        self._stats = SendStats()

    @property
    def stats(self) -> SendStats:
        return dataclasses.replace(self._stats)

    def send(self, messages: list[dict], report: DeliveryReport | None = None) -> DeliveryReport:
        """Deliver what Segment would keep; report the rest (into `report` when given). Never raises for a delivery
        failure.

        Messages are sent as given: messageId is never regenerated, so a resend is deduplicated.
        """
        report = DeliveryReport() if report is None else report
        batch: list[tuple[str, bytes]] = []
        size = _ENVELOPE_BYTES
        for message in messages:
            reason = drop_reason(message)
            if reason is not None:
                message_id = message.get("messageId") if isinstance(message, dict) else None
                report.rejected.append((message_id, reason))
                continue
            item = _serialise(message)
            # segment.md §2, §10: bound batches by serialised bytes and by the 2,500-event cap.
            if batch and (size + len(item) + 1 > self._max_batch_bytes or len(batch) >= settings.MAX_BATCH_EVENTS):
                self._post(batch, report)
                batch, size = [], _ENVELOPE_BYTES
            size += len(item) + (1 if batch else 0)
            batch.append((message["messageId"], item))
        if batch:
            self._post(batch, report)
        report.settle()
        return report

    def _post(self, batch: list[tuple[str, bytes]], report: DeliveryReport) -> None:
        body = _envelope([item for _, item in batch], _now())
        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            self._stats.calls += 1
            if attempts > 1:
                self._stats.retries += 1
            self._stats.bytes_sent += len(body)
            response = self._session.post(self._url, data=body, timeout=self._timeout)
            if response.status_code == 429 or response.status_code >= 500:
                # segment.md §2, §5: try the same batch again, after Retry-After when given.
                raise RetryableResponse(response, retry_after_seconds(response))
            if response.status_code != 200:
                # segment.md §2: 400 is oversize or invalid JSON; resending the same bytes cannot help.
                raise requests.HTTPError(f"{response.status_code} {response.reason}: {response.text[:200]}")

        message_ids = [message_id for message_id, _ in batch]
        report.sending(message_ids)
        try:
            retrying(self._max_attempts)(attempt)
        except (RetryableResponse, requests.RequestException) as exc:
            log.warning("Segment batch of %d messages failed after %d attempts: %s", len(batch), attempts, exc)
            report.failed.extend((message_id, str(exc)) for message_id in message_ids)
        else:
            report.delivered.extend(message_ids)


def _now() -> str:
    # segment.md §3: sentAt lets Segment correct client clock skew.
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _envelope(items: list[bytes], sent_at: str) -> bytes:
    return b'{"batch":[' + b",".join(items) + b'],"sentAt":' + json.dumps(sent_at).encode() + b"}"


_ENVELOPE_BYTES = len(_envelope([], "2000-01-01T00:00:00.000Z"))
