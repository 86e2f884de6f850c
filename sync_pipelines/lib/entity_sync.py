"""Spec in, assets out: extract -> validated -> delivered for one entity of one flow.

Adding an entity to a flow is one `EntitySyncSpec` in that flow's module; every asset name, table, cursor,
check and metadata key is derived from it here.
"""

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import dagster as dg
import duckdb
import pandas as pd
import pandera.pandas as pa

from sync_pipelines.lib import staging
from sync_pipelines.lib.reconcile import reconcile_entity
from sync_pipelines.lib.segment_events import TrackMapping, row_versions
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.lib.validation import split_valid
from sync_pipelines.schemas.xero import parse_xero_date
from sync_pipelines.vendors.segment.resource import SegmentResource
from sync_pipelines.vendors.xero.client import XeroDailyLimitReached
from sync_pipelines.vendors.xero.resource import XeroResource

# Rows turned into a dataframe at a time: bounds memory on a 100,000-record backfill.
VALIDATION_CHUNK = 20_000
DELIVERY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2), warn_window=timedelta(hours=1))
# Messages handed to the target client at a time; the client splits them into API-sized batches.
DELIVERY_CHUNK = 5_000


@dataclass(frozen=True)
class EntitySyncSpec:
    """One Xero collection delivered to Segment."""

    flow: str  # e.g. "xero_to_segment": the asset group and the outbox partition
    entity: str  # e.g. "invoices": names the assets, tables and cursors
    collection: str  # Xero endpoint, e.g. "Invoices" (xero.md §2.3)
    id_field: str  # the vendor id, e.g. "InvoiceID"
    contract: type[pa.DataFrameModel]
    flatten: Callable[[dict], dict]  # vendor record -> contract row
    mapping: TrackMapping
    description: str
    where: str | None = None  # Xero `where` filter, e.g. 'Type=="ACCREC"'
    # xero.md §3.2: the If-Modified-Since boundary is unconfirmed and late commits happen: re-read a window.
    overlap: timedelta = timedelta(minutes=5)
    quarantine_threshold: float = 0.2  # share of a batch; above it the load is blocked for a human to look
    # Delivered data older than this is stale for the people relying on it: the UI flags it.
    freshness: dg.FreshnessPolicy = DELIVERY_FRESHNESS

    @property
    def name(self) -> str:
        return f"xero_{self.entity}"

    @property
    def raw_key(self) -> dg.AssetKey:
        return dg.AssetKey(["xero", "raw", self.entity])

    @property
    def staged_key(self) -> dg.AssetKey:
        return dg.AssetKey(["xero", "staged", self.entity])

    @property
    def delivered_key(self) -> dg.AssetKey:
        return dg.AssetKey(["segment", self.name])

    @property
    def table(self) -> str:
        return f"stg_{self.name}"

    @property
    def key(self) -> str:
        return self.mapping.key


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

    Runs inside the caller's transaction, so the state, the outbox and the cursor move together.
    """
    frame = pd.DataFrame([spec.flatten(json.loads(p)) for p in landed["payload"]], index=landed["seq"])
    # Overlap re-reads and several versions in one batch: the latest landed version wins.
    has_key = frame[spec.key].notna()
    frame = pd.concat([frame[has_key].drop_duplicates(spec.key, keep="last"), frame[~has_key]])
    valid, rejected = split_valid(frame, spec.contract)
    valid = valid.assign(content_hash=row_versions(valid))
    previous = staging.current_state(conn, spec.table, spec.key, valid[spec.key].tolist())
    if not previous.empty:
        known = dict(zip(previous[spec.key], previous["content_hash"], strict=True))
        valid = valid[[known.get(k) != h for k, h in zip(valid[spec.key], valid["content_hash"], strict=True)]]
    identities = staging.changed_identities(conn, "xero", spec.mapping.identities(valid))
    messages = spec.mapping.identify_messages(identities) + spec.mapping.track_messages(valid, previous)

    staging.upsert_state(conn, spec.table, spec.key, valid.assign(staged_at=staging.utcnow()))
    staging.quarantine_rows(
        conn, source="xero", entity=spec.entity, run_id=run_id,
        rows=rejected.assign(record_id=frame.loc[rejected.index, spec.key], landing_seq=rejected.index),
    )  # fmt: skip
    enqueued = staging.enqueue(conn, flow=spec.flow, entity=spec.entity, messages=messages, run_id=run_id)
    staging.remember_identities(conn, "xero", identities)
    # Segment's userId for a Xero contact is its ContactID (segment.md §3: a stable id of ours).
    staging.link_ids(
        conn, entity="contacts", source_system="xero", target_system="segment",
        pairs=[(user_id, user_id) for user_id in identities],
    )  # fmt: skip
    failing_fields = Counter(reason.split(":")[0] for reasons in rejected["reasons"] for reason in reasons.split("; "))
    return BatchOutcome(len(frame), len(valid), len(rejected), enqueued, failing_fields)


def build_entity_sync(spec: EntitySyncSpec) -> dg.Definitions:
    """The extract, validated and delivered assets of one entity, with their checks."""

    @dg.asset(
        key=spec.raw_key,
        group_name=spec.flow,
        kinds={"xero", "duckdb"},
        description=f"{spec.description} as Xero returned them, landed unchanged (incremental by UpdatedDateUTC).",
        pool="xero_api",
    )
    def extract(context: dg.AssetExecutionContext, xero: XeroResource, staging_db: StagingResource):
        started = time.monotonic()
        client = xero.get_client()
        cursor_name = f"{spec.name}.extract"
        with staging_db.connect() as conn:
            cursor = staging.read_cursor(conn, cursor_name)
        since = None if cursor is None else pd.Timestamp(cursor["updated_at"]).to_pydatetime() - spec.overlap
        fetched = landed = 0
        quota_exhausted = False
        try:
            for page in client.iter_pages(spec.collection, modified_since=since, where=spec.where):
                updated = [parse_xero_date(r.get("UpdatedDateUTC")) for r in page]
                stamps = [u for u in updated if not isinstance(u, str) and u is not None]
                fetched += len(page)
                with staging_db.connect() as conn:
                    # The page and the cursor that covers it move together.
                    conn.execute("BEGIN TRANSACTION")
                    landed += staging.land_raw(
                        conn, source="xero", entity=spec.entity, records=page, id_field=spec.id_field,
                        updated_at=[None if isinstance(u, str) else u for u in updated], run_id=context.run.run_id,
                    )  # fmt: skip
                    if stamps:
                        # Checkpoint per page: pages come in UpdatedDateUTC order (xero.md §3.1).
                        newest = max(stamps)
                        if cursor is None or newest.isoformat() > cursor["updated_at"]:
                            cursor = {"updated_at": newest.isoformat()}
                            staging.write_cursor(conn, cursor_name, cursor)
                    conn.execute("COMMIT")
        except XeroDailyLimitReached as stop:
            # Stop cleanly: what landed is checkpointed; the next run resumes from the cursor.
            quota_exhausted = True
            context.log.warning(f"Xero day limit reached; resuming in {stop.retry_after}s from the checkpoint")
        stats = client.stats
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": landed,
                "rows_fetched": fetched,
                "api_calls": stats.calls,
                "api_retries": stats.retries,
                "bytes_received": stats.bytes_received,
                "seconds": round(time.monotonic() - started, 3),
                "min_limit_remaining": stats.min_limit_remaining if stats.min_limit_remaining is not None else -1,
                "day_limit_remaining": stats.day_limit_remaining if stats.day_limit_remaining is not None else -1,
                "quota_exhausted": quota_exhausted,
                "cursor": (cursor or {}).get("updated_at", ""),
            }
        )

    quarantine_check = dg.AssetCheckSpec(
        "quarantine_rate",
        asset=spec.staged_key,
        blocking=True,
        description=f"Blocks delivery when more than {spec.quarantine_threshold:.0%} of a batch fails the contract.",
    )
    unique_check = dg.AssetCheckSpec(
        "unique_keys", asset=spec.staged_key, blocking=True, description=f"One staged row per {spec.key}."
    )

    @dg.asset(
        key=spec.staged_key,
        deps=[spec.raw_key],
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
                    conn, source="xero", entity=spec.entity, after_seq=after, limit=VALIDATION_CHUNK
                )
                if landed.empty:
                    break
                conn.execute("BEGIN TRANSACTION")
                totals += stage_batch(conn, spec, landed, context.run.run_id)
                staging.write_cursor(conn, cursor_name, {"seq": int(landed["seq"].max())})
                conn.execute("COMMIT")
        with staging_db.connect() as conn:
            (duplicates,) = (
                conn.execute(f'SELECT count(*) - count(DISTINCT "{spec.key}") FROM "{spec.table}"').fetchone()
                if staging.table_exists(conn, spec.table)
                else (0,)
            )
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

    reconciliation_check = dg.AssetCheckSpec(
        "reconciliation",
        asset=spec.delivered_key,
        description="Every staged change was delivered exactly once and delivered totals equal staged totals.",
    )

    @dg.asset(
        key=spec.delivered_key,
        deps=[spec.staged_key],
        group_name=spec.flow,
        kinds={"segment"},
        description=f"{spec.description} delivered to Segment as track/identify calls, each exactly once.",
        check_specs=[reconciliation_check],
        freshness_policy=spec.freshness,
    )
    def delivered(context: dg.AssetExecutionContext, segment: SegmentResource, staging_db: StagingResource):
        started = time.monotonic()
        client = segment.get_client()
        with staging_db.connect() as conn:
            replayed = staging.requeue_dead_letters(conn, flow=spec.flow, entity=spec.entity)
        sent = failed = rejected = 0
        while True:
            with staging_db.connect() as conn:
                batch = staging.pending_messages(conn, flow=spec.flow, entity=spec.entity, limit=DELIVERY_CHUNK)
            if not batch:
                break
            report = client.send([payload for _, _, payload in batch])
            record_of = {message_id: record_id for message_id, record_id, _ in batch}
            with staging_db.connect() as conn:
                staging.mark_delivered(
                    conn, flow=spec.flow, entity=spec.entity, target="segment", run_id=context.run.run_id,
                    delivered=[(m, record_of[m]) for m in report.delivered],
                )  # fmt: skip
                for failures, retryable in ((report.failed, True), (report.rejected, False)):
                    staging.dead_letter(
                        conn, flow=spec.flow, entity=spec.entity, target="segment", run_id=context.run.run_id,
                        failures=[(m, record_of[m], error) for m, error in failures], retryable=retryable,
                    )  # fmt: skip
            sent += len(report.delivered)
            failed += len(report.failed)
            rejected += len(report.rejected)
            if report.failed or report.rejected:
                # What failed now waits in the dead-letter queue; the rest of the outbox still goes.
                context.log.warning(f"{len(report.failed)} failed and {len(report.rejected)} rejected messages")
        with staging_db.connect() as conn:
            result = reconcile_entity(conn, spec=spec, run_id=context.run.run_id)
        stats = client.stats
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": sent,
                "failed": failed,
                "rejected": rejected,
                "replayed_from_dead_letters": replayed,
                "api_calls": stats.calls,
                "bytes_sent": stats.bytes_sent,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        yield dg.AssetCheckResult(check_name="reconciliation", passed=result.ok, metadata=result.as_metadata())

    return dg.Definitions(assets=[extract, validated, delivered])
