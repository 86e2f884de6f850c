"""The Segment workspace's sources and its Webhooks destination: what a website or app sends reaches a receiver.

Every source is connected to the destination, the Tracking API's own source too (sources.TRACKING_API_SOURCE): what
our product sends under the sandbox's write key is forwarded as Segment forwards any source's messages, which lets
a test see the product's Xero -> Segment flow echo into its Segment -> Xero flow. `forward_tracking_api` (admin
/settings) turns that connection off.

Emissions and the destination's queue persist in the store; the destination's URL, secret and batch size, and the
forwarding switch, are per process, like the other vendors' webhook subscriptions (sandbox/runtime.py).
"""

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sync_pipelines.sandbox.segment.destination import WebhooksDestination
from sync_pipelines.sandbox.segment.sources import TRACKING_API_SOURCE, Dropped, Source, complete, now
from sync_pipelines.sandbox.segment.store import SegmentStore
from sync_pipelines.sandbox.store import Store, dumps


class Refused(ValueError):
    """An emission with messages Segment would discard: [{"index", "reason"}], nothing of it emitted."""

    def __init__(self, reasons: list[dict[str, Any]]):
        super().__init__("Segment would drop these messages")
        self.reasons = reasons


@dataclass(frozen=True)
class Emission:
    """A message as a source's library sends it, and when Segment receives it: None for the moment it is emitted,
    a given moment for a history that happened earlier (sandbox/segment/seed.py)."""

    source: Source
    message: Any
    received: datetime | None = None


class SegmentWorkspace:
    def __init__(self, store: Store, attempts: int, backoff_seconds: float):
        self.store = SegmentStore(store)
        self.destination = WebhooksDestination(self.store, attempts, backoff_seconds)
        self.forward_tracking_api = True

    def emit(self, source: Source, messages: Sequence[Any]) -> list[dict[str, Any]]:
        """Send messages from a source (see emit_all)."""
        return self.emit_all([Emission(source, message) for message in messages])

    def emit_all(self, emissions: Sequence[Emission]) -> list[dict[str, Any]]:
        """Send messages, each from its own source, in order: each is recorded and queued for the destination in
        one transaction, or, if any would be dropped (a Segment rule, or a messageId already seen: segment.md §4),
        none is."""
        received = now()
        completed, reasons = [], []
        for index, emission in enumerate(emissions):
            try:
                completed.append(complete(emission.source, emission.message, emission.received or received))
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
                self.store.record(conn, message["projectId"], message["messageId"], body)
                self.destination.queue(conn, message["messageId"], body)
        return completed

    def forward(self, conn: sqlite3.Connection, message: dict[str, Any], received: datetime) -> None:
        """Queue a message the Tracking API just accepted, inside the transaction that stores it, completed as its
        source passes it on. One whose timestamps Segment could not read is kept but not forwarded (the sources
        refuse those, sources.complete)."""
        if not self.forward_tracking_api:
            return
        try:
            completed = complete(TRACKING_API_SOURCE, message, received)
        except Dropped:
            return
        self.destination.queue(conn, completed["messageId"], dumps(completed))
