"""The alerts sensor against the sandbox's notifier: each kind of alert reaches the team once, with its link."""

import json
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange
from dagster._core.events import DagsterEventType

from sync_pipelines.cli import DAGSTER_YAML
from sync_pipelines.defs.alerts import alert_sensor
from sync_pipelines.lib import staging
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.vendors.notifier.resource import NotifierResource
from sync_pipelines.vendors.xero import entities as xero
from sync_pipelines_tests.conftest import code_location, xero_resource

DELIVERY = dg.AssetKey(["segment", "xero_invoices_to_segment"])


def _tick(instance: dg.DagsterInstance, env: dict[str, str], url: str, cursor: str | None) -> str | None:
    """One evaluation of the sensor, as the daemon makes it; the cursor it leaves."""
    resources = {
        "staging_db": StagingResource(database=env["SYNC_PIPELINES_DUCKDB"]),
        "notifier": NotifierResource(url=url, style="generic"),
    }
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return alert_sensor.evaluate_tick(context).cursor


def _exhausted_dead_letter(env: dict[str, str]) -> None:
    """A write Segment refused for good, as the delivery step leaves it."""
    message_id = "xero:invoice:refused:created"
    with duckdb.connect(env["SYNC_PIPELINES_DUCKDB"]) as conn:
        staging.migrate(conn)
        payload = {"type": "track", "messageId": message_id, "userId": "u1", "event": "Invoice Created"}
        message = staging.OutboxMessage(message_id, "refused", "track", "Invoice Created", payload)
        staging.enqueue(conn, flow="xero_to_segment", entity="invoices", messages=[message], run_id=None)
        staging.dead_letter(
            conn, flow="xero_to_segment", entity="invoices", target="segment", run_id=None,
            failures=[(message_id, "refused", "400 Bad Request: userId")], retryable=False,
        )  # fmt: skip


def test_each_kind_of_alert_reaches_the_notifier_once_with_a_link(admin, sandbox, sync_env):
    url = f"{sandbox.url}/webhook/alerts"
    # The instance `sync-pipelines dev` keeps: SQLite storage, its event log sharded by run.
    home = Path(sync_env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    instance = dg.DagsterInstance.from_config(str(home))
    job = code_location().resolve_implicit_global_asset_job_def()
    # A mostly broken batch: the quarantine check fails and blocks, so the run fails.
    admin.reset(seed=11, invoices=8, malformed=12)
    blocked = job.execute_in_process(
        instance=instance, raise_on_error=False, asset_selection=[xero.INVOICES.raw_key, xero.INVOICES.staged_key]
    )
    assert not blocked.success
    # Xero's day allowance spent: the extract stops at its checkpoint.
    client = xero_resource(sync_env).get_client()
    next(client.iter_pages("Contacts"))
    admin.limits(day_limit=5000 - client.stats.day_limit_remaining)
    stopped = job.execute_in_process(instance=instance, asset_selection=[xero.CONTACTS.raw_key])
    assert stopped.success
    _exhausted_dead_letter(sync_env)
    # A delivery past its freshness policy, as Dagster's freshness daemon reports it.
    instance.report_runless_asset_event(
        asset_event=FreshnessStateChange(
            key=DELIVERY, previous_state=FreshnessState.PASS, new_state=FreshnessState.FAIL,
            state_change_timestamp=time.time(),
        )
    )  # fmt: skip

    cursor = _tick(instance, sync_env, url, None)
    # The day limit stops the extract again the same day: the team has already heard.
    assert job.execute_in_process(instance=instance, asset_selection=[xero.CONTACTS.raw_key]).success
    _tick(instance, sync_env, url, _tick(instance, sync_env, url, cursor))

    alerts = [n["body"] for n in admin.notifications() if n["path"] == "alerts"]
    kinds = Counter(alert["kind"] for alert in alerts)
    assert kinds == {"run_failed": 1, "check_failed": 1, "day_limit": 1, "dead_letter_exhausted": 1,
                     "freshness_failed": 1}, alerts  # fmt: skip
    by_kind = {alert["kind"]: alert for alert in alerts}
    assert by_kind["run_failed"]["link"] == f"http://127.0.0.1:3000/runs/{blocked.run_id}"
    assert "quarantine_rate" in by_kind["check_failed"]["text"] and by_kind["check_failed"]["link"].endswith(
        "/assets/xero/staged_xero_invoices?view=checks"
    )
    assert "xero:invoice:refused:created" in by_kind["dead_letter_exhausted"]["text"]
    assert by_kind["freshness_failed"]["link"].endswith("/assets/segment/xero_invoices_to_segment")


def test_a_cursor_an_earlier_version_left_goes_on_from_where_it_was(admin, sandbox, sync_env):
    home = Path(sync_env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    instance = dg.DagsterInstance.from_config(str(home))

    @dg.op
    def fails() -> None:
        raise RuntimeError("the vendor is down")

    @dg.job
    def breaks() -> None:
        fails()

    seen = breaks.execute_in_process(instance=instance, raise_on_error=False)
    (told,) = instance.fetch_run_status_changes(DagsterEventType.RUN_FAILURE, limit=1).records
    failed = breaks.execute_in_process(instance=instance, raise_on_error=False)
    # The earlier version kept each kind's last event id: the first failure had been told.
    old_cursor = {"after": {DagsterEventType.RUN_FAILURE.value: told.storage_id}}
    _tick(instance, sync_env, f"{sandbox.url}/webhook/alerts", json.dumps(old_cursor))

    (alert,) = [n["body"] for n in admin.notifications() if n["path"] == "alerts"]
    assert alert["kind"] == "run_failed" and alert["link"].endswith(failed.run_id) and seen.run_id != failed.run_id
