"""What a vendor's entity is, and the two assets every entity gets: landed raw, then validated and staged.

A vendor package lists its `Entity`s (where the records come from, the contract they must meet); every asset
name, table, cursor and check is derived from the entity here. Staging appends each new version of a record, and
the version it replaced, to the entity's change feed, which any number of deliveries (lib/deliveries.py) read.
"""

import gc
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import dagster as dg
import duckdb
import pandas as pd
import pandera.pandas as pa
from pydantic import Field

from sync_pipelines.lib import alerts, json_codec, staging
from sync_pipelines.lib.resources import with_resource_parameters
from sync_pipelines.lib.staging import StagingResource, row_versions
from sync_pipelines.lib.tenants import connection_slots, load_registry
from sync_pipelines.lib.validation import rejected_rows, split_valid

# Landed rows validated and staged at a time, in one transaction: bounds a step's memory however many are waiting,
# while each chunk's checkpoint (which rewrites the tables' last, partly filled row groups) is paid rarely.
VALIDATION_CHUNK = 50_000
# Pages read are landed together, in one connection and transaction, once they hold this many rows or this many
# seconds have passed: each landing ends with a checkpoint, so fewer, larger landings cost less. A landing runs in
# a thread of its own while the next pages are read; 25,000 rows of landing frames (their JSON text) are ~35 MB.
LANDING_ROWS = 25_000
LANDING_SECONDS = 5.0


class QuotaExhausted(Exception):
    """The source's allowance is spent for now: what landed is checkpointed and the run stops cleanly."""

    def __init__(self, retry_after: float | None):
        self.retry_after = retry_after
        super().__init__(f"source quota exhausted; retry after {retry_after} s")


class Source(Protocol):
    """Reads one collection of one vendor incrementally, with that vendor's resource."""

    id_field: str  # the vendor's record id field
    webhook_category: str | None  # the vendor's webhook events that say this collection changed, if any

    def read(self, resource: Any, cursor: dict | None) -> Iterator[list[dict]]:
        """Pages of records changed since the cursor, oldest first; raises QuotaExhausted to stop cleanly."""
        ...

    def updated_at(self, record: dict) -> datetime | None: ...

    def checkpoint(self, cursor: dict | None, page: list[dict], stamps: list[datetime | None]) -> dict | None:
        """The cursor once this page has landed, or None when it does not move; `stamps` are the page's records'
        `updated_at`, read once as they landed."""
        ...

    def figures(self, resource: Any) -> dict[str, int | float]:
        """API calls, bytes and quota left so far, for the run's metadata."""
        ...


@runtime_checkable
class SizeAwareSource(Source, Protocol):
    """A source whose full read goes faster told about how many records it will find (Xero: pages at once)."""

    def read_all(self, resource: Any, expected_rows: int) -> Iterator[list[dict]]:
        """Every record, oldest first, about `expected_rows` of them."""
        ...


class WindowSource(Source, Protocol):
    """A source that can also re-read a window of history, for backfills."""

    def read_window(self, resource: Any, start: datetime, end: datetime) -> Iterator[list[dict]]:
        """Pages of the records whose change time is in [start, end), oldest first, at the largest page size."""
        ...


def within(pages: Iterable[list[dict]], source: Source, start: datetime, end: datetime) -> Iterator[list[dict]]:
    """The part of each page, read oldest first from `start`, inside [start, end); stops reading at the first record
    at or after `end`, so a window costs the pages it spans and no more."""
    for page in pages:
        stamps = [_updated_at(source, record) for record in page]
        inside = [r for r, t in zip(page, stamps, strict=True) if t is not None and start <= t < end]
        if inside:
            yield inside
        if any(t is not None and t >= end for t in stamps):
            return


# What a backfill picks: months of changes, by each record's own change time (Xero's UpdatedDateUTC, Salesforce's
# SystemModstamp, Intercom's updated_at), the one date every collection has and the one each API reads in order.
BACKFILL_MONTHS = dg.MonthlyPartitionsDefinition(start_date="2015-01-01", end_offset=1)
# A year of months per run: one window read at the largest page size rather than twelve, still resumable by year.
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=12)
BACKFILL_TAG = "sync_pipelines/backfill"
# The backfill assets, which only a backfill (a partition range) materialises: every sync selection leaves them out.
BACKFILLS = dg.AssetSelection.tag(BACKFILL_TAG, "window")


def vendor_pool(vendor: str) -> str | None:
    """The pool of a vendor's extracts: one at a time, the vendor's limits being per tenant. With several
    connections, none: each step holds its connection's and the app's slots instead (tenants.connection_slots)."""
    return None if load_registry() is not None else f"{vendor}_api"


# Who answers for the assets in the UI's catalog (Dagster owners: "team:<name>" or an email).
OWNERS = ["team:data"]


def column_schema(contract: type[pa.DataFrameModel]) -> dg.TableSchema:
    """The contract's columns as the UI's Columns tab shows them: type, nullable, unique, description."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                str(column.dtype),
                column.description or "",
                dg.TableColumnConstraints(nullable=column.nullable, unique=column.unique),
            )  # fmt: skip
            for name, column in contract.to_schema().columns.items()
        ]
    )


def contract_version(contract: type[pa.DataFrameModel]) -> str:
    """A code version that moves when the contract does, so the UI marks what was staged under an older one."""
    return staging.content_hash(repr(contract.to_schema()))[:12]


@dataclass(frozen=True)
class Entity:
    """One kind of record of one vendor: where it comes from, the contract it must meet, how it is staged."""

    vendor: str  # e.g. "xero": the asset group, the key prefix and the landing's source
    name: str  # e.g. "invoices"
    description: str  # business meaning, shown in the UI
    source: Source
    contract: type[pa.DataFrameModel]
    key: str  # the contract column that identifies a record
    flatten: Callable[[dict], dict]  # vendor record -> contract row
    quarantine_threshold: float = 0.2  # share of a batch; above it the batch's changes are held for a person
    # The contract column telling one version of a record from the next: what an echo of our own write is known by.
    version: str = "updated_at"

    @property
    def label(self) -> str:
        """e.g. "xero_invoices": names the tables and cursors, and tells the entity apart from other vendors'."""
        return f"{self.vendor}_{self.name}"

    @property
    def raw_key(self) -> dg.AssetKey:
        """The extract: records as the vendor returned them."""
        return dg.AssetKey([self.vendor, f"landed_{self.label}"])

    @property
    def backfill_key(self) -> dg.AssetKey:
        """A window of history re-read on demand: partitioned by month, for the UI's backfills."""
        return dg.AssetKey([self.vendor, f"backfill_{self.label}"])

    @property
    def extract_cursor(self) -> str:
        """Where the incremental extract has got to, in the staging store's cursors."""
        return f"{self.label}.extract"

    @property
    def backfills(self) -> bool:
        return callable(getattr(self.source, "read_window", None))

    @property
    def staged_key(self) -> dg.AssetKey:
        """The current state: each record's latest valid version."""
        return dg.AssetKey([self.vendor, f"staged_{self.label}"])

    @property
    def table(self) -> str:
        """The staged table, read by matching and reconciliation."""
        return f"stg_{self.label}"

    @property
    def feed(self) -> str:
        """Each staged version and the one it replaced, in batches, for the deliveries."""
        return f"feed_{self.label}"


@dataclass
class BatchOutcome:
    """What staging one batch of landed records did, summed over a run for its metadata."""

    processed: int = 0
    changed: int = 0
    quarantined: int = 0
    failing_fields: Counter = field(default_factory=Counter)

    def __iadd__(self, other: "BatchOutcome") -> "BatchOutcome":
        self.processed += other.processed
        self.changed += other.changed
        self.quarantined += other.quarantined
        self.failing_fields += other.failing_fields
        return self


def stage_batch(conn: duckdb.DuckDBPyConnection, entity: Entity, landed: pd.DataFrame, run_id: str) -> BatchOutcome:
    """Validate landed records, quarantine the failures, stage the changes and append them to the change feed.

    Whatever a record holds, it ends staged or quarantined with a reason: one its flatten cannot read and one that
    fails the contract are quarantined; the rest go on. Runs inside the caller's transaction, so the state, the
    feed and the cursor move together.
    """
    frame, unreadable = _flatten_each(entity, landed)
    valid, rejected = split_valid(frame, entity.contract)
    # Overlap re-reads and several versions in one batch: the latest valid version wins, judged after validation
    # so that a broken later version neither hides an earlier good one nor escapes quarantine itself.
    valid = valid.drop_duplicates(entity.key, keep="last")
    valid = valid.assign(content_hash=row_versions(valid))
    previous = staging.current_state(conn, entity.table, entity.key, valid[entity.key].tolist())
    if not previous.empty:
        known = dict(zip(previous[entity.key], previous["content_hash"], strict=True))
        valid = valid[[known.get(k) != h for k, h in zip(valid[entity.key], valid["content_hash"], strict=True)]]
        valid = _drop_stale(conn, entity, valid, previous, run_id)
        previous = previous[previous[entity.key].isin(valid[entity.key])]
    rejected = pd.concat([unreadable, rejected])
    # A batch that mostly fails its contract says the source changed shape: hold even its good rows for a person.
    held = len(rejected) > entity.quarantine_threshold * len(landed)
    valid = valid.assign(staged_at=staging.utcnow())
    staging.append_to_feed(conn, entity.feed, valid, previous, held=held)
    staging.upsert_state(conn, entity.table, entity.key, valid)
    # The id as landed (text, or NULL): what reconciliation counts the source's records by.
    landed_ids = dict(zip(landed["seq"], landed["record_id"], strict=True))
    staging.quarantine_rows(
        conn, source=entity.vendor, entity=entity.name, run_id=run_id,
        rows=rejected.assign(record_id=[landed_ids[seq] for seq in rejected.index], landing_seq=rejected.index),
    )  # fmt: skip
    failing_fields = Counter(reason.split(":")[0] for reasons in rejected["reasons"] for reason in reasons.split("; "))
    return BatchOutcome(len(landed), len(valid), len(rejected), failing_fields)


def _flatten_each(entity: Entity, landed: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contract rows by landing sequence, and the records a flatten could not read (a list where an object
    belongs, ...), quarantined with its error as the reason instead of failing the batch.

    The rows keep Python values (dtype object), so the contract tells a missing value (None) from NaN.
    """
    rows: dict[int, dict] = {}
    reasons: dict[int, list[str]] = {}
    unreadable: dict[int, object] = {}
    for seq, record in zip(landed["seq"], json_codec.loads_each(landed["payload"].tolist()), strict=True):
        if staging.UNLANDABLE in record:
            reasons[seq], unreadable[seq] = [f"record: {record[staging.UNLANDABLE]}"], record
            continue
        try:
            rows[seq] = entity.flatten(record)
        except Exception as error:  # no record, whatever it holds, may stop the others
            reasons[seq], unreadable[seq] = [f"record: {type(error).__name__}: {error}"], record
    columns = None if rows else list(entity.contract.to_schema().columns)
    frame = pd.DataFrame(list(rows.values()), index=pd.Index(list(rows), dtype="int64"), columns=columns, dtype=object)
    return frame, rejected_rows(reasons, unreadable)


def _drop_stale(
    conn: duckdb.DuckDBPyConnection, entity: Entity, valid: pd.DataFrame, previous: pd.DataFrame, run_id: str
) -> pd.DataFrame:
    """Versions older, by the source's own timestamp, than the one staged (a late webhook or an overlap re-read
    arriving after a newer version) do not overwrite it; the audit log keeps both timestamps."""
    if "updated_at" not in valid.columns or "updated_at" not in previous.columns or valid.empty:
        return valid
    staged_at = dict(zip(previous[entity.key], previous["updated_at"], strict=True))
    arrived = zip(valid[entity.key], valid["updated_at"], strict=True)
    stale = [pd.notna(staged_at.get(k)) and t < staged_at[k] for k, t in arrived]
    dropped = valid[stale]
    staging.audit(
        conn, flow=entity.vendor, entity=entity.name, action="stale", target="staging", run_id=run_id,
        entries=[(str(k), "kept staged", {"staged_updated_at": staged_at[k], "arrived_updated_at": t})
                 for k, t in zip(dropped[entity.key], dropped["updated_at"], strict=True)],
    )  # fmt: skip
    return valid[[not s for s in stale]]


def _updated_at(source: Source, record: object) -> datetime | None:
    """The record's own change time, or None when it holds none that can be read (it lands all the same, and
    its contract judges it)."""
    try:
        stamp = source.updated_at(record)
        if stamp is None:
            return None
        moment = stamp if stamp.tzinfo is None else stamp.astimezone(UTC).replace(tzinfo=None)
        return stamp if _LANDABLE[0] <= moment <= _LANDABLE[1] else None
    except (AttributeError, TypeError, ValueError, OverflowError, OSError):
        return None


# What the landing table's timestamps hold (pandas' nanoseconds: 1677-2262), to the microsecond, in UTC.
_LANDABLE = (pd.Timestamp.min.ceil("us").to_pydatetime(), pd.Timestamp.max.floor("us").to_pydatetime())


@contextmanager
def heap_frozen() -> Iterator[None]:
    """Leave the objects that exist now (Dagster's, the definitions') out of the collector's passes while a step
    turns records into rows: each page makes tens of thousands of objects that outlive the young generations, and
    every full collection they set off would otherwise walk the whole heap (about 12% of a 100k-record sync)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def vendor_assets(
    entities: Sequence[Entity], resource_type: type[dg.ConfigurableResource], resource_key: str | None = None
) -> dg.Definitions:
    """Each entity's extract and staged assets, and its backfill asset where its source re-reads windows; an
    extract gets what its source reads from (the vendor's resource, bound under the vendor's name unless
    `resource_key` says otherwise) as a typed parameter."""
    assets = []
    for entity in entities:
        key = resource_key or entity.vendor
        assets += [_extract_asset(entity, resource_type, key), staged_asset(entity)]
        if entity.backfills:
            assets.append(_backfill_asset(entity, resource_type, key))
    return dg.Definitions(assets=assets)


class ExtractConfig(dg.Config):
    """What the launchpad can ask of an extract."""

    full_resync: bool = Field(
        default=False,
        description=(
            "Forget this entity's cursor, landed records and staged state first, and re-read its whole history "
            "(after a mapping fix, say); the targets are written only where they differ."
        ),
    )


def _extract_asset(
    entity: Entity, resource_type: type[dg.ConfigurableResource], resource_key: str
) -> dg.AssetsDefinition:
    def extract(context: dg.AssetExecutionContext, config: ExtractConfig, **resources: Any) -> dg.MaterializeResult:
        staging_db = resources["staging_db"]
        forgotten = 0
        if config.full_resync:
            with staging_db.connect() as conn:
                forgotten = staging.forget_entity(
                    conn, source=entity.vendor, entity=entity.name, table=entity.table, cursor=entity.extract_cursor
                )
            context.log.info(f"full resync: {forgotten} staged records forgotten; reading the whole history")
        with connection_slots(context, entity.vendor):
            return land_changes(context, entity, resources[resource_key], staging_db, expected_rows=forgotten)

    with_resource_parameters(
        extract, {resource_key: resource_type, "staging_db": StagingResource}, config=ExtractConfig
    )
    return dg.asset(
        extract,
        name=f"landed_{entity.label}",
        key_prefix=[entity.vendor],
        group_name=entity.vendor,
        kinds={entity.vendor, "duckdb"},
        description=f"{entity.description} as {entity.vendor} returned them, landed unchanged, incrementally.",
        owners=OWNERS,
        tags={"layer": "landing", "vendor": entity.vendor},
        metadata={"dagster/table_name": "raw_landing"},
        # One extract per vendor at a time where the instance limits the pool: the vendor's rate limits are
        # per tenant, and each step's client only sees its own calls.
        pool=vendor_pool(entity.vendor),
    )


def _backfill_asset(
    entity: Entity, resource_type: type[dg.ConfigurableResource], resource_key: str
) -> dg.AssetsDefinition:
    def backfill(context: dg.AssetExecutionContext, **resources: Any) -> dg.MaterializeResult:
        window = context.partition_time_window
        with connection_slots(context, entity.vendor):
            return land_changes(context, entity, resources[resource_key], resources["staging_db"], window=window)

    with_resource_parameters(backfill, {resource_key: resource_type, "staging_db": StagingResource})
    return dg.asset(
        backfill,
        key=entity.backfill_key,
        group_name=f"{entity.vendor}_backfill",
        kinds={entity.vendor, "duckdb"},
        description=(
            f"{entity.description}, changed in the month: re-read from {entity.vendor} on demand and landed beside "
            "the incremental extract, so staging keeps only real changes and a re-read of synced history writes "
            "nothing. Backfill a range of months from the UI; the cursor of the ongoing sync is left alone."
        ),
        partitions_def=BACKFILL_MONTHS,
        backfill_policy=BACKFILL_POLICY,
        owners=OWNERS,
        tags={BACKFILL_TAG: "window", "layer": "landing", "vendor": entity.vendor},
        metadata={"dagster/table_name": "raw_landing"},
        pool=vendor_pool(entity.vendor),
    )


def land_changes(
    context: dg.AssetExecutionContext,
    entity: Entity,
    resource: Any,
    staging_db: StagingResource,
    window: dg.TimeWindow | None = None,
    expected_rows: int = 0,
) -> dg.MaterializeResult:
    """Land what changed at the vendor since the entity's cursor, page by page, the cursor moving with each page;
    or, given a window, what changed in it (a backfill), with a cursor of its own so that a window cut short (the
    vendor's day limit) resumes where it stopped, while the ongoing sync's cursor is left alone. A full read that
    knows about how many records it will find (`expected_rows`: a resync's) tells a source that can use it."""
    started = time.monotonic()
    source = entity.source
    if window:
        cursor_name = f"{entity.label}.backfill {window.start.isoformat()}..{window.end.isoformat()}"
        checkpoint = _window_checkpoint
    else:
        cursor_name, checkpoint = entity.extract_cursor, source.checkpoint
    with staging_db.connect() as conn:
        cursor = staging.read_cursor(conn, cursor_name)
    if window:
        resumed = pd.Timestamp(cursor["updated_at"]).to_pydatetime() if cursor else window.start
        pages = within(source.read_window(resource, resumed, window.end), source, resumed, window.end)
    elif cursor is None and expected_rows and isinstance(source, SizeAwareSource):
        pages = source.read_all(resource, expected_rows)
    else:
        pages = source.read(resource, cursor)
    fetched = landed = 0
    held: list[pd.DataFrame] = []  # pages read, as landing frames, not landed yet
    held_cursor = cursor  # where the cursor goes once they have
    last_landing = time.monotonic()
    in_flight: Future[int] | None = None  # a landing the landing thread is doing
    in_flight_cursor = cursor  # where it moves the cursor to

    def land(frames: list[pd.DataFrame], to: dict | None, previous: dict | None) -> int:
        """Land pages and move the cursor past them, in one transaction: a stop anywhere resumes after the last
        page landed. Runs in the landing thread: DuckDB works without the GIL while the next pages are read."""
        with staging_db.connect(memory_limit=staging_db.stage_memory_limit) as conn:
            conn.execute("BEGIN TRANSACTION")
            count = staging.land(
                conn, source=entity.vendor, entity=entity.name, page=pd.concat(frames), run_id=context.run.run_id
            )
            if to is not previous:
                staging.write_cursor(conn, cursor_name, to)
            conn.execute("COMMIT")
        return count

    def settle() -> None:
        """Wait for the landing in flight (its error is raised here); landings go one at a time, in order."""
        nonlocal in_flight, cursor, landed
        if in_flight is None:
            return
        landed += in_flight.result()
        cursor, in_flight = in_flight_cursor, None
        # Told per landing, not per page: each log line is an event the instance stores.
        figures = ", ".join(f"{name} {value}" for name, value in source.figures(resource).items())
        context.log.info(f"{entity.label}: {fetched} rows read, {landed} landed so far ({figures})")

    def land_held(landing: ThreadPoolExecutor) -> None:
        nonlocal in_flight, in_flight_cursor, last_landing
        settle()
        if held:
            in_flight, in_flight_cursor = landing.submit(land, list(held), held_cursor, cursor), held_cursor
            held.clear()
            last_landing = time.monotonic()

    try:
        with ThreadPoolExecutor(1, thread_name_prefix="landing") as landing:
            try:
                with heap_frozen():
                    for page in pages:
                        fetched += len(page)
                        stamps = [_updated_at(source, record) for record in page]
                        held.append(staging.landing_frame(page, id_field=source.id_field, updated_at=stamps))
                        moved = checkpoint(held_cursor, page, stamps)
                        held_cursor = moved if moved is not None else held_cursor
                        if sum(map(len, held)) >= LANDING_ROWS or time.monotonic() - last_landing >= LANDING_SECONDS:
                            land_held(landing)
            finally:
                # What was read before a stop (the day limit, an error) is kept, and the cursor past it.
                land_held(landing)
                settle()
    except QuotaExhausted as stop:
        context.log.warning(f"{entity.vendor} quota spent; resume after {stop.retry_after}s from the checkpoint")
        with staging_db.connect() as conn:
            alerts.raise_alerts(conn, [alerts.day_limit_stop(entity.vendor, context.asset_key, stop.retry_after)])
        if window:
            # The partitions stay unmaterialised, so the backfill shows them failed; relaunched (say the next
            # day, once the day limit resets), the window goes on from its checkpoint.
            raise dg.Failure(f"{entity.vendor} quota spent after {fetched} rows; relaunch to resume") from stop
        return _landed(context, entity, resource, started, landed, fetched, cursor, quota_exhausted=True)
    if window:
        with staging_db.connect() as conn:
            staging.delete_cursor(conn, cursor_name)  # done: a later backfill of the window reads it all again
    return _landed(context, entity, resource, started, landed, fetched, cursor, window=window)


def _window_checkpoint(cursor: dict | None, page: list[dict], stamps: list[datetime | None]) -> dict | None:
    """Where a window read has got to: the latest change time landed (pages come oldest first)."""
    stamps = [stamp for stamp in stamps if stamp is not None]
    return {"updated_at": max(stamps).isoformat()} if stamps else None


def _landed(
    context: dg.AssetExecutionContext,
    entity: Entity,
    resource: Any,
    started: float,
    landed: int,
    fetched: int,
    cursor: dict | None,
    quota_exhausted: bool = False,
    window: dg.TimeWindow | None = None,
) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": landed,
            "rows_fetched": fetched,
            **entity.source.figures(resource),
            "seconds": round(time.monotonic() - started, 3),
            "quota_exhausted": quota_exhausted,
            **({"window": f"{window.start.isoformat()}..{window.end.isoformat()}"} if window else {}),
            "cursor": json.dumps(cursor),
        }
    )


def staged_asset(entity: Entity) -> dg.AssetsDefinition:
    """The entity's current state, validated, with its change feed; blocking checks on what was staged."""
    quarantine_check = dg.AssetCheckSpec(
        "quarantine_rate",
        asset=entity.staged_key,
        blocking=True,
        description=(
            f"Blocks delivery when more than {entity.quarantine_threshold:.0%} of a batch fails the contract; "
            "that batch's changes are held until `sync-pipelines release`."
        ),
    )
    unique_check = dg.AssetCheckSpec(
        "unique_keys", asset=entity.staged_key, blocking=True, description=f"One staged row per {entity.key}."
    )

    @dg.asset(
        key=entity.staged_key,
        deps=[entity.raw_key, *([entity.backfill_key] if entity.backfills else [])],
        group_name=entity.vendor,
        kinds={"pandera", "duckdb"},
        description=(
            f"{entity.description}: current state, validated against the {entity.contract.__name__} contract; "
            "rows that fail it are quarantined with reasons and the rest go on, each change to the change feed."
        ),
        check_specs=[quarantine_check, unique_check],
        owners=OWNERS,
        tags={"layer": "staging", "vendor": entity.vendor},
        code_version=contract_version(entity.contract),
        metadata={"dagster/table_name": entity.table, "dagster/column_schema": column_schema(entity.contract)},
    )
    def validated(context: dg.AssetExecutionContext, staging_db: StagingResource):
        started = time.monotonic()
        cursor_name = f"{entity.label}.validated"
        totals = BatchOutcome()
        with heap_frozen():
            while True:
                with staging_db.connect(memory_limit=staging_db.stage_memory_limit) as conn:
                    after = (staging.read_cursor(conn, cursor_name) or {"seq": 0})["seq"]
                    landed = staging.unprocessed_landing(
                        conn, source=entity.vendor, entity=entity.name, after_seq=after, limit=VALIDATION_CHUNK
                    )
                    if landed.empty:
                        break
                    conn.execute("BEGIN TRANSACTION")
                    totals += stage_batch(conn, entity, landed, context.run.run_id)
                    staging.write_cursor(conn, cursor_name, {"seq": int(landed["seq"].max())})
                    conn.execute("COMMIT")
                del landed
                # pandera's validated frame holds its accessor, which holds the frame: a cycle, with a chunk's
                # values, that only a full collection frees. Left to the collector's own pace, a million rows
                # kept several chunks alive at once; a full pass over the unfrozen heap costs a few ms.
                gc.collect()
        with staging_db.connect(memory_limit=staging_db.stage_memory_limit) as conn:
            duplicates = staging.duplicate_keys(conn, entity.table, entity.key)
            reasons = staging.top_reasons(conn, source=entity.vendor, entity=entity.name, run_id=context.run.run_id)
        rate = totals.quarantined / totals.processed if totals.processed else 0.0
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": totals.changed,
                "rows_processed": totals.processed,
                "rows_quarantined": totals.quarantined,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        yield dg.AssetCheckResult(
            check_name="quarantine_rate",
            passed=rate <= entity.quarantine_threshold,
            metadata={
                "quarantined": totals.quarantined,
                "processed": totals.processed,
                "rate": rate,
                "by_field": dict(totals.failing_fields),
                "top_reasons": staging.reasons_table(reasons),
            },
        )
        yield dg.AssetCheckResult(check_name="unique_keys", passed=duplicates == 0, metadata={"duplicates": duplicates})

    return validated
