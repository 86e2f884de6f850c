"""Dead letters: a write the target refused is parked with its error, then replayed by the sensor, once."""

from datetime import timedelta

import dagster as dg
import duckdb

from sync_pipelines.definitions import defs
from sync_pipelines.defs.sensors import dead_letter_replay
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.vendors.segment.resource import SegmentResource
from sync_pipelines_tests.defs.conftest import expected_track_counts, track_counts


def test_failed_writes_are_dead_lettered_then_replayed_exactly_once(admin, sync_env):
    admin.post("/faults", {"segment": {"error_rate": 1.0}}, method="PUT")
    definitions = defs()
    # Segment stays down longer than two attempts per batch: the delivery gives up and parks the messages.
    impatient = SegmentResource(api_url=sync_env["SEGMENT_API_URL"], write_key=sync_env["SEGMENT_WRITE_KEY"],
                                max_attempts=2)  # fmt: skip
    result = dg.materialize(
        definitions.assets, resources={**definitions.resources, "segment": impatient},
        instance=dg.DagsterInstance.ephemeral(),
    )  # fmt: skip
    assert result.success
    reconciliation = next(c for c in result.get_asset_check_evaluations() if c.check_name == "reconciliation")
    assert not reconciliation.passed
    database = sync_env["SYNC_PIPELINES_DUCKDB"]
    with duckdb.connect(database) as conn:
        parked, errors = conn.execute("SELECT count(*), count(DISTINCT error) FROM dead_letters").fetchone()
        assert parked > 0 and errors >= 1
        assert conn.execute("SELECT count(*) FROM outbox WHERE status = 'delivered'").fetchone() == (0,)

    staging_db = StagingResource(database=database)
    context = dg.build_sensor_context(cursor=None, resources={"staging_db": staging_db})
    assert dead_letter_replay(context).run_requests == []  # the first retry waits for its backoff

    admin.post("/faults", {"segment": {"error_rate": 0.0}}, method="PUT")
    with duckdb.connect(database) as conn:  # let the backoff pass
        conn.execute("UPDATE dead_letters SET next_attempt_at = next_attempt_at - ?", [timedelta(hours=1)])
    ticked = dead_letter_replay(dg.build_sensor_context(cursor=None, resources={"staging_db": staging_db}))
    (request,) = ticked.run_requests
    assert request.asset_selection == [dg.AssetKey(["segment", "xero_invoices"])]
    again = dead_letter_replay(dg.build_sensor_context(cursor=ticked.cursor, resources={"staging_db": staging_db}))
    assert again.run_requests == []  # one run per failure wave

    job = definitions.resolve_implicit_global_asset_job_def()
    replay = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), asset_selection=request.asset_selection)
    assert replay.success
    assert track_counts(admin) == expected_track_counts(admin.get("/xero/invoices"))
    with duckdb.connect(database) as conn:
        assert conn.execute("SELECT DISTINCT status FROM dead_letters").fetchall() == [("replayed",)]
        delivered_twice = conn.execute(
            """SELECT idempotency_key FROM audit_log WHERE outcome = 'delivered'
               GROUP BY idempotency_key HAVING count(*) > 1"""
        ).fetchall()
        assert delivered_twice == []
