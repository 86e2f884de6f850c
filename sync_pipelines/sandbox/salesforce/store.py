"""The org's SQLite tables, kept in the sandbox's state file beside the Xero tables (so they persist alike).

One table per object with a column per field (schema.py), so SOQL runs as plain SQL on indexed columns;
plus id counters, OAuth tokens, kept query results (cursors and Bulk job snapshots) and Bulk jobs.
"""

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sync_pipelines.sandbox.salesforce import ids
from sync_pipelines.sandbox.salesforce.schema import OBJECTS, SObject, parse_datetime, stored_datetime
from sync_pipelines.sandbox.store import Store, dumps

_TABLES = """
CREATE TABLE IF NOT EXISTS sf_counters (prefix TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sf_tokens (
    token TEXT PRIMARY KEY, kind TEXT NOT NULL, expires_ms INTEGER, revoked INTEGER NOT NULL DEFAULT 0,
    parent TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sf_tokens_parent ON sf_tokens (parent);
CREATE TABLE IF NOT EXISTS sf_results (
    id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, soql TEXT NOT NULL, include_deleted INTEGER NOT NULL,
    total INTEGER NOT NULL, batch INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sf_result_rows (
    result_id TEXT NOT NULL, seq INTEGER NOT NULL, record_id TEXT NOT NULL, PRIMARY KEY (result_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sf_jobs (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, job TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sf_raw (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sf_outbound_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, notification_id TEXT NOT NULL, object TEXT NOT NULL,
    record_id TEXT NOT NULL, queued_at REAL NOT NULL, due_at REAL NOT NULL, tries INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sf_outbound_deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, object TEXT NOT NULL, notifications TEXT NOT NULL, body BLOB NOT NULL,
    attempts TEXT NOT NULL DEFAULT '[]', delivered INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sf_outbound_dropped (
    notification_id TEXT PRIMARY KEY, object TEXT NOT NULL, record_id TEXT NOT NULL, queued_at REAL NOT NULL,
    tries INTEGER NOT NULL);
"""


def _object_table(sobject: SObject) -> str:
    columns = ", ".join(f'"{f.name}" {f.sql_type}' + (" PRIMARY KEY" if f.name == "Id" else "") for f in sobject.fields)
    table = sobject.table
    statements = [
        f"CREATE TABLE IF NOT EXISTS {table} ({columns})",
        f'CREATE INDEX IF NOT EXISTS {table}_modstamp ON {table} ("SystemModstamp", "Id")',
    ]
    for f in sobject.fields:
        if f.type == "reference" and f.createable:
            statements.append(f'CREATE INDEX IF NOT EXISTS {table}_{f.name} ON {table} ("{f.name}")')
        if f.external_id:
            # Unique among live rows, case-insensitively; records in the recycle bin do not count.
            statements.append(
                f'CREATE UNIQUE INDEX IF NOT EXISTS {table}_{f.name} ON {table} ("{f.name}" COLLATE NOCASE) '
                f'WHERE "IsDeleted" = 0 AND "{f.name}" IS NOT NULL'
            )
    return ";\n".join(statements) + ";\n"


class SalesforceStore:
    """Borrows the sandbox Store's connection and lock; every write runs in one of its transactions."""

    def __init__(self, store: Store, pod: str = ids.FIRST_POD):
        """`pod`: the org's id characters (ids.pod), which every id this store hands out carries."""
        self.store, self.pod = store, pod
        with store.connection() as conn:
            conn.executescript(_TABLES + "".join(_object_table(s) for s in OBJECTS.values()))
            # A state file from before a field was added (custom fields, say) gains its column, empty.
            for sobject in OBJECTS.values():
                present = {row[1] for row in conn.execute(f"PRAGMA table_info({sobject.table})")}
                for f in sobject.fields:
                    if f.name not in present:
                        conn.execute(f'ALTER TABLE {sobject.table} ADD COLUMN "{f.name}" {f.sql_type}')

    def transaction(self):
        return self.store.transaction()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self.store.connection() as conn:
            yield conn

    # -- records ------------------------------------------------------------------------------

    @staticmethod
    def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def get(self, conn: sqlite3.Connection, sobject: SObject, record_id: str) -> dict[str, Any] | None:
        rows = self._dicts(conn.execute(f'SELECT * FROM {sobject.table} WHERE "Id" = ?', (record_id,)))
        return rows[0] if rows else None

    def find(self, conn: sqlite3.Connection, sobject: SObject, field: str, value: Any) -> list[dict[str, Any]]:
        """Live rows whose field equals value (with the column's collation), oldest first."""
        sql = f'SELECT * FROM {sobject.table} WHERE "{field}" = ? AND "IsDeleted" = 0 ORDER BY "Id"'
        return self._dicts(conn.execute(sql, (value,)))

    def rows(
        self, conn: sqlite3.Connection, sobject: SObject, where: str = "1", params: Iterable[Any] = (), limit: int = -1
    ) -> list[dict[str, Any]]:
        """Rows by a where clause built from schema names only, in SystemModstamp, Id order."""
        sql = f'SELECT * FROM {sobject.table} WHERE {where} ORDER BY "SystemModstamp", "Id" LIMIT ?'
        return self._dicts(conn.execute(sql, (*params, limit)))

    def insert(self, conn: sqlite3.Connection, sobject: SObject, row: dict[str, Any]) -> None:
        names = ", ".join(f'"{name}"' for name in row)
        conn.execute(f"INSERT INTO {sobject.table} ({names}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))

    def update(self, conn: sqlite3.Connection, sobject: SObject, record_id: str, changes: dict[str, Any]) -> None:
        if not changes:
            return
        assignments = ", ".join(f'"{name}" = ?' for name in changes)
        conn.execute(f'UPDATE {sobject.table} SET {assignments} WHERE "Id" = ?', (*changes.values(), record_id))

    def next_ids(self, conn: sqlite3.Connection, prefix: str, count: int = 1) -> list[str]:
        """Reserve `count` ids with this key prefix."""
        row = conn.execute(
            "INSERT INTO sf_counters (prefix, next) VALUES (?, ?) "
            "ON CONFLICT (prefix) DO UPDATE SET next = next + ? RETURNING next",
            (prefix, 1 + count, count),
        ).fetchone()
        first = row[0] - count
        return [ids.make_id(prefix, number, self.pod) for number in range(first, first + count)]

    def replace_records(self, records: dict[str, list[dict[str, Any]]]) -> None:
        """Swap every object's rows and drop kept results and jobs (a reset); tokens survive."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM sf_result_rows")
            conn.execute("DELETE FROM sf_results")
            conn.execute("DELETE FROM sf_jobs")
            conn.execute("DELETE FROM sf_raw")
            conn.execute("DELETE FROM sf_outbound_queue")
            for name, sobject in OBJECTS.items():
                conn.execute(f"DELETE FROM {sobject.table}")
                rows = records.get(name, [])
                conn.execute("DELETE FROM sf_counters WHERE prefix = ?", (sobject.prefix,))
                if not rows:
                    continue
                names = [f.name for f in sobject.fields]
                columns = ", ".join(f'"{name}"' for name in names)
                conn.executemany(
                    f"INSERT INTO {sobject.table} ({columns}) VALUES ({', '.join('?' * len(names))})",
                    ([row.get(name) for name in names] for row in rows),
                )
                last = max(ids.sequence(row["Id"]) for row in rows)
                conn.execute("INSERT INTO sf_counters (prefix, next) VALUES (?, ?)", (sobject.prefix, last + 1))

    # -- raw records: what a broken or hostile org would serve --------------------------------

    def add_raw(self, sobject: SObject, bodies: list[str], now: str) -> list[str]:
        """Each JSON object text as a record query results serve in place of a placeholder row of its own, so
        its Id may be junk or another record's; the row sorts at the body's SystemModstamp (else `now`), as the
        client's cursor will read it. Returns the placeholder ids."""
        records = [json.loads(text) for text in bodies]
        if not all(isinstance(record, dict) for record in records):
            raise ValueError("a raw record is a JSON object")
        with self.transaction() as conn:
            placeholders = self.next_ids(conn, sobject.prefix, len(records))
            for placeholder, record, text in zip(placeholders, records, bodies, strict=True):
                stamp = record.get("SystemModstamp")
                try:
                    stamp = stored_datetime(parse_datetime(stamp)) if isinstance(stamp, str) else now
                except ValueError:
                    stamp = now
                row = {"Id": placeholder, "IsDeleted": 0, "CreatedDate": now, "LastModifiedDate": now,
                       "SystemModstamp": stamp}  # fmt: skip
                self.insert(conn, sobject, row)
                conn.execute("INSERT INTO sf_raw (id, body) VALUES (?, ?)", (placeholder, text))
        return placeholders

    def with_raw(self, conn: sqlite3.Connection, rows: list[tuple], records: list[dict[str, Any]]) -> list[Any]:
        """Query results (`records` rendered from `rows`, whose first value is the Id) with each placeholder's raw
        record in its place."""
        ids = [row[0] for row in rows]
        raw = dict(conn.execute(f"SELECT id, body FROM sf_raw WHERE id IN ({', '.join('?' * len(ids))})", ids))
        return [json.loads(raw[i]) if i in raw else record for i, record in zip(ids, records, strict=True)]

    # -- OAuth tokens -------------------------------------------------------------------------

    def add_token(
        self,
        conn: sqlite3.Connection,
        token: str,
        kind: str,
        expires_ms: int | None,
        data: dict,
        parent: str | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO sf_tokens (token, kind, expires_ms, parent, data) VALUES (?, ?, ?, ?, ?)",
            (token, kind, expires_ms, parent, dumps(data)),
        )

    def token(self, conn: sqlite3.Connection, token: str) -> dict[str, Any] | None:
        rows = self._dicts(conn.execute("SELECT * FROM sf_tokens WHERE token = ?", (token,)))
        if not rows:
            return None
        rows[0]["data"] = json.loads(rows[0]["data"])
        return rows[0]

    def revoke_token(self, conn: sqlite3.Connection, token: str, family: bool = True) -> None:
        """Revoke a token and (with family) every access token issued from it."""
        sql = "UPDATE sf_tokens SET revoked = 1 WHERE token = ?" + (" OR parent = ?" if family else "")
        conn.execute(sql, (token, token) if family else (token,))

    def expire_access_tokens(self, now_ms: int) -> int:
        with self.transaction() as conn:
            return conn.execute(
                "UPDATE sf_tokens SET expires_ms = ? WHERE kind = 'access' AND expires_ms > ?", (now_ms - 1, now_ms)
            ).rowcount

    # -- kept results: query cursors and Bulk job snapshots ------------------------------------

    def keep_result(
        self,
        conn: sqlite3.Connection,
        result_id: str,
        soql: str,
        include_deleted: bool,
        record_ids: list[str],
        now_ms: int,
        batch: int = 0,
    ) -> None:
        """Keep a result's ids in order; `batch` is a query cursor's page size (0 for Bulk jobs)."""
        conn.execute(
            "INSERT INTO sf_results (id, created_ms, soql, include_deleted, total, batch) VALUES (?, ?, ?, ?, ?, ?)",
            (result_id, now_ms, soql, int(include_deleted), len(record_ids), batch),
        )
        conn.executemany(
            "INSERT INTO sf_result_rows (result_id, seq, record_id) VALUES (?, ?, ?)",
            ((result_id, seq, record_id) for seq, record_id in enumerate(record_ids)),
        )

    def result(self, conn: sqlite3.Connection, result_id: str) -> dict[str, Any] | None:
        rows = self._dicts(conn.execute("SELECT * FROM sf_results WHERE id = ?", (result_id,)))
        return rows[0] if rows else None

    def drop_results(self, conn: sqlite3.Connection, where: str, params: Iterable[Any]) -> None:
        doomed = [row[0] for row in conn.execute(f"SELECT id FROM sf_results WHERE {where}", tuple(params))]
        for result_id in doomed:
            conn.execute("DELETE FROM sf_result_rows WHERE result_id = ?", (result_id,))
            conn.execute("DELETE FROM sf_results WHERE id = ?", (result_id,))

    # -- Bulk jobs ----------------------------------------------------------------------------

    def save_job(self, conn: sqlite3.Connection, job: dict[str, Any], created_ms: int) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO sf_jobs (id, created_ms, job) VALUES (?, ?, ?)", (job["id"], created_ms, dumps(job))
        )

    def job(self, conn: sqlite3.Connection, job_id: str) -> dict[str, Any] | None:
        row = conn.execute("SELECT job FROM sf_jobs WHERE id = ?", (job_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def jobs(self, conn: sqlite3.Connection) -> list[dict[str, Any]]:
        return [json.loads(row[0]) for row in conn.execute("SELECT job FROM sf_jobs ORDER BY created_ms, id")]

    def delete_job(self, conn: sqlite3.Connection, job_id: str) -> None:
        conn.execute("DELETE FROM sf_jobs WHERE id = ?", (job_id,))
        self.drop_results(conn, "id = ?", (job_id,))

    # -- Outbound Messages (outbound.py) ------------------------------------------------------

    def queue_outbound(self, conn: sqlite3.Connection, notification_id: str, object_name: str, record_id: str) -> None:
        now = time.time()
        conn.execute(
            "INSERT INTO sf_outbound_queue (notification_id, object, record_id, queued_at, due_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (notification_id, object_name, record_id, now, now),
        )

    def claim_outbound(
        self,
        now: float,
        max_age_seconds: float,
        limit: int,
        newest_first: bool,
        envelope: Callable[[str, list[tuple[str, dict[str, Any]]]], bytes],
    ) -> tuple[int, bytes] | None:
        """Drop what is too old, then log one message of the due notifications of the first due object, rendered
        with the records as they are now: (delivery seq, body), or None when nothing is due."""
        order = "DESC" if newest_first else "ASC"
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO sf_outbound_dropped SELECT notification_id, object, record_id, queued_at, tries "
                "FROM sf_outbound_queue WHERE queued_at < ?",
                (now - max_age_seconds,),
            )
            conn.execute("DELETE FROM sf_outbound_queue WHERE queued_at < ?", (now - max_age_seconds,))
            first = conn.execute(
                f"SELECT object FROM sf_outbound_queue WHERE due_at <= ? ORDER BY seq {order} LIMIT 1", (now,)
            ).fetchone()
            if first is None:
                return None
            rows = conn.execute(
                f"SELECT seq, notification_id, record_id FROM sf_outbound_queue WHERE object = ? AND due_at <= ? "
                f"ORDER BY seq {order} LIMIT ?",
                (first[0], now, limit),
            ).fetchall()
            sobject = OBJECTS[first[0]]
            notifications = [
                (notification_id, self.get(conn, sobject, record_id)) for _, notification_id, record_id in rows
            ]
            body = envelope(first[0], [(n, row) for n, row in notifications if row is not None])
            seq = conn.execute(
                "INSERT INTO sf_outbound_deliveries (object, notifications, body) VALUES (?, ?, ?) RETURNING seq",
                (first[0], dumps([row[0] for row in rows]), body),
            ).fetchone()[0]
        return seq, body

    def settle_outbound(
        self, seq: int, outcome: int | str, delivered: bool, now: float, backoff_seconds: float, max_backoff: float
    ) -> None:
        """Log an attempt; acknowledged notifications leave the queue, the others are due again after a backoff
        that doubles with each try."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE sf_outbound_deliveries SET attempts = json_insert(attempts, '$[#]', ?), "
                "delivered = MAX(delivered, ?) WHERE seq = ?",
                (outcome, int(delivered), seq),
            )
            queued = (
                "seq IN (SELECT value FROM json_each((SELECT notifications FROM sf_outbound_deliveries WHERE seq = ?)))"
            )
            if delivered:
                conn.execute(f"DELETE FROM sf_outbound_queue WHERE {queued}", (seq,))
            else:
                conn.execute(
                    "UPDATE sf_outbound_queue SET tries = tries + 1, due_at = ? + min(? * (1 << tries), ?) "
                    f"WHERE {queued}",
                    (now, backoff_seconds, max_backoff, seq),
                )

    def outbound_queue_length(self) -> int:
        with self.reading() as conn:
            return conn.execute("SELECT COUNT(*) FROM sf_outbound_queue").fetchone()[0]

    def next_outbound_due(self) -> float | None:
        with self.reading() as conn:
            return conn.execute("SELECT min(due_at) FROM sf_outbound_queue").fetchone()[0]

    def discard_outbound(self) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM sf_outbound_queue")

    def outbound_deliveries(self) -> list[dict[str, Any]]:
        """The message log, oldest first: {seq, object, notifications (queue seqs), attempts, delivered}."""
        with self.reading() as conn:
            rows = self._dicts(
                conn.execute(
                    "SELECT seq, object, notifications, attempts, delivered FROM sf_outbound_deliveries ORDER BY seq"
                )
            )
        return [
            {**row, "notifications": json.loads(row["notifications"]), "attempts": json.loads(row["attempts"]),
             "delivered": bool(row["delivered"])}
            for row in rows
        ]  # fmt: skip

    def outbound_dropped(self) -> list[dict[str, Any]]:
        with self.reading() as conn:
            return self._dicts(conn.execute("SELECT * FROM sf_outbound_dropped ORDER BY queued_at"))
