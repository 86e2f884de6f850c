"""The `alerts` sensor: tells the team, through the notifier, what needs a person (lib/alerts.py)."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.event_api import EventLogCursor
from dagster._core.events import DagsterEventType

from sync_pipelines.defs.flows import registered_deliveries, registered_flows
from sync_pipelines.lib import alerts
from sync_pipelines.lib.alerts import Alert, asset_link, ui_url
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.lib.tenants import load_registry
from sync_pipelines.vendors.notifier.resource import NotifierResource

# On its first tick the sensor looks back this far, so turning it on does not replay a long history.
FIRST_LOOK_BACK = timedelta(days=1)
# Events read per kind and tick; the rest come on the next tick.
PER_TICK = 200


@dataclass
class Reading:
    """What a tick reads events with: the checks failing so far (kept in the cursor), and which flow a job or an
    asset belongs to."""

    failing: dict[str, str]  # check -> the run it started failing in
    jobs: dict[str, str]
    assets: dict[dg.AssetKey, str]


def _run_failed(record: dg.EventLogRecord, reading: Reading) -> Alert:
    entry = record.event_log_entry
    message = (entry.dagster_event.message if entry.dagster_event else None) or entry.user_message or ""
    return Alert(
        f"run_failed:{entry.run_id}", "run_failed", reading.jobs.get(entry.job_name),
        f"Run {entry.run_id[:8]} of {entry.job_name} failed: {message.splitlines()[0][:300] if message else ''}",
        f"{ui_url()}/runs/{entry.run_id}",
    )  # fmt: skip


def _check_failed(record: dg.EventLogRecord, reading: Reading) -> Alert | None:
    """A check that starts failing (after passing, or on its first evaluation): once per failing spell."""
    entry = record.event_log_entry
    evaluation = entry.dagster_event.event_specific_data
    name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
    if evaluation.passed:
        reading.failing.pop(name, None)
        return None
    if name in reading.failing:
        return None  # still the same spell
    reading.failing[name] = entry.run_id
    facts = ", ".join(f"{k}: {_shown(v)}" for k, v in list(evaluation.metadata.items())[:6])
    return Alert(
        f"check_failed:{name}:{entry.run_id}", "check_failed", reading.assets.get(evaluation.asset_key),
        f"Check {evaluation.check_name} on {evaluation.asset_key.to_user_string()} failed ({facts}).",
        asset_link(evaluation.asset_key, "checks"),
    )  # fmt: skip


def _freshness_failed(record: dg.EventLogRecord, reading: Reading) -> Alert | None:
    change = record.event_log_entry.dagster_event.event_specific_data
    if change.new_state != FreshnessState.FAIL:
        return None
    return Alert(
        f"freshness_failed:{change.key.to_user_string()}:{record.storage_id}", "freshness_failed",
        reading.assets.get(change.key),
        f"{change.key.to_user_string()} is past its freshness policy: it has not been brought up to date in time.",
        asset_link(change.key),
    )  # fmt: skip


# How runs end: a run's check results are read once it has ended (each check runs within a run).
RUN_ENDS = (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE)
FRESHNESS = DagsterEventType.FRESHNESS_STATE_CHANGE


def _shown(value: object) -> str:
    return str(getattr(value, "value", value))[:80]


@dg.sensor(
    name="alerts",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Tells the team through the notifier, once each and with a link here: a failed run, a check that starts "
        "failing, a freshness policy failing, a dead letter that used up its attempts, and the day-limit stops "
        "extracts recorded."
    ),
)
def alert_sensor(
    context: dg.SensorEvaluationContext, staging_db: StagingResource, notifier: NotifierResource
) -> dg.SkipReason:
    cursor = json.loads(context.cursor or "{}")
    positions = cursor.get("after", {})
    flows = {flow.name: flow for flow in registered_flows()}
    delivered = {(d.flow, d.partition): d.key for d in registered_deliveries()}
    reading = Reading(
        failing=cursor.get("failing", {}),
        jobs={flow.job_name: flow.name for flow in flows.values()},
        assets={key: flow for (flow, _), key in delivered.items()},
    )
    since = (datetime.now(UTC) - FIRST_LOOK_BACK).timestamp()
    raised: list[Alert] = []
    # Run ends and freshness changes through the queries every event log storage answers across runs (SQLite's is
    # sharded by run: a cross-run query by event id works for asset events and run status changes only).
    ended: list[dg.EventLogRecord] = []
    for event_type in RUN_ENDS:
        after = positions.get(event_type.value)
        if isinstance(after, int):  # an earlier version's cursor: the event's id, as the index shard numbers it
            after = EventLogCursor.from_storage_id(after).to_string()
        result = context.instance.fetch_run_status_changes(event_type, limit=PER_TICK, cursor=after, ascending=True)
        positions[event_type.value] = result.cursor
        ended += [record for record in result.records if after is not None or record.timestamp >= since]
    for record in sorted(ended, key=lambda record: record.timestamp):
        run_id = record.event_log_entry.run_id
        if record.event_log_entry.dagster_event_type == DagsterEventType.RUN_FAILURE:
            raised.append(_run_failed(record, reading))
        checks = context.instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        raised += filter(None, (_check_failed(check, reading) for check in checks.records))
    after = positions.get(FRESHNESS.value)
    changes = context.instance.event_log_storage.get_event_records(
        dg.EventRecordsFilter(event_type=FRESHNESS, after_cursor=after), limit=PER_TICK, ascending=True
    )
    for record in changes:
        positions[FRESHNESS.value] = record.storage_id
        if (after is not None or record.timestamp >= since) and (alert := _freshness_failed(record, reading)):
            raised.append(alert)
    new = sent = failed = 0
    for store in _stores(staging_db):
        with store.connect() as conn:
            raised += alerts.exhausted_dead_letters(conn, delivered)
            # A flow's own settings say which kinds of its alerts are sent; what belongs to no flow always is.
            new += alerts.raise_alerts(conn, [a for a in raised if a.flow is None or a.kind in flows[a.flow].alerts])
            pending = alerts.unsent(conn)
        raised = []  # what the instance says is kept in the install's store; a connection's store adds its own
        report = notifier.get_client().send(pending)
        with store.connect() as conn:
            # A notification the notifier refuses (4xx) would be refused again: it is not retried.
            alerts.mark_sent(conn, report.delivered + [alert_id for alert_id, _ in report.rejected])
        sent, failed = sent + len(report.delivered), failed + len(report.failed)
    context.update_cursor(json.dumps({"after": positions, "failing": reading.failing}, sort_keys=True))
    return dg.SkipReason(f"{new} new alerts; {sent} sent, {failed} to try again")


def _stores(staging_db: StagingResource) -> list[StagingResource]:
    """The install's staging store, then each connection's that exists (its runs raise alerts there)."""
    registry = load_registry()
    connections = [staging_db.for_connection(c) for c in registry.connections] if registry else []
    return [staging_db, *(store for store in connections if Path(store.database).exists())]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[alert_sensor])
