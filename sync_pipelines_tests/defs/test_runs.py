"""The code location under Dagster's own executors and instance: how the UI and schedules run it."""

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import dagster as dg
import psutil

from sync_pipelines.defs import resources, xero_to_segment
from sync_pipelines.lib.deliveries import delivered_asset
from sync_pipelines.lib.entities import BACKFILLS, vendor_assets
from sync_pipelines.vendors.token_store import EncryptedTokenStore
from sync_pipelines.vendors.xero.resource import XeroResource
from sync_pipelines_tests.defs.conftest import expected_track_counts, track_counts
from sync_pipelines_tests.webhooks.daemon import FINISHED, WORKSPACE, dagster_daemon, wait_for

# Two entities made by the same factories, so two chains of steps run side by side in separate processes.
INVOICES, BILLS = (
    next(d for d in xero_to_segment.FLOW.deliveries() if d.entity.name == e) for e in ("invoices", "bills")
)


def two_entity_job() -> dg.JobDefinition:
    """Reconstructable in each step's process: invoices and bills, all their steps free to run at once, with the
    code location's resources (and not its whole load, which each of the twelve processes would repeat)."""
    entities = dg.Definitions.merge(
        vendor_assets([INVOICES.entity, BILLS.entity], XeroResource),
        dg.Definitions(assets=[delivered_asset(INVOICES), delivered_asset(BILLS)]),
    )
    definitions = dg.Definitions.merge(
        dg.Definitions(
            assets=entities.assets,
            resources=resources.defs().resources,
            jobs=[
                dg.define_asset_job(
                    "two_entities", selection=dg.AssetSelection.all() - BACKFILLS, executor_def=dg.multiprocess_executor
                )
            ],
        )
    )
    return definitions.resolve_job_def("two_entities")


def test_parallel_steps_in_separate_processes_share_duckdb_without_lock_failures(admin, sync_env, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        for _ in range(2):
            with dg.execute_job(dg.reconstructable(two_entity_job), instance=instance) as result:
                assert result.success
                steps = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
                assert len(steps) == 6
                processes = {e.pid for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}
                assert len(processes) == 6
    invoices = admin.get("/xero/invoices")
    received = track_counts(admin, prefix="")
    assert {k: n for k, n in received.items() if k[1].startswith("Invoice")} == expected_track_counts(invoices)
    bills = [i for i in invoices if i["Type"] == "ACCPAY" and not i.get("_malformed")]
    assert {k for k, n in received.items() if k[1] == "Bill Created" and n == 1} == {
        (b["InvoiceID"], "Bill Created") for b in bills
    }


def test_no_token_is_written_or_logged_in_plaintext(admin, run_sync, sync_env, capfd):
    admin.post("/faults", {"expire_access_tokens": True}, method="PUT")
    result = run_sync()
    assert result.success
    token_calls = {call: n for call, n in admin.get("/stats")["xero"].items() if call.endswith("/connect/token")}
    assert sum(token_calls.values()) == 2  # the consent's code exchange, then the refresh the expiry forced

    token = EncryptedTokenStore(sync_env["XERO_TOKEN_PATH"], sync_env["SYNC_PIPELINES_TOKEN_KEY"]).load()
    secrets = [token["access_token"], token["refresh_token"]]
    data_dir = Path(sync_env["SYNC_PIPELINES_DUCKDB"]).parent
    for path in (p for p in data_dir.rglob("*") if p.is_file()):
        content = path.read_bytes()
        assert not any(secret.encode() in content for secret in secrets), path
    logs = "".join(str(event) for event in result.all_events) + "".join(capfd.readouterr())
    assert not any(secret in logs for secret in secrets)


def _launch(env: dict[str, str], job: str) -> None:
    """Submit a run of `job` to the instance's run queue, as the UI's Launch button does."""
    launch = [str(Path(sys.executable).parent / "dagster"), "job", "launch", "-j", job, "-w", str(WORKSPACE)]
    subprocess.run(launch, env={**os.environ, **env}, cwd=env["DAGSTER_HOME"], check=True, capture_output=True)


def _run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the run's process (its "Started process for run" event)."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        pid = record.dagster_event.engine_event_data.metadata.get("pid")
        if pid is not None and "Started process for run" in (record.dagster_event.message or ""):
            return int(pid.value)
    return None


def test_a_run_killed_while_it_holds_a_pool_slot_does_not_block_the_next_one(admin, sync_env, tmp_path):
    admin.reset(invoices=20, contacts=5)
    admin.faults(xero={"latency_ms": 1500})  # the first run's extract holds the xero_api slot for a while
    with (
        dagster_daemon(sync_env, tmp_path / "daemon.log"),
        dg.DagsterInstance.from_config(sync_env["DAGSTER_HOME"]) as instance,
    ):
        _launch(sync_env, "xero_webhook_sync")

        def holder() -> str | None:
            claimed = instance.event_log_storage.get_concurrency_info("xero_api").claimed_slots
            return claimed[0].run_id if claimed else None

        killed = wait_for(holder, seconds=300, what="a run holding the xero_api slot")
        worker = psutil.Process(wait_for(partial(_run_worker_pid, instance, killed), 60, "the run's process"))
        worker.kill()  # the run's one process (the webhook job runs its steps in process)
        admin.faults(xero={"latency_ms": 0})
        _launch(sync_env, "xero_webhook_sync")

        def finished_next() -> dg.DagsterRun | None:
            runs = instance.get_runs(dg.RunsFilter(statuses=list(FINISHED)))
            return next((r for r in runs if r.run_id != killed), None)

        # Bounded only so a broken build cannot hang CI; the time it takes is the benchmark's to measure.
        following = wait_for(finished_next, seconds=600, what="the next run to finish")
        assert following.status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info("xero_api").claimed_slots == []
