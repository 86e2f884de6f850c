"""Event-driven runs: replay the dead-letter queue when a backoff expires, and sync what vendors' webhooks announce."""

import json

import dagster as dg

from sync_pipelines.defs import intercom_to_xero, salesforce_to_xero
from sync_pipelines.defs.xero_to_segment import ENRICHMENT, FLOW, SPECS, contact_enrichment
from sync_pipelines.lib.entity_sync import EntitySyncSpec
from sync_pipelines.lib.staging import StagingResource, due_dead_letters
from sync_pipelines.webhooks.inbox import WebhookInboxResource

# Every asset that delivers from the outbox: each flow's entity syncs and the contact enrichment.
_DELIVERED_KEYS = {
    (spec.flow, spec.entity): spec.delivered_key
    for spec in (*SPECS, *salesforce_to_xero.SPECS, *intercom_to_xero.SPECS)
    if spec.target
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


_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _sync_keys(specs: list[EntitySyncSpec]) -> list[dg.AssetKey]:
    keys = (key for spec in specs for key in (spec.raw_key, spec.staged_key, spec.delivered_key))
    return [key for key in keys if key is not None]


def webhook_sync(vendor: str, specs: list[EntitySyncSpec]):
    """`<vendor>_webhook_sync` and its sensor: sync straight away what the vendor's webhooks in the inbox say changed.

    Webhooks say which records changed, not how (xero.md §6, intercom.md §9): a run re-reads them incrementally
    from the API, for the specs whose Source's `webhook_category` arrived.
    """
    title = vendor.capitalize()
    webhook_specs = [spec for spec in specs if spec.source.webhook_category is not None]
    job = dg.define_asset_job(
        f"{vendor}_webhook_sync",
        selection=_sync_keys(webhook_specs),
        # A webhook run moves a handful of records: one process for all its steps, not one per step.
        executor_def=dg.in_process_executor,
        description=f"Sync the {title} entities that webhooks said changed, at once rather than at the next poll.",
    )

    @dg.sensor(
        name=f"{vendor}_webhook_sensor",
        job=job,
        # The daemon visits sensors every 5 s at most; a 5 s floor here too would make a tick that comes a moment
        # early wait for the next visit, doubling the delay. So: every visit.
        minimum_interval_seconds=2,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests one run of the entities whose {title} webhook category arrived since the last.",
    )
    def sensor(
        context: dg.SensorEvaluationContext, webhook_inbox: WebhookInboxResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Coalesces: while a webhook run is queued or running, events wait and the next run takes them all.

        The schedules still poll everything, so a webhook the vendor never delivered is repaired (xero.md §6).
        """
        after = json.loads(context.cursor or '{"seq": 0}')["seq"]
        busy = context.instance.get_runs(dg.RunsFilter(job_name=job.name, statuses=_IN_FLIGHT), limit=1)
        if busy:
            return dg.SkipReason(f"run {busy[0].run_id} is still syncing; new events wait for it")
        pending = webhook_inbox.get_inbox().pending(vendor, after)
        if pending is None:
            return dg.SkipReason("no webhook events since the last run")
        cursor = json.dumps({"seq": pending.last_seq})
        matching = [spec for spec in webhook_specs if spec.source.webhook_category in pending.categories]
        if not matching:
            return dg.SensorResult(
                skip_reason=f"no entity syncs the categories {sorted(pending.categories)}", cursor=cursor
            )
        run = dg.RunRequest(
            run_key=f"{vendor}-webhook:{pending.first_seq}-{pending.last_seq}",
            asset_selection=_sync_keys(matching),
            tags={"sync_pipelines/webhook_events": str(pending.events)},
        )
        return dg.SensorResult(run_requests=[run], cursor=cursor)

    return job, sensor


xero_webhook_sync, xero_webhook_sensor = webhook_sync("xero", SPECS)
intercom_webhook_sync, intercom_webhook_sensor = webhook_sync("intercom", intercom_to_xero.SPECS)
