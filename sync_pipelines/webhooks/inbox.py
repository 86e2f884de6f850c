"""The webhook inbox: Xero's events stored durably and once, between the receiver and the sensor.

SQLite in WAL mode rather than the DuckDB warehouse: the receiver has to answer within 5 s (xero.md §6) even
while a sync run holds DuckDB's single-writer lock, and WAL lets the sensor read while the receiver writes.
"""

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from pydantic import Field

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    category TEXT NOT NULL,
    event_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    event_date TEXT NOT NULL,
    received_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (tenant_id, resource_id, event_date, event_type, category)
)
"""
# Below the receiver's 5 s budget (xero.md §6): a write that cannot get the lock fails with a 5xx, and Xero retries.
LOCK_TIMEOUT_SECONDS = 2.0
# Events older than Xero's replay window (xero.md §6: 31 days, unconfirmed) are dropped as new ones arrive: by
# then the sensor has long run them, and the 15-minute poll covers anything it did not.
RETENTION = timedelta(days=31)


@dataclass(frozen=True)
class Pending:
    """Events received after a cursor: the range they span and the categories they touch."""

    first_seq: int
    last_seq: int
    events: int
    categories: frozenset[str]


class WebhookInbox:
    """One SQLite file; every call opens its own short connection, so threads and processes can share it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_SECONDS, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: an acknowledged event survives a power cut (WAL's default NORMAL may lose the last commits).
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(SCHEMA)
            yield conn
        finally:
            conn.close()

    def store(self, events: list[dict]) -> None:
        """Store one delivery's events in one transaction.

        xero.md §6: deliveries repeat and replay, so an event already held (same tenant, resource, date, type
        and category) is dropped rather than stored twice.
        """
        now = datetime.now(UTC)
        received_at = now.isoformat()
        rows = [
            (e["tenantId"], e["eventCategory"], e["eventType"], e["resourceId"], e["eventDateUtc"], received_at,
             json.dumps(e, separators=(",", ":")))
            for e in events
        ]  # fmt: skip
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                """INSERT OR IGNORE INTO webhook_events
                   (tenant_id, category, event_type, resource_id, event_date, received_at, payload)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                rows,
            )
            conn.execute("DELETE FROM webhook_events WHERE received_at < ?", [(now - RETENTION).isoformat()])
            conn.execute("COMMIT")

    def pending(self, after_seq: int) -> Pending | None:
        """What arrived after `after_seq`, or None when nothing did.

        Writes are serialised and take their seq inside the transaction, so seqs commit in order and a seq
        cursor never skips an event that commits late.
        """
        with self._connect() as conn:
            first, last, count = conn.execute(
                "SELECT min(seq), max(seq), count(*) FROM webhook_events WHERE seq > ?", [after_seq]
            ).fetchone()
            if not count:
                return None
            categories = conn.execute(
                "SELECT DISTINCT category FROM webhook_events WHERE seq BETWEEN ? AND ?", [first, last]
            ).fetchall()
        return Pending(first, last, count, frozenset(category for (category,) in categories))


class WebhookInboxResource(dg.ConfigurableResource):
    """The inbox the webhook receiver (`sync-pipelines webhooks`) writes, for the sensor to read."""

    path: str = Field(description="SQLite file of received webhook events, e.g. data/webhook_inbox.sqlite.")

    def get_inbox(self) -> WebhookInbox:
        return WebhookInbox(self.path)
