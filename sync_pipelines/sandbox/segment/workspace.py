"""The Segment workspace's sources and its Webhooks destination: what a website or app sends reaches a receiver.

Emissions and the destination's queue persist in the store; the destination's URL, secret and batch size are per
process, like the other vendors' webhook subscriptions (sandbox/runtime.py).
"""

from collections.abc import Sequence
from typing import Any

from sync_pipelines.sandbox.segment.destination import WebhooksDestination
from sync_pipelines.sandbox.segment.sources import Dropped, Source, complete, now
from sync_pipelines.sandbox.segment.store import SegmentStore
from sync_pipelines.sandbox.store import Store, dumps


class Refused(ValueError):
    """An emission with messages Segment would discard: [{"index", "reason"}], nothing of it emitted."""

    def __init__(self, reasons: list[dict[str, Any]]):
        super().__init__("Segment would drop these messages")
        self.reasons = reasons


class SegmentWorkspace:
    def __init__(self, store: Store, attempts: int, backoff_seconds: float):
        self.store = SegmentStore(store)
        self.destination = WebhooksDestination(self.store, attempts, backoff_seconds)

    def emit(self, source: Source, messages: Sequence[Any]) -> list[dict[str, Any]]:
        """Send messages from a source: each is recorded and queued for the destination in one transaction, or,
        if any would be dropped (a Segment rule, or a messageId already seen: segment.md §4), none is."""
        received = now()
        completed, reasons = [], []
        for index, message in enumerate(messages):
            try:
                completed.append(complete(source, message, received))
            except Dropped as dropped:
                reasons.append({"index": index, "reason": dropped.reason})
        if reasons:
            raise Refused(reasons)
        with self.store.transaction() as conn:
            ids: set[str] = set()
            for index, message in enumerate(completed):
                if message["messageId"] in ids or self.store.seen(conn, message["messageId"]):
                    reasons.append({"index": index, "reason": "duplicate_message_id"})
                ids.add(message["messageId"])
            if reasons:
                raise Refused(reasons)
            for message in completed:
                body = dumps(message)
                self.store.record(conn, source.id, message["messageId"], body)
                self.destination.queue(conn, message["messageId"], body)
        return completed
