"""The webhook inbox: every vendor's events stored durably and once, between the receiver and the sensors.

SQLite in WAL mode rather than the DuckDB warehouse: the receiver has to answer within 5 s (xero.md §6,
intercom.md §9) even while a sync run holds DuckDB's single-writer lock, and WAL lets the sensors read while the
receiver writes.
"""

import json
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from pydantic import Field

# The file's shape, one step per version (PRAGMA user_version; files from before versioning read 0). A step runs
# once, in the transaction that records its version, so old files are brought up to date when first opened.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: Xero's events, deduplicated on the event's identity (xero.md §6).
    (
        """CREATE TABLE IF NOT EXISTS webhook_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            tenant_id TEXT NOT NULL,
            category TEXT NOT NULL,
            event_type TEXT NOT NULL,
            resource_id TEXT NOT NULL,
            event_date TEXT NOT NULL,
            received_at TEXT NOT NULL,
            payload TEXT NOT NULL,
            UNIQUE (tenant_id, resource_id, event_date, event_type, category)
        )""",
    ),
    # 2: any vendor's events. Rows gain their source and, where the vendor gives one, the event's own id
    # (intercom.md §9: Intercom dedupes on the notification id). Version 1's UNIQUE would also merge two
    # notifications of one record, topic and second, and SQLite cannot drop a constraint in place: the table is
    # rebuilt, keeping every seq and the AUTOINCREMENT counter, so sensors' cursors stay valid. Version 1's
    # identity becomes an index for Xero rows, so a receiver of version 1 writing here still dedupes.
    (
        """CREATE TABLE webhook_events_v2 (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            source TEXT NOT NULL DEFAULT 'xero',
            event_id TEXT,
            tenant_id TEXT NOT NULL,
            category TEXT NOT NULL,
            event_type TEXT NOT NULL,
            resource_id TEXT NOT NULL,
            event_date TEXT NOT NULL,
            received_at TEXT NOT NULL,
            payload TEXT NOT NULL
        )""",
        """INSERT INTO webhook_events_v2
           (seq, tenant_id, category, event_type, resource_id, event_date, received_at, payload)
           SELECT seq, tenant_id, category, event_type, resource_id, event_date, received_at, payload
           FROM webhook_events""",
        # The counter, not max(seq): retention may have deleted the newest events, whose seqs a cursor holds.
        "DELETE FROM sqlite_sequence WHERE name = 'webhook_events_v2'",
        """INSERT INTO sqlite_sequence (name, seq)
           SELECT 'webhook_events_v2', seq FROM sqlite_sequence WHERE name = 'webhook_events'""",
        "DROP TABLE webhook_events",
        "ALTER TABLE webhook_events_v2 RENAME TO webhook_events",
        """CREATE UNIQUE INDEX xero_event ON webhook_events (tenant_id, resource_id, event_date, event_type, category)
           WHERE source = 'xero'""",
        "CREATE UNIQUE INDEX vendor_event ON webhook_events (source, event_id)",  # NULL ids never collide
        "CREATE INDEX source_seq ON webhook_events (source, seq)",
    ),
    # 3: a record's history, for vendors whose webhooks carry the records (Segment's messages).
    ("CREATE INDEX source_resource ON webhook_events (source, category, resource_id)",),
)
# Below the receiver's 5 s budget (xero.md §6), with room for the group commit queued ahead: a write that cannot
# get the lock (held by another process) fails with InboxBusy, a 503, and the vendor retries.
LOCK_TIMEOUT_SECONDS = 2.0
# Events older than Xero's replay window (xero.md §6: 31 days, unconfirmed) are dropped as new ones arrive: by
# then the sensor has long run them, and the schedules' polls cover anything it did not. Intercom's retries are
# shorter (intercom.md §9), so the same window covers them.
RETENTION = timedelta(days=31)
# How often a listening sensor looks again (one indexed count in SQLite).
LISTEN_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class InboxEvent:
    """One received event, as the inbox keys it; `payload` is the vendor's event as it arrived."""

    source: str  # the vendor: "xero", "intercom"
    event_id: str | None  # the vendor's id for the event, when it has one (Xero's events have none)
    tenant_id: str  # the organisation or workspace it came from
    category: str  # what kind of record changed; sensors map it to the entities to sync
    event_type: str
    resource_id: str
    event_date: str
    payload: dict


@dataclass(frozen=True)
class Pending:
    """Events received after a cursor: the range they span and the categories they touch."""

    first_seq: int
    last_seq: int
    events: int
    categories: frozenset[str]


class InboxBusy(Exception):
    """Another connection held the inbox's write lock for longer than LOCK_TIMEOUT_SECONDS: try again later."""


@dataclass
class _QueuedWrite:
    """One caller's rows waiting for a group commit; `done` once a commit (or its failure) has covered them."""

    rows: list[tuple]
    done: bool = False
    error: BaseException | None = None


def _busy(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def _migrate(conn: sqlite3.Connection) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version >= len(MIGRATIONS):
        return
    # A failure leaves the transaction open, and closing the connection rolls it back: all steps or none.
    conn.execute("BEGIN IMMEDIATE")
    # Read again under the write lock: another process may have migrated in between.
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    for number, steps in enumerate(MIGRATIONS[version:], start=version + 1):
        for statement in steps:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.execute("COMMIT")


class WebhookInbox:
    """One SQLite file; every call opens its own short connection, so threads and processes can share it.

    Threads of one process that store at once share a transaction (a group commit): while one commits, the others
    queue, and the next commit takes them all. A flood then costs one fsync per group rather than one per delivery,
    and no thread waits on SQLite's lock, whose busy handler polls unfairly: with a commit per delivery, even a
    4.5 s timeout failed 11 of 4,000 deliveries from 64 senders (benchmarks/webhook_flood.py); grouped, none.
    """

    def __init__(self, path: str | Path, tenant_id: str | None = None):
        self.path = Path(path)
        # What it reads: one organisation's or workspace's events (a connection's, lib/tenants.py), or everyone's.
        self.tenant_id = tenant_id
        self._queue: list[_QueuedWrite] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()  # one group commit at a time in this process

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_SECONDS, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: an acknowledged event survives a power cut (WAL's default NORMAL may lose the last commits).
            conn.execute("PRAGMA synchronous=FULL")
            _migrate(conn)
            yield conn
        finally:
            conn.close()

    def store(self, events: list[InboxEvent]) -> None:
        """Store one delivery's events; returns once they are committed (synchronous=FULL: durable).

        Deliveries repeat (xero.md §6: retries and replays; intercom.md §9: at least once), so an event already
        held is dropped rather than stored twice: by its id where the vendor gives one, else (Xero) by its
        tenant, resource, date, type and category. Raises InboxBusy when another process kept the lock too long.
        """
        received_at = datetime.now(UTC).isoformat()
        write = _QueuedWrite(
            [(e.source, e.event_id, e.tenant_id, e.category, e.event_type, e.resource_id, e.event_date, received_at,
              json.dumps(e.payload, separators=(",", ":")))
             for e in events]
        )  # fmt: skip
        with self._queue_lock:
            self._queue.append(write)
        with self._commit_lock:
            if not write.done:  # no group commit took it while this thread waited: this thread commits the next
                self._commit_queued()
        if write.error is not None:
            if _busy(write.error):
                raise InboxBusy(f"the inbox stayed locked for {LOCK_TIMEOUT_SECONDS} s") from write.error
            raise RuntimeError(f"the inbox write failed: {write.error!r}") from write.error

    def _commit_queued(self) -> None:
        """Commit every queued write in one transaction, and tell each how it went."""
        with self._queue_lock:
            group, self._queue = self._queue, []
        try:
            self._commit([row for queued in group for row in queued.rows])
        except BaseException as error:  # every caller in the group hears of it, not only this one
            for queued in group:
                queued.error = error
            if not isinstance(error, Exception):
                raise
        finally:
            for queued in group:
                queued.done = True

    def _commit(self, rows: list[tuple]) -> None:
        """One transaction: the rows, then dropping what is past the retention window."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                """INSERT OR IGNORE INTO webhook_events
                   (source, event_id, tenant_id, category, event_type, resource_id, event_date, received_at, payload)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                rows,
            )
            cutoff = (datetime.now(UTC) - RETENTION).isoformat()
            conn.execute("DELETE FROM webhook_events WHERE received_at < ?", [cutoff])
            conn.execute("COMMIT")

    def pending(self, source: str, after_seq: int) -> Pending | None:
        """What arrived from `source` after `after_seq`, or None when nothing did.

        Writes are serialised and take their seq inside the transaction, so seqs commit in order and a seq
        cursor never skips an event that commits late.
        """
        with self._connect() as conn:
            first, last, count = conn.execute(
                """SELECT min(seq), max(seq), count(*) FROM webhook_events WHERE source = ? AND seq > ?
                   AND coalesce(tenant_id = ?, true)""",
                [source, after_seq, self.tenant_id],
            ).fetchone()
            if not count:
                return None
            categories = conn.execute(
                """SELECT DISTINCT category FROM webhook_events WHERE source = ? AND seq BETWEEN ? AND ?
                   AND coalesce(tenant_id = ?, true)""",
                [source, first, last, self.tenant_id],
            ).fetchall()
        return Pending(first, last, count, frozenset(category for (category,) in categories))

    def pending_by_tenant(self, source: str, after_seq: int) -> dict[str, Pending]:
        """`pending`, for each organisation or workspace (the event's tenant_id) that sent something."""
        with self._connect() as conn:
            rows = conn.execute(
                """SELECT tenant_id, min(seq), max(seq), count(*), json_group_array(DISTINCT category)
                   FROM webhook_events WHERE source = ? AND seq > ? GROUP BY tenant_id""",
                [source, after_seq],
            ).fetchall()
        return {tenant: Pending(first, last, count, frozenset(json.loads(c))) for tenant, first, last, count, c in rows}

    def receives(self, source: str) -> bool:
        """Whether `source` has delivered anything in the retention window: whether its webhooks are in use here."""
        with self._connect() as conn:
            found = conn.execute("SELECT 1 FROM webhook_events WHERE source = ? LIMIT 1", [source]).fetchone()
        return found is not None

    def wait_for_pending(self, source: str, after_seq: int, seconds: float) -> Pending | None:
        """`pending`, waiting up to `seconds` for something to arrive: a sensor that listens between the daemon's
        visits starts a run as an event lands rather than at its next visit."""
        deadline = time.monotonic() + seconds
        while (pending := self.pending(source, after_seq)) is None and time.monotonic() < deadline:
            time.sleep(LISTEN_POLL_SECONDS)
        return pending

    def events(self, source: str, category: str | None, after_seq: int, limit: int) -> list[tuple[int, dict]]:
        """(seq, payload) of `source`'s `category` events (None: of any category) after `after_seq`, in arrival
        order: for a vendor whose webhooks carry the records themselves (Segment's messages)."""
        with self._connect() as conn:
            rows = conn.execute(
                """SELECT seq, payload FROM webhook_events WHERE source = ? AND coalesce(category = ?, true)
                   AND seq > ? AND coalesce(tenant_id = ?, true) ORDER BY seq LIMIT ?""",
                [source, category, after_seq, self.tenant_id, limit],
            ).fetchall()
        return [(seq, json.loads(payload)) for seq, payload in rows]

    def resource_ids(self, source: str, category: str) -> list[str]:
        """Every resource with a kept `category` event, sorted (a sweep's list: every person identified)."""
        with self._connect() as conn:
            rows = conn.execute(
                """SELECT DISTINCT resource_id FROM webhook_events WHERE source = ? AND category = ?
                   AND resource_id != '' AND coalesce(tenant_id = ?, true) ORDER BY resource_id""",
                [source, category, self.tenant_id],
            ).fetchall()
        return [resource_id for (resource_id,) in rows]

    def history(self, source: str, category: str, resource_ids: Collection[str]) -> list[dict]:
        """Every kept `category` event of these resources, in arrival order."""
        if not resource_ids:
            return []
        marks = ",".join("?" * len(resource_ids))
        with self._connect() as conn:
            rows = conn.execute(
                f"""SELECT payload FROM webhook_events WHERE source = ? AND category = ? AND resource_id IN ({marks})
                    AND coalesce(tenant_id = ?, true) ORDER BY seq""",
                [source, category, *resource_ids, self.tenant_id],
            ).fetchall()
        return [json.loads(payload) for (payload,) in rows]


class WebhookInboxResource(dg.ConfigurableResource):
    """The inbox the webhook receiver (`sync-pipelines webhooks`) writes, for the sensors to read."""

    path: str = Field(description="SQLite file of received webhook events, e.g. data/webhook_inbox.sqlite.")
    listen_seconds: float = Field(
        default=0.0, ge=0, description="How long a webhook sensor's tick waits for an event when none is pending."
    )

    def get_inbox(self) -> WebhookInbox:
        return WebhookInbox(self.path)
