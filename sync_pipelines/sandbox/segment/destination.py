"""The workspace's one Webhooks destination, on the shared delivery loop (sandbox/webhooks.py), segment.md §9.

Segment POSTs each message its sources emit to the destination's URL, as the classic Webhooks destination does
(https://segment.com/docs/connections/destinations/catalog/webhooks/), or, with batching on, up to `batch_size`
of them at once as the Webhooks (Actions) destination does (https://segment.com/docs/connections/destinations/
catalog/actions-webhook/: at most 4,000 per request). Headers: `User-Agent: Segment.io/1.0`,
`Content-Type: application/json`, and with a shared secret `X-Signature`.

The bytes, exactly:
- each message is serialised once, compactly (sandbox.store.dumps: no spaces, UTF-8), when it is emitted;
- batch_size 1: the body is that message's bytes, and X-Signature is the lowercase hex HMAC-SHA1 of the body,
  keyed with the secret's UTF-8 bytes;
- batch_size > 1: the body is `b"[" + b",".join(each message's bytes) + b"]"` (an array even when one message
  waits), and X-Signature is the HMAC-SHA1 of the first message's bytes exactly as they stand in the body, right
  after the opening `[`: the array's first element as a JSON parser delimits it (segment.md §9: a batch is signed
  over its first event only).
A delivery's body and signature are logged when it is claimed from the queue; retries and redeliveries post exactly
those again, so a receiver sees the same bytes each time (delivery is at least once: receivers dedupe on messageId).

Each POST has 5 s (sandbox/webhooks.py TIMEOUT_SECONDS). Any 2xx delivers. No response (timeout, connection
error), a 5xx, a 408 or a 429 is retried with exponential backoff: Segment retries 5xx for up to 4 hours (the
Webhooks page above) and treats 408 and 429 as retryable (https://support.twilio.com/hc/en-us/articles/
51769112022299-Understanding-Segment-Retry-Logic-for-HTTP-Status-Codes). Any other status is final, recorded
and not retried.
"""

import hashlib
import hmac
from typing import Any

from sync_pipelines.sandbox.segment.store import SegmentStore
from sync_pipelines.sandbox.webhooks import DeliveryLoop, accepted, check_url, post

USER_AGENT = "Segment.io/1.0"  # segment.md §9
MAX_BATCH_SIZE = 4000  # Webhooks (Actions): default 1,000, at most 4,000 per request
RETRYABLE_STATUSES = (408, 429)


def signature(secret: str, signed: bytes) -> str:
    """The X-Signature value: lowercase hex HMAC-SHA1 keyed with the shared secret."""
    return hmac.new(secret.encode(), signed, hashlib.sha1).hexdigest()


def retryable(outcome: int | str) -> bool:
    """No response at all (an error name), a 5xx, a 408 or a 429: worth another try."""
    return isinstance(outcome, str) or outcome >= 500 or outcome in RETRYABLE_STATUSES


def check_batch_size(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be a whole number from 1 to {MAX_BATCH_SIZE}, not {value!r}")
    return value


class WebhooksDestination(DeliveryLoop):
    def __init__(self, store: SegmentStore, attempts: int, backoff_seconds: float):
        super().__init__(None, attempts, backoff_seconds, "sandbox-segment-webhooks")
        self.store = store
        self.secret: str | None = None
        self.batch_size = 1

    def configure(self, url: str | None, secret: str | None, batch_size: int) -> None:
        """Point deliveries at a receiver; without a URL the destination is off and queued messages are dropped."""
        if secret is not None and not (isinstance(secret, str) and secret):
            raise ValueError("secret must be a non-empty string, or null for unsigned deliveries")
        url, batch_size = check_url(url), check_batch_size(batch_size)
        self.url, self.secret, self.batch_size = url, secret, batch_size
        if self.url is None:
            self.store.discard_queue()
        self.wake()

    def queue(self, conn: Any, message_id: str, body: str) -> None:
        """Queue inside the emitting transaction, so a rejected emission queues nothing; off, nothing is queued."""
        if self.url is None:
            return
        self.store.queue(conn, message_id, body)
        self.wake()

    def _assemble(self, messages: list[bytes]) -> tuple[bytes, str | None]:
        """The body and its signature, as the module docstring defines them."""
        body = messages[0] if self.batch_size == 1 else b"[" + b",".join(messages) + b"]"
        covered = body if self.batch_size == 1 else messages[0]
        return body, None if self.secret is None else signature(self.secret, covered)

    @staticmethod
    def _headers(signed: str | None) -> dict[str, str]:
        return {"User-Agent": USER_AGENT, **({"X-Signature": signed} if signed is not None else {})}

    # -- the delivery loop's side ---------------------------------------------------------------

    def _claim(self, url: str) -> tuple[int, bytes, dict[str, str]] | None:
        claimed = self.store.claim(self.batch_size, self._assemble)
        if claimed is None:
            return None
        seq, body, signed = claimed
        return seq, body, self._headers(signed)

    def _attempt(self, url: str, key: Any, body: bytes, headers: dict[str, str]) -> bool:
        """Done once accepted or refused for good: only retryable outcomes are tried again."""
        outcome = post(url, body, headers)
        self._note(key, outcome, accepted(outcome))
        return accepted(outcome) or not retryable(outcome)

    def _note(self, key: int, outcome: int | str, delivered: bool) -> None:
        self.store.note_attempt(key, outcome, delivered)

    def queue_length(self) -> int:
        return self.store.queue_length()

    def redeliver(self, seq: int) -> int | str | None:
        """Post a logged delivery's exact body and signature again, as Segment's at-least-once delivery may; None
        if no delivery has that seq or the destination is off."""
        logged = self.store.delivery(seq)
        if logged is None or self.url is None:
            return None
        body, signed = logged
        outcome = post(self.url, body, self._headers(signed))
        self.store.note_attempt(seq, outcome, accepted(outcome))
        return outcome
