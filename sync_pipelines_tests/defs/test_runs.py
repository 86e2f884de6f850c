"""The code location under Dagster's own executors and instance: how the UI and schedules run it."""

from pathlib import Path

import dagster as dg

from sync_pipelines.definitions import defs
from sync_pipelines.defs.xero_to_segment import INVOICES, SPECS
from sync_pipelines.lib.entity_sync import build_entity_sync
from sync_pipelines.vendors.token_store import EncryptedTokenStore
from sync_pipelines_tests.defs.conftest import expected_track_counts, track_counts

# A second entity made by the same factory, so two chains of steps run side by side in separate processes.
BILLS = next(spec for spec in SPECS if spec.entity == "bills")


def two_entity_job() -> dg.JobDefinition:
    """Reconstructable in each step's process: invoices and bills, all their steps free to run at once."""
    entities = dg.Definitions.merge(build_entity_sync(INVOICES), build_entity_sync(BILLS))
    definitions = dg.Definitions.merge(
        dg.Definitions(
            assets=entities.assets,
            resources=defs().resources,
            jobs=[dg.define_asset_job("two_entities", executor_def=dg.multiprocess_executor)],
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
