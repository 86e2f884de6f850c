"""The sources' SQLite tables, kept in the sandbox's state file beside the other vendors' (so they persist alike).

segment_emitted holds what the workspace's sources sent (each messageId once, segment.md §4), apart from
segment_messages, which holds what our product sends to the Tracking API. The Webhooks destination's queue holds
each message's exact bytes until a delivery claims them into the log, which keeps the body and signature it was
posted with so a redelivery repeats it byte for byte.
"""

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from sync_pipelines.sandbox.store import Store

_TABLES = """
CREATE TABLE IF NOT EXISTS segment_emitted (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL UNIQUE, source_id TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segment_webhook_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segment_webhook_deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, message_ids TEXT NOT NULL, body BLOB NOT NULL, signature TEXT,
    attempts TEXT NOT NULL DEFAULT '[]', delivered INTEGER NOT NULL DEFAULT 0);
"""
_CLEARED_BY_RESET = ("segment_emitted", "segment_webhook_queue", "segment_webhook_deliveries")


class SegmentStore:
    """Borrows the sandbox Store's connection and lock; every write runs in one of its transactions."""

    def __init__(self, store: Store):
        self.store = store
        with store.connection() as conn:
            conn.executescript(_TABLES)

    def transaction(self):
        return self.store.transaction()

    def clear(self) -> None:
        """Forget every emission, queued message and delivery (/_admin/reset); sequence numbers keep rising."""
        with self.transaction() as conn:
            for table in _CLEARED_BY_RESET:
                conn.execute(f"DELETE FROM {table}")

    # -- emissions ----------------------------------------------------------------------------

    @staticmethod
    def seen(conn: sqlite3.Connection, message_id: str) -> bool:
        return conn.execute("SELECT 1 FROM segment_emitted WHERE message_id = ?", (message_id,)).fetchone() is not None

    @staticmethod
    def record(conn: sqlite3.Connection, source_id: str, message_id: str, body: str) -> None:
        conn.execute(
            "INSERT INTO segment_emitted (message_id, source_id, body) VALUES (?, ?, ?)", (message_id, source_id, body)
        )

    # -- the Webhooks destination's queue and log -------------------------------------------------

    @staticmethod
    def queue(conn: sqlite3.Connection, message_id: str, body: str) -> None:
        conn.execute("INSERT INTO segment_webhook_queue (message_id, body) VALUES (?, ?)", (message_id, body))

    def claim(
        self, limit: int, assemble: Callable[[list[bytes]], tuple[bytes, str | None]]
    ) -> tuple[int, bytes, str | None] | None:
        """Move the oldest `limit` queued messages into one logged delivery, in one step: `assemble` turns their
        bytes into the body and its signature. Returns (delivery seq, body, signature), None when none wait."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT seq, message_id, body FROM segment_webhook_queue ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            if not rows:
                return None
            body, signature = assemble([row[2].encode() for row in rows])
            seq = conn.execute(
                "INSERT INTO segment_webhook_deliveries (message_ids, body, signature) VALUES (?, ?, ?) RETURNING seq",
                (json.dumps([row[1] for row in rows]), body, signature),
            ).fetchone()[0]
            conn.execute("DELETE FROM segment_webhook_queue WHERE seq BETWEEN ? AND ?", (rows[0][0], rows[-1][0]))
        return seq, body, signature

    def note_attempt(self, seq: int, outcome: int | str, delivered: bool) -> None:
        """Append a status code (or an error name) to a delivery's attempts; delivered stays true once true."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE segment_webhook_deliveries SET attempts = json_insert(attempts, '$[#]', ?), "
                "delivered = MAX(delivered, ?) WHERE seq = ?",
                (outcome, int(delivered), seq),
            )

    def queue_length(self) -> int:
        with self.store.connection() as conn:
            return conn.execute("SELECT COUNT(*) FROM segment_webhook_queue").fetchone()[0]

    def discard_queue(self) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM segment_webhook_queue")

    def deliveries(self) -> list[dict[str, Any]]:
        with self.store.connection() as conn:
            rows = conn.execute(
                "SELECT seq, message_ids, attempts, delivered FROM segment_webhook_deliveries ORDER BY seq"
            ).fetchall()
        return [
            {"seq": seq, "message_ids": json.loads(ids), "attempts": json.loads(attempts), "delivered": bool(ok)}
            for seq, ids, attempts, ok in rows
        ]

    def delivery(self, seq: int) -> tuple[bytes, str | None] | None:
        """The exact body and signature a delivery was posted with."""
        with self.store.connection() as conn:
            row = conn.execute(
                "SELECT body, signature FROM segment_webhook_deliveries WHERE seq = ?", (seq,)
            ).fetchone()
        return (bytes(row[0]), row[1]) if row else None
