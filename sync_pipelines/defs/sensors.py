"""Event-driven runs: replay the dead-letter queue when a backoff expires, and sync what Xero webhooks announce."""

import json

import dagster as dg

from sync_pipelines.defs import salesforce_to_xero
from sync_pipelines.defs.xero_to_segment import ENRICHMENT, FLOW, SPECS, contact_enrichment
from sync_pipelines.lib.entity_sync import EntitySyncSpec
from sync_pipelines.lib.staging import StagingResource, due_dead_letters
from sync_pipelines.webhooks.inbox import WebhookInboxResource

# Every asset that delivers from the outbox: each flow's entity syncs and the contact enrichment.
_DELIVERED_KEYS = {
    (spec.flow, spec.entity): spec.delivered_key for spec in (*SPECS, *salesforce_to_xero.SPECS) if spec.target
} | {(FLOW, ENRICHMENT): contact_enrichment.key}


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=list(_DELIVERED_KEYS.values()),
    description="Requests a delivery run for every entity with dead letters whose next attempt is due.",
)
def dead_letter_replay(context: dg.SensorEvaluationContext, staging_db: StagingResource) -> dg.SensorResult:
    """The cursor keeps the last failure wave requested per entity, so one wave makes one run."""
    requested: dict[str, str] = json.loads(context.cursor or "{}")
    with staging_db.connect() as conn:
        due = due_dead_letters(conn)
    runs = []
    for flow, entity, count, wave in due:
        name = f"{flow}/{entity}"
        if (flow, entity) not in _DELIVERED_KEYS or requested.get(name) == wave:
            continue
        requested[name] = wave
        runs.append(
            dg.RunRequest(
                run_key=f"replay:{name}:{wave}",
                asset_selection=[_DELIVERED_KEYS[(flow, entity)]],
                tags={"sync_pipelines/dead_letters": str(count)},
            )
        )
    return dg.SensorResult(run_requests=runs, cursor=json.dumps(requested, sort_keys=True))


# xero.md §6: webhooks say which records changed, not how; a run re-reads them incrementally from the API.
_WEBHOOK_SPECS = [spec for spec in SPECS if spec.source.webhook_category is not None]
_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _sync_keys(specs: list[EntitySyncSpec]) -> list[dg.AssetKey]:
    return [key for spec in specs for key in (spec.raw_key, spec.staged_key, spec.delivered_key)]


xero_webhook_sync = dg.define_asset_job(
    "xero_webhook_sync",
    selection=_sync_keys(_WEBHOOK_SPECS),
    # A webhook run moves a handful of records: one process for all its steps, not one per step.
    executor_def=dg.in_process_executor,
    description="Sync the Xero entities that webhooks said changed, straight away rather than at the next poll.",
)


@dg.sensor(
    job=xero_webhook_sync,
    # The daemon visits sensors every 5 s at most; a 5 s floor here too would make a tick that comes a moment
    # early wait for the next visit, doubling the delay. So: every visit.
    minimum_interval_seconds=2,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests one run of the entities whose Xero webhook category arrived in the inbox since the last.",
)
def xero_webhook_sensor(
    context: dg.SensorEvaluationContext, webhook_inbox: WebhookInboxResource
) -> dg.SensorResult | dg.SkipReason:
    """Coalesces: while a webhook run is queued or running, events wait and the next run takes them all.

    The 15-minute schedule still polls everything, so a webhook Xero never delivered is repaired (xero.md §6).
    """
    after = json.loads(context.cursor or '{"seq": 0}')["seq"]
    busy = context.instance.get_runs(dg.RunsFilter(job_name=xero_webhook_sync.name, statuses=_IN_FLIGHT), limit=1)
    if busy:
        return dg.SkipReason(f"run {busy[0].run_id} is still syncing; new events wait for it")
    pending = webhook_inbox.get_inbox().pending(after)
    if pending is None:
        return dg.SkipReason("no webhook events since the last run")
    cursor = json.dumps({"seq": pending.last_seq})
    specs = [spec for spec in _WEBHOOK_SPECS if spec.source.webhook_category in pending.categories]
    if not specs:
        return dg.SensorResult(
            skip_reason=f"no entity syncs the categories {sorted(pending.categories)}", cursor=cursor
        )
    run = dg.RunRequest(
        run_key=f"xero-webhook:{pending.first_seq}-{pending.last_seq}",
        asset_selection=_sync_keys(specs),
        tags={"sync_pipelines/webhook_events": str(pending.events)},
    )
    return dg.SensorResult(run_requests=[run], cursor=cursor)
