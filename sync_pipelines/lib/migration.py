"""A historical migration, rehearsed first: the dry run runs the flow on copies of the staging store and the
inbox, deriving every write without sending one, and reports them; the migration then runs the flow for real and
reports what it wrote, in the same terms, so the two can be compared before and after the cutover.

Both reports are kept in the staging store's `migrations` table (and printed by `sync-pipelines migrate`).
"""

import sqlite3
from collections import Counter
from pathlib import Path

import duckdb

from sync_pipelines.lib import staging

# A run with this tag derives its deliveries' writes into the outbox and sends none (lib/deliveries.py). Only for
# a copy of the staging store: on the real one, the next run would send what the dry run planned.
DRY_RUN_TAG = "sync_pipelines/dry_run"

# How a write reads in a report, where its kind and event alone would not say it.
_LABELS = {("contact", None): "contact updated", ("note", None): "note added", ("link", None): "contact linked"}


def copy_stores(database: Path, inbox: Path, into: Path) -> tuple[Path, Path]:
    """Consistent copies of the staging store and the inbox under `into`, for a dry run to use instead."""
    into.mkdir(parents=True, exist_ok=True)
    staging_copy, inbox_copy = into / "staging.duckdb", into / "inbox.sqlite"
    with duckdb.connect(str(database)) as conn:
        (name,) = conn.execute("SELECT current_database()").fetchone()
        conn.execute("ATTACH ? AS dry_run", [str(staging_copy)])
        conn.execute(f'COPY FROM DATABASE "{name}" TO dry_run')
        conn.execute("DETACH dry_run")
    if inbox.exists():
        with sqlite3.connect(inbox) as held, sqlite3.connect(inbox_copy) as copy:
            held.backup(copy)
    return staging_copy, inbox_copy


def writes_of_run(conn: duckdb.DuckDBPyConnection, *, flow: str, run_id: str, delivered: bool) -> Counter:
    """(delivery, write) -> messages the run derived in the flow's outbox (only those delivered, if `delivered`)."""
    rows = conn.execute(
        """SELECT entity, kind, event, count(*) FROM outbox
           WHERE flow = ? AND run_id = ? AND kind <> 'notify' AND (status = 'delivered' OR NOT ?)
           GROUP BY ALL""",
        [flow, run_id, delivered],
    ).fetchall()
    return Counter(
        {(delivery, _LABELS.get((kind, event), f"{kind} {event}")): count for delivery, kind, event, count in rows}
    )


def record(
    conn: duckdb.DuckDBPyConnection, *, run_id: str, flow: str, archive: str, dry_run: bool, writes: Counter
) -> None:
    """Keep a run's report."""
    rows = [(run_id, flow, archive, dry_run, delivery, write, count) for (delivery, write), count in writes.items()]
    if rows:
        conn.executemany(
            "INSERT OR REPLACE INTO migrations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(*row, staging.utcnow()) for row in rows],
        )


def latest_reports(conn: duckdb.DuckDBPyConnection, flow: str) -> dict[bool, Counter]:
    """The flow's latest dry run's and latest migration's writes: dry run or not -> (delivery, write) -> messages."""
    rows = conn.execute(
        """SELECT dry_run, delivery, write, messages FROM migrations m
           WHERE flow = ? AND run_id = (SELECT arg_max(run_id, reported_at) FROM migrations
                                        WHERE flow = m.flow AND dry_run = m.dry_run)""",
        [flow],
    ).fetchall()
    reports: dict[bool, Counter] = {True: Counter(), False: Counter()}
    for dry_run, delivery, write, messages in rows:
        reports[dry_run][(delivery, write)] = messages
    return reports
