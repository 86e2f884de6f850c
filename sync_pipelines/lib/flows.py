"""A flow: what one vendor's staged entities become at another, as a list of deliveries and their extra assets.

A flow module in `defs/` declares one `FLOW`; the registry (`defs/flows.py`) finds every one, and the schedules,
sensors, CLI and reconciliation read it from there, so adding a flow edits no shared list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import dagster as dg

from sync_pipelines.lib.alerts import KINDS
from sync_pipelines.lib.deliveries import Delivery, Target, delivered_asset
from sync_pipelines.lib.entities import BACKFILLS, Entity
from sync_pipelines.lib.mapping import load_mapping, mapping_path
from sync_pipelines.lib.tenants import FLOW_TAG

M = TypeVar("M")


def synced(group: str) -> dg.AssetSelection:
    """A group's assets and everything they read, as a sync run materialises them: without the backfill windows,
    which only a backfill (a range of months) materialises."""
    return dg.AssetSelection.groups(group).upstream() - BACKFILLS


def mapped_deliveries(
    flow: str,
    entities: Sequence[Entity],
    model: type[M],
    target: Callable[[Entity, M], Target],
    after: Mapping[str, tuple[str, ...]] | None = None,
) -> list[Delivery]:
    """Each entity to the target made from its part of the flow's mapping file (checked against the entity's
    contract), after the deliveries `after` names for it."""
    mappings = load_mapping(mapping_path(flow), model, {entity.name: entity.contract for entity in entities})
    after = after or {}
    return [Delivery(flow, e, target(e, mappings[e.name]), after=after.get(e.name, ())) for e in entities]


def no_extras(deliveries: Sequence[Delivery]) -> dg.Definitions:
    return dg.Definitions()


def no_follow_ups(deliveries: Sequence[Delivery]) -> list[tuple[Entity, dg.AssetKey]]:
    return []


@dataclass(frozen=True)
class Flow:
    name: str  # e.g. "xero_to_segment": its asset group, job and schedule
    source: str  # the vendor it reads
    target: str  # the vendor it writes
    description: str
    # Its deliveries, made when the definitions are built (a mapping file is read then, never at import).
    deliveries: Callable[[], list[Delivery]]
    # Assets of its own beyond the deliveries (enrichment, write-backs), with any jobs and schedules they need.
    extras: Callable[[Sequence[Delivery]], dg.Definitions] = no_extras
    # Extra assets its sync job leaves to their own schedule.
    unsynced: tuple[dg.AssetKey, ...] = ()
    # Extras that deliver from an outbox partition of their own: (partition, asset), for dead-letter replays.
    extra_outboxes: tuple[tuple[str, dg.AssetKey], ...] = ()
    # Extras a webhook run of an entity materialises too, as (entity, asset), made from the deliveries: e.g. a
    # deal's invoice status written back to the CRM as soon as Xero says the invoice changed.
    follow_ups: Callable[[Sequence[Delivery]], list[tuple[Entity, dg.AssetKey]]] = no_follow_ups
    every_minutes: int = 15  # the sweep's period; the registry staggers the flows' minutes within it
    # The kinds of alert (lib/alerts.KINDS) its runs, checks and dead letters send the team.
    alerts: frozenset[str] = frozenset(KINDS)
    # Flows this one runs after where both write the same vendor (e.g. the CRM, the system of record for people,
    # before the support tool, so the support tool's people are matched to the contacts the CRM made).
    after: tuple[str, ...] = ()

    @property
    def job_name(self) -> str:
        return f"{self.name}_sync"

    def definitions(self, minute: int = 0) -> dg.Definitions:
        """The deliveries' assets (each after the deliveries it names), the extras, the sync job and its schedule,
        which fires `minute` minutes into each period."""
        deliveries = self.deliveries()
        keys = {d.partition: d.key for d in deliveries}
        job = dg.define_asset_job(
            self.job_name,
            # A flow reads what it delivers, and what the deliveries match against, fresh from the vendors.
            selection=synced(self.name) - dg.AssetSelection.assets(*self.unsynced),
            description=self.description,
            # Every step in the run's own process: a step's process would cost more to start than most steps do.
            executor_def=dg.in_process_executor,
        )
        return dg.Definitions.merge(
            dg.Definitions(
                assets=[delivered_asset(d, [keys[name] for name in d.after]) for d in deliveries],
                jobs=[job],
                schedules=[
                    dg.ScheduleDefinition(
                        job=job,
                        cron_schedule=f"{minute}-59/{self.every_minutes} * * * *",
                        default_status=dg.DefaultScheduleStatus.RUNNING,
                        tags={FLOW_TAG: self.name},
                    )
                ],
            ),
            self.extras(deliveries),
        )


def in_running_order(flows: Sequence[Flow]) -> list[Flow]:
    """Flows that write a vendor before the flows that read it (so a demo carries one flow's writes into the
    next), each after the flows it names in `after`, by name otherwise. Two flows between the same two vendors,
    one each way, go in the order `after` gives."""
    waiting = {flow.name: flow for flow in flows}
    ordered: list[Flow] = []
    while waiting:
        ready = [flow for flow in waiting.values() if not any(_first(other, flow) for other in waiting.values())]
        if not ready:
            raise ValueError(f"flows that wait on each other: {sorted(waiting)}")
        first = min(ready, key=lambda flow: flow.name)
        ordered.append(waiting.pop(first.name))
    return ordered


def _first(flow: Flow, then: Flow) -> bool:
    """Whether `flow` runs before `then`."""
    one_way = flow.target == then.source and then.target != flow.source
    return flow is not then and (flow.name in then.after or one_way)
