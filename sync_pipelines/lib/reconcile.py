"""Does the target hold what staging says it should? Counted per delivery and kept in `reconciliation`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from sync_pipelines.lib import staging

if TYPE_CHECKING:
    from sync_pipelines.lib.deliveries import Delivery


@dataclass(frozen=True)
class Reconciliation:
    flow: str
    entity: str
    in_source: int  # distinct records the source returned
    staged: int  # records in current state
    quarantined: int  # records with no valid version staged: every version failed the contract
    refused: int  # staged records whose latest change this delivery's target would refuse (in quarantine)
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


def reconcile_delivery(conn: duckdb.DuckDBPyConnection, *, delivery: Delivery, run_id: str | None) -> Reconciliation:
    """Count every stage of one delivery's entity, compare delivered totals per currency, and record the result."""
    entity = delivery.entity
    params = [delivery.flow, delivery.partition]
    # A record is its id; a record landed without one is its payload. Counted apart, so that no id (a bad one may
    # be any text) can pass for a payload hash or a landing sequence and two records count as one.
    (in_source,) = conn.execute(
        """SELECT count(DISTINCT record_id) + count(DISTINCT payload_hash) FILTER (record_id IS NULL)
           FROM raw_landing WHERE source = ? AND entity = ?""",
        [entity.vendor, entity.name],
    ).fetchone()
    staged_exists = staging.table_exists(conn, entity.table)
    staged = conn.execute(f'SELECT count(*) FROM "{entity.table}"').fetchone()[0] if staged_exists else 0
    staged_ids = f'SELECT "{entity.key}" FROM "{entity.table}"' if staged_exists else "SELECT NULL WHERE false"
    # Every version of a record that failed is in quarantine; the record counts there once, unless a valid
    # version of it is staged.
    (quarantined,) = conn.execute(
        f"""SELECT count(DISTINCT record_id) FILTER (record_id NOT IN ({staged_ids}))
                   + count(DISTINCT landing_seq) FILTER (record_id IS NULL)
            FROM quarantine WHERE source = ? AND entity = ? AND delivery IS NULL""",
        [entity.vendor, entity.name],
    ).fetchone()
    (refused,) = conn.execute(
        f"SELECT count(*) FROM ({_refused_ids(delivery, staged_ids)})",
        [delivery.label, *params],
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
    totals_mismatch = _totals_mismatch(conn, delivery, staged_ids) if staged_exists else 0
    result = Reconciliation(
        delivery.flow, delivery.partition, in_source, staged, quarantined, refused, changes, delivered, dead,
        pending, delivered_twice, totals_mismatch,
    )  # fmt: skip
    conn.execute(
        """INSERT INTO reconciliation BY NAME SELECT ? AS run_id, ? AS checked_at, ? AS flow, ? AS entity,
             ? AS in_source, ? AS staged, ? AS quarantined, ? AS refused, ? AS changes, ? AS delivered,
             ? AS dead_lettered, ? AS pending, ? AS ok""",
        [run_id, staging.utcnow(), delivery.flow, delivery.partition, in_source, staged, quarantined, refused,
         changes, delivered, dead, pending, result.ok],
    )  # fmt: skip
    return result


def failure_reasons(
    conn: duckdb.DuckDBPyConnection, *, delivery: Delivery, result: Reconciliation, limit: int = 5
) -> list[dict]:
    """Why a reconciliation failed, as the UI's check panel shows it: {reason, records, sample_record_ids}, the
    most frequent first (dead letters by their error, pending messages by status, then the count mismatches)."""
    params = [delivery.flow, delivery.partition]
    rows = conn.execute(
        """SELECT reason, count(DISTINCT record_id) AS records,
                  array_to_string(list(DISTINCT record_id ORDER BY record_id)[1:3], ', ')
           FROM (SELECT 'dead letter: ' || left(d.error, 200) AS reason, coalesce(o.record_id, '(no id)') AS record_id
                 FROM dead_letters d JOIN outbox o USING (flow, entity, message_id)
                 WHERE d.flow = ? AND d.entity = ? AND o.status = 'dead'
                 UNION ALL
                 SELECT 'not delivered yet: ' || status, coalesce(record_id, '(no id)') FROM outbox
                 WHERE flow = ? AND entity = ? AND status IN ('pending', 'held', 'claimed', 'in_flight')
                 UNION ALL
                 SELECT 'delivered more than once', coalesce(record_id, '(no id)') FROM audit_log
                 WHERE flow = ? AND entity = ? AND outcome = 'delivered'
                 GROUP BY idempotency_key, record_id HAVING count(*) > 1)
           GROUP BY reason ORDER BY records DESC, reason LIMIT ?""",
        [*params, *params, *params, limit],
    ).fetchall()
    reasons = [{"reason": r, "records": n, "sample_record_ids": samples} for r, n, samples in rows]
    unaccounted = result.in_source - result.staged - result.quarantined
    if unaccounted:
        reasons.append({"reason": "landed but neither staged nor quarantined", "records": unaccounted,
                        "sample_record_ids": ""})  # fmt: skip
    if result.totals_mismatch:
        reasons.append({"reason": "staged and delivered totals differ (currencies)", "records": result.totals_mismatch,
                        "sample_record_ids": ""})  # fmt: skip
    return reasons


def _refused_ids(delivery: Delivery, staged_ids: str) -> str:
    """SQL for the staged records this delivery refused (parameters: its name, flow, partition). A refusal stands
    until the delivery queues something for the record again (a later, acceptable version)."""
    return f"""SELECT DISTINCT q.record_id FROM quarantine q
               WHERE q.delivery = ? AND q.record_id IN ({staged_ids})
                 AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.flow = ? AND o.entity = ?
                                 AND o.record_id = q.record_id AND o.created_at > q.quarantined_at)"""


def _totals_mismatch(conn: duckdb.DuckDBPyConnection, delivery: Delivery, staged_ids: str) -> int:
    """Currencies where the staged amount differs from the amount in each record's latest delivered write; records
    the delivery refused are in neither."""
    totals, entity = delivery.target.totals, delivery.entity
    if totals is None:
        return 0
    echoes = pd.DataFrame({"record_id": _echoes(conn, delivery)}, dtype="string")
    with staging.frame_as(conn, "echoes", echoes):
        (mismatched,) = conn.execute(
            f"""WITH latest AS (
                SELECT record_id, arg_max(payload, seq) AS payload FROM outbox
                WHERE flow = ? AND entity = ? AND kind = 'track' AND status = 'delivered' GROUP BY record_id)
            SELECT count(*) FROM (
                SELECT s."{totals.currency_column}",
                       round(sum(s."{totals.amount_column}"), 2) AS staged,
                       round(sum(CAST(json_extract_string(l.payload, ?) AS DOUBLE)), 2) AS delivered
                FROM "{entity.table}" s LEFT JOIN latest l ON l.record_id = s."{entity.key}"
                WHERE s."{entity.key}" NOT IN ({_refused_ids(delivery, staged_ids)})
                  AND s."{entity.key}" NOT IN (SELECT record_id FROM echoes)
                GROUP BY 1)
            WHERE staged IS DISTINCT FROM delivered""",
            [
                delivery.flow,
                delivery.partition,
                totals.json_path,
                delivery.label,
                delivery.flow,
                delivery.partition,
            ],
        ).fetchone()
    return mismatched


def _echoes(conn: duckdb.DuckDBPyConnection, delivery: Delivery) -> list[str]:
    """Staged records as a write from the delivery's target left them (an invoice raised for a Segment order): the
    target holds them already, so they are sent nothing and their totals are the target's own."""
    entity = delivery.entity
    rows = conn.execute(f'SELECT "{entity.key}", "{entity.version}" FROM "{entity.table}"').fetchall()
    versions = [(str(record_id), staging.version_text(version)) for record_id, version in rows]
    echoes = staging.own_versions(conn, system=entity.vendor, source=delivery.target.system, versions=versions)
    return sorted({record_id for record_id, _ in echoes})


def latest_reconciliation(conn: duckdb.DuckDBPyConnection) -> list[dict]:
    """The newest result per flow and entity, for the CLI's table."""
    return (
        conn.execute(
            """SELECT flow, entity, in_source, staged, quarantined, refused, delivered, dead_lettered, pending, ok
               FROM reconciliation QUALIFY row_number() OVER (PARTITION BY flow, entity ORDER BY checked_at DESC) = 1
               ORDER BY flow, entity"""
        )
        .df()
        .to_dict("records")
    )
