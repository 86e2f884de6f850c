"""A delivery: one staged entity's changes, read from its change feed, made into a target's writes and sent.

A flow is a list of deliveries. Each keeps its own cursor on the entity's feed, derives the messages for the
changes it has not seen, queues them in its own outbox partition and sends them; so one staged entity feeds any
number of deliveries, and a delivery that fails, or is added later, touches neither staging nor the others.
"""

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Literal, Protocol

import dagster as dg
import duckdb
import pandas as pd

from sync_pipelines.lib import staging
from sync_pipelines.lib.entities import OWNERS, Entity
from sync_pipelines.lib.migration import planned_writes, report_metadata
from sync_pipelines.lib.outbox import deliver_outbox
from sync_pipelines.lib.reconcile import failure_reasons, reconcile_delivery
from sync_pipelines.lib.resources import with_resource_parameters
from sync_pipelines.lib.staging import DRY_RUN_TAG, OutboxMessage, StagingResource
from sync_pipelines.lib.validation import message_refusal, rejected_rows
from sync_pipelines.vendors.delivery import Deliveries

DELIVERY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2), warn_window=timedelta(hours=1))


@dataclass(frozen=True)
class Totals:
    """How reconciliation compares money: a JSON path into each delivered payload against staged columns."""

    json_path: str
    amount_column: str
    currency_column: str


@dataclass(frozen=True)
class Changes:
    """One feed batch as a target sees it: the entity's new versions, the versions they replaced, and where the
    target keeps what it remembers of earlier writes (identities, bodies)."""

    entity: Entity
    changed: pd.DataFrame
    previous: pd.DataFrame
    namespace: str


class Target(Protocol):
    """Writes staged changes to one vendor, idempotently, with the resources it names (by key, with their type)."""

    system: str
    totals: Totals | None
    resources: Mapping[str, type[dg.ConfigurableResource]]

    def messages_for(self, conn: duckdb.DuckDBPyConnection, changes: Changes) -> list[OutboxMessage]:
        """The writes these changes call for, each with a deterministic idempotency key."""
        ...

    def deliver(self, resources: SimpleNamespace, payloads: list[dict], deliveries: Deliveries) -> None:
        """Send the payloads, each outcome in `deliveries.report(system)` per destination system (the audit log
        names where each message went); those in `deliveries.resending` may have gone before."""
        ...

    def figures(self, resources: SimpleNamespace) -> dict[str, int | float]: ...


@dataclass(frozen=True)
class Delivery:
    """One staged entity's changes to one target, within a flow."""

    flow: str  # e.g. "xero_to_segment": its outbox partition with `name`, and its asset group
    entity: Entity
    target: Target
    name: str = ""  # the delivery within its flow; the entity's name when empty
    # What the target remembers of its writes (Segment identities, Xero contact bodies) is kept under this; the
    # entity's label when empty. Two deliveries of one entity to one kind of target need their own.
    namespace: str = ""
    # Staged entities read while deriving beyond those the target names in its `reads` (Xero's contacts to match
    # against, a deal's products): their staged assets come first.
    reads: tuple[Entity, ...] = ()
    # Other deliveries of the flow, by name, whose writes must have gone first (a deal's invoice to its account's
    # contact).
    after: tuple[str, ...] = ()
    # Where a delivery with no cursor yet starts on the feed: every version staged so far, or only what comes next.
    start: Literal["beginning", "now"] = "beginning"
    freshness: dg.FreshnessPolicy = DELIVERY_FRESHNESS

    @property
    def partition(self) -> str:
        """The outbox's entity column: the delivery's name within its flow."""
        return self.name or self.entity.name

    @property
    def memory(self) -> str:
        """Where the target keeps what it remembers of this delivery's writes."""
        return self.namespace or self.entity.label

    @property
    def key(self) -> dg.AssetKey:
        name = self.name or f"{self.entity.label}_to_{self.target.system}"
        return dg.AssetKey([self.target.system, name])

    @property
    def label(self) -> str:
        """e.g. "xero_to_segment/invoices": how quarantine and the cursors name the delivery."""
        return f"{self.flow}/{self.partition}"


@dataclass(frozen=True)
class Derived:
    changes: int  # new versions read from the feed
    enqueued: int
    refused: int  # changed records quarantined because the target would refuse their messages


def derive(conn: duckdb.DuckDBPyConnection, delivery: Delivery, run_id: str) -> Derived:
    """Queue the messages for the feed's batches this delivery has not seen, batch by batch, each batch with the
    cursor that covers it in one transaction."""
    entity, changes, enqueued, refused = delivery.entity, 0, 0, 0
    cursor_name = f"{delivery.label}.feed"
    cursor = staging.read_cursor(conn, cursor_name)
    if cursor is None:
        cursor = {"batch": 0 if delivery.start == "beginning" else staging.feed_end(conn, entity.feed)}
        staging.write_cursor(conn, cursor_name, cursor)
    for batch in staging.feed_batches(conn, entity.feed, after=cursor["batch"]):
        conn.execute("BEGIN TRANSACTION")
        changed = without_echoes(conn, delivery, entity.contract.to_schema().coerce_dtype(batch.changed))
        messages = delivery.target.messages_for(conn, Changes(entity, changed, batch.replaced, delivery.memory))
        messages, rejected = refuse_what_the_target_would(delivery, changed, messages)
        staging.quarantine_rows(
            conn, source=entity.vendor, entity=entity.name, run_id=run_id, delivery=delivery.label,
            rows=rejected.assign(record_id=[changed.at[seq, entity.key] for seq in rejected.index],
                                 landing_seq=rejected.index),
        )  # fmt: skip
        enqueued += staging.enqueue(
            conn, flow=delivery.flow, entity=delivery.partition, messages=messages, run_id=run_id, held=batch.held
        )
        staging.write_cursor(conn, cursor_name, {"batch": batch.batch})
        conn.execute("COMMIT")
        changes, refused = changes + len(changed), refused + len(rejected)
    return Derived(changes, enqueued, refused)


def without_echoes(conn: duckdb.DuckDBPyConnection, delivery: Delivery, changed: pd.DataFrame) -> pd.DataFrame:
    """The changes that are not the echo of a write a flow from the delivery's target made: a Xero contact that
    segment_to_xero wrote does not go back to Segment, yet a person edits it after and that change does."""
    entity = delivery.entity
    if changed.empty:
        return changed
    versions = list(
        zip(changed[entity.key].astype(str), map(staging.version_text, changed[entity.version]), strict=True)
    )
    echoes = staging.own_versions(conn, system=entity.vendor, source=delivery.target.system, versions=versions)
    return changed[[version not in echoes for version in versions]] if echoes else changed


def refuse_what_the_target_would(
    delivery: Delivery, changed: pd.DataFrame, messages: list[OutboxMessage]
) -> tuple[list[OutboxMessage], pd.DataFrame]:
    """(messages to queue, rows to quarantine): a record whose message the target would refuse (not strict JSON,
    over the target's `max_message_bytes`, a field over its `field_lengths`) is quarantined for this delivery
    rather than dead-lettered later, and none of its messages go.

    A message names its record, or another one the changed rows name (an invoice's customer, identified): then
    the rows naming it are the ones refused. A refused message naming no changed row is left to the target's
    delivery, where it is dead-lettered with the target's own reason.
    """
    target, key = delivery.target, delivery.entity.key
    limits = {"max_bytes": getattr(target, "max_message_bytes", None),
              "field_lengths": getattr(target, "field_lengths", None)}  # fmt: skip
    refusals = [(m, why) for m in messages if (why := message_refusal(m.payload, **limits)) is not None]
    if not refusals:
        return messages, rejected_rows({}, {})
    row_of = dict(zip(changed[key], changed.index, strict=True))
    as_text = changed.drop(columns=["content_hash", "staged_at"], errors="ignore").astype(str)

    def rows_naming(record_id: str | None) -> list[int]:
        if record_id in row_of:
            return [row_of[record_id]]
        return [] if record_id is None else list(as_text.index[(as_text == record_id).any(axis=1)])

    reasons: dict[int, list[str]] = {}
    dropped: set[str] = set()
    for message, why in refusals:
        for index in rows_naming(message.record_id):
            reasons.setdefault(index, []).append(f"{why} ({message.kind} {message.message_id})")
            dropped.add(message.message_id)
    refused_ids = {changed.at[index, key] for index in reasons}
    kept = [m for m in messages if m.message_id not in dropped and m.record_id not in refused_ids]
    refused = changed.loc[list(reasons)].drop(columns=["content_hash", "staged_at"], errors="ignore")
    return kept, rejected_rows(reasons, refused.to_dict("index"))


def mapping_version(target: Target) -> str | None:
    """A hash of the target's mapping (None for a target without one)."""
    mapping = getattr(target, "mapping", None)
    return staging.content_hash(mapping.model_dump(mode="json"))[:12] if mapping is not None else None


def delivered_asset(delivery: Delivery, deps: Sequence[dg.AssetKey] = ()) -> dg.AssetsDefinition:
    """The delivery's asset: derive its messages from the feed, send them, reconcile; after `deps`."""
    entity, target = delivery.entity, delivery.target
    reconciliation_check = dg.AssetCheckSpec(
        "reconciliation",
        asset=delivery.key,
        description="Every staged change was delivered exactly once and delivered totals equal staged totals.",
    )

    def delivered(context: dg.AssetExecutionContext, **resources: dg.ConfigurableResource):
        started, resources = time.monotonic(), SimpleNamespace(**resources)
        with resources.staging_db.connect() as conn:
            derived = derive(conn, delivery, context.run.run_id)
        if context.run.tags.get(DRY_RUN_TAG) == "true":
            # A preview, in a scratch copy of the staging store: the writes are rehearsed and reported, none sent.
            deliver_outbox(
                context, resources, flow=delivery.flow, entity=delivery.partition, source=entity.vendor, target=target
            )
            with resources.staging_db.connect() as conn:
                writes = planned_writes(conn, flow=delivery.flow, entity=delivery.partition, run_id=context.run.run_id)
            preview = resources.staging_db.preview
            report = preview / f"{delivery.flow}.{delivery.partition}.jsonl" if preview else None
            metadata = {"changes_read": derived.changes, "rows_refused": derived.refused}
            yield dg.MaterializeResult(metadata={**metadata, **report_metadata(writes, target.system, report)})
            yield dg.AssetCheckResult(check_name="reconciliation", passed=True, metadata={"dry_run": "nothing sent"})
            return
        figures = deliver_outbox(
            context, resources, flow=delivery.flow, entity=delivery.partition, source=entity.vendor, target=target
        )
        with resources.staging_db.connect() as conn:
            result = reconcile_delivery(conn, delivery=delivery, run_id=context.run.run_id)
            reasons = [] if result.ok else failure_reasons(conn, delivery=delivery, result=result)
        yield dg.MaterializeResult(
            metadata={
                **figures,
                "changes_read": derived.changes,
                "messages_enqueued": derived.enqueued,
                "rows_refused": derived.refused,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        metadata = {**result.as_metadata(), **({"reasons": staging.reasons_table(reasons)} if reasons else {})}
        yield dg.AssetCheckResult(check_name="reconciliation", passed=result.ok, metadata=metadata)

    return dg.asset(
        with_resource_parameters(delivered, {**target.resources, "staging_db": StagingResource}),
        key=delivery.key,
        deps=[entity.staged_key, *(e.staged_key for e in (*getattr(target, "reads", ()), *delivery.reads)), *deps],
        group_name=delivery.flow,
        kinds={target.system},
        description=f"{entity.description} delivered to {target.system}, each change exactly once.",
        check_specs=[reconciliation_check],
        freshness_policy=delivery.freshness,
        owners=OWNERS,
        tags={"layer": "delivery", "target": target.system},
        # The mapping is what a delivery's writes follow: a change to it shows as a new code version in the UI.
        code_version=mapping_version(target),
        metadata={"dagster/table_name": "outbox"},
    )
