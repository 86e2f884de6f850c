"""Salesforce accounts read at flow level: the real extract and validated assets against the sandbox's org.

Only the accounts entity's extract and validated assets run. The staged table is what the rest of the flow reads,
so "every account staged once, at its latest version" is the acceptance line for the read; sending 50,000 new
contacts to Xero would time Xero's write path (test_salesforce_to_xero.py covers delivery) rather than the read.
"""

import json
import math
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import dagster as dg
import pytest

from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.vendors.salesforce.client import Position
from sync_pipelines.vendors.salesforce.entities import ACCOUNTS
from sync_pipelines.vendors.salesforce.settings import BULK_PAGE_RECORDS, BULK_THRESHOLD_ROWS, MAX_BATCH_SIZE
from sync_pipelines_tests.conftest import SandboxAdmin

READ = [ACCOUNTS.raw_key, ACCOUNTS.staged_key]
# Above the client's Bulk threshold: after the first REST page (salesforce.md §3.1) the read goes on in a Bulk job.
BULK_SIZED = BULK_THRESHOLD_ROWS + MAX_BATCH_SIZE


def _only_accounts(admin: SandboxAdmin, accounts: int) -> None:
    admin.salesforce_reset(accounts=accounts, contacts_per_account=0, leads=0, opportunities=0)


def _epoch(stamp: str) -> int:
    # salesforce.md §2: "2024-01-15T10:20:30.000+0000"
    return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp())


def _org_versions(admin: SandboxAdmin) -> dict[str, int]:
    """Account Id -> SystemModstamp (epoch s) of every account in the org, soft-deleted ones included."""
    return {record["Id"]: _epoch(record["SystemModstamp"]) for record in admin.salesforce_records("Account")}


def _staged_versions(env: dict[str, str]) -> dict[str, int]:
    """Account Id -> SystemModstamp of its staged version; fails if any account is staged twice."""
    with StagingResource(database=env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        rows = conn.execute(f'SELECT id, epoch(updated_at)::BIGINT FROM "{ACCOUNTS.table}"').fetchall()
    staged = dict(rows)
    assert len(staged) == len(rows), "an account is staged more than once"
    return staged


def _landed(env: dict[str, str]) -> int:
    """Account payloads in the landing table: a re-read that landed again would show here."""
    with StagingResource(database=env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        query = "SELECT count(*) FROM raw_landing WHERE source = 'salesforce' AND entity = ?"
        return conn.execute(query, [ACCOUNTS.name]).fetchone()[0]


def _stored_cursor(env: dict[str, str]) -> dict:
    with StagingResource(database=env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        (value,) = conn.execute("SELECT value FROM sync_cursors WHERE name = ?", [ACCOUNTS.extract_cursor]).fetchone()
    return json.loads(value)


def _kind(method: str, path: str) -> str:
    """What a call to the org was for (salesforce.md §3.1, §6)."""
    if "/jobs/query" in path:
        if method == "POST":
            return "bulk_jobs"
        return "bulk_result_pages" if path.endswith("/results") else "bulk_other"
    if "/services/data/" not in path:
        return "oauth"
    return "rest_query_pages" if "/query" in path else "rest_other"


def _calls(admin: SandboxAdmin) -> Counter:
    """The org's calls since the stats were reset, by kind."""
    kinds = Counter()
    for call, n in admin.stats()["salesforce"].items():
        kinds[_kind(*call.split(" ", 1))] += n
    return kinds


def _extract_figures(result: dg.ExecuteInProcessResult) -> dict:
    return next(
        {name: value.value for name, value in event.step_materialization_data.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
        if event.asset_key == ACCOUNTS.raw_key
    )


def _wait_until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not true within {seconds}s"
        time.sleep(0.1)


def test_a_50000_account_backfill_reads_through_bulk_and_stages_every_account_once(admin, run_sync, sync_env):
    _only_accounts(admin, 50_000)
    admin.reset_stats()

    result = run_sync(READ)

    assert result.success
    org = _org_versions(admin)
    assert len(org) == 50_000
    assert _staged_versions(sync_env) == org
    calls, figures = _calls(admin), _extract_figures(result)
    assert figures["rows_fetched"] == len(org)
    # One REST page sizes the read, one Bulk job reads the rest; REST alone would take ceil(n / 2000) pages.
    assert calls["rest_query_pages"] == 1
    assert calls["bulk_jobs"] == 1
    assert calls["bulk_result_pages"] == math.ceil((50_000 - MAX_BATCH_SIZE) / BULK_PAGE_RECORDS)
    assert figures["bulk_fallbacks"] == 0
    # The run's figures are the calls the org counted.
    assert figures["bulk_calls"] == calls["bulk_jobs"] + calls["bulk_result_pages"] + calls["bulk_other"]
    assert figures["rest_calls"] == calls["rest_query_pages"] + calls["rest_other"]
    assert figures["api_calls"] < math.ceil(50_000 / MAX_BATCH_SIZE)

    rerun = run_sync(READ)

    # The rerun's overlap re-reads over REST rows the Bulk job served: they are the same records, not changes.
    assert rerun.success
    again = _extract_figures(rerun)
    assert again["rows_fetched"] > 0
    assert again["dagster/row_count"] == 0


def test_a_failed_bulk_job_falls_back_to_rest_without_losing_or_repeating_an_account(admin, run_sync, sync_env):
    _only_accounts(admin, BULK_SIZED)
    admin.salesforce_fail_bulk(jobs=1)
    admin.reset_stats()

    result = run_sync(READ)

    assert result.success
    calls = _calls(admin)
    assert (calls["bulk_jobs"], calls["bulk_result_pages"]) == (1, 0)  # the job failed before any results
    figures = _extract_figures(result)
    assert figures["bulk_fallbacks"] == 1
    org = _org_versions(admin)
    assert _staged_versions(sync_env) == org
    assert figures["rows_fetched"] == len(org)  # REST went on after the last row read, re-reading none


@pytest.mark.parametrize("continuation", ["bulk", "rest after a failed bulk job"])
def test_accounts_sharing_one_system_modstamp_across_the_2000_row_page_boundary_are_all_synced(
    admin, run_sync, sync_env, continuation
):
    _only_accounts(admin, BULK_SIZED)
    # One user edit of every live account in the same second (salesforce.md §3.2: whole-second stamps).
    admin.post("/salesforce/touch", {"object": "Account", "count": BULK_SIZED})
    records = admin.salesforce_records("Account")  # in the read's order: SystemModstamp, Id
    assert records[MAX_BATCH_SIZE - 1]["SystemModstamp"] == records[MAX_BATCH_SIZE]["SystemModstamp"]
    if continuation != "bulk":
        admin.salesforce_fail_bulk(jobs=1)
    admin.reset_stats()

    result = run_sync(READ)

    assert result.success
    # The first page ends inside the tie; the rest is read by a new query bounded by that page's last row.
    assert _calls(admin)["bulk_jobs"] == 1
    figures = _extract_figures(result)
    assert figures["bulk_fallbacks"] == (continuation != "bulk")
    assert _staged_versions(sync_env) == {r["Id"]: _epoch(r["SystemModstamp"]) for r in records}
    assert figures["rows_fetched"] == len(records)


def test_a_session_expired_mid_run_or_before_a_run_is_refreshed_and_the_run_goes_on(admin, run_sync, sync_env):
    _only_accounts(admin, BULK_SIZED)
    admin.salesforce_settings(bulk_job_seconds=600)  # holds the Bulk job: the run waits mid-read
    admin.reset_stats()

    def expire_while_the_job_runs() -> int:
        try:
            _wait_until(lambda: _calls(admin)["bulk_jobs"] == 1, seconds=60)
            return admin.salesforce_expire_tokens()
        finally:
            admin.salesforce_settings(bulk_job_seconds=0)  # releases the job; the next status poll meets the 401

    with ThreadPoolExecutor(max_workers=1) as pool:
        expiring = pool.submit(expire_while_the_job_runs)
        result = run_sync(READ)
        assert expiring.result() >= 1

    assert result.success
    assert _extract_figures(result)["session_refreshes"] == 1
    assert _staged_versions(sync_env) == _org_versions(admin)

    live = next(r for r in admin.salesforce_records("Account") if not r["IsDeleted"])
    admin.salesforce_update("Account", live["Id"], Phone="(555) 010-2030")
    admin.salesforce_expire_tokens()  # the next run's client starts from the stored, now expired session

    result = run_sync(READ)

    assert result.success
    assert _extract_figures(result)["session_refreshes"] == 1
    assert _staged_versions(sync_env) == _org_versions(admin)


def test_the_quota_budget_stops_the_read_at_a_checkpoint_and_the_next_run_resumes_with_nothing_lost_or_doubled(
    admin, run_sync, sync_env
):
    _only_accounts(admin, 3 * MAX_BATCH_SIZE)  # three REST pages
    records = admin.salesforce_records("Account")
    # The client stops before passing 80% of the daily allocation (salesforce.md §5): int(0.8 * 3) = 2 calls.
    admin.salesforce_limits(used=0, daily_api_limit=3)

    stopped = run_sync(READ)

    assert stopped.success
    figures = _extract_figures(stopped)
    assert figures["quota_exhausted"] is True
    assert figures["dagster/row_count"] == 2 * MAX_BATCH_SIZE
    checkpoint = json.loads(figures["cursor"])
    assert Position.from_dict(checkpoint) == Position.of(records[2 * MAX_BATCH_SIZE - 1])
    assert _stored_cursor(sync_env) == checkpoint
    assert set(_staged_versions(sync_env)) == {r["Id"] for r in records[: 2 * MAX_BATCH_SIZE]}

    admin.salesforce_limits(daily_api_limit=15_000)  # the next day
    resumed = run_sync(READ)

    assert resumed.success
    assert _extract_figures(resumed)["quota_exhausted"] is False
    assert _staged_versions(sync_env) == {r["Id"]: _epoch(r["SystemModstamp"]) for r in records}
    assert _landed(sync_env) == len(records)
