"""The code location under Dagster's own executors and instance: how the UI and schedules run it."""

from pathlib import Path

import dagster as dg

from sync_pipelines.definitions import defs
from sync_pipelines.vendors.xero.auth import EncryptedTokenStore
from sync_pipelines_tests.defs.conftest import expected_track_counts


def sync_job() -> dg.JobDefinition:
    return defs().resolve_job_def("xero_to_segment_sync")


def test_multiprocess_executor_steps_share_duckdb_without_lock_failures(admin, sync_env, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        for _ in range(2):
            with dg.execute_job(dg.reconstructable(sync_job), instance=instance) as result:
                assert result.success
                steps = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
                assert len(steps) == 3
    assert admin.track_counts() == expected_track_counts(admin.get("/xero/invoices"))


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
