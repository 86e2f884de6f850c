"""A historical migration, rehearsed first: the dry run runs the flow on a copy of the inbox (and, as every dry
run, a scratch copy of the staging store), deriving every write without sending one, and reports them; the migration
then runs the flow for real and reports what it wrote, in the same terms, so the two can be compared before and after
the cutover.

Both reports are kept in the staging store's `migrations` table (and printed by `sync-pipelines migrate`).
"""

import json
import sqlite3
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb

from sync_pipelines.lib import staging

# How a write reads in a report, where its kind and event alone would not say it.
_LABELS = {("contact", None): "contact updated", ("note", None): "note added", ("link", None): "contact linked"}


def copy_inbox(inbox: Path, into: Path) -> Path:
    """A consistent copy of the webhook inbox under `into`, for a dry run to put an archive into (the staging store
    needs none: a dry run's steps make their own scratch copy, lib/staging.StagingResource)."""
    into.mkdir(parents=True, exist_ok=True)
    copy = into / "inbox.sqlite"
    if inbox.exists():
        with sqlite3.connect(inbox) as held, sqlite3.connect(copy) as kept:
            held.backup(kept)
    return copy


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


def planned_writes(conn: duckdb.DuckDBPyConnection, *, flow: str, entity: str, run_id: str) -> list[dict]:
    """Every write a dry run derived for one delivery, in order: {messageId, write, record_id, payload}."""
    rows = conn.execute(
        """SELECT message_id, kind, event, record_id, payload FROM outbox
           WHERE flow = ? AND entity = ? AND run_id = ? AND kind <> 'notify' ORDER BY seq""",
        [flow, entity, run_id],
    ).fetchall()
    return [
        {"messageId": message_id, "write": _LABELS.get((kind, event), f"{kind} {event}"), "record_id": record_id,
         "payload": json.loads(payload)}
        for message_id, kind, event, record_id, payload in rows
    ]  # fmt: skip


def report_metadata(writes: list[dict], target: str, report: Path | None) -> dict[str, dg.MetadataValue]:
    """A dry run's writes for the run's page in the UI: a table of writes per action, a few sample payloads, and
    the file holding every payload (one JSON object a line), written here."""
    counts = Counter(write["write"] for write in writes)
    table = "| target | write | messages |\n|---|---|---|\n" + "".join(
        f"| {target} | {write} | {n} |\n" for write, n in sorted(counts.items())
    )
    metadata = {
        "dry_run": dg.MetadataValue.bool(True),
        "writes_planned": dg.MetadataValue.int(len(writes)),
        "writes": dg.MetadataValue.md(table),
        "sample_payloads": dg.MetadataValue.json([write["payload"] for write in writes[:3]]),
    }
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text("".join(json.dumps(write, sort_keys=True) + "\n" for write in writes))
        metadata["report"] = dg.MetadataValue.path(str(report))
    return metadata


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
