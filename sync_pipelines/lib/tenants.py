"""Tenants: the connections one install syncs, each a partition of every asset with resources of its own.

A connection registry (a YAML file, `$SYNC_PIPELINES_CONNECTIONS`, editable without code) names each connection: the
vendors' ids for its accounts (which Xero organisation, which Salesforce org, ...), the resource settings that
differ from the environment's (a Segment write key, as the name of the variable holding it), and which flows run
for it. With a registry, every asset is partitioned by connection (dynamic partitions, crossed with the months of a
backfill), each run serves one connection with that connection's settings and its own staging file, and the
schedules and sensors request one run per connection. Without one, an install syncs the one connection its
environment names, unpartitioned.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import dagster as dg
import yaml
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from dagster._core.storage.event_log.base import EventLogStorage

REGISTRY_ENV = "SYNC_PIPELINES_CONNECTIONS"
# The partition dimension: one key per connection, added and removed as the registry changes (`connections_sensor`).
TENANTS = dg.DynamicPartitionsDefinition(name="tenants")
TENANT_DIMENSION = "tenant"
MONTH_DIMENSION = "month"
# How often a step waiting for a pool slot of its connection or app asks again.
SLOT_POLL_SECONDS = 0.25


class Secret(BaseModel):
    """A secret setting, by the environment variable that holds it: the registry never holds the value."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    env: str

    def value(self) -> str:
        try:
            return os.environ[self.env]
        except KeyError:
            raise KeyError(f"the environment variable {self.env} (a connection's secret) is not set") from None


class Connection(BaseModel):
    """One tenant: the accounts it syncs and the flows that run for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="Its partition key and staging file name.")
    # The vendors' own ids of its accounts, by vendor: a Xero tenantId (from GET /connections), a Salesforce
    # OrganizationId, an Intercom app id, a Segment source id. Xero's picks the organisation; each routes webhooks.
    ids: dict[str, str] = Field(default_factory=dict)
    # Resource settings that differ from the environment's, by resource key: {"segment": {"write_key": {"env": ...}}}.
    settings: dict[str, dict[str, str | int | float | Secret]] = Field(default_factory=dict)
    # The flows that run for it; none listed, every flow.
    flows: tuple[str, ...] = ()

    def runs(self, flow: str) -> bool:
        return not self.flows or flow in self.flows

    def overrides(self, resource_key: str) -> dict[str, Any]:
        """The resource's settings for this connection, secrets read from the environment."""
        settings = self.settings.get(resource_key, {})
        return {name: value.value() if isinstance(value, Secret) else value for name, value in settings.items()}


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    connections: tuple[Connection, ...] = ()

    def connection(self, name: str) -> Connection:
        found = next((c for c in self.connections if c.name == name), None)
        if found is None:
            raise KeyError(f"no connection {name!r} in the registry; it has {sorted(self.names)}")
        return found

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.connections]

    def by_id(self, vendor: str, vendor_id: str) -> Connection | None:
        """The connection whose `vendor` account has this id (a webhook's tenant)."""
        return next((c for c in self.connections if c.ids.get(vendor) == vendor_id), None)

    def with_ids(
        self, vendor: str, accounts: Mapping[str, str | None], settings: dict | None = None
    ) -> tuple[Registry, list[Connection]]:
        """The registry with a connection (with these settings) for each account (id to name) it does not have yet,
        and those added."""
        taken = set(self.names)
        added = []
        for vendor_id, name in accounts.items():
            if self.by_id(vendor, vendor_id) is not None:
                continue
            key = _unique(_slug(name or vendor_id), taken)
            taken.add(key)
            added.append(Connection(name=key, ids={vendor: vendor_id}, settings=settings or {}))
        return Registry(connections=(*self.connections, *added)), added

    def with_account(self, name: str, vendor: str, vendor_id: str, settings: dict[str, Any]) -> Registry:
        """The registry with the named connection's `vendor` account set to this one, with these settings for its
        resource (the connection added when it is new). An account belongs to one connection."""
        owner = self.by_id(vendor, vendor_id)
        if owner is not None and owner.name != name:
            raise ValueError(f"the {vendor} account {vendor_id} is connection {owner.name!r}'s already")
        current = next((c for c in self.connections if c.name == name), None)
        fields = current.model_dump() if current else {"name": name}
        ids, resources = fields.get("ids", {}), fields.get("settings", {})
        updated = Connection.model_validate(
            {
                **fields,
                "ids": {**ids, vendor: vendor_id},
                "settings": {**resources, vendor: {**resources.get(vendor, {}), **settings}},
            }
        )
        if current is None:
            return Registry(connections=(*self.connections, updated))
        return Registry(connections=tuple(updated if c.name == name else c for c in self.connections))


def _slug(name: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return "-".join(part for part in slug.split("-") if part)[:50] or "connection"


def _unique(key: str, taken: set[str]) -> str:
    n, candidate = 1, key
    while candidate in taken:
        n += 1
        candidate = f"{key}-{n}"
    return candidate


def registry_path() -> Path | None:
    path = os.environ.get(REGISTRY_ENV)
    return Path(path) if path else None


def load_registry(path: Path | None = None) -> Registry | None:
    """The registry, or None when the install has none (or it lists no connection): one connection, unpartitioned."""
    path = path or registry_path()
    if path is None or not path.exists():
        return None
    registry = Registry.model_validate(yaml.safe_load(path.read_text()) or {})
    return registry if registry.connections else None


def save_registry(path: Path, registry: Registry) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    written = path.with_suffix(".tmp")
    written.write_text(yaml.safe_dump(registry.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
    written.replace(path)


def add_xero_organisations(path: Path, organisations: Mapping[str, str | None], token_path: str) -> list[Connection]:
    """Add a connection for each Xero organisation (tenantId to name) the registry at `path` lacks, named after
    it, with the token file its consent was stored in (one consent's organisations share it; another's has its own)."""
    registry = load_registry(path) or Registry()
    updated, added = registry.with_ids("xero", organisations, settings={"xero": {"token_path": token_path}})
    save_registry(path, updated)
    return added


def set_account(path: Path, name: str, vendor: str, vendor_id: str, settings: dict[str, Any]) -> Connection:
    """Give the connection `name` of the registry at `path` this account of `vendor` (adding it when it is new)."""
    registry = (load_registry(path) or Registry()).with_account(name, vendor, vendor_id, settings)
    save_registry(path, registry)
    return registry.connection(name)


def tenant_of(tags: Mapping[str, str]) -> str | None:
    """The connection a run serves, from its partition tags: a tenant-month partition's tenant, or the partition
    (each run of a tenant's assets serves one partition: see `partitioned`)."""
    return tags.get(f"dagster/partition/{TENANT_DIMENSION}") or tags.get("dagster/partition")


def connection_of(run: dg.DagsterRun | None) -> Connection | None:
    """The connection a run serves, when the install has a registry."""
    tenant = tenant_of(run.tags) if run is not None else None
    registry = load_registry() if tenant is not None else None
    return registry.connection(tenant) if registry is not None else None


def shard(database: str, tenant: str) -> str:
    """A connection's staging file: beside the install's, in `tenants/`, so a tenant moves, backs up or goes alone."""
    path = Path(database)
    return str(path.parent / "tenants" / tenant / path.name)


class TenantScoped(dg.ConfigurableResource):
    """A resource a connection's run sees with that connection's settings (the registry's, for its key)."""

    registry_key: ClassVar[str]  # its key in a connection's `settings`
    # For a resource that picks its account by id: (vendor, field), the field a connection's `ids[vendor]` sets.
    account_field: ClassVar[tuple[str, str] | None] = None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if (connection := connection_of(context.run)) is not None:
            self.scope_to(connection)

    def scope_to(self, connection: Connection) -> None:
        """Take the connection's settings. Dagster gives each run its own copy of a resource, so the copy the
        definitions hold (which sensors use) keeps the environment's."""
        for name, value in self.connection_settings(connection).items():
            object.__setattr__(self, name, value)

    def connection_settings(self, connection: Connection) -> dict[str, Any]:
        account = {}
        if self.account_field is not None and (vendor_id := connection.ids.get(self.account_field[0])):
            account = {self.account_field[1]: vendor_id}
        return {**account, **connection.overrides(self.registry_key)}


def partitioned(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The asset, one partition per connection: a monthly backfill window becomes tenant x month, one partition per
    run (a run serves one connection; Dagster's multi-run ranges of a two-dimensional backfill may span several)."""

    def by_tenant(spec: dg.AssetSpec) -> dg.AssetSpec:
        months = spec.partitions_def
        if months is None:
            return spec.replace_attributes(partitions_def=TENANTS)
        return spec.replace_attributes(
            partitions_def=dg.MultiPartitionsDefinition({MONTH_DIMENSION: months, TENANT_DIMENSION: TENANTS})
        )

    mapped = asset.map_asset_specs(by_tenant)
    if asset.backfill_policy is None:
        return mapped
    return mapped.__class__.dagster_internal_init(**{**mapped.get_attributes_dict(), "backfill_policy": None})


# Vendors with a limit per app as well as per tenant, as how many tenants' steps may call them at once: Xero allows
# an app 10,000 calls a minute over all its tenants, and each tenant's step makes at most 60
# (https://developer.xero.com/documentation/guides/oauth2/limits/).
APP_STEPS = {"xero": 10_000 // 60}


@contextmanager
def connection_slots(context: dg.AssetExecutionContext, vendor: str) -> Iterator[None]:
    """Hold the run's connection's slot of the vendor (pool `<vendor>_api/<tenant>`, one step at a time: the vendor's
    limits are per tenant), then one of the app's (`<vendor>_app`, where the vendor limits the app) while a step
    calls the vendor. The instance holds both, so they hold across processes and machines; run monitoring frees them
    with the run's other slots if the run dies. A limit an operator set on either pool is kept."""
    connection = connection_of(context.run)
    if connection is None:
        yield
        return
    pools = [(f"{vendor}_api/{connection.name}", 1)]
    if vendor in APP_STEPS:
        pools.append((f"{vendor}_app", APP_STEPS[vendor]))
    # Dagster's own slot bookkeeping, imported when a step needs it: importing it reads the plugins' entry points.
    from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

    for pool, limit in pools:  # before the slots context reads the pools' limits (else it would set the default)
        _set_limit_once(context.instance.event_log_storage, pool, limit)
    step = context.get_step_execution_context().step.key
    with InstanceConcurrencyContext(context.instance, context.run) as slots:
        held = []
        try:
            for pool, _ in pools:
                claim = f"{step}@{pool}"
                if not slots.claim(pool, claim):
                    context.log.info(f"waiting for a slot of {pool}")
                    while not slots.claim(pool, claim):
                        time.sleep(SLOT_POLL_SECONDS)
                held.append(claim)
            yield
        finally:
            for claim in held:
                slots.free_step(claim)


def _set_limit_once(storage: EventLogStorage, pool: str, limit: int) -> None:
    """Give a pool no one has limited yet its limit. Two processes may do it at once (each first to see it unset):
    the second's insert is refused, and then the pool is there with the same limit."""
    if pool in storage.get_concurrency_keys():
        return
    try:
        storage.set_concurrency_slots(pool, limit)
    except Exception:
        if pool not in storage.get_concurrency_keys():
            raise


# The flow a schedule's runs belong to (lib/flows.py tags them): a connection runs only its flows.
FLOW_TAG = "sync_pipelines/flow"


def fanned_out(schedule: dg.ScheduleDefinition) -> dg.ScheduleDefinition:
    """The schedule, requesting one run per connection that runs its flow (each its own partition), so a
    connection's failure or slowness never holds another's."""
    flow = schedule.tags.get(FLOW_TAG)

    def requests(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        registry = load_registry()
        known = set(context.instance.get_dynamic_partitions(TENANTS.name))
        for connection in registry.connections if registry else ():
            if connection.name in known and (flow is None or connection.runs(flow)):
                yield dg.RunRequest(run_key=connection.name, partition_key=connection.name, tags=schedule.tags)

    return dg.ScheduleDefinition(
        name=schedule.name,
        cron_schedule=schedule.cron_schedule,
        job=schedule.job,
        execution_fn=requests,
        execution_timezone=schedule.execution_timezone,
        description=schedule.description,
        default_status=schedule.default_status,
        tags=schedule.tags,
    )


@dg.sensor(
    name="connections",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps one partition per connection of the registry: a connection added appears, one removed goes.",
)
def connections_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    registry = load_registry()
    names = registry.names if registry else []
    known = context.instance.get_dynamic_partitions(TENANTS.name)
    added, removed = [n for n in names if n not in known], [n for n in known if n not in names]
    requests = [
        *([TENANTS.build_add_request(added)] if added else []),
        *([TENANTS.build_delete_request(removed)] if removed else []),
    ]
    return dg.SensorResult(dynamic_partitions_requests=requests)


def for_tenants(defs: dg.Definitions) -> dg.Definitions:
    """The code location with a partition per connection: every asset partitioned, every schedule fanned out."""
    return dg.Definitions(
        assets=[partitioned(a) if isinstance(a, dg.AssetsDefinition) else a for a in defs.assets or ()],
        asset_checks=defs.asset_checks,
        schedules=[fanned_out(s) if isinstance(s, dg.ScheduleDefinition) else s for s in defs.schedules or ()],
        sensors=[*(defs.sensors or ()), connections_sensor],
        jobs=defs.jobs,
        resources=defs.resources,
        executor=defs.executor,
        loggers=defs.loggers,
        metadata=defs.metadata,
    )
