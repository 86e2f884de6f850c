"""Does the target hold what staging says it should? Counted per entity and kept in `reconciliation`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import duckdb

from sync_pipelines.lib import staging

if TYPE_CHECKING:
    from sync_pipelines.lib.entity_sync import EntitySyncSpec


@dataclass(frozen=True)
class Reconciliation:
    flow: str
    entity: str
    in_source: int  # distinct records the source returned
    staged: int  # records in current state
    quarantined: int  # records with no valid version staged: every version failed the contract or its target
    changes: int  # messages the staged changes called for
    delivered: int
    dead_lettered: int
    pending: int  # queued, held for a person to release, or on its way
    delivered_twice: int  # must stay 0: exactly-once
    totals_mismatch: int  # currencies whose staged total differs from the delivered total

    @property
    def ok(self) -> bool:
        return (
            self.pending == 0
            and self.dead_lettered == 0
            and self.delivered_twice == 0
            and self.totals_mismatch == 0
            and self.in_source == self.staged + self.quarantined
        )

    def as_metadata(self) -> dict[str, int | str]:
        return {k: v for k, v in asdict(self).items()}


def reconcile_entity(conn: duckdb.DuckDBPyConnection, *, spec: EntitySyncSpec, run_id: str | None) -> Reconciliation:
    """Count every stage of one entity, compare delivered totals per currency, and record the result."""
    params = [spec.flow, spec.entity]
    # A record is its id; a record landed without one is its payload. Counted apart, so that no id (a bad one may
    # be any text) can pass for a payload hash or a landing sequence and two records count as one.
    (in_source,) = conn.execute(
        """SELECT count(DISTINCT record_id) + count(DISTINCT payload_hash) FILTER (record_id IS NULL)
           FROM raw_landing WHERE source = ? AND entity = ?""",
        [spec.source.system, spec.entity],
    ).fetchone()
    staged_exists = staging.table_exists(conn, spec.table)
    staged = conn.execute(f'SELECT count(*) FROM "{spec.table}"').fetchone()[0] if staged_exists else 0
    staged_ids = f'SELECT "{spec.key}" FROM "{spec.table}"' if staged_exists else "SELECT NULL WHERE false"
    # Every version of a record that failed is in quarantine; the record counts there once, unless a valid
    # version of it is staged.
    (quarantined,) = conn.execute(
        f"""SELECT count(DISTINCT record_id) FILTER (record_id NOT IN ({staged_ids}))
                   + count(DISTINCT landing_seq) FILTER (record_id IS NULL)
            FROM quarantine WHERE source = ? AND entity = ?""",
        [spec.source.system, spec.entity],
    ).fetchone()
    changes, delivered, dead, pending = conn.execute(
        """SELECT count(*), count(*) FILTER (status = 'delivered'), count(*) FILTER (status = 'dead'),
                  count(*) FILTER (status IN ('pending', 'held', 'claimed', 'in_flight'))
           FROM outbox WHERE flow = ? AND entity = ?""",
        params,
    ).fetchone()
    (delivered_twice,) = conn.execute(
        """SELECT count(*) FROM (SELECT idempotency_key FROM audit_log
           WHERE flow = ? AND entity = ? AND outcome = 'delivered' GROUP BY ALL HAVING count(*) > 1)""",
        params,
    ).fetchone()
    totals_mismatch = _totals_mismatch(conn, spec) if staged_exists else 0
    result = Reconciliation(
        spec.flow, spec.entity, in_source, staged, quarantined, changes, delivered, dead, pending,
        delivered_twice, totals_mismatch,
    )  # fmt: skip
    conn.execute(
        "INSERT INTO reconciliation VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [run_id, staging.utcnow(), spec.flow, spec.entity, in_source, staged, quarantined, changes, delivered,
         dead, pending, result.ok],
    )  # fmt: skip
    return result


def _totals_mismatch(conn: duckdb.DuckDBPyConnection, spec: EntitySyncSpec) -> int:
    """Currencies where the staged amount differs from the amount in each record's latest delivered write."""
    totals = spec.target.totals
    if totals is None:
        return 0
    (mismatched,) = conn.execute(
        f"""WITH latest AS (
                SELECT record_id, arg_max(payload, seq) AS payload FROM outbox
                WHERE flow = ? AND entity = ? AND kind = 'track' AND status = 'delivered' GROUP BY record_id)
            SELECT count(*) FROM (
                SELECT s."{totals.currency_column}",
                       round(sum(s."{totals.amount_column}"), 2) AS staged,
                       round(sum(CAST(json_extract_string(l.payload, ?) AS DOUBLE)), 2) AS delivered
                FROM "{spec.table}" s LEFT JOIN latest l ON l.record_id = s."{spec.key}"
                GROUP BY 1)
            WHERE staged IS DISTINCT FROM delivered""",
        [spec.flow, spec.entity, totals.json_path],
    ).fetchone()
    return mismatched


def latest_reconciliation(conn: duckdb.DuckDBPyConnection) -> list[dict]:
    """The newest result per flow and entity, for the CLI's table."""
    return (
        conn.execute(
            """SELECT flow, entity, in_source, staged, quarantined, delivered, dead_lettered, pending, ok
               FROM reconciliation QUALIFY row_number() OVER (PARTITION BY flow, entity ORDER BY checked_at DESC) = 1
               ORDER BY flow, entity"""
        )
        .df()
        .to_dict("records")
    )
