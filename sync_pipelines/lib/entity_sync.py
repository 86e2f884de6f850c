"""Spec in, assets out: extract -> validated -> delivered for one entity of one flow.

A flow module lists `EntitySyncSpec`s, each naming a `Source` (where records come from), a pandera contract,
and a `Target` (where their changes go); every asset name, table, cursor, check and metadata key is derived
from the spec here. Adding an entity is one spec; adding a vendor is one Source or Target implementation.
"""

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import dagster as dg
import duckdb
import pandas as pd
import pandera.pandas as pa

from sync_pipelines.lib import staging
from sync_pipelines.lib.outbox import deliver_outbox
from sync_pipelines.lib.reconcile import reconcile_entity
from sync_pipelines.lib.staging import OutboxMessage, StagingResource, row_versions
from sync_pipelines.lib.validation import message_refusal, rejected_rows, split_valid
from sync_pipelines.vendors.delivery import Deliveries

# Rows turned into a dataframe at a time: bounds memory on a 100,000-record backfill.
VALIDATION_CHUNK = 20_000
DELIVERY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2), warn_window=timedelta(hours=1))


class QuotaExhausted(Exception):
    """The source's allowance is spent for now: what landed is checkpointed and the run stops cleanly."""

    def __init__(self, retry_after: float | None):
        self.retry_after = retry_after
        super().__init__(f"source quota exhausted; retry after {retry_after} s")


class Source(Protocol):
    """Reads one collection of one vendor incrementally. Its resource is bound under `system`."""

    system: str  # e.g. "xero": names the assets, tables and the resource key
    id_field: str  # the vendor's record id field

    def read(self, resource: Any, cursor: dict | None) -> Iterator[list[dict]]:
        """Pages of records changed since the cursor, oldest first; raises QuotaExhausted to stop cleanly."""
        ...

    def updated_at(self, record: dict) -> datetime | None: ...

    def checkpoint(self, cursor: dict | None, page: list[dict]) -> dict | None:
        """The cursor once this page has landed, or None when it does not move."""
        ...

    def figures(self, resource: Any) -> dict[str, int | float]:
        """API calls, bytes and quota left so far, for the run's metadata."""
        ...


@dataclass(frozen=True)
class Totals:
    """How reconciliation compares money: a JSON path into each delivered payload against staged columns."""

    json_path: str
    amount_column: str
    currency_column: str


class Target(Protocol):
    """Writes staged changes to one vendor, idempotently, with the resources named in `resource_keys`."""

    system: str
    totals: Totals | None
    resource_keys: set[str]

    def stage_changes(
        self,
        conn: duckdb.DuckDBPyConnection,
        *,
        name: str,
        source: str,
        key: str,
        changed: pd.DataFrame,
        previous: pd.DataFrame,
    ) -> list[OutboxMessage]:
        """The writes these changes call for, each with a deterministic idempotency key."""
        ...

    def deliver(self, resources: Any, payloads: list[dict], deliveries: Deliveries) -> None:
        """Send the payloads, each outcome in `deliveries.report(system)` per destination system (the audit log
        names where each message went); those in `deliveries.resending` may have gone before."""
        ...

    def figures(self, resources: Any) -> dict[str, int | float]: ...


@dataclass(frozen=True)
class EntitySyncSpec:
    """One entity of one flow: where it comes from, the contract it must meet, where it goes."""

    flow: str  # e.g. "xero_to_segment": the asset group and the outbox partition
    entity: str  # e.g. "invoices"
    source: Source
    contract: type[pa.DataFrameModel]
    key: str  # the contract column that identifies a record
    flatten: Callable[[dict], dict]  # vendor record -> contract row
    # None stages a lookup other entities read (e.g. invoice lines), with no delivered asset of its own.
    target: Target | None
    description: str  # business meaning, shown in the UI
    quarantine_threshold: float = 0.2  # share of a batch; above it delivery is blocked for a human to look
    # Delivered data older than this is stale for the people relying on it: the UI flags it.
    freshness: dg.FreshnessPolicy = DELIVERY_FRESHNESS
    # Assets the target reads while staging changes, e.g. the target's own records to match against.
    upstream: tuple[dg.AssetKey, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.source.system}_{self.entity}"

    @property
    def raw_key(self) -> dg.AssetKey:
        return dg.AssetKey([self.source.system, "raw", self.entity])

    @property
    def staged_key(self) -> dg.AssetKey:
        return dg.AssetKey([self.source.system, "staged", self.entity])

    @property
    def delivered_key(self) -> dg.AssetKey | None:
        return dg.AssetKey([self.target.system, self.name]) if self.target else None

    @property
    def table(self) -> str:
        return f"stg_{self.name}"


# How a flow module lists its entities: entity -> (description, source, (contract, key column, flatten)).
Entities = Mapping[str, tuple[str, Source, tuple[type[pa.DataFrameModel], str, Callable[[dict], dict]]]]


def flow_specs(
    flow: str,
    entities: Entities,
    target_of: Callable[[str], Target | None],
    after: Mapping[str, tuple[str, ...]] | None = None,
    **options: Any,
) -> list[EntitySyncSpec]:
    """One spec per listed entity, its target made by `target_of(entity)`; `options` apply to every spec.

    `after` names, per entity, the entities of this flow whose last step (delivery, or staging for a lookup)
    must be done before it is staged: e.g. a deal is invoiced to its account's contact once that is written.
    """
    specs = [
        EntitySyncSpec(
            flow=flow,
            entity=entity,
            description=description,
            source=source,
            contract=contract,
            key=key,
            flatten=flatten,
            target=target_of(entity),
            **options,
        )  # fmt: skip
        for entity, (description, source, (contract, key, flatten)) in entities.items()
    ]
    last_step = {spec.entity: spec.delivered_key or spec.staged_key for spec in specs}
    return [
        replace(spec, upstream=(*spec.upstream, *(last_step[e] for e in (after or {}).get(spec.entity, ()))))
        for spec in specs
    ]


@dataclass
class BatchOutcome:
    """What staging one batch of landed records did, summed over a run for its metadata."""

    processed: int = 0
    changed: int = 0
    quarantined: int = 0
    enqueued: int = 0
    failing_fields: Counter = field(default_factory=Counter)

    def __iadd__(self, other: "BatchOutcome") -> "BatchOutcome":
        self.processed += other.processed
        self.changed += other.changed
        self.quarantined += other.quarantined
        self.enqueued += other.enqueued
        self.failing_fields += other.failing_fields
        return self


def stage_batch(
    conn: duckdb.DuckDBPyConnection, spec: EntitySyncSpec, landed: pd.DataFrame, run_id: str
) -> BatchOutcome:
    """Validate landed records, quarantine the failures, stage the changes and queue their messages.

    Whatever a record holds, it ends staged or quarantined with a reason: one its flatten cannot read, one that
    fails the contract and one calling for a message its target would refuse are quarantined; the rest go on.
    Runs inside the caller's transaction, so the state, the outbox and the cursor move together.
    """
    frame, unreadable = _flatten_each(spec, landed)
    valid, rejected = split_valid(frame, spec.contract)
    # Overlap re-reads and several versions in one batch: the latest valid version wins, judged after validation
    # so that a broken later version neither hides an earlier good one nor escapes quarantine itself.
    valid = valid.drop_duplicates(spec.key, keep="last")
    valid = valid.assign(content_hash=row_versions(valid))
    previous = staging.current_state(conn, spec.table, spec.key, valid[spec.key].tolist())
    if not previous.empty:
        known = dict(zip(previous[spec.key], previous["content_hash"], strict=True))
        valid = valid[[known.get(k) != h for k, h in zip(valid[spec.key], valid["content_hash"], strict=True)]]
        valid = _drop_stale(conn, spec, valid, previous, run_id)
    messages = (
        spec.target.stage_changes(
            conn, name=spec.name, source=spec.source.system, key=spec.key, changed=valid, previous=previous
        )
        if spec.target
        else []
    )
    valid, messages, refused = _refuse_what_the_target_would(spec, valid, messages)
    staging.upsert_state(conn, spec.table, spec.key, valid.assign(staged_at=staging.utcnow()))
    rejected = pd.concat([unreadable, rejected, refused])
    # The id as landed (text, or NULL): what reconciliation counts the source's records by.
    landed_ids = dict(zip(landed["seq"], landed["record_id"], strict=True))
    staging.quarantine_rows(
        conn, source=spec.source.system, entity=spec.entity, run_id=run_id,
        rows=rejected.assign(record_id=[landed_ids[seq] for seq in rejected.index], landing_seq=rejected.index),
    )  # fmt: skip
    # A batch that mostly fails its contract says the source changed shape: hold even its good rows for a person.
    held = len(rejected) > spec.quarantine_threshold * len(landed)
    enqueued = staging.enqueue(conn, flow=spec.flow, entity=spec.entity, messages=messages, run_id=run_id, held=held)
    failing_fields = Counter(reason.split(":")[0] for reasons in rejected["reasons"] for reason in reasons.split("; "))
    return BatchOutcome(len(landed), len(valid), len(rejected), enqueued, failing_fields)


def _flatten_each(spec: EntitySyncSpec, landed: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contract rows by landing sequence, and the records a flatten could not read (a list where an object
    belongs, ...), quarantined with its error as the reason instead of failing the batch.

    The rows keep Python values (dtype object), so the contract tells a missing value (None) from NaN.
    """
    rows: dict[int, dict] = {}
    reasons: dict[int, list[str]] = {}
    unreadable: dict[int, object] = {}
    for seq, payload in zip(landed["seq"], landed["payload"], strict=True):
        record = json.loads(payload)
        if staging.UNLANDABLE in record:
            reasons[seq], unreadable[seq] = [f"record: {record[staging.UNLANDABLE]}"], record
            continue
        try:
            rows[seq] = spec.flatten(record)
        except Exception as error:  # no record, whatever it holds, may stop the others
            reasons[seq], unreadable[seq] = [f"record: {type(error).__name__}: {error}"], record
    columns = None if rows else list(spec.contract.to_schema().columns)
    frame = pd.DataFrame(list(rows.values()), index=pd.Index(list(rows), dtype="int64"), columns=columns, dtype=object)
    return frame, rejected_rows(reasons, unreadable)


def _refuse_what_the_target_would(
    spec: EntitySyncSpec, valid: pd.DataFrame, messages: list[OutboxMessage]
) -> tuple[pd.DataFrame, list[OutboxMessage], pd.DataFrame]:
    """(rows to stage, messages to queue, rows to quarantine): a record whose message the target would refuse
    (not strict JSON, over the target's `max_message_bytes`, a field over its `field_lengths`) is quarantined now
    rather than dead-lettered later, and none of its messages go.

    A message names its record, or another one the changed rows name (an invoice's customer, identified): then
    the rows naming it are the ones refused. A refused message naming no changed row is left to the target's
    delivery, where it is dead-lettered with the target's own reason.
    """
    limits = {"max_bytes": getattr(spec.target, "max_message_bytes", None),
              "field_lengths": getattr(spec.target, "field_lengths", None)}  # fmt: skip
    refusals = [(m, why) for m in messages if (why := message_refusal(m.payload, **limits)) is not None]
    if not refusals:
        return valid, messages, rejected_rows({}, {})
    row_of = dict(zip(valid[spec.key], valid.index, strict=True))
    as_text = valid.drop(columns="content_hash").astype(str)

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
    refused_ids = {valid.at[index, spec.key] for index in reasons}
    kept = [m for m in messages if m.message_id not in dropped and m.record_id not in refused_ids]
    refused = valid.loc[list(reasons)].drop(columns="content_hash")
    return valid.drop(index=list(reasons)), kept, rejected_rows(reasons, refused.to_dict("index"))


def _drop_stale(
    conn: duckdb.DuckDBPyConnection, spec: EntitySyncSpec, valid: pd.DataFrame, previous: pd.DataFrame, run_id: str
) -> pd.DataFrame:
    """Versions older, by the source's own timestamp, than the one staged (a late webhook or an overlap re-read
    arriving after a newer version) do not overwrite it; the audit log keeps both timestamps."""
    if "updated_at" not in valid.columns or "updated_at" not in previous.columns or valid.empty:
        return valid
    staged_at = dict(zip(previous[spec.key], previous["updated_at"], strict=True))
    arrived = zip(valid[spec.key], valid["updated_at"], strict=True)
    stale = [pd.notna(staged_at.get(k)) and t < staged_at[k] for k, t in arrived]
    dropped = valid[stale]
    staging.audit(
        conn, flow=spec.flow, entity=spec.entity, action="stale", target="staging", run_id=run_id,
        entries=[(str(k), "kept staged", {"staged_updated_at": staged_at[k], "arrived_updated_at": t})
                 for k, t in zip(dropped[spec.key], dropped["updated_at"], strict=True)],
    )  # fmt: skip
    return valid[[not s for s in stale]]


def _updated_at(source: Source, record: object) -> datetime | None:
    """The record's own change time, or None when it holds none that can be read (it lands all the same, and
    its contract judges it)."""
    try:
        stamp = source.updated_at(record)
        if stamp is not None:
            pd.Timestamp(stamp)  # within what the landing table's timestamps hold (1677-2262)
        return stamp
    except (AttributeError, TypeError, ValueError, OverflowError, OSError):
        return None


def build_entity_sync(spec: EntitySyncSpec) -> dg.Definitions:
    """The extract, validated and delivered assets of one entity, with their checks."""
    source, target = spec.source, spec.target

    @dg.asset(
        key=spec.raw_key,
        group_name=spec.flow,
        kinds={source.system, "duckdb"},
        description=f"{spec.description} as {source.system} returned them, landed unchanged, incrementally.",
        required_resource_keys={source.system, "staging_db"},
        # One extract per vendor at a time where the instance limits the pool: the vendor's rate limits are
        # per tenant, and each step's client only sees its own calls.
        pool=f"{source.system}_api",
    )
    def extract(context: dg.AssetExecutionContext):
        started = time.monotonic()
        vendor, staging_db = getattr(context.resources, source.system), context.resources.staging_db
        cursor_name = f"{spec.name}.extract"
        with staging_db.connect() as conn:
            cursor = staging.read_cursor(conn, cursor_name)
        fetched = landed = 0
        quota_exhausted = False
        try:
            for page in source.read(vendor, cursor):
                fetched += len(page)
                with staging_db.connect() as conn:
                    # The page and the cursor that covers it move together: a stop anywhere resumes here.
                    conn.execute("BEGIN TRANSACTION")
                    landed += staging.land_raw(
                        conn, source=source.system, entity=spec.entity, records=page, id_field=source.id_field,
                        updated_at=[_updated_at(source, record) for record in page], run_id=context.run.run_id,
                    )  # fmt: skip
                    moved = source.checkpoint(cursor, page)
                    if moved is not None:
                        cursor = moved
                        staging.write_cursor(conn, cursor_name, cursor)
                    conn.execute("COMMIT")
        except QuotaExhausted as stop:
            quota_exhausted = True
            context.log.warning(f"{source.system} quota spent; resume after {stop.retry_after}s from the checkpoint")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": landed,
                "rows_fetched": fetched,
                **source.figures(vendor),
                "seconds": round(time.monotonic() - started, 3),
                "quota_exhausted": quota_exhausted,
                "cursor": json.dumps(cursor),
            }
        )

    quarantine_check = dg.AssetCheckSpec(
        "quarantine_rate",
        asset=spec.staged_key,
        blocking=True,
        description=(
            f"Blocks delivery when more than {spec.quarantine_threshold:.0%} of a batch fails the contract; "
            "that batch's changes are held until `sync-pipelines release`."
        ),
    )
    unique_check = dg.AssetCheckSpec(
        "unique_keys", asset=spec.staged_key, blocking=True, description=f"One staged row per {spec.key}."
    )

    @dg.asset(
        key=spec.staged_key,
        deps=[spec.raw_key, *spec.upstream],
        group_name=spec.flow,
        kinds={"pandera", "duckdb"},
        description=(
            f"{spec.description}: current state, validated against the {spec.contract.__name__} contract; "
            "rows that fail it are quarantined with reasons and the rest go on."
        ),
        check_specs=[quarantine_check, unique_check],
    )
    def validated(context: dg.AssetExecutionContext, staging_db: StagingResource):
        started = time.monotonic()
        cursor_name = f"{spec.name}.validated"
        totals = BatchOutcome()
        while True:
            with staging_db.connect() as conn:
                after = (staging.read_cursor(conn, cursor_name) or {"seq": 0})["seq"]
                landed = staging.unprocessed_landing(
                    conn, source=source.system, entity=spec.entity, after_seq=after, limit=VALIDATION_CHUNK
                )
                if landed.empty:
                    break
                conn.execute("BEGIN TRANSACTION")
                totals += stage_batch(conn, spec, landed, context.run.run_id)
                staging.write_cursor(conn, cursor_name, {"seq": int(landed["seq"].max())})
                conn.execute("COMMIT")
        with staging_db.connect() as conn:
            duplicates = staging.duplicate_keys(conn, spec.table, spec.key)
        rate = totals.quarantined / totals.processed if totals.processed else 0.0
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": totals.changed,
                "rows_processed": totals.processed,
                "rows_quarantined": totals.quarantined,
                "messages_enqueued": totals.enqueued,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        yield dg.AssetCheckResult(
            check_name="quarantine_rate",
            passed=rate <= spec.quarantine_threshold,
            metadata={
                "quarantined": totals.quarantined,
                "processed": totals.processed,
                "rate": rate,
                "by_field": dict(totals.failing_fields),
            },
        )
        yield dg.AssetCheckResult(check_name="unique_keys", passed=duplicates == 0, metadata={"duplicates": duplicates})

    if target is None:
        return dg.Definitions(assets=[extract, validated])

    reconciliation_check = dg.AssetCheckSpec(
        "reconciliation",
        asset=spec.delivered_key,
        description="Every staged change was delivered exactly once and delivered totals equal staged totals.",
    )

    @dg.asset(
        key=spec.delivered_key,
        deps=[spec.staged_key],
        group_name=spec.flow,
        kinds={target.system},
        description=f"{spec.description} delivered to {target.system}, each change exactly once.",
        required_resource_keys={*target.resource_keys, "staging_db"},
        check_specs=[reconciliation_check],
        freshness_policy=spec.freshness,
    )
    def delivered(context: dg.AssetExecutionContext):
        started = time.monotonic()
        figures = deliver_outbox(context, flow=spec.flow, entity=spec.entity, source=source.system, target=target)
        with context.resources.staging_db.connect() as conn:
            result = reconcile_entity(conn, spec=spec, run_id=context.run.run_id)
        yield dg.MaterializeResult(metadata={**figures, "seconds": round(time.monotonic() - started, 3)})
        yield dg.AssetCheckResult(check_name="reconciliation", passed=result.ok, metadata=result.as_metadata())

    return dg.Definitions(assets=[extract, validated, delivered])
