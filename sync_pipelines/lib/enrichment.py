"""Per-contact traits computed from staged Xero invoices, bills and payments, for Segment identify calls.

Computed in DuckDB over Xero's staged invoices (ACCREC), bills (ACCPAY) and payments; one not staged yet
counts as empty. Dates are the UTC calendar date of Xero's date fields (xero.md
§2.2: local dates are midnight UTC), rendered "YYYY-MM-DD". Every trait, for a contact id:

Money, per currency: one trait per ISO code, suffixed with it in lower case (`lifetime_revenue_usd`,
`outstanding_balance_eur`); amounts in different currencies are never added, and a trait's meaning never
changes when a second currency appears. Sums to the cent, sent as numbers with 2 decimals.
- lifetime_revenue_<ccy>: sum of Total of the contact's sales invoices (ACCREC) with Status AUTHORISED or PAID.
- outstanding_balance_<ccy>: sum of AmountDue of its AUTHORISED sales invoices (part-paid ones count what is
  still due).
- overdue_balance_<ccy>: sum of AmountDue of its AUTHORISED sales invoices whose DueDate is before `as_of`
  (due on `as_of` itself is not overdue).
- lifetime_spend_<ccy>: sum of Total of the contact's bills (ACCPAY) with Status AUTHORISED or PAID.
- outstanding_payable_<ccy>: sum of AmountDue of its AUTHORISED bills.
The three sales traits exist for each currency in which the contact has a sales invoice that is or was on the
books (AUTHORISED, PAID or VOIDED); the two bill traits likewise for bills. So a balance that is paid off, or
revenue whose only invoice is voided, is sent as 0.00 instead of leaving the old figure in Segment (identify
merges traits; an omitted trait keeps its last value). DRAFT, SUBMITTED and DELETED documents never count.

Unsuffixed:
- overdue_invoice_count: how many AUTHORISED sales invoices are due before `as_of`, in any currency; present
  whenever the contact has a sales invoice on the books (so it returns to 0).
- last_invoice_date: the latest Date of its sales invoices that are not DRAFT, DELETED or VOIDED.
- last_payment_date: the latest Date of its AUTHORISED payments, received or made (DELETED payments were
  reversed, xero.md §2.9).
- average_days_to_pay: the mean of (FullyPaidOnDate - Date) in days over its PAID sales invoices, to 1 decimal.

A trait with no value (no such documents) is left out rather than sent as null, and a contact with no trait
is not in the result.
"""

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from types import SimpleNamespace

import dagster as dg
import duckdb

from sync_pipelines.lib import staging
from sync_pipelines.lib.entities import Entity
from sync_pipelines.lib.outbox import deliver_outbox
from sync_pipelines.lib.staging import StagingResource, table_exists
from sync_pipelines.lib.targets.segment import SegmentTarget, identify_messages
from sync_pipelines.lib.targets.segment_mapping import EntityMapping
from sync_pipelines.vendors.segment.resource import SegmentResource
from sync_pipelines.vendors.xero.entities import BILLS, INVOICES, PAYMENTS

# Staged entity's table -> the columns the traits read, with their types for when the table does not exist yet.
_DOCUMENT_COLUMNS = {
    "contact_id": "VARCHAR",
    "type": "VARCHAR",
    "status": "VARCHAR",
    "currency_code": "VARCHAR",
    "date": "DATE",
    "due_date": "DATE",
    "fully_paid_on_date": "DATE",
    "total": "DECIMAL(18, 2)",
    "amount_due": "DECIMAL(18, 2)",
}
_SOURCES = {
    "invoices": (INVOICES.table, _DOCUMENT_COLUMNS),
    "bills": (BILLS.table, _DOCUMENT_COLUMNS),
    "payments": (PAYMENTS.table, {"contact_id": "VARCHAR", "status": "VARCHAR", "date": "DATE"}),
}

_MONEY = """
sales AS (
    SELECT contact_id, lower(currency_code) AS currency,
           coalesce(sum(total) FILTER (WHERE status IN ('AUTHORISED', 'PAID')), 0) AS lifetime_revenue,
           coalesce(sum(amount_due) FILTER (WHERE status = 'AUTHORISED'), 0) AS outstanding_balance,
           coalesce(sum(amount_due) FILTER (WHERE status = 'AUTHORISED' AND due_date < $as_of), 0) AS overdue_balance
    FROM invoices WHERE type = 'ACCREC' AND status IN ('AUTHORISED', 'PAID', 'VOIDED') GROUP BY ALL
),
purchases AS (
    SELECT contact_id, lower(currency_code) AS currency,
           coalesce(sum(total) FILTER (WHERE status IN ('AUTHORISED', 'PAID')), 0) AS lifetime_spend,
           coalesce(sum(amount_due) FILTER (WHERE status = 'AUTHORISED'), 0) AS outstanding_payable
    FROM bills WHERE type = 'ACCPAY' AND status IN ('AUTHORISED', 'PAID', 'VOIDED') GROUP BY ALL
)
SELECT contact_id, trait || '_' || currency, amount::DOUBLE
FROM (UNPIVOT sales ON lifetime_revenue, outstanding_balance, overdue_balance INTO NAME trait VALUE amount)
UNION ALL
SELECT contact_id, trait || '_' || currency, amount::DOUBLE
FROM (UNPIVOT purchases ON lifetime_spend, outstanding_payable INTO NAME trait VALUE amount)
"""

_PER_CONTACT = """
sales AS (
    SELECT contact_id,
           CASE WHEN bool_or(status IN ('AUTHORISED', 'PAID', 'VOIDED'))
                THEN count(*) FILTER (WHERE status = 'AUTHORISED' AND due_date < $as_of) END AS overdue_invoice_count,
           strftime(max(date) FILTER (WHERE status NOT IN ('DRAFT', 'DELETED', 'VOIDED')), '%Y-%m-%d')
               AS last_invoice_date,
           round(avg(date_diff('day', date, fully_paid_on_date))
                 FILTER (WHERE status = 'PAID' AND fully_paid_on_date IS NOT NULL), 1) AS average_days_to_pay
    FROM invoices WHERE type = 'ACCREC' GROUP BY contact_id
),
paid AS (
    SELECT contact_id, strftime(max(date), '%Y-%m-%d') AS last_payment_date
    FROM payments WHERE status = 'AUTHORISED' GROUP BY contact_id
)
SELECT contact_id, overdue_invoice_count, last_invoice_date, last_payment_date, average_days_to_pay
FROM sales FULL OUTER JOIN paid USING (contact_id)
"""
_PER_CONTACT_TRAITS = ("overdue_invoice_count", "last_invoice_date", "last_payment_date", "average_days_to_pay")


def _source(conn: duckdb.DuckDBPyConnection, name: str) -> str:
    """A CTE reading the staged table's columns as the traits need them, or no rows when it is not staged yet."""
    table, columns = _SOURCES[name]
    if not table_exists(conn, table):
        nothing = ", ".join(f"NULL::{kind} AS {column}" for column, kind in columns.items())
        return f"{name} AS (SELECT {nothing} WHERE false)"
    # xero.md §2.2: dates are midnight UTC of the calendar date, so the UTC date is the Xero date.
    read = ", ".join(
        f"timezone('UTC', {column})::DATE AS {column}" if kind == "DATE" else f"{column}::{kind} AS {column}"
        for column, kind in columns.items()
    )
    return f'{name} AS (SELECT {read} FROM "{table}")'


def contact_traits(conn: duckdb.DuckDBPyConnection, as_of: date) -> dict[str, dict]:
    """Traits per contact id as of a day (see the module docstring for each definition)."""
    sources = "WITH " + ", ".join(_source(conn, name) for name in _SOURCES) + ","
    traits: dict[str, dict] = {}
    for contact_id, trait, amount in conn.execute(f"{sources} {_MONEY}", {"as_of": as_of}).fetchall():
        traits.setdefault(contact_id, {})[trait] = amount
    for contact_id, *values in conn.execute(f"{sources} {_PER_CONTACT}", {"as_of": as_of}).fetchall():
        present = {name: value for name, value in zip(_PER_CONTACT_TRAITS, values, strict=True) if value is not None}
        if present:
            traits.setdefault(contact_id, {}).update(present)
    return {contact_id: dict(sorted(found.items())) for contact_id, found in sorted(traits.items())}


ENRICHMENT = "contact_enrichment"  # its outbox partition in the flow
ENRICHMENT_KEY = dg.AssetKey(["segment", f"xero_{ENRICHMENT}"])


class EnrichmentConfig(dg.Config):
    as_of: str = ""  # "YYYY-MM-DD" the balances are judged on (overdue or not); today in UTC when empty


def enrichment_asset(flow: str, reads: Sequence[Entity]) -> dg.AssetsDefinition:
    """Traits of Xero contacts, sent to Segment as identify calls when they change, in `flow`'s outbox."""

    @dg.asset(
        key=ENRICHMENT_KEY,
        deps=[entity.staged_key for entity in reads],
        group_name=flow,
        kinds={"duckdb", "segment"},
        description=(
            "Per-contact traits computed from staged invoices, bills and payments (lifetime revenue, outstanding "
            "and overdue balances per currency, days to pay, ...), sent as identify traits only when they changed."
        ),
    )
    def contact_enrichment(
        context: dg.AssetExecutionContext,
        config: EnrichmentConfig,
        segment: SegmentResource,
        staging_db: StagingResource,
    ) -> dg.MaterializeResult:
        started = time.monotonic()
        as_of = date.fromisoformat(config.as_of) if config.as_of else datetime.now(UTC).date()
        namespace = f"xero_{ENRICHMENT}"
        with staging_db.connect() as conn:
            conn.execute("BEGIN TRANSACTION")
            traits = contact_traits(conn, as_of)
            # A contact made of a Segment user is that user in Segment (its traits land on the profile it came from).
            user_ids = staging.source_ids(conn, source_system="segment", target_system="xero", target_ids=list(traits))
            traits = {user_ids.get(contact_id, contact_id): found for contact_id, found in traits.items()}
            changed = staging.changed_identities(conn, namespace, traits)
            versions = staging.remember_identities(conn, namespace, changed)
            messages = identify_messages(changed, versions, namespace=namespace)
            staging.enqueue(conn, flow=flow, entity=ENRICHMENT, messages=messages, run_id=context.run.run_id)
            conn.execute("COMMIT")
        # No per-row mapping: the identify calls are built above, the target only delivers them.
        figures = deliver_outbox(
            context, SimpleNamespace(segment=segment, staging_db=staging_db), flow=flow, entity=ENRICHMENT,
            source="xero", target=SegmentTarget(EntityMapping()),
        )  # fmt: skip
        return dg.MaterializeResult(
            metadata={
                **figures,
                "as_of": as_of.isoformat(),
                "contacts_with_traits": len(traits),
                "contacts_changed": len(changed),
                "seconds": round(time.monotonic() - started, 3),
            }
        )

    return contact_enrichment
