"""Event-driven runs: replay the dead-letter queue when a backoff expires, and sync what vendors' webhooks announce."""

import json
from collections.abc import Sequence

import dagster as dg

from sync_pipelines.defs.flows import registered_flows
from sync_pipelines.lib.deliveries import Delivery
from sync_pipelines.lib.entities import Entity
from sync_pipelines.lib.staging import StagingResource, due_dead_letters
from sync_pipelines.lib.tenants import REGISTRY_ENV, TENANTS, Registry, load_registry
from sync_pipelines.vendors.intercom import entities as intercom
from sync_pipelines.vendors.salesforce import entities as salesforce
from sync_pipelines.vendors.segment import entities as segment
from sync_pipelines.vendors.xero import entities as xero
from sync_pipelines.webhooks.inbox import WebhookInbox, WebhookInboxResource

# The vendors that send webhooks, and their entities (each names its webhook category, or none).
WEBHOOKS = {
    "xero": xero.ENTITIES,
    "intercom": intercom.ENTITIES,
    "segment": segment.ENTITIES,
    "salesforce": salesforce.ENTITIES,
}

PARTITION_TAG = "dagster/partition"
# The run priority of webhook runs: above the schedules' 0.
REAL_TIME_PRIORITY = "10"

_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def dead_letter_replay(delivered: dict[tuple[str, str], dg.AssetKey]) -> dg.SensorDefinition:
    """Requests a delivery run for every delivery with dead letters whose next attempt is due."""

    @dg.sensor(
        name="dead_letter_replay",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=list(delivered.values()),
        description="Requests a delivery run for every entity with dead letters whose next attempt is due.",
    )
    def sensor(context: dg.SensorEvaluationContext, staging_db: StagingResource) -> dg.SensorResult:
        """The cursor keeps the last failure wave requested per delivery (and connection), so one wave makes one
        run; with several connections, each connection's store is read and its runs are its partition's."""
        requested: dict[str, str] = json.loads(context.cursor or "{}")
        registry = load_registry()
        if registry is None:
            stores: list[tuple[str | None, StagingResource]] = [(None, staging_db)]
        else:
            known = set(context.instance.get_dynamic_partitions(TENANTS.name))
            stores = [(c.name, staging_db.for_connection(c)) for c in registry.connections if c.name in known]
        runs = []
        for tenant, store in stores:
            with store.connect() as conn:
                due = due_dead_letters(conn)
            for flow, entity, count, wave in due:
                name = f"{flow}/{entity}" if tenant is None else f"{tenant}/{flow}/{entity}"
                if (flow, entity) not in delivered or requested.get(name) == wave:
                    continue
                requested[name] = wave
                runs.append(
                    dg.RunRequest(
                        run_key=f"replay:{name}:{wave}",
                        asset_selection=[delivered[(flow, entity)]],
                        partition_key=tenant,
                        tags={"sync_pipelines/dead_letters": str(count)},
                    )
                )
        return dg.SensorResult(run_requests=runs, cursor=json.dumps(requested, sort_keys=True))

    return sensor


def _sync_keys(
    entities: Sequence[Entity], deliveries: Sequence[Delivery], follow_ups: Sequence[tuple[Entity, dg.AssetKey]]
) -> list[dg.AssetKey]:
    """The entities' extract and staged assets, the deliveries of them and the flows' follow-ups of them."""
    return [
        *(key for entity in entities for key in (entity.raw_key, entity.staged_key)),
        *(d.key for d in deliveries if d.entity in entities),
        *(key for entity, key in follow_ups if entity in entities),
    ]


def webhook_sync(
    vendor: str,
    entities: Sequence[Entity],
    deliveries: Sequence[Delivery],
    follow_ups: Sequence[tuple[Entity, dg.AssetKey]],
) -> tuple[dg.JobDefinition, dg.SensorDefinition]:
    """`<vendor>_webhook_sync` and its sensor: sync straight away what the vendor's webhooks in the inbox say changed.

    Xero's and Intercom's webhooks and Salesforce's Outbound Messages say which records changed (xero.md §6,
    intercom.md §9, salesforce.md §9; an Outbound Message's fields are as they were when it was sent): a run re-reads
    them incrementally from the API; Segment's carry the messages, which a run lands from the inbox. Either way, for
    the entities whose `webhook_category` arrived, delivered in every flow, with the flows' follow-ups of them.
    """
    title = vendor.capitalize()
    webhook_entities = [entity for entity in entities if entity.source.webhook_category is not None]
    job = dg.define_asset_job(
        f"{vendor}_webhook_sync",
        selection=_sync_keys(webhook_entities, deliveries, follow_ups),
        # A webhook run moves a handful of records: one process for all its steps, not one per step.
        executor_def=dg.in_process_executor,
        description=f"Sync the {title} entities that webhooks said changed, at once rather than at the next poll.",
    )

    @dg.sensor(
        name=f"{vendor}_webhook_sensor",
        job=job,
        # The daemon visits sensors every 5 s at most; a 5 s floor here too would make a tick that comes a moment
        # early wait for the next visit, doubling the delay. So: every visit, and between visits the tick listens
        # to the inbox (the resource's listen_seconds), so a run starts as an event lands.
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
        inbox = webhook_inbox.get_inbox()
        # Only a vendor whose webhooks are in use is listened for: each listening tick holds a code-server thread.
        listen = webhook_inbox.listen_seconds if inbox.receives(vendor) else 0.0
        if (registry := load_registry()) is not None:
            return connections_runs(context, inbox, listen, registry)
        after = json.loads(context.cursor or '{"seq": 0}')["seq"]
        busy = context.instance.get_runs(dg.RunsFilter(job_name=job.name, statuses=_IN_FLIGHT), limit=1)
        if busy:
            return dg.SkipReason(f"run {busy[0].run_id} is still syncing; new events wait for it")
        pending = inbox.wait_for_pending(vendor, after, listen)
        if pending is None:
            return dg.SkipReason("no webhook events since the last run")
        cursor = json.dumps({"seq": pending.last_seq})
        matching = [e for e in webhook_entities if e.source.webhook_category in pending.categories]
        if not matching:
            return dg.SensorResult(
                skip_reason=f"no entity syncs the categories {sorted(pending.categories)}", cursor=cursor
            )
        run = dg.RunRequest(
            run_key=f"{vendor}-webhook:{pending.first_seq}-{pending.last_seq}",
            asset_selection=_sync_keys(matching, deliveries, follow_ups),
            # Ahead of the sweeps: the run queue launches it first, and its steps take a vendor's pool slot
            # before a sweep's next step does (Dagster orders both by this tag).
            tags={"sync_pipelines/webhook_events": str(pending.events), "dagster/priority": REAL_TIME_PRIORITY},
        )
        return dg.SensorResult(run_requests=[run], cursor=cursor)

    def connections_runs(
        context: dg.SensorEvaluationContext, inbox: WebhookInbox, listen: float, registry: Registry
    ) -> dg.SensorResult | dg.SkipReason:
        """One run per connection whose account sent events (the event's tenant_id is its `ids[vendor]`), each
        connection with a cursor of its own: one connection's run still going holds only its own events."""
        state = json.loads(context.cursor or "{}")
        after: dict[str, int] = state.get("connections", {})
        floor = min((after.get(c.name, 0) for c in registry.connections), default=0)
        if inbox.wait_for_pending(vendor, floor, listen) is None:
            return dg.SkipReason("no webhook events since the last run")
        by_tenant = inbox.pending_by_tenant(vendor, floor)
        newest = max(pending.last_seq for pending in by_tenant.values())
        known = set(context.instance.get_dynamic_partitions(TENANTS.name))
        runs, waiting = [], []
        for connection in registry.connections:
            since = after.get(connection.name, 0)
            pending = by_tenant.get(connection.ids.get(vendor, ""))
            if pending is None or pending.last_seq <= since:
                after[connection.name] = max(since, newest)
                continue
            busy = context.instance.get_runs(
                dg.RunsFilter(job_name=job.name, statuses=_IN_FLIGHT, tags={PARTITION_TAG: connection.name}), limit=1
            )
            if busy or connection.name not in known:
                waiting.append(connection.name)
                continue
            after[connection.name] = pending.last_seq
            matching = [e for e in webhook_entities if e.source.webhook_category in pending.categories]
            if not matching:
                continue
            runs.append(
                dg.RunRequest(
                    run_key=f"{vendor}-webhook:{connection.name}:{since + 1}-{pending.last_seq}",
                    asset_selection=_sync_keys(matching, deliveries, follow_ups),
                    partition_key=connection.name,
                    tags={"sync_pipelines/webhook_events": str(pending.events), "dagster/priority": REAL_TIME_PRIORITY},
                )
            )
        cursor = json.dumps({"connections": after}, sort_keys=True)
        reasons = [f"waiting for {', '.join(waiting)}"] if waiting else []
        unknown = sorted(set(by_tenant) - {c.ids.get(vendor) for c in registry.connections})
        if unknown:  # an account consented to (or sending) without a connection: its events go nowhere
            reasons.append(f"ignored events of {vendor} accounts no connection has: {', '.join(unknown)}")
            context.log.warning(f"{reasons[-1]}; add them to the registry (${REGISTRY_ENV}) to sync them")
        skip = "; ".join(reasons) if reasons and not runs else None
        return dg.SensorResult(run_requests=runs, cursor=cursor, skip_reason=skip)

    return job, sensor


@dg.definitions
def defs() -> dg.Definitions:
    flows = {flow: flow.deliveries() for flow in registered_flows()}
    deliveries = [delivery for of_flow in flows.values() for delivery in of_flow]
    # Every asset that delivers from an outbox: each flow's deliveries and the extras that have an outbox of their own.
    delivered = {(d.flow, d.partition): d.key for d in deliveries}
    delivered |= {(flow.name, name): key for flow in flows for name, key in flow.extra_outboxes}
    follow_ups = [pair for flow, of_flow in flows.items() for pair in flow.follow_ups(of_flow)]
    jobs, sensors = zip(
        *(webhook_sync(vendor, entities, deliveries, follow_ups) for vendor, entities in WEBHOOKS.items()), strict=True
    )
    return dg.Definitions(jobs=list(jobs), sensors=[dead_letter_replay(delivered), *sensors])
