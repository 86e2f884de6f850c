"""SQLite persistence for the sandbox: records as rendered JSON plus the indexed columns filters need.

Bodies are stored exactly as the API renders them so a 1,000-row page is a string join, not a
re-serialisation; the columns next to them (id, updated_ms, type, status, ref_id, label, date_ms)
carry the filter/order values so `where`, If-Modified-Since and paging run on indexes.
"""

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from sync_pipelines.sandbox.xero.dates import parse_net

# Collection name in the API -> (table, id field, type field, status field, reference path).
COLLECTIONS: dict[str, tuple[str, str, str | None, str | None, tuple[str, str]]] = {
    "Invoices": ("invoices", "InvoiceID", "Type", "Status", ("Contact", "ContactID")),
    "Contacts": ("contacts", "ContactID", None, "ContactStatus", ("", "")),
    "BankTransactions": ("bank_transactions", "BankTransactionID", "Type", "Status", ("Contact", "ContactID")),
    "Payments": ("payments", "PaymentID", "PaymentType", "Status", ("Invoice", "InvoiceID")),
    "Items": ("items", "ItemID", None, None, ("", "")),
    "CreditNotes": ("credit_notes", "CreditNoteID", "Type", "Status", ("Contact", "ContactID")),
}
_SQLITE_INT = (-(2**63), 2**63 - 1)
# A record table's columns, as seeded_row fills them.
_ROW_COLUMNS = ("id", "updated_ms", "type", "status", "ref_id", "label", "date_ms", "malformed", "body")
# SQLite attaches at most 10 files to a connection: the staged files one seeding may bring (Store.replace_records).
MAX_STAGED_FILES = 10
# While seeding (Store.replace_records): no waiting for the disk, a page cache (in KiB; 2,000 by default) that holds
# a million invoices' primary key and the pages being filled, and a rollback journal. The journal mode goes last:
# when another connection keeps the file in WAL mode, the others still apply, and are undone.
_BULK_LOAD_PRAGMAS = {"synchronous": "OFF", "cache_size": -1024 * 1024, "journal_mode": "DELETE"}
# Listings whose order is kept for paging (a few clients reading at once, each with its own filters).
LISTINGS_KEPT = 8
_LABEL_FIELD = {
    "Invoices": "InvoiceNumber",
    "Contacts": "Name",
    "BankTransactions": "Reference",
    "Payments": "Reference",
    "Items": "Code",
    "CreditNotes": "CreditNoteNumber",
}

_RECORD_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    id TEXT PRIMARY KEY, updated_ms INTEGER NOT NULL, type TEXT, status TEXT, ref_id TEXT,
    label TEXT, date_ms INTEGER, malformed TEXT, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS {table}_updated ON {table} (updated_ms, id);
CREATE INDEX IF NOT EXISTS {table}_status ON {table} (status, updated_ms, id);
CREATE INDEX IF NOT EXISTS {table}_ref ON {table} (ref_id);
CREATE INDEX IF NOT EXISTS {table}_label ON {table} (label);
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY, kind TEXT NOT NULL, client_id TEXT NOT NULL, expires_ms INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0, used INTEGER NOT NULL DEFAULT 0, parent TEXT, successor TEXT,
    superseded_ms INTEGER, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_parent ON tokens (parent);
CREATE TABLE IF NOT EXISTS idempotency (
    client TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, created_ms INTEGER NOT NULL,
    status INTEGER NOT NULL, media_type TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (client, key));
CREATE TABLE IF NOT EXISTS segment_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segment_dropped (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, reason TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, category TEXT NOT NULL, resource_id TEXT NOT NULL,
    event_type TEXT NOT NULL, event_ms INTEGER NOT NULL, data TEXT, UNIQUE (category, resource_id, event_ms));
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    first INTEGER PRIMARY KEY, last INTEGER NOT NULL, events INTEGER NOT NULL, body BLOB NOT NULL,
    signature TEXT NOT NULL, attempts TEXT NOT NULL DEFAULT '[]', delivered INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, path TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contact_groups (
    id TEXT PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contact_group_members (
    group_id TEXT NOT NULL, contact_id TEXT NOT NULL, PRIMARY KEY (group_id, contact_id));
CREATE INDEX IF NOT EXISTS contact_group_members_contact ON contact_group_members (contact_id);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, record_id TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS history_record ON history (collection, record_id, seq);
CREATE TABLE IF NOT EXISTS created_by_app (
    collection TEXT NOT NULL, record_id TEXT NOT NULL, PRIMARY KEY (collection, record_id));
CREATE TABLE IF NOT EXISTS tracking_categories (
    id TEXT PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracking_options (
    id TEXT PRIMARY KEY, category_id TEXT NOT NULL, name TEXT NOT NULL COLLATE NOCASE, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tracking_options_category ON tracking_options (category_id);
CREATE TABLE IF NOT EXISTS stock_movements (
    collection TEXT NOT NULL, document_id TEXT NOT NULL, item_id TEXT NOT NULL, quantity TEXT NOT NULL,
    cost TEXT NOT NULL, PRIMARY KEY (collection, document_id, item_id));
"""


def _casefold(value: Any) -> Any:
    """SQL casefold(): Unicode case-insensitive matching, which SQLite's lower() does only for ASCII."""
    return value.casefold() if isinstance(value, str) else value


def dumps(value: Any) -> str:
    """Compact, key-order-preserving JSON: the one serialisation used for stored bodies."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def seeded_row(collection: str, row_id: str, body: dict, malformed: str | None) -> tuple:
    """A seeded record's row as Store.save writes a record's, its body serialised by orjson in a fifth of the time.

    orjson writes what dumps writes for the values seeded records hold (finite floats of at least 0.0001, 64-bit
    integers, text without lone surrogates; tests compare every body of a seeded sample); not for every value, so
    records from the API keep to dumps.
    """
    updated_ms = parse_net(body["UpdatedDateUTC"])
    return (row_id, updated_ms, *index_columns(collection, body), malformed, orjson.dumps(body).decode())


def index_columns(collection: str, body: dict) -> tuple[str | None, str | None, str | None, str | None, int | None]:
    """(type, status, ref_id, label, date_ms) read from a rendered body; bad dates index as NULL."""
    _, _, type_field, status_field, (ref_object, ref_field) = COLLECTIONS[collection]
    ref = body.get(ref_object) if ref_object else None
    try:
        date_ms = parse_net(body["Date"]) if isinstance(body.get("Date"), str) else None
    except ValueError:
        date_ms = None
    return (
        body.get(type_field) if type_field else None,
        body.get(status_field) if status_field else None,
        ref.get(ref_field) if isinstance(ref, dict) else None,
        body.get(_LABEL_FIELD[collection]),
        date_ms,
    )


class StagedRecords:
    """A file of records in the store's row format, for Store.replace_records to copy in with one INSERT ... SELECT
    per table: SQLite's own copy costs half of inserting the same rows from Python, and another process (the
    seeder's workers) can write one file while the store copies another in.

    Nothing reads it but that copy, so it has no journal, keys or indexes, and is never synced.
    """

    def __init__(self, path: Path):
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=OFF")
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.execute("BEGIN")
        self._tables: set[str] = set()

    def add(self, collection: str, rows: Iterable[tuple]) -> None:
        """Append rows as seeded_row makes them."""
        table = COLLECTIONS[collection][0]
        if table not in self._tables:
            self._conn.execute(f"CREATE TABLE {table} ({', '.join(_ROW_COLUMNS)})")
            self._tables.add(table)
        self._conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(_ROW_COLUMNS))})", rows)

    def close(self) -> None:
        self._conn.execute("COMMIT")
        self._conn.close()

    def __enter__(self) -> "StagedRecords":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Store:
    """One WAL-mode connection shared by the server's threads behind a lock (sqlite3 calls are short)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.create_function("casefold", 1, _casefold, deterministic=True)
        self._listings: dict[tuple, tuple[tuple[int, int], list[int]]] = {}  # see page()
        script = _SCHEMA + "".join(_RECORD_TABLE.format(table=spec[0]) for spec in COLLECTIONS.values())
        self._conn.executescript(script)
        # State files written before webhook events carried data (CREDITNOTE's Type and Status) gain the column.
        if "data" not in {row[1] for row in self._conn.execute("PRAGMA table_info(webhook_queue)")}:
            self._conn.execute("ALTER TABLE webhook_queue ADD COLUMN data TEXT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Serialise a read-modify-write against other requests; commits on success, rolls back on error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """The shared connection under the lock, outside any transaction: for packages that keep their own
        tables in this file (sandbox/salesforce) to create them and run multi-statement reads."""
        with self._lock:
            yield self._conn

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    # -- meta ---------------------------------------------------------------------------------

    def meta_get(self, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def meta_set(self, key: str, value: Any) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, dumps(value)))

    # -- records ------------------------------------------------------------------------------

    def replace_records(self, staged: Iterable[Path], meta: dict[str, Any]) -> None:
        """Swap every collection and the seed metadata in one transaction (seeding and /_admin/reset): the records
        are those of the StagedRecords files in `staged`, copied in file by file (at most MAX_STAGED_FILES), each
        as soon as it is there.

        A million records load as a bulk load does. Each table's indexes are dropped and made again once its rows
        are in: one sort each instead of a million B-tree inserts. For this transaction alone, the file leaves WAL
        mode for a rollback journal, so that the records are written once, not to the WAL and then again to the
        file (a new file's pages need no journal); the page cache holds what the load touches; and nothing waits
        for the disk (synchronous=OFF), so a power cut mid-way may spoil the file, as it may any file the
        sandbox has not synced. Another connection to the file (another process reading it) keeps it in WAL mode.
        """
        with self._lock:
            settings = {name: self._conn.execute(f"PRAGMA {name}").fetchone()[0] for name in _BULK_LOAD_PRAGMAS}
            self._set_pragmas(_BULK_LOAD_PRAGMAS)  # outside the transaction: these cannot change inside one
            attached: list[str] = []
            try:
                with self.transaction() as conn:
                    self._replace_records(conn, staged, meta, attached)
            finally:
                for name in attached:  # only once the transaction is over: it reads them until then
                    self._conn.execute(f"DETACH {name}")
                self._set_pragmas(settings)

    def _set_pragmas(self, settings: dict[str, Any]) -> None:
        for name, value in settings.items():
            try:
                self._conn.execute(f"PRAGMA {name}={value}")
            except sqlite3.OperationalError:  # "database is locked": the journal mode needs the file to itself
                if name != "journal_mode":
                    raise

    @staticmethod
    def _replace_records(conn: sqlite3.Connection, staged: Iterable[Path], meta: dict, attached: list[str]) -> None:
        # AUTOINCREMENT never reuses a number, so webhook sequences keep rising across resets (xero.md §6).
        for table in (
            "segment_messages",
            "segment_dropped",
            "idempotency",
            "webhook_queue",
            "webhook_deliveries",
            "notifications",
            "contact_groups",
            "contact_group_members",
            "history",
            "created_by_app",
            "tracking_categories",
            "tracking_options",
            "stock_movements",
        ):
            conn.execute(f"DELETE FROM {table}")
        tables = [table for table, *_ in COLLECTIONS.values()]
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN "
            f"({', '.join('?' * len(tables))})",
            tables,
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        for table in tables:
            conn.execute(f"DELETE FROM {table}")
        for number, path in enumerate(staged):
            name = f"staged{number}"
            conn.execute(f"ATTACH ? AS {name}", (str(path),))
            attached.append(name)
            for (table,) in conn.execute(f"SELECT name FROM {name}.sqlite_master WHERE type = 'table'").fetchall():
                if table in tables:
                    conn.execute(f"INSERT INTO main.{table} SELECT * FROM {name}.{table}")  # in the file's order
        for _, sql in indexes:
            conn.execute(sql)
        for key, value in meta.items():
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, dumps(value)))

    @staticmethod
    def _row(collection: str, row_id: str, body: dict, malformed: str | None) -> tuple:
        updated_ms = parse_net(body["UpdatedDateUTC"])
        return (row_id, updated_ms, *index_columns(collection, body), malformed, dumps(body))

    def save(self, conn: sqlite3.Connection, collection: str, body: dict, row_id: str | None = None) -> None:
        """Upsert one record inside a caller's transaction; the id column defaults to the body's ID field."""
        table, id_field, *_ = COLLECTIONS[collection]
        row = self._row(collection, row_id or body[id_field], body, None)
        conn.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def add_raw(self, collection: str, bodies: list[str], now_ms: int) -> list[str]:
        """Store records exactly as given, JSON object text with any junk in it (NaN, wrong types, 200 kB strings,
        escapes of control characters), for the API to serve verbatim; returns their row ids.

        Each gets a row id of its own, so its own ID field may be missing, junk or another record's. It is indexed
        by the text and date values it holds (junk indexes as NULL), found again by If-Modified-Since at its
        UpdatedDateUTC (else now), and marked malformed "raw" so admin helpers that edit records leave it alone.
        """
        rows = []
        for text in bodies:
            record = json.loads(text)
            if not isinstance(record, dict) or not record:
                raise ValueError(f"a raw record is a non-empty JSON object, not {text[:80]!r}")
            index = [v if isinstance(v, str) or (isinstance(v, int) and _SQLITE_INT[0] <= v <= _SQLITE_INT[1])
                     else None for v in index_columns(collection, record)]  # fmt: skip
            updated = record.get("UpdatedDateUTC")
            try:
                updated_ms = parse_net(updated) if isinstance(updated, str) else now_ms
            except ValueError:
                updated_ms = now_ms
            if not _SQLITE_INT[0] <= updated_ms <= _SQLITE_INT[1]:
                updated_ms = now_ms
            rows.append((str(uuid.uuid4()), updated_ms, *index, "raw", text))
        with self.transaction() as conn:
            conn.executemany(f"INSERT INTO {COLLECTIONS[collection][0]} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return [row[0] for row in rows]

    def get(self, collection: str, record_id: str, conn: sqlite3.Connection | None = None) -> dict | None:
        table = COLLECTIONS[collection][0]
        sql, params = f"SELECT body FROM {table} WHERE id = ?", (record_id,)
        rows = conn.execute(sql, params).fetchall() if conn else self._query(sql, params)
        return json.loads(rows[0][0]) if rows else None

    def label_taken(
        self, collection: str, label: str, record_id: str, scope: str, conn: sqlite3.Connection | None = None
    ) -> bool:
        """Whether another record within `scope` (SQL on whitelisted columns) already uses this label."""
        return bool(self.find(collection, f"label = ? AND {scope} AND id != ?", (label, record_id), limit=1, conn=conn))

    def find(
        self,
        collection: str,
        where: str = "1",
        params: Iterable[Any] = (),
        order: str = "updated_ms, id",
        limit: int = -1,
        offset: int = 0,
        conn: sqlite3.Connection | None = None,
    ) -> list[tuple[str, str | None]]:
        """(body JSON, malformed reason) rows; `where`/`order` are SQL built from whitelisted columns only."""
        table = COLLECTIONS[collection][0]
        sql = f"SELECT body, malformed FROM {table} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
        values = (*params, limit, offset)
        return conn.execute(sql, values).fetchall() if conn else self._query(sql, values)

    def page(
        self, collection: str, where: str, params: Sequence[Any], order: str, limit: int, offset: int
    ) -> tuple[list[tuple[str, str | None]], int]:
        """One page of a listing and the listing's length, exactly as LIMIT/OFFSET gives them, at the cost of the
        page alone: the listing's order (its rowids) is read once and kept until the next write to the file, so a
        client reading page after page (Xero pages by number) costs each page, not every row before it."""
        table = COLLECTIONS[collection][0]
        key = (table, where, tuple(params), order)
        with self._lock:
            version = (self._conn.total_changes, self._conn.execute("PRAGMA data_version").fetchone()[0])
            kept = self._listings.pop(key, None)
            if kept is None or kept[0] != version:
                sql = f"SELECT rowid FROM {table} WHERE {where} ORDER BY {order}"
                kept = (version, [row[0] for row in self._conn.execute(sql, tuple(params))])
            self._listings[key] = kept  # the most recently used last
            while len(self._listings) > LISTINGS_KEPT:
                self._listings.pop(next(iter(self._listings)))
            rowids = kept[1][offset : offset + limit]
            sql = f"SELECT rowid, body, malformed FROM {table} WHERE rowid IN ({', '.join('?' * len(rowids))})"
            rows = {rowid: (body, malformed) for rowid, body, malformed in self._conn.execute(sql, rowids)}
        return [rows[rowid] for rowid in rowids], len(kept[1])

    def count(self, collection: str, where: str = "1", params: Iterable[Any] = ()) -> int:
        table = COLLECTIONS[collection][0]
        return self._query(f"SELECT COUNT(*) FROM {table} WHERE {where}", params)[0][0]

    def mark_created_by_app(self, conn: sqlite3.Connection, collection: str, record_id: str) -> None:
        """Remember a record the app created through the API (what createdByMyApp=true lists)."""
        conn.execute("INSERT OR IGNORE INTO created_by_app VALUES (?, ?)", (collection, record_id))

    # -- contact groups and history (xero.md §2.6, §2.7) ----------------------------------------

    def contact_groups(self, status: str | None = "ACTIVE", conn: sqlite3.Connection | None = None) -> list[dict]:
        """Groups in creation order (rowid), ACTIVE only unless another status (or None: all) is asked for."""
        sql = "SELECT id, name, status FROM contact_groups WHERE ? IS NULL OR status = ? ORDER BY rowid"
        rows = conn.execute(sql, (status, status)).fetchall() if conn else self._query(sql, (status, status))
        return [{"ContactGroupID": row[0], "Name": row[1], "Status": row[2]} for row in rows]

    def contact_group(self, group_id: str, conn: sqlite3.Connection | None = None) -> dict | None:
        sql = "SELECT id, name, status FROM contact_groups WHERE id = ?"
        rows = conn.execute(sql, (group_id,)).fetchall() if conn else self._query(sql, (group_id,))
        return {"ContactGroupID": rows[0][0], "Name": rows[0][1], "Status": rows[0][2]} if rows else None

    def group_name_taken(self, conn: sqlite3.Connection, name: str, group_id: str) -> bool:
        """Whether another ACTIVE group has this name, compared case-insensitively (the column is NOCASE)."""
        sql = "SELECT 1 FROM contact_groups WHERE name = ? AND status = 'ACTIVE' AND id != ? LIMIT 1"
        return bool(conn.execute(sql, (name, group_id)).fetchall())

    def save_contact_group(self, conn: sqlite3.Connection, group: dict) -> None:
        """Upsert keeping the rowid, so a renamed group keeps its place in the list."""
        conn.execute(
            "INSERT INTO contact_groups (id, name, status) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status",
            (group["ContactGroupID"], group["Name"], group["Status"]),
        )

    def group_members(self, group_id: str, conn: sqlite3.Connection | None = None) -> list[str]:
        """Member ContactIDs in the order they were added."""
        sql = "SELECT contact_id FROM contact_group_members WHERE group_id = ? ORDER BY rowid"
        rows = conn.execute(sql, (group_id,)).fetchall() if conn else self._query(sql, (group_id,))
        return [row[0] for row in rows]

    def groups_of(self, conn: sqlite3.Connection, contact_id: str) -> list[dict]:
        """The ACTIVE groups a contact belongs to, in group creation order."""
        rows = conn.execute(
            "SELECT g.id, g.name, g.status FROM contact_group_members m JOIN contact_groups g ON g.id = m.group_id "
            "WHERE m.contact_id = ? AND g.status = 'ACTIVE' ORDER BY g.rowid",
            (contact_id,),
        ).fetchall()
        return [{"ContactGroupID": row[0], "Name": row[1], "Status": row[2]} for row in rows]

    def add_member(self, conn: sqlite3.Connection, group_id: str, contact_id: str) -> None:
        conn.execute("INSERT OR IGNORE INTO contact_group_members VALUES (?, ?)", (group_id, contact_id))

    def remove_members(self, conn: sqlite3.Connection, group_id: str, contact_id: str | None = None) -> list[str]:
        """Remove one member (or, with contact_id None, all of them); returns the ContactIDs removed."""
        members = [m for m in self.group_members(group_id, conn) if contact_id in (None, m)]
        conn.executemany(
            "DELETE FROM contact_group_members WHERE group_id = ? AND contact_id = ?", ((group_id, m) for m in members)
        )
        return members

    def add_history(self, conn: sqlite3.Connection, collection: str, record_id: str, record: dict) -> None:
        conn.execute(
            "INSERT INTO history (collection, record_id, body) VALUES (?, ?, ?)", (collection, record_id, dumps(record))
        )

    def history(self, collection: str, record_id: str) -> list[dict]:
        """A record's history, newest first as in the spec's example (xero.md §2.7)."""
        rows = self._query(
            "SELECT body FROM history WHERE collection = ? AND record_id = ? ORDER BY seq DESC", (collection, record_id)
        )
        return [json.loads(body) for (body,) in rows]

    # -- tracking categories and stock movements ------------------------------------------------

    def tracking_categories(self, conn: sqlite3.Connection | None = None) -> list[dict]:
        """Every category (TrackingCategoryID, Name, Status) ordered by name, as Xero lists them."""
        sql = "SELECT id, name, status FROM tracking_categories ORDER BY name, id"
        rows = conn.execute(sql).fetchall() if conn else self._query(sql)
        return [{"Name": name, "Status": status, "TrackingCategoryID": row_id} for row_id, name, status in rows]

    def tracking_category(self, category_id: str, conn: sqlite3.Connection | None = None) -> dict | None:
        return next((c for c in self.tracking_categories(conn) if c["TrackingCategoryID"] == category_id), None)

    def save_tracking_category(self, conn: sqlite3.Connection, category: dict) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO tracking_categories (id, name, status) VALUES (?, ?, ?)",
            (category["TrackingCategoryID"], category["Name"], category["Status"]),
        )

    def tracking_options(self, category_id: str, conn: sqlite3.Connection | None = None) -> list[dict]:
        """A category's options (TrackingOptionID, Name, Status) ordered by name."""
        sql = "SELECT id, name, status FROM tracking_options WHERE category_id = ? ORDER BY name, id"
        rows = conn.execute(sql, (category_id,)).fetchall() if conn else self._query(sql, (category_id,))
        return [{"TrackingOptionID": row_id, "Name": name, "Status": status} for row_id, name, status in rows]

    def save_tracking_option(self, conn: sqlite3.Connection, category_id: str, option: dict) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO tracking_options (id, category_id, name, status) VALUES (?, ?, ?, ?)",
            (option["TrackingOptionID"], category_id, option["Name"], option["Status"]),
        )

    def stock_movements(
        self, conn: sqlite3.Connection, collection: str, document_id: str
    ) -> dict[str, tuple[str, str]]:
        """ItemID -> (quantity, cost) a document has moved, as decimal strings."""
        rows = conn.execute(
            "SELECT item_id, quantity, cost FROM stock_movements WHERE collection = ? AND document_id = ?",
            (collection, document_id),
        ).fetchall()
        return {item_id: (quantity, cost) for item_id, quantity, cost in rows}

    def replace_stock_movements(
        self, conn: sqlite3.Connection, collection: str, document_id: str, movements: dict[str, tuple[str, str]]
    ) -> None:
        conn.execute("DELETE FROM stock_movements WHERE collection = ? AND document_id = ?", (collection, document_id))
        conn.executemany(
            "INSERT INTO stock_movements VALUES (?, ?, ?, ?, ?)",
            ((collection, document_id, item_id, quantity, cost) for item_id, (quantity, cost) in movements.items()),
        )

    # -- OAuth tokens -------------------------------------------------------------------------

    def token(self, token: str) -> dict | None:
        rows = self._query(
            "SELECT token, kind, client_id, expires_ms, revoked, used, parent, successor, superseded_ms, data "
            "FROM tokens WHERE token = ?",
            (token,),
        )
        if not rows:
            return None
        keys = ("token", "kind", "client_id", "expires_ms", "revoked", "used", "parent", "successor", "superseded_ms")
        record = dict(zip(keys, rows[0][:9], strict=True))
        record["data"] = json.loads(rows[0][9])
        return record

    def add_token(
        self,
        conn: sqlite3.Connection,
        token: str,
        kind: str,
        client_id: str,
        expires_ms: int,
        data: dict,
        parent: str | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO tokens (token, kind, client_id, expires_ms, parent, data) VALUES (?, ?, ?, ?, ?, ?)",
            (token, kind, client_id, expires_ms, parent, dumps(data)),
        )

    def update_token(self, conn: sqlite3.Connection, token: str, **fields: Any) -> None:
        allowed = {"revoked", "used", "successor", "superseded_ms", "expires_ms"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot update token fields {sorted(fields)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        conn.execute(f"UPDATE tokens SET {assignments} WHERE token = ?", (*fields.values(), token))

    def revoke_token_family(self, conn: sqlite3.Connection, token: str) -> None:
        """Revoke a refresh token and every access token issued with it."""
        conn.execute("UPDATE tokens SET revoked = 1 WHERE token = ? OR parent = ?", (token, token))

    def mark_token_used(self, token: str) -> None:
        with self._lock:
            self._conn.execute("UPDATE tokens SET used = 1 WHERE token = ? AND used = 0", (token,))

    def expire_access_tokens(self, now_ms: int) -> int:
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE tokens SET expires_ms = ? WHERE kind = 'access' AND expires_ms > ?", (now_ms - 1, now_ms)
            )
            return cursor.rowcount

    # -- idempotency cache --------------------------------------------------------------------

    def idempotent_response(self, client: str, key: str, not_before_ms: int) -> tuple[str, int, str, bytes] | None:
        """(fingerprint, status, media type, body) of a live cached response for the key."""
        rows = self._query(
            "SELECT fingerprint, status, media_type, body FROM idempotency "
            "WHERE client = ? AND key = ? AND created_ms >= ?",
            (client, key, not_before_ms),
        )
        return rows[0] if rows else None

    def remember_response(
        self, client: str, key: str, fingerprint: str, created_ms: int, status: int, media_type: str, body: bytes
    ) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?, ?, ?)",
                (client, key, fingerprint, created_ms, status, media_type, body),
            )

    # -- Segment ------------------------------------------------------------------------------

    def accept_message(self, conn: sqlite3.Connection, message_id: str, message: dict) -> bool:
        """Store a message unless its messageId was seen before (segment.md §4); True when stored."""
        cursor = conn.execute(
            "INSERT OR IGNORE INTO segment_messages (message_id, body) VALUES (?, ?)", (message_id, dumps(message))
        )
        return cursor.rowcount == 1

    def drop_message(self, conn: sqlite3.Connection, message: Any, reason: str) -> None:
        conn.execute("INSERT INTO segment_dropped (reason, body) VALUES (?, ?)", (reason, dumps(message)))

    def messages(self) -> list[dict]:
        return [json.loads(body) for (body,) in self._query("SELECT body FROM segment_messages ORDER BY seq")]

    def dropped(self) -> list[dict]:
        rows = self._query("SELECT body, reason FROM segment_dropped ORDER BY seq")
        return [{"message": json.loads(body), "reason": reason} for body, reason in rows]

    # -- Xero webhooks (xero.md §6) -----------------------------------------------------------

    def queue_event(
        self,
        conn: sqlite3.Connection,
        category: str,
        resource_id: str,
        event_type: str,
        event_ms: int,
        data: dict | None = None,
    ) -> None:
        """Queue inside the writer's transaction, so a rolled-back write queues nothing; one event per resource
        and moment, so a write that saves a record twice (pay then void) is announced once, as its first event
        type with its last data."""
        conn.execute(
            "INSERT INTO webhook_queue (category, resource_id, event_type, event_ms, data) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (category, resource_id, event_ms) DO UPDATE SET data = excluded.data",
            (category, resource_id, event_type, event_ms, None if data is None else dumps(data)),
        )

    def queued_events(self, limit: int = -1) -> list[tuple[int, str, str, str, int, dict | None]]:
        """(sequence, category, resource id, event type, event ms, data) in sequence order."""
        rows = self._query(
            "SELECT seq, category, resource_id, event_type, event_ms, data FROM webhook_queue ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [(*row[:5], None if row[5] is None else json.loads(row[5])) for row in rows]

    def queue_length(self) -> int:
        return self._query("SELECT COUNT(*) FROM webhook_queue")[0][0]

    def discard_queue(self) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM webhook_queue")

    def log_delivery(self, first: int, last: int, events: int, body: bytes, signature: str) -> None:
        """Move a batch from the queue to the delivery log in one step: no event is in both or neither."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO webhook_deliveries (first, last, events, body, signature) VALUES (?, ?, ?, ?, ?)",
                (first, last, events, body, signature),
            )
            conn.execute("DELETE FROM webhook_queue WHERE seq BETWEEN ? AND ?", (first, last))

    def note_attempt(self, first: int, outcome: int | str, delivered: bool) -> None:
        """Append a status code (or an error name) to a delivery's attempts; delivered stays true once true."""
        with self._lock:
            self._conn.execute(
                "UPDATE webhook_deliveries SET attempts = json_insert(attempts, '$[#]', ?), "
                "delivered = MAX(delivered, ?) WHERE first = ?",
                (outcome, int(delivered), first),
            )

    def deliveries(self) -> list[dict]:
        rows = self._query("SELECT first, last, events, attempts, delivered FROM webhook_deliveries ORDER BY first")
        return [
            {"first": first, "last": last, "events": events, "attempts": json.loads(attempts), "delivered": bool(ok)}
            for first, last, events, attempts, ok in rows
        ]

    def delivery(self, first: int) -> tuple[bytes, str] | None:
        """The exact body and signature a delivery was sent with."""
        rows = self._query("SELECT body, signature FROM webhook_deliveries WHERE first = ?", (first,))
        return (bytes(rows[0][0]), rows[0][1]) if rows else None

    # -- captured notifications ---------------------------------------------------------------

    def add_notification(self, channel: str, path: str, body: Any) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO notifications (channel, path, body) VALUES (?, ?, ?)", (channel, path, dumps(body))
            )

    def notifications(self) -> list[dict]:
        rows = self._query("SELECT channel, path, body FROM notifications ORDER BY seq")
        return [{"channel": channel, "path": path, "body": json.loads(body)} for channel, path, body in rows]
