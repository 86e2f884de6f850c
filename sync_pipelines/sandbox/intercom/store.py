"""The workspace's SQLite tables, kept in the sandbox's state file beside the other vendors' (so they persist alike).

Records keep their indexed columns (ids, timestamps, role) next to a JSON `data` column holding the rest as the
API renders it; relations (tags applied, segment members, contact-company links, conversation parts) are tables
of their own so one page of records embeds them with one query each. Search runs as SQL over these columns
and json_extract, with `ic_fold` (str.casefold) making string matches case-insensitive beyond ASCII.
"""

import json
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sync_pipelines.sandbox.intercom.ids import hex_id
from sync_pipelines.sandbox.store import Store, dumps

_TABLES = """
CREATE TABLE IF NOT EXISTS ic_counters (name TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ic_contacts (
    id TEXT PRIMARY KEY, role TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ic_contacts_updated ON ic_contacts (updated_at, id);
CREATE INDEX IF NOT EXISTS ic_contacts_created ON ic_contacts (created_at, id);
CREATE TABLE IF NOT EXISTS ic_companies (
    id TEXT PRIMARY KEY, company_id TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
    last_request_at INTEGER, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ic_companies_request ON ic_companies (last_request_at, id);
CREATE TABLE IF NOT EXISTS ic_tags (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ic_segments (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, person_type TEXT NOT NULL, created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ic_admins (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ic_conversations (
    id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ic_conversations_updated ON ic_conversations (updated_at, id);
CREATE TABLE IF NOT EXISTS ic_parts (
    conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ic_taggings (
    kind TEXT NOT NULL, target_id TEXT NOT NULL, tag_id TEXT NOT NULL, applied_at INTEGER NOT NULL,
    applied_by TEXT, PRIMARY KEY (kind, target_id, tag_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ic_taggings_tag ON ic_taggings (tag_id, kind);
CREATE TABLE IF NOT EXISTS ic_members (
    kind TEXT NOT NULL, target_id TEXT NOT NULL, segment_id TEXT NOT NULL,
    PRIMARY KEY (kind, target_id, segment_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ic_members_segment ON ic_members (segment_id, kind);
CREATE TABLE IF NOT EXISTS ic_links (
    contact_id TEXT NOT NULL, company_id TEXT NOT NULL, created_at INTEGER NOT NULL,
    PRIMARY KEY (contact_id, company_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ic_links_company ON ic_links (company_id);
CREATE TABLE IF NOT EXISTS ic_raw (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ic_webhook_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, notification_id TEXT NOT NULL, topic TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ic_webhook_deliveries (
    seq INTEGER PRIMARY KEY, notification_id TEXT NOT NULL, topic TEXT NOT NULL, body BLOB NOT NULL,
    signature TEXT NOT NULL, attempts TEXT NOT NULL DEFAULT '[]', delivered INTEGER NOT NULL DEFAULT 0);
"""
# Record tables a reset empties; the webhook queue and log go too, as /_admin/reset does for Xero's.
RECORD_TABLES = (
    "ic_contacts",
    "ic_companies",
    "ic_tags",
    "ic_segments",
    "ic_admins",
    "ic_conversations",
    "ic_parts",
    "ic_taggings",
    "ic_members",
    "ic_links",
    "ic_counters",
    "ic_raw",
    "ic_webhook_queue",
    "ic_webhook_deliveries",
)
_WORD = re.compile(r"\w+")
_HTML_TAG = re.compile(r"<[^>]*>")


def fold(value: Any) -> Any:
    """Case-insensitive form of a string (None and non-strings pass through)."""
    return value.casefold() if isinstance(value, str) else value


def _string_op(op: str, value: Any, arg: str) -> int:
    """contains / starts with / ends with, case-insensitively (intercom.md §5.1 operators ~ ^ $)."""
    if not isinstance(value, str):
        return 0
    text = value.casefold()
    if op == "~":
        return int(arg in text)
    if op == "^":
        return int(text.startswith(arg))
    return int(text.endswith(arg))


def _has_word(body: Any, word: str) -> int:
    """source.body matches whole words, not phrases (intercom.md §8)."""
    if not isinstance(body, str):
        return 0
    return int(word.casefold() in {w.casefold() for w in _WORD.findall(_HTML_TAG.sub(" ", body))})


class IntercomStore:
    """Borrows the sandbox Store's connection and lock; every write runs in one of its transactions."""

    def __init__(self, store: Store):
        self.store = store
        with store.connection() as conn:
            conn.executescript(_TABLES)
            conn.create_function("ic_fold", 1, fold, deterministic=True)
            conn.create_function("ic_str", 3, _string_op, deterministic=True)
            conn.create_function("ic_has_word", 2, _has_word, deterministic=True)

    def transaction(self):
        return self.store.transaction()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self.store.connection() as conn:
            yield conn

    def meta_get(self, key: str) -> Any:
        return self.store.meta_get(key)

    def meta_set(self, key: str, value: Any) -> None:
        self.store.meta_set(key, value)

    # -- ids ----------------------------------------------------------------------------------

    @staticmethod
    def next_number(conn: sqlite3.Connection, name: str, first: int) -> int:
        """The next number of a sequence (conversation, tag, plan, part ids; hex id counters): `first`, then one
        more than the last handed out."""
        row = conn.execute(
            "INSERT INTO ic_counters (name, last) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET last = last + 1 RETURNING last",
            (name, first),
        ).fetchone()
        return row[0]

    # -- rows ---------------------------------------------------------------------------------

    @staticmethod
    def dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
        names = [column[0] for column in cursor.description]
        rows = []
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            if "data" in row:
                row["data"] = json.loads(row["data"])
            rows.append(row)
        return rows

    def row(self, conn: sqlite3.Connection, table: str, record_id: str) -> dict[str, Any] | None:
        rows = self.dicts(conn.execute(f"SELECT * FROM {table} WHERE id = ?", (record_id,)))
        return rows[0] if rows else None

    @staticmethod
    def insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
        values = [dumps(v) if k == "data" else v for k, v in row.items()]
        columns = ", ".join(row)
        conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(row))})", values)

    @staticmethod
    def update(conn: sqlite3.Connection, table: str, record_id: str, changes: dict[str, Any]) -> None:
        values = [dumps(v) if k == "data" else v for k, v in changes.items()]
        assignments = ", ".join(f"{name} = ?" for name in changes)
        conn.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", (*values, record_id))

    def replace_all(self, records: dict[str, list[dict[str, Any]]], counters: dict[str, int]) -> None:
        """Swap every table's rows in one transaction (seeding and reset); counters hold the last number used."""
        with self.transaction() as conn:
            for table in RECORD_TABLES:
                conn.execute(f"DELETE FROM {table}")
            for table, rows in records.items():
                if not rows:
                    continue
                columns = list(rows[0])
                conn.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                    ([dumps(row[c]) if c == "data" else row[c] for c in columns] for row in rows),
                )
            conn.executemany("INSERT INTO ic_counters (name, last) VALUES (?, ?)", counters.items())

    # -- raw contacts: what a broken or hostile workspace would serve ---------------------------

    def add_raw_contacts(self, bodies: list[str], now: int) -> list[str]:
        """Each JSON object text as a contact the API serves in place of a placeholder contact of its own, so its
        id may be junk or another contact's; the placeholder sorts at the body's updated_at (else `now`), as the
        client's cursor will read it. Returns the placeholder ids."""
        records = [json.loads(text) for text in bodies]
        if not all(isinstance(record, dict) for record in records):
            raise ValueError("a raw contact is a JSON object")
        placeholders = []
        with self.transaction() as conn:
            for record, text in zip(records, bodies, strict=True):
                stamp = record.get("updated_at")
                updated = stamp if type(stamp) is int and 0 <= stamp < 2**32 else now
                contact_id = hex_id("contact", now, self.next_number(conn, "contact", 1))
                row = {"id": contact_id, "role": "user", "created_at": now, "updated_at": updated, "archived": 0,
                       "data": {}}  # fmt: skip
                self.insert(conn, "ic_contacts", row)
                conn.execute("INSERT INTO ic_raw (id, body) VALUES (?, ?)", (contact_id, text))
                placeholders.append(contact_id)
        return placeholders

    @staticmethod
    def raw_bodies(conn: sqlite3.Connection, ids: list[str]) -> dict[str, Any]:
        """The raw records served in place of these placeholder ids, parsed."""
        rows = conn.execute(f"SELECT id, body FROM ic_raw WHERE id IN ({', '.join('?' * len(ids))})", ids)
        return {record_id: json.loads(body) for record_id, body in rows}

    # -- webhooks (intercom.md §9) ------------------------------------------------------------

    @staticmethod
    def queue_notification(conn: sqlite3.Connection, notification_id: str, topic: str, body: str) -> None:
        conn.execute(
            "INSERT INTO ic_webhook_queue (notification_id, topic, body) VALUES (?, ?, ?)",
            (notification_id, topic, body),
        )

    def claim_notification(self, sign: Any) -> tuple[int, bytes, str] | None:
        """Move the oldest queued notification to the delivery log with its signature, in one step."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT seq, notification_id, topic, body FROM ic_webhook_queue ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            seq, notification_id, topic, body = row
            raw = body.encode()
            signature = sign(raw)
            conn.execute(
                "INSERT INTO ic_webhook_deliveries (seq, notification_id, topic, body, signature) "
                "VALUES (?, ?, ?, ?, ?)",
                (seq, notification_id, topic, raw, signature),
            )
            conn.execute("DELETE FROM ic_webhook_queue WHERE seq = ?", (seq,))
        return seq, raw, signature

    def note_attempt(self, seq: int, outcome: int | str, delivered: bool) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE ic_webhook_deliveries SET attempts = json_insert(attempts, '$[#]', ?), "
                "delivered = MAX(delivered, ?) WHERE seq = ?",
                (outcome, int(delivered), seq),
            )

    def queue_length(self) -> int:
        with self.reading() as conn:
            return conn.execute("SELECT COUNT(*) FROM ic_webhook_queue").fetchone()[0]

    def discard_queue(self) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM ic_webhook_queue")

    def deliveries(self) -> list[dict[str, Any]]:
        with self.reading() as conn:
            rows = conn.execute(
                "SELECT seq, notification_id, topic, attempts, delivered FROM ic_webhook_deliveries ORDER BY seq"
            ).fetchall()
        return [
            {"seq": seq, "id": nid, "topic": topic, "attempts": json.loads(attempts), "delivered": bool(ok)}
            for seq, nid, topic, attempts, ok in rows
        ]

    def delivery(self, seq: int) -> tuple[bytes, str] | None:
        with self.reading() as conn:
            row = conn.execute("SELECT body, signature FROM ic_webhook_deliveries WHERE seq = ?", (seq,)).fetchone()
        return (bytes(row[0]), row[1]) if row else None

    # -- relations ----------------------------------------------------------------------------

    @staticmethod
    def grouped(conn: sqlite3.Connection, sql: str, ids: Iterable[str]) -> dict[str, list[tuple]]:
        """Rows of `sql` (first column: the owner id; one `{ids}` placeholder) grouped by owner, in SQL order."""
        ids = list(ids)
        groups: dict[str, list[tuple]] = {record_id: [] for record_id in ids}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for row in conn.execute(sql.format(ids=", ".join("?" * len(chunk))), chunk):
                groups[row[0]].append(row[1:])
        return groups
