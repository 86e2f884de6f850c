"""The `sync-pipelines` commands a new user runs, run the same way (in process, real sandbox, temp data)."""

import os
from unittest.mock import patch

import duckdb
from click.testing import CliRunner

from sync_pipelines.cli import main
from sync_pipelines.lib import staging


def test_demo_delivers_everything_prints_the_reconciliation_and_reruns_idempotently(tmp_path):
    data_dir = tmp_path / "data"
    with patch.dict(os.environ):  # the demo exports its sandbox environment; keep it out of other tests
        first = CliRunner().invoke(main, ["demo", "--data-dir", str(data_dir), "--malformed", "3"])
        assert first.exit_code == 0, first.output
        second = CliRunner().invoke(main, ["demo", "--data-dir", str(data_dir)])
        assert second.exit_code == 0, second.output

    header = next(line for line in first.output.splitlines() if "in_source" in line)
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "flow", "entity", "in_source", "staged", "quarantined", "delivered", "dead_lettered", "pending", "ok",
    ]  # fmt: skip
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        runs = conn.execute(
            "SELECT quarantined, delivered, dead_lettered, pending, ok FROM reconciliation ORDER BY checked_at"
        ).fetchall()
        (sent,) = conn.execute("SELECT count(*) FROM audit_log WHERE outcome = 'delivered'").fetchone()
    assert len(runs) == 2
    assert runs[0] == runs[1]  # the second demo found nothing new and delivered nothing more
    assert runs[0][0] == 3 and runs[0][1] == sent and runs[0][2:] == (0, 0, True)


def test_replay_requeues_exhausted_dead_letters_and_delivers_them(admin, sync_env):
    admin.faults(segment={"error_rate": 1.0})
    with duckdb.connect(sync_env["SYNC_PIPELINES_DUCKDB"]) as conn:
        # A message that ran out of attempts, as the delivery step would have left it.
        staging.migrate(conn)
        message = staging.OutboxMessage(
            "xero:invoice:replayed:created", "replayed", "track", "Invoice Created",
            {"type": "track", "messageId": "xero:invoice:replayed:created", "userId": "u1",
             "event": "Invoice Created", "properties": {}},
        )  # fmt: skip
        staging.enqueue(conn, flow="xero_to_segment", entity="invoices", messages=[message], run_id=None)
        staging.dead_letter(
            conn, flow="xero_to_segment", entity="invoices", target="segment", run_id=None,
            failures=[(message.message_id, "replayed", "503 Service Unavailable")], retryable=False,
        )  # fmt: skip
    admin.faults(segment={"error_rate": 0.0})

    result = CliRunner().invoke(main, ["replay", "--all"])

    assert result.exit_code == 0, result.output
    assert "requeued 1 dead letters" in result.output
    assert [m["messageId"] for m in admin.segment_messages()] == ["xero:invoice:replayed:created"]
