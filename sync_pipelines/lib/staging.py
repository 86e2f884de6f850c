"""The DuckDB staging store: the one module that owns its schema.

Every flow lands raw vendor records here, keeps deduplicated current state, queues the writes it owes a
target in an outbox, parks failed writes in a dead-letter queue, and leaves an audit trail. DuckDB lets one process
at a time have the file: other processes (another run of the flow, a sensor, the CLI) retry on its lock, and a
run's steps share one open database that the run lets go of as soon as it is idle or another process waits.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import duckdb
import pandas as pd
from filelock import FileLock
from pydantic import Field, PrivateAttr
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random_exponential

from sync_pipelines.lib import json_codec
from sync_pipelines.lib.tenants import Connection, TenantScoped, shard

# Versioned migrations: append a new entry, never edit a shipped one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE SEQUENCE raw_landing_seq",
        """CREATE TABLE raw_landing (
            seq BIGINT PRIMARY KEY DEFAULT nextval('raw_landing_seq'),
            source VARCHAR NOT NULL, entity VARCHAR NOT NULL, record_id VARCHAR,
            updated_at TIMESTAMPTZ, payload_hash VARCHAR NOT NULL, payload JSON NOT NULL,
            run_id VARCHAR, landed_at TIMESTAMPTZ NOT NULL)""",
        "CREATE INDEX raw_landing_hash ON raw_landing (source, entity, payload_hash)",
        """CREATE TABLE sync_cursors (
            name VARCHAR PRIMARY KEY, value JSON NOT NULL, updated_at TIMESTAMPTZ NOT NULL)""",
        """CREATE TABLE xrefs (
            entity VARCHAR NOT NULL, source_system VARCHAR NOT NULL, source_id VARCHAR NOT NULL,
            target_system VARCHAR NOT NULL, target_id VARCHAR NOT NULL, updated_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (entity, source_system, source_id, target_system))""",
        """CREATE TABLE identities (
            source VARCHAR NOT NULL, user_id VARCHAR NOT NULL, traits_hash VARCHAR NOT NULL,
            traits JSON NOT NULL, updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (source, user_id))""",
        "CREATE SEQUENCE outbox_seq",
        """CREATE TABLE outbox (
            message_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL DEFAULT nextval('outbox_seq'),
            flow VARCHAR NOT NULL, entity VARCHAR NOT NULL, record_id VARCHAR, kind VARCHAR NOT NULL,
            event VARCHAR, payload JSON NOT NULL, status VARCHAR NOT NULL DEFAULT 'pending',
            created_at TIMESTAMPTZ NOT NULL, delivered_at TIMESTAMPTZ, run_id VARCHAR)""",
        """CREATE TABLE dead_letters (
            message_id VARCHAR PRIMARY KEY, flow VARCHAR NOT NULL, entity VARCHAR NOT NULL,
            error VARCHAR NOT NULL, attempts INTEGER NOT NULL, status VARCHAR NOT NULL,
            first_failed_at TIMESTAMPTZ NOT NULL, last_failed_at TIMESTAMPTZ NOT NULL,
            next_attempt_at TIMESTAMPTZ)""",
        "CREATE SEQUENCE audit_log_seq",
        """CREATE TABLE audit_log (
            id BIGINT PRIMARY KEY DEFAULT nextval('audit_log_seq'), logged_at TIMESTAMPTZ NOT NULL,
            flow VARCHAR NOT NULL, entity VARCHAR NOT NULL, record_id VARCHAR, action VARCHAR NOT NULL,
            target VARCHAR NOT NULL, idempotency_key VARCHAR, outcome VARCHAR NOT NULL, detail JSON,
            run_id VARCHAR)""",
        "CREATE SEQUENCE quarantine_seq",
        """CREATE TABLE quarantine (
            id BIGINT PRIMARY KEY DEFAULT nextval('quarantine_seq'), source VARCHAR NOT NULL,
            entity VARCHAR NOT NULL, record_id VARCHAR, reasons VARCHAR NOT NULL, row JSON NOT NULL,
            landing_seq BIGINT NOT NULL, quarantined_at TIMESTAMPTZ NOT NULL, run_id VARCHAR)""",
        """CREATE TABLE reconciliation (
            run_id VARCHAR, checked_at TIMESTAMPTZ NOT NULL, flow VARCHAR NOT NULL, entity VARCHAR NOT NULL,
            in_source BIGINT, staged BIGINT, quarantined BIGINT, changes BIGINT, delivered BIGINT,
            dead_lettered BIGINT, pending BIGINT, ok BOOLEAN NOT NULL)""",
    ),
    # Traits can return to an earlier value: a per-identity version keeps every change's message id new.
    ("ALTER TABLE identities ADD COLUMN version INTEGER NOT NULL DEFAULT 0",),
    # Two-way sync: the value both systems last agreed on, per linked record and field.
    (
        """CREATE TABLE settled_fields (
            entity VARCHAR NOT NULL, source_id VARCHAR NOT NULL, field VARCHAR NOT NULL, value VARCHAR,
            settled_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (entity, source_id, field))""",
    ),
    # Write-ahead delivery: a message is claimed by one run's process, marked in flight before each send (counted
    # in `sends`), and settled as soon as the target answers; a dead claimant's messages are taken back.
    (
        "ALTER TABLE outbox ADD COLUMN claimed_by VARCHAR",
        "ALTER TABLE outbox ADD COLUMN claim_owner VARCHAR",
        "ALTER TABLE outbox ADD COLUMN claimed_at TIMESTAMPTZ",
        "ALTER TABLE outbox ADD COLUMN sends INTEGER NOT NULL DEFAULT 0",
    ),
    # The change feed: one staged entity feeds any number of deliveries, each with its own outbox partition (the
    # same message id may go to two deliveries) and its own refusals in quarantine.
    (
        "ALTER TABLE outbox RENAME TO outbox_v4",
        """CREATE TABLE outbox (
            message_id VARCHAR NOT NULL, seq BIGINT NOT NULL DEFAULT nextval('outbox_seq'),
            flow VARCHAR NOT NULL, entity VARCHAR NOT NULL, record_id VARCHAR, kind VARCHAR NOT NULL,
            event VARCHAR, payload JSON NOT NULL, status VARCHAR NOT NULL DEFAULT 'pending',
            created_at TIMESTAMPTZ NOT NULL, delivered_at TIMESTAMPTZ, run_id VARCHAR, claimed_by VARCHAR,
            claim_owner VARCHAR, claimed_at TIMESTAMPTZ, sends INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (flow, entity, message_id))""",
        "INSERT INTO outbox BY NAME SELECT * FROM outbox_v4",
        "DROP TABLE outbox_v4",
        "ALTER TABLE dead_letters RENAME TO dead_letters_v4",
        """CREATE TABLE dead_letters (
            message_id VARCHAR NOT NULL, flow VARCHAR NOT NULL, entity VARCHAR NOT NULL,
            error VARCHAR NOT NULL, attempts INTEGER NOT NULL, status VARCHAR NOT NULL,
            first_failed_at TIMESTAMPTZ NOT NULL, last_failed_at TIMESTAMPTZ NOT NULL,
            next_attempt_at TIMESTAMPTZ, PRIMARY KEY (flow, entity, message_id))""",
        "INSERT INTO dead_letters BY NAME SELECT * FROM dead_letters_v4",
        "DROP TABLE dead_letters_v4",
        "CREATE SEQUENCE feed_batch_seq",
        "ALTER TABLE quarantine ADD COLUMN delivery VARCHAR",
        "ALTER TABLE reconciliation ADD COLUMN refused BIGINT",
    ),
    # Our own writes, by the version of the record they left at the target: reading that version back is the
    # write's echo, which a flow back to where the write came from does not send.
    (
        """CREATE TABLE own_writes (
            system VARCHAR NOT NULL, record_id VARCHAR NOT NULL, version VARCHAR NOT NULL,
            source VARCHAR NOT NULL, flow VARCHAR NOT NULL, written_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (system, record_id, version))""",
    ),
    # Historical migrations: what a dry run planned and what the migration then wrote, per delivery and write.
    (
        """CREATE TABLE migrations (
            run_id VARCHAR NOT NULL, flow VARCHAR NOT NULL, archive VARCHAR NOT NULL, dry_run BOOLEAN NOT NULL,
            delivery VARCHAR NOT NULL, write VARCHAR NOT NULL, messages BIGINT NOT NULL,
            reported_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (run_id, delivery, write))""",
    ),
    # Alerts, recorded before they are sent (lib/alerts.py): each told once, a failed send retried.
    (
        """CREATE TABLE alerts (
            alert_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, flow VARCHAR, text VARCHAR NOT NULL,
            link VARCHAR NOT NULL, raised_at TIMESTAMPTZ NOT NULL, sent_at TIMESTAMPTZ)""",
    ),
    # Landing at scale: payloads compressed with zstd, half the file of DuckDB's default (FSST) and half the time of
    # the checkpoint every landing ends with; and no index, which every insert kept up to date and in memory while
    # DuckDB answered the landing's copy test and the staged step's reads by scanning anyway (seq only grows, so
    # its reads skip row groups by their min/max).
    (
        "DROP INDEX raw_landing_hash",
        "ALTER TABLE raw_landing RENAME TO raw_landing_fsst",
        """CREATE TABLE raw_landing (
            seq BIGINT NOT NULL DEFAULT nextval('raw_landing_seq'),
            source VARCHAR NOT NULL, entity VARCHAR NOT NULL, record_id VARCHAR,
            updated_at TIMESTAMPTZ, payload_hash VARCHAR NOT NULL, payload JSON NOT NULL USING COMPRESSION zstd,
            run_id VARCHAR, landed_at TIMESTAMPTZ NOT NULL)""",
        "INSERT INTO raw_landing BY NAME SELECT * FROM raw_landing_fsst ORDER BY seq",
        "DROP TABLE raw_landing_fsst",
    ),
)

# A failed write is retried this many times by the replay sensor before it waits for a human.
MAX_DELIVERY_ATTEMPTS = 8


def _is_lock_conflict(error: BaseException) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


def _waiting_marker(path: str) -> Path:
    """A file another process touches each time the DuckDB file's lock keeps it out: a run holding the file lets
    go of it at its next idle moment."""
    return Path(f"{path}.waiting")


def open_database(path: str, *, memory_limit: str, lock_timeout_seconds: float) -> duckdb.DuckDBPyConnection:
    """Open and migrate the file, retrying while another process holds its lock (and telling it so)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    connect = retry(
        retry=retry_if_exception(_is_lock_conflict),
        wait=wait_random_exponential(multiplier=0.05, max=2),
        stop=stop_after_delay(lock_timeout_seconds),
        before_sleep=lambda _: _waiting_marker(path).touch(),
        reraise=True,
    )(duckdb.connect)
    conn = connect(path, config={"memory_limit": memory_limit})
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


# How often a run whose database is open and idle looks whether another process is waiting for it.
WAITING_POLL_SECONDS = 0.05


class HeldDatabase:
    """A run's one open DuckDB database, shared by its steps and threads (a cursor each).

    Opening the file costs about 20 ms of CPU (DuckDB builds its catalog of functions), and a run used to open it
    a hundred times or more. Holding it for the whole run would hold DuckDB's one-process lock through the run's
    waits on vendors, so it is closed once unused for `linger` seconds, and at once, after each use, when another
    process has been refused the lock since it was opened.
    """

    def __init__(self, path: str, *, memory_limit: str, lock_timeout_seconds: float, linger: float) -> None:
        self._path, self._linger = path, linger
        self._options = {"memory_limit": memory_limit, "lock_timeout_seconds": lock_timeout_seconds}
        self._condition = threading.Condition()
        self._database: duckdb.DuckDBPyConnection | None = None
        self._opened_ns = 0
        self._users = 0
        self._idle_since: float | None = None
        self._closer: threading.Thread | None = None
        self._stopped = False

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._condition:
            if self._database is None:
                self._database = open_database(self._path, **self._options)
                self._opened_ns = time.time_ns()
            self._users += 1
            cursor = self._database.cursor()
        try:
            yield cursor
        finally:
            cursor.close()
            with self._condition:
                self._users -= 1
                if self._users == 0:
                    self._idle_since = time.monotonic()
                    if self._stopped or self._wanted_elsewhere():
                        self._close()
                    else:
                        self._start_closer()
                        self._condition.notify_all()

    def close(self) -> None:
        """Let go of the file for good (the run's end)."""
        with self._condition:
            self._stopped = True
            self._close()
            self._condition.notify_all()

    def _wanted_elsewhere(self) -> bool:
        try:
            return _waiting_marker(self._path).stat().st_mtime_ns >= self._opened_ns
        except FileNotFoundError:
            return False

    def _close(self) -> None:
        if self._database is not None and self._users == 0:
            self._database.close()
            self._database = None

    def _start_closer(self) -> None:
        if self._closer is None:
            self._closer = threading.Thread(target=self._close_when_idle, name="staging-closer", daemon=True)
            self._closer.start()

    def _close_when_idle(self) -> None:
        """While the database is open and unused: close it after `linger` s, or as soon as another process waits."""
        with self._condition:
            while not self._stopped:
                if self._database is None or self._users:
                    self._condition.wait()
                    continue
                idle = time.monotonic() - self._idle_since
                if idle >= self._linger or self._wanted_elsewhere():
                    self._close()
                else:
                    self._condition.wait(min(self._linger - idle, WAITING_POLL_SECONDS))


def content_hash(value: object) -> str:
    """Stable hash of a JSON-able value: the change detector for records, traits and payloads."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def row_versions(frame: pd.DataFrame) -> pd.Series:
    """A stable 64-bit hash of each row's values, as hex: the version of a record that a change makes."""
    return pd.util.hash_pandas_object(frame, index=False).map("{:016x}".format)


def utcnow() -> datetime:
    return datetime.now(UTC)


@contextmanager
def frame_as(conn: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> Iterator[None]:
    """Expose a dataframe to SQL under `name` for the statements inside the block."""
    # DuckDB refuses to (un)register while a result is partly read (fetchone); a fresh statement ends it.
    conn.execute("SELECT 1").fetchall()
    conn.register(name, frame)
    # Not unregistered when a statement inside fails: that error aborted the transaction, and any statement here
    # would raise "transaction is aborted" in its place (hiding, say, DuckDB running out of memory).
    yield
    conn.execute("SELECT 1").fetchall()
    conn.unregister(name)


# A run with this tag is a dry run (a preview): it reads, validates and stages into a scratch copy of the staging
# store, derives every write its deliveries would make and reports them, and sends none (lib/deliveries.py).
DRY_RUN_TAG = "sync_pipelines/dry_run"
# The tag Dagster puts on every run of a backfill: the runs of one backfill share one scratch copy. Runs launched
# together otherwise (sync-pipelines backfill --dry-run) share one by this tag.
BACKFILL_ID_TAG = "dagster/backfill"
PREVIEW_TAG = "sync_pipelines/preview"


def preview_directory(database: str | Path, key: str) -> Path:
    """Where a dry run's scratch copy of the store and its reports live: beside the store, by backfill or run."""
    return Path(database).parent / "previews" / key


class StagingResource(TenantScoped):
    """The DuckDB staging file, migrated on first connection; in a dry run, a scratch copy of it instead; in a
    connection's run (lib/tenants.py), that connection's own file."""

    registry_key: ClassVar[str] = "staging_db"

    database: str = Field(description="Path of the DuckDB file, e.g. data/warehouse.duckdb.")
    lock_timeout_seconds: float = Field(
        default=300.0, description="How long a step waits for another process's write lock."
    )
    linger_seconds: float = Field(
        default=2.0,
        description=(
            "How long a run keeps the file open after using it, when no other process is waiting for it: opening it "
            "costs about 20 ms of CPU, and a run's steps use it many times between their calls to vendors."
        ),
    )
    memory_limit: str = Field(
        default="256MB",
        description=(
            "DuckDB's memory limit (it spills to disk beyond it). DuckDB keeps the store's blocks in memory up to "
            "its limit (without one, 80% of the machine's), so a step's memory grows with the rows the store holds "
            "until it reaches the limit. Primary-key indexes (the outbox's, identities') must fit in it: at 80 MB "
            "a delivery step ran out of memory."
        ),
    )
    stage_memory_limit: str = Field(
        default="80MB",
        description=(
            "DuckDB's memory limit while a step lands or stages records, which scan the landing and build no "
            "index: at the store's 256 MB their memory grew 30% from 100k to 1M invoices, at 80 MB 7% "
            "(benchmarks/stage_memory.py measures others). The limit is the database's: set for the block and put "
            "back after it."
        ),
    )

    _preview: Path | None = PrivateAttr(default=None)
    _held: dict[str, HeldDatabase] | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A dry run's steps all use one scratch copy of the store, made by whichever step comes first: the real
        store's cursors, staged state and outbox are never touched, and a later real run starts from them."""
        super().setup_for_execution(context)
        self._held = {}
        run = context.run
        if run is None or run.tags.get(DRY_RUN_TAG) != "true":
            return
        key = run.tags.get(PREVIEW_TAG) or run.tags.get(BACKFILL_ID_TAG) or run.run_id
        directory = preview_directory(self.database, key)
        directory.mkdir(parents=True, exist_ok=True)
        copy = directory / "staging.duckdb"
        with FileLock(directory / ".lock", timeout=self.lock_timeout_seconds):
            if not copy.exists() and Path(self.database).exists():
                with self.connect() as conn:
                    (name,) = conn.execute("SELECT current_database()").fetchone()
                    conn.execute("ATTACH ? AS preview", [str(copy)])
                    conn.execute(f'COPY FROM DATABASE "{name}" TO preview')
                    conn.execute("DETACH preview")
        self._preview = copy

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for held in (self._held or {}).values():
            held.close()
        self._held = None

    def connection_settings(self, connection: Connection) -> dict[str, Any]:
        return {"database": shard(self.database, connection.name), **super().connection_settings(connection)}

    def for_connection(self, connection: Connection) -> StagingResource:
        """The connection's store, for what reads it outside its runs (sensors, the CLI)."""
        scoped = self.model_copy()
        scoped.scope_to(connection)
        return scoped

    @property
    def preview(self) -> Path | None:
        """The dry run's directory (its scratch store and reports), None in a real run."""
        return self._preview.parent if self._preview else None

    @contextmanager
    def connect(self, *, memory_limit: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for the statements that need it; hold it no longer. Where Dagster set the resource up (a
        run, a sensor's tick), a cursor of its open database (HeldDatabase); elsewhere (the CLI, a resource built
        by hand), the file opened and closed again. Given `memory_limit`, the database runs under it for the block
        (DuckDB refuses a second configuration of a file open in the process, so it is set, not configured)."""
        with self._connection() as conn:
            if memory_limit is None or memory_limit == self.memory_limit:
                yield conn
                return
            conn.execute("SET memory_limit = ?", [memory_limit])
            try:
                yield conn
            finally:
                # On a cursor of its own: the block's may hold an aborted transaction, which refuses statements.
                with closing(conn.cursor()) as restoring:
                    restoring.execute("SET memory_limit = ?", [self.memory_limit])

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        path = str(self._preview or self.database)
        options = {"memory_limit": self.memory_limit, "lock_timeout_seconds": self.lock_timeout_seconds}
        if self._held is None:
            conn = open_database(path, **options)
            try:
                yield conn
            finally:
                conn.close()
            return
        held = self._held.get(path) or self._held.setdefault(
            path, HeldDatabase(path, **options, linger=self.linger_seconds)
        )
        with held.cursor() as cursor:
            yield cursor


def migrate(conn: duckdb.DuckDBPyConnection) -> int:
    """Apply the migrations this file has not seen yet; returns the schema version."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
    # fetchall, not fetchone: a result left partly read holds its transaction open, and a run's held database
    # keeps this connection for the whole run; while a transaction is open DuckDB writes no checkpoint after a catalog
    # change, so the write-ahead log grew through the run and its whole checkpoint came at once, at the close.
    ((version,),) = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()
    for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN TRANSACTION")
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", [number, utcnow()])
        conn.execute("COMMIT")
    return len(MIGRATIONS)


# ---------------------------------------------------------------------------------------------- cursors


def read_cursor(conn: duckdb.DuckDBPyConnection, name: str) -> dict | None:
    row = conn.execute("SELECT value FROM sync_cursors WHERE name = ?", [name]).fetchone()
    return json.loads(row[0]) if row else None


def write_cursor(conn: duckdb.DuckDBPyConnection, name: str, value: dict) -> None:
    conn.execute("INSERT OR REPLACE INTO sync_cursors VALUES (?, ?, ?)", [name, json.dumps(value), utcnow()])


def delete_cursor(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    conn.execute("DELETE FROM sync_cursors WHERE name = ?", [name])


def forget_entity(conn: duckdb.DuckDBPyConnection, *, source: str, entity: str, table: str, cursor: str) -> int:
    """A full resync's start: the entity's extract cursor, landed records and staged state go, so its next extract
    re-reads the whole history and every record is staged afresh (the feed then carries each as new; deliveries
    write the target only where it differs from what was written). Quarantine, xrefs and the outbox stay.
    Returns the staged rows forgotten."""
    delete_cursor(conn, cursor)
    conn.execute("DELETE FROM raw_landing WHERE source = ? AND entity = ?", [source, entity])
    if not table_exists(conn, table):
        return 0
    (forgotten,) = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    conn.execute(f'DELETE FROM "{table}"')
    return forgotten


# ---------------------------------------------------------------------------------------------- landing


def landing_frame(records: Sequence[object], *, id_field: str, updated_at: Sequence[datetime | None]) -> pd.DataFrame:
    """A page of vendor records as `land` takes it: each record's id, change time, JSON text and its hash. Made as
    soon as a page is read, so the records themselves need not be held until it lands."""
    records, payloads = zip(*(landing(r, id_field) for r in records), strict=True) if records else ((), ())
    return pd.DataFrame(
        {
            "record_id": [None if r.get(id_field) is None else str(r.get(id_field)) for r in records],
            "updated_at": pd.to_datetime(pd.Series(updated_at, dtype="object"), utc=True),
            "payload": payloads,
            "payload_hash": [hashlib.sha256(p.encode()).hexdigest() for p in payloads],
        }
    )


def land(conn: duckdb.DuckDBPyConnection, *, source: str, entity: str, page: pd.DataFrame, run_id: str | None) -> int:
    """Append a landing frame's records (one or several pages'), skipping exact copies already landed (overlap
    re-reads), in the frame's order: the staged step takes the last of a record's versions by `seq`.

    Written to stay within DuckDB's memory limit however large the table grows: the copy test returns only the
    copies found (a semi join built on the frame's hashes), and the rows go in as the frame holds them, with their
    `seq` numbers drawn beforehand, rather than through a sort of their payloads by position."""
    page = page.drop_duplicates("payload_hash")
    if page.empty:
        return 0
    # A copy has its original's change time: only row groups whose times span the page's are read (DuckDB skips
    # the rest by their min/max), which for pages read oldest first is the last few.
    spans = []
    if page["updated_at"].notna().any():
        spans.append(("updated_at BETWEEN ? AND ?", [page["updated_at"].min(), page["updated_at"].max()]))
    if page["updated_at"].isna().any():
        spans.append(("updated_at IS NULL", []))
    with frame_as(conn, "page_hashes", page[["payload_hash"]]):
        copies = conn.execute(
            " UNION ALL ".join(
                f"""SELECT payload_hash FROM raw_landing WHERE source = ? AND entity = ? AND {span}
                    AND payload_hash IN (SELECT payload_hash FROM page_hashes)"""
                for span, _ in spans
            ),
            [value for _, values in spans for value in (source, entity, *values)],
        ).fetchall()
    if copies:
        page = page[~page["payload_hash"].isin([h for (h,) in copies])]
        if page.empty:
            return 0
    (numbers,) = conn.execute("SELECT list(nextval('raw_landing_seq')) FROM range(?)", [len(page)]).fetchone()
    with frame_as(conn, "page", page.assign(seq=sorted(numbers))):
        conn.execute(
            """INSERT INTO raw_landing (seq, source, entity, record_id, updated_at, payload_hash, payload, run_id,
                                        landed_at)
               SELECT p.seq, ?, ?, p.record_id, p.updated_at, p.payload_hash, p.payload, ?, ? FROM page p""",
            [source, entity, run_id, utcnow()],
        )
    return len(page)


# Marks a stand-in landed for what DuckDB's JSON cannot hold or what is no record at all; the staged step
# quarantines it with this reason.
UNLANDABLE = "_unlandable"


def landing(record: object, id_field: str) -> tuple[dict, str]:
    """The record and its JSON text, or a stand-in saying why it cannot land as it came: not a JSON object, or
    text holding a lone UTF-16 surrogate (valid in a JSON escape, refused by DuckDB's JSON type). The extract never
    fails on a record; the staged step quarantines the stand-in with its reason."""
    if not isinstance(record, dict):
        record = {UNLANDABLE: f"not a JSON object: {json.dumps(record, default=str)[:80]}"}
    elif (text := json_codec.sorted_text(record)) is not None:
        return record, text
    text = json.dumps(record, sort_keys=True)
    # Escaped surrogates show as "\ud"; paired ones (emoji) are fine, so only such text is checked further.
    if "\\ud" in text:
        try:
            json.dumps(record, ensure_ascii=False).encode()
        except UnicodeEncodeError as error:
            surrogate = f"U+{ord(error.object[error.start]):04X}"
            record_id = record.get(id_field)
            record = {UNLANDABLE: f"a lone surrogate {surrogate} in its text, which no target can take"}
            if isinstance(record_id, str | int) and "\\ud" not in json.dumps(record_id):
                record[id_field] = record_id  # so the quarantine row names the record
            text = json.dumps(record, sort_keys=True)
    return record, text


def unprocessed_landing(
    conn: duckdb.DuckDBPyConnection, *, source: str, entity: str, after_seq: int, limit: int
) -> pd.DataFrame:
    """The oldest `limit` landed rows a later stage has not consumed yet."""
    # The last seq of the chunk first, from the seq column alone: ordering payloads to cut the chunk would read
    # every waiting row's payload (beyond DuckDB's memory limit with a million waiting); the range then reads only
    # the row groups holding the chunk.
    (last,) = conn.execute(
        """SELECT max(seq) FROM (SELECT seq FROM raw_landing
           WHERE source = ? AND entity = ? AND seq > ? ORDER BY seq LIMIT ?)""",
        [source, entity, after_seq, limit],
    ).fetchone()
    # Put in order here rather than by DuckDB, whose sort would hold every payload of the chunk at once.
    rows = conn.execute(
        """SELECT seq, record_id, payload FROM raw_landing
           WHERE source = ? AND entity = ? AND seq > ? AND seq <= ?""",
        [source, entity, after_seq, last],
    ).fetchall()  # as tuples: pandas' conversion of the payloads' text takes half as long again
    rows.sort(key=lambda row: row[0])
    return pd.DataFrame(rows, columns=["seq", "record_id", "payload"])


# ---------------------------------------------------------------------------------------------- state


def current_state(conn: duckdb.DuckDBPyConnection, table: str, key: str, ids: Sequence[str]) -> pd.DataFrame:
    """The staged rows for these ids (empty frame when the table does not exist yet)."""
    if not table_exists(conn, table) or not ids:
        return pd.DataFrame()
    with frame_as(conn, "wanted", pd.DataFrame({key: list(ids)})):
        return conn.execute(f'SELECT s.* FROM "{table}" s JOIN wanted USING ("{key}")').df()


def upsert_state(conn: duckdb.DuckDBPyConnection, table: str, key: str, rows: pd.DataFrame) -> None:
    """Replace the staged rows for these keys; the table takes the validated frame's columns."""
    if rows.empty:
        return
    with frame_as(conn, "incoming_rows", rows):
        _take_columns(conn, table, "incoming_rows")
        conn.execute(f'DELETE FROM "{table}" WHERE "{key}" IN (SELECT "{key}" FROM incoming_rows)')
        conn.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM incoming_rows')


def append_rows(conn: duckdb.DuckDBPyConnection, table: str, rows: pd.DataFrame) -> None:
    """Add the rows to `table`, made or widened to hold the frame's columns."""
    if rows.empty:
        return
    with frame_as(conn, "incoming_rows", rows):
        _take_columns(conn, table, "incoming_rows")
        conn.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM incoming_rows')


def _take_columns(conn: duckdb.DuckDBPyConnection, table: str, relation: str) -> None:
    """Make `table` with the relation's columns, or add the ones it lacks.

    A column the contract gained since the table was made is added (earlier rows hold NULL there); a column
    with no value yet is text rather than DuckDB's untyped NULL, which no later value could be cast into.
    """
    incoming = [
        (name, "VARCHAR" if kind.strip('"') == "NULL" else kind)
        for name, kind, *_ in conn.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    ]
    columns = ", ".join(f'"{name}" {kind}' for name, kind in incoming)
    conn.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({columns})')
    existing = {
        name for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
        ).fetchall()
    }  # fmt: skip
    for name, kind in incoming:
        if name not in existing:
            conn.execute(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {kind}')


def duplicate_keys(conn: duckdb.DuckDBPyConnection, table: str, key: str) -> int:
    """How many staged rows share a key with another: must stay 0."""
    if not table_exists(conn, table):
        return 0
    return conn.execute(f'SELECT count(*) - count(DISTINCT "{key}") FROM "{table}"').fetchall()[0][0]


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchone()[0]
    )


def changed_identities(conn: duckdb.DuckDBPyConnection, source: str, identities: dict[str, dict]) -> dict[str, dict]:
    """The identities whose traits differ from what was last queued for them."""
    if not identities:
        return {}
    incoming = pd.DataFrame(
        {"user_id": list(identities), "traits_hash": [content_hash(t) for t in identities.values()]}
    )
    with frame_as(conn, "incoming", incoming):
        changed = conn.execute(
            """SELECT i.user_id FROM incoming i LEFT JOIN identities s ON s.source = ? AND s.user_id = i.user_id
               WHERE s.traits_hash IS DISTINCT FROM i.traits_hash""",
            [source],
        ).fetchall()
    return {user_id: identities[user_id] for (user_id,) in changed}


def remember_identities(conn: duckdb.DuckDBPyConnection, source: str, identities: dict[str, dict]) -> dict[str, int]:
    """Record these traits as the last queued; each identity's new version number, counting its changes."""
    if not identities:
        return {}
    remembered = pd.DataFrame(
        {
            "user_id": list(identities),
            "traits_hash": [content_hash(t) for t in identities.values()],
            "traits": [json.dumps(t, default=str) for t in identities.values()],
        }
    )
    with frame_as(conn, "remembered", remembered):
        versions = conn.execute(
            """INSERT OR REPLACE INTO identities (source, user_id, traits_hash, traits, updated_at, version)
               SELECT ?, r.user_id, r.traits_hash, r.traits, ?, coalesce(i.version, 0) + 1
               FROM remembered r LEFT JOIN identities i ON i.source = ? AND i.user_id = r.user_id
               RETURNING user_id, version""",
            [source, utcnow(), source],
        ).fetchall()
    return dict(versions)


def link_ids(
    conn: duckdb.DuckDBPyConnection,
    *,
    entity: str,
    source_system: str,
    target_system: str,
    pairs: Sequence[tuple[str, str]],
) -> None:
    """Remember which target id stands for which source id, so later flows can match and echo-check."""
    if not pairs:
        return
    with frame_as(conn, "linked", pd.DataFrame(pairs, columns=["source_id", "target_id"])):
        conn.execute(
            "INSERT OR REPLACE INTO xrefs SELECT ?, ?, source_id, ?, target_id, ? FROM linked",
            [entity, source_system, target_system, utcnow()],
        )


def linked_ids(
    conn: duckdb.DuckDBPyConnection, *, source_system: str, target_system: str, source_ids: list[str]
) -> dict[str, str]:
    """The target ids already linked to these source ids (a vendor's record id names one record, whatever entity
    linked it)."""
    return _linked(conn, source_system, target_system, "source_id", "target_id", source_ids)


def source_ids(
    conn: duckdb.DuckDBPyConnection, *, source_system: str, target_system: str, target_ids: list[str]
) -> dict[str, str]:
    """The source ids these target ids were linked from: target id -> source id."""
    return _linked(conn, source_system, target_system, "target_id", "source_id", target_ids)


def _linked(
    conn: duckdb.DuckDBPyConnection, source_system: str, target_system: str, known: str, wanted: str, ids: list[str]
) -> dict[str, str]:
    """xrefs between two systems read one way: each of `ids` (in column `known`) -> its id in column `wanted`."""
    if not ids:
        return {}
    with frame_as(conn, "wanted", pd.DataFrame({known: ids})):
        return dict(
            conn.execute(
                f"""SELECT x.{known}, any_value(x.{wanted}) FROM xrefs x JOIN wanted w USING ({known})
                    WHERE x.source_system = ? AND x.target_system = ? GROUP BY x.{known}""",
                [source_system, target_system],
            ).fetchall()
        )


def version_text(value: object) -> str:
    """A record's version as own_writes keeps it: a change time as epoch milliseconds, anything else as text."""
    if isinstance(value, datetime | pd.Timestamp):
        return str(pd.Timestamp(value).value // 1_000_000)
    return str(value)


def remember_own_writes(
    conn: duckdb.DuckDBPyConnection, *, system: str, source: str, flow: str, writes: Sequence[tuple[str, str]]
) -> None:
    """Remember (record id, version) as written at `system` by a flow from `source`."""
    if not writes:
        return
    with frame_as(conn, "written", pd.DataFrame(writes, columns=["record_id", "version"], dtype="string")):
        conn.execute(
            "INSERT OR REPLACE INTO own_writes SELECT ?, record_id, version, ?, ?, ? FROM written",
            [system, source, flow, utcnow()],
        )


def own_versions(
    conn: duckdb.DuckDBPyConnection, *, system: str, source: str, versions: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Those of the (record id, version) pairs of `system` that a flow from `source` wrote."""
    if not versions:
        return set()
    with frame_as(conn, "read_back", pd.DataFrame(versions, columns=["record_id", "version"], dtype="string")):
        rows = conn.execute(
            """SELECT r.record_id, r.version FROM read_back r
               JOIN own_writes o ON o.system = ? AND o.source = ? AND o.record_id = r.record_id
                AND o.version = r.version""",
            [system, source],
        ).fetchall()
    return set(rows)


def settled_fields(conn: duckdb.DuckDBPyConnection, entity: str) -> dict[tuple[str, str], str | None]:
    """(source id, field) -> the value both systems last agreed on."""
    rows = conn.execute("SELECT source_id, field, value FROM settled_fields WHERE entity = ?", [entity]).fetchall()
    return {(source_id, field): value for source_id, field, value in rows}


def settle_fields(conn: duckdb.DuckDBPyConnection, entity: str, values: Sequence[tuple[str, str, str | None]]) -> None:
    """Remember (source id, field, value) as agreed: the base the next comparison starts from."""
    if not values:
        return
    with frame_as(conn, "agreed", pd.DataFrame(values, columns=["source_id", "field", "value"], dtype="string")):
        conn.execute(
            "INSERT OR REPLACE INTO settled_fields SELECT ?, source_id, field, value, ? FROM agreed",
            [entity, utcnow()],
        )


def undelivered_records(conn: duckdb.DuckDBPyConnection, *, flow: str, entity: str) -> set[str]:
    """Records with a write still on its way (pending, held or dead-lettered)."""
    rows = conn.execute(
        "SELECT DISTINCT record_id FROM outbox WHERE flow = ? AND entity = ? AND status <> 'delivered'",
        [flow, entity],
    ).fetchall()
    return {record_id for (record_id,) in rows}


def audit(
    conn: duckdb.DuckDBPyConnection,
    *,
    flow: str,
    entity: str,
    action: str,
    target: str,
    entries: Sequence[tuple[str, str, dict]],
    run_id: str | None,
) -> None:
    """Audit entries other than deliveries: (record_id, outcome, detail), e.g. the losing side of a conflict."""
    if not entries:
        return
    frame = pd.DataFrame(
        [(record_id, outcome, json.dumps(detail, default=str)) for record_id, outcome, detail in entries],
        columns=["record_id", "outcome", "detail"],
    )
    with frame_as(conn, "entries", frame):
        conn.execute(
            """INSERT INTO audit_log (logged_at, flow, entity, record_id, action, target, outcome, detail, run_id)
               SELECT ?, ?, ?, record_id, ?, ?, outcome, detail, ? FROM entries""",
            [utcnow(), flow, entity, action, target, run_id],
        )


def quarantine_rows(
    conn: duckdb.DuckDBPyConnection,
    *,
    source: str,
    entity: str,
    rows: pd.DataFrame,
    run_id: str | None,
    delivery: str | None = None,
) -> None:
    """Park rows with their reasons (columns record_id, reasons, row, landing_seq): rows that failed their contract
    when staged, or, naming the `delivery`, staged rows whose messages that delivery's target would refuse."""
    if rows.empty:
        return
    with frame_as(conn, "bad_rows", rows):
        conn.execute(
            """INSERT INTO quarantine
                 (source, entity, record_id, reasons, row, landing_seq, quarantined_at, run_id, delivery)
               SELECT ?, ?, record_id, reasons, row, landing_seq, ?, ?, ? FROM bad_rows""",
            [source, entity, utcnow(), run_id, delivery],
        )


# ---------------------------------------------------------------------------------------------- change feed

# What a feed row holds beside the staged columns: the staging batch that appended it, whether it is the version a
# change replaced (rather than the new one), whether the batch was held for a person, and where the new version
# landed (for a delivery that quarantines it).
FEED_COLUMNS = ("feed_batch", "feed_replaced", "feed_held", "feed_landing_seq")


def top_reasons(
    conn: duckdb.DuckDBPyConnection, *, source: str, entity: str, run_id: str, limit: int = 5
) -> list[dict]:
    """The run's most frequent quarantine reasons for an entity: {reason, records, sample_record_ids}."""
    rows = conn.execute(
        """SELECT reason, count(*) AS records,
                  array_to_string(list(coalesce(record_id, '(no id)') ORDER BY id)[1:3], ', ') AS samples
           FROM (SELECT *, unnest(string_split(reasons, '; ')) AS reason FROM quarantine
                 WHERE source = ? AND entity = ? AND run_id = ? AND delivery IS NULL)
           GROUP BY reason ORDER BY records DESC, reason LIMIT ?""",
        [source, entity, run_id, limit],
    ).fetchall()
    return [{"reason": r, "records": n, "sample_record_ids": samples} for r, n, samples in rows]


def reasons_table(reasons: list[dict]) -> dg.TableMetadataValue:
    """Reasons as a check's table metadata: what the UI's check panel shows a person (why, how often, which
    records to look at)."""
    return dg.MetadataValue.table(
        [dg.TableRecord(row) for row in reasons],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("reason", "string"),
                dg.TableColumn("records", "int"),
                dg.TableColumn("sample_record_ids", "string"),
            ]
        ),
    )


def append_to_feed(
    conn: duckdb.DuckDBPyConnection, table: str, changed: pd.DataFrame, replaced: pd.DataFrame, *, held: bool
) -> None:
    """Append one staging batch's new versions (indexed by landing sequence) and the staged versions they replace."""
    if changed.empty:
        return
    (batch,) = conn.execute("SELECT nextval('feed_batch_seq')").fetchone()
    new = changed.assign(feed_batch=batch, feed_replaced=False, feed_held=held, feed_landing_seq=changed.index)
    append_rows(conn, table, new.reset_index(drop=True))
    append_rows(conn, table, replaced.assign(feed_batch=batch, feed_replaced=True, feed_held=held))


def first_staged(conn: duckdb.DuckDBPyConnection, table: str) -> datetime | None:
    """When the feed's first batch was staged: when its entity was first synced."""
    if not table_exists(conn, table):
        return None
    (first,) = conn.execute(f'SELECT min(staged_at) FROM "{table}"').fetchone()
    return first


@dataclass(frozen=True)
class FeedBatch:
    """One staging batch as a delivery reads it: the new versions, those they replaced, and whether it is held."""

    batch: int
    changed: pd.DataFrame  # indexed by landing sequence
    replaced: pd.DataFrame
    held: bool


def feed_batches(conn: duckdb.DuckDBPyConnection, table: str, *, after: int) -> Iterator[FeedBatch]:
    """The feed's batches after `after`, oldest first, each read when the caller asks for it."""
    if not table_exists(conn, table):
        return
    batches = [b for (b,) in conn.execute(
        f'SELECT DISTINCT feed_batch FROM "{table}" WHERE feed_batch > ? ORDER BY 1', [after]
    ).fetchall()]  # fmt: skip
    for batch in batches:
        rows = conn.execute(f'SELECT * FROM "{table}" WHERE feed_batch = ? ORDER BY feed_landing_seq', [batch]).df()
        held = bool(rows["feed_held"].any())
        new, replaced = rows[~rows["feed_replaced"]], rows[rows["feed_replaced"]]
        new = new.set_index(new["feed_landing_seq"].astype("int64").rename(None))
        yield FeedBatch(batch, new.drop(columns=list(FEED_COLUMNS)), replaced.drop(columns=list(FEED_COLUMNS)), held)


def feed_end(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    """The last batch in the feed (0 for none): where a delivery that starts from now begins."""
    if not table_exists(conn, table):
        return 0
    return conn.execute(f'SELECT coalesce(max(feed_batch), 0) FROM "{table}"').fetchone()[0]


# ---------------------------------------------------------------------------------------------- outbox


@dataclass(frozen=True)
class OutboxMessage:
    message_id: str
    record_id: str | None
    kind: str
    event: str | None
    payload: dict


def enqueue(
    conn: duckdb.DuckDBPyConnection,
    *,
    flow: str,
    entity: str,
    messages: Sequence[OutboxMessage],
    run_id: str | None,
    held: bool = False,
) -> int:
    """Queue writes for the target; a message id already queued is never queued twice.

    Held messages wait for `release_held` (a person deciding that a suspicious batch may go out).
    """
    if not messages:
        return 0
    frame = pd.DataFrame(
        {
            "message_id": [m.message_id for m in messages],
            "record_id": [m.record_id for m in messages],
            "kind": [m.kind for m in messages],
            "event": [m.event for m in messages],
            "payload": [json.dumps(m.payload, default=str) for m in messages],
        }
    ).drop_duplicates("message_id")
    before = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    with frame_as(conn, "queued", frame):
        conn.execute(
            """INSERT OR IGNORE INTO outbox
                 (message_id, flow, entity, record_id, kind, event, payload, status, created_at, run_id)
               SELECT message_id, ?, ?, record_id, kind, event, payload, ?, ?, ? FROM queued""",
            [flow, entity, "held" if held else "pending", utcnow(), run_id],
        )
    return conn.execute("SELECT count(*) FROM outbox").fetchone()[0] - before


@dataclass(frozen=True)
class ClaimedMessage:
    message_id: str
    record_id: str | None
    payload: dict
    sends: int  # times it went out before; more than 0 means its outcome may be unknown


# A message moves pending -> claimed (owned by one run's process) -> in_flight (recorded before each send) ->
# delivered or dead; a message not yet settled is in one of these.
CLAIMED = ("claimed", "in_flight")


def claim_pending(
    conn: duckdb.DuckDBPyConnection, *, flow: str, entity: str, run_id: str, owner: str, limit: int
) -> list[ClaimedMessage]:
    """Take the oldest pending messages for this run's process: no other run sends them while it lives."""
    rows = conn.execute(
        """UPDATE outbox SET status = 'claimed', claimed_by = ?, claim_owner = ?, claimed_at = ?
           WHERE flow = ? AND entity = ?
             AND message_id IN (SELECT message_id FROM outbox WHERE flow = ? AND entity = ? AND status = 'pending'
                                ORDER BY seq LIMIT ?)
           RETURNING seq, message_id, record_id, payload, sends""",
        [run_id, owner, utcnow(), flow, entity, flow, entity, limit],
    ).fetchall()
    return [ClaimedMessage(m, r, json.loads(p), sends) for _, m, r, p, sends in sorted(rows)]


def mark_in_flight(
    conn: duckdb.DuckDBPyConnection, *, owner: str, flow: str, entity: str, message_ids: Sequence[str]
) -> None:
    """Record that these messages of one delivery are about to go out, before the call; and renew the owner's
    claims."""
    now = utcnow()
    if message_ids:
        with frame_as(conn, "sending", pd.DataFrame({"message_id": list(message_ids)})):
            conn.execute(
                """UPDATE outbox SET status = 'in_flight', sends = sends + 1
                   WHERE claim_owner = ? AND status IN ('claimed', 'in_flight') AND flow = ? AND entity = ?
                     AND message_id IN (SELECT message_id FROM sending)""",
                [owner, flow, entity],
            )
    conn.execute(
        "UPDATE outbox SET claimed_at = ? WHERE claim_owner = ? AND status IN ('claimed', 'in_flight')", [now, owner]
    )


def claims(conn: duckdb.DuckDBPyConnection, *, flow: str, entity: str) -> list[tuple[str, str, datetime, int]]:
    """(run id, owner, last renewed, messages) of every claim on unsettled messages of one delivery."""
    return conn.execute(
        """SELECT claimed_by, claim_owner, max(claimed_at), count(*) FROM outbox
           WHERE flow = ? AND entity = ? AND status IN ('claimed', 'in_flight') GROUP BY ALL ORDER BY ALL""",
        [flow, entity],
    ).fetchall()


def release_claims(conn: duckdb.DuckDBPyConnection, *, owner: str, flow: str | None = None) -> int:
    """Put an owner's unsettled messages back in the queue (its own leftovers, or a dead claimant's); what it
    sent keeps its `sends`, so the next sender looks for it at the target first. Returns how many."""
    (count,) = conn.execute(
        """UPDATE outbox SET status = 'pending', claimed_by = NULL, claim_owner = NULL, claimed_at = NULL
           WHERE claim_owner = ? AND status IN ('claimed', 'in_flight') AND (? IS NULL OR flow = ?)""",
        [owner, flow, flow],
    ).fetchone()
    return count


def mark_delivered(
    conn: duckdb.DuckDBPyConnection,
    *,
    flow: str,
    entity: str,
    target: str,
    delivered: Sequence[tuple[str, str | None]],
    run_id: str | None,
) -> None:
    """Record delivered messages (message_id, record_id) in the outbox and the audit log; inside the caller's
    transaction."""
    if not delivered:
        return
    now = utcnow()
    with frame_as(conn, "done", pd.DataFrame(delivered, columns=["message_id", "record_id"])):
        conn.execute(
            """UPDATE outbox SET status = 'delivered', delivered_at = ?
               WHERE flow = ? AND entity = ? AND message_id IN (SELECT message_id FROM done)""",
            [now, flow, entity],
        )
        conn.execute(
            """UPDATE dead_letters SET status = 'replayed'
               WHERE flow = ? AND entity = ? AND message_id IN (SELECT message_id FROM done)""",
            [flow, entity],
        )
        conn.execute(
            """INSERT INTO audit_log
                 (logged_at, flow, entity, record_id, action, target, idempotency_key, outcome, run_id)
               SELECT ?, ?, ?, record_id, 'write', ?, message_id, 'delivered', ? FROM done""",
            [now, flow, entity, target, run_id],
        )


def dead_letter(
    conn: duckdb.DuckDBPyConnection,
    *,
    flow: str,
    entity: str,
    target: str,
    failures: Sequence[tuple[str, str | None, str]],
    retryable: bool,
    run_id: str | None,
) -> None:
    """Move failed messages (message_id, record_id, error) to the dead-letter queue with a next attempt time.

    Retryable failures back off exponentially until MAX_DELIVERY_ATTEMPTS; a message the target would
    reject again (bad input) waits for a human instead. Inside the caller's transaction.
    """
    now = utcnow()
    for message_id, record_id, error in failures:
        row = conn.execute(
            "SELECT attempts FROM dead_letters WHERE flow = ? AND entity = ? AND message_id = ?",
            [flow, entity, message_id],
        ).fetchone()
        attempts = (row[0] if row else 0) + 1
        exhausted = not retryable or attempts >= MAX_DELIVERY_ATTEMPTS
        next_attempt = None if exhausted else now + timedelta(seconds=min(30 * 2 ** (attempts - 1), 3600))
        conn.execute(
            """INSERT INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (flow, entity, message_id) DO UPDATE SET error = excluded.error,
                 attempts = excluded.attempts, status = excluded.status, last_failed_at = excluded.last_failed_at,
                 next_attempt_at = excluded.next_attempt_at""",
            [message_id, flow, entity, error, attempts, "exhausted" if exhausted else "due", now, now, next_attempt],
        )
        conn.execute(
            "UPDATE outbox SET status = 'dead' WHERE flow = ? AND entity = ? AND message_id = ?",
            [flow, entity, message_id],
        )
        conn.execute(
            """INSERT INTO audit_log
                 (logged_at, flow, entity, record_id, action, target, idempotency_key, outcome, detail, run_id)
               VALUES (?, ?, ?, ?, 'write', ?, ?, 'dead_lettered', ?, ?)""",
            [now, flow, entity, record_id, target, message_id, json.dumps({"error": error}), run_id],
        )


def requeue_dead_letters(
    conn: duckdb.DuckDBPyConnection, *, flow: str, entity: str | None = None, include_exhausted: bool = False
) -> int:
    """Put dead letters whose next attempt is due back in the outbox; returns how many."""
    statuses = ["due", "exhausted"] if include_exhausted else ["due"]
    due = f"""SELECT flow, entity, message_id FROM dead_letters
              WHERE flow = ? AND (? IS NULL OR entity = ?) AND status IN ({", ".join("?" * len(statuses))})
                AND (? OR next_attempt_at <= ?)"""
    params = [flow, entity, entity, *statuses, include_exhausted, utcnow()]
    conn.execute("BEGIN TRANSACTION")
    (count,) = conn.execute(f"SELECT count(*) FROM ({due})", params).fetchone()
    for table, status in (("outbox", "pending"), ("dead_letters", "requeued")):
        conn.execute(
            f"""UPDATE {table} t SET status = '{status}' FROM ({due}) d
                WHERE t.flow = d.flow AND t.entity = d.entity AND t.message_id = d.message_id""",
            params,
        )
    conn.execute("COMMIT")
    return count


def release_held(conn: duckdb.DuckDBPyConnection, *, flow: str, entity: str | None = None) -> int:
    """Let held messages go out with the next delivery; returns how many."""
    (count,) = conn.execute(
        "SELECT count(*) FROM outbox WHERE status = 'held' AND flow = ? AND (? IS NULL OR entity = ?)",
        [flow, entity, entity],
    ).fetchone()
    conn.execute(
        "UPDATE outbox SET status = 'pending' WHERE status = 'held' AND flow = ? AND (? IS NULL OR entity = ?)",
        [flow, entity, entity],
    )
    return count


def due_dead_letters(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int, str]]:
    """(flow, entity, count, wave) of dead letters due now; the wave is the newest failure's time."""
    rows = conn.execute(
        """SELECT flow, entity, count(*), max(last_failed_at) FROM dead_letters
           WHERE status = 'due' AND next_attempt_at <= ? GROUP BY ALL ORDER BY ALL""",
        [utcnow()],
    ).fetchall()
    return [(flow, entity, count, wave.isoformat()) for flow, entity, count, wave in rows]
