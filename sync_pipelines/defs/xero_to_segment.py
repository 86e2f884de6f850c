"""Xero -> Segment: accounting records become Segment track, identify and group calls.

Which Xero records make up each entity is below; what each becomes in Segment is the YAML mapping
(`sync_pipelines/mappings/xero_to_segment.yaml`, or the file in $SYNC_PIPELINES_XERO_TO_SEGMENT_MAPPING), checked
against the entity's contract when the definitions load.
"""

import time
from datetime import UTC, date, datetime

import dagster as dg

from sync_pipelines.lib import staging
from sync_pipelines.lib.enrichment import contact_traits
from sync_pipelines.lib.entity_sync import Entities, build_entity_sync, flow_specs
from sync_pipelines.lib.mapping import load_mapping, mapping_path
from sync_pipelines.lib.outbox import deliver_outbox
from sync_pipelines.lib.sources.xero import XeroCollection
from sync_pipelines.lib.targets.segment import SegmentTarget, identify_messages
from sync_pipelines.lib.targets.segment_mapping import EntityMapping
from sync_pipelines.schemas.xero_bank_transaction import XeroBankTransaction, flatten_bank_transaction
from sync_pipelines.schemas.xero_contact import XeroContact, flatten_contact
from sync_pipelines.schemas.xero_invoice import XeroInvoice, flatten_invoice
from sync_pipelines.schemas.xero_payment import XeroPayment, flatten_payment

FLOW = "xero_to_segment"
MAPPING_PATH = mapping_path(FLOW)
# Xero's default chart of accounts numbers EXPENSE-class accounts 400-499 (e.g. 404 Bank Fees, 429 General
# Expenses, 493 Travel); 300 Purchases is a direct cost. A bill whose every line posts there is an expense.
EXPENSE_ACCOUNT_CODES = frozenset(str(code) for code in range(400, 500))


def is_expense_bill(bill: dict) -> bool:
    lines = bill.get("LineItems") or []
    return bool(lines) and all(line.get("AccountCode") in EXPENSE_ACCOUNT_CODES for line in lines)


def is_invoice_payment(payment: dict) -> bool:
    """Payments of invoices and bills; credit-note, prepayment and overpayment payments are not synced yet."""
    return payment.get("PaymentType") in ("ACCRECPAYMENT", "ACCPAYPAYMENT")


# What each kind of Xero record is checked against: (contract, key column, flatten).
INVOICE = (XeroInvoice, "invoice_id", flatten_invoice)
CONTACT = (XeroContact, "contact_id", flatten_contact)
PAYMENT = (XeroPayment, "payment_id", flatten_payment)
BANK_TRANSACTION = (XeroBankTransaction, "bank_transaction_id", flatten_bank_transaction)

# entity -> (description, source, record). Xero sends webhooks for invoices and contacts only (xero.md §6); a
# payment always updates its invoice, so an INVOICE event refreshes payments too.
ENTITIES: Entities = {
    "invoices": (
        "Sales invoices (ACCREC)",
        XeroCollection("Invoices", "InvoiceID", where='Type=="ACCREC"', webhook_category="INVOICE"),
        INVOICE,
    ),
    "bills": (
        "Bills (ACCPAY invoices)",
        XeroCollection("Invoices", "InvoiceID", where='Type=="ACCPAY"', webhook_category="INVOICE"),
        INVOICE,
    ),
    "expense_bills": (
        "Expense bills (ACCPAY invoices posted wholly to expense accounts)",
        XeroCollection(
            "Invoices", "InvoiceID", where='Type=="ACCPAY"', keep=is_expense_bill, webhook_category="INVOICE"
        ),
        INVOICE,
    ),
    "contacts": (
        "Contacts, archived ones included",
        # xero.md §7: archived contacts are hidden unless asked for, and archiving must not go unseen.
        XeroCollection("Contacts", "ContactID", params={"includeArchived": "true"}, webhook_category="CONTACT"),
        CONTACT,
    ),
    "payments": (
        "Payments of invoices (received) and bills (made)",
        XeroCollection("Payments", "PaymentID", keep=is_invoice_payment, webhook_category="INVOICE"),
        PAYMENT,
    ),
    "bank_transactions": (
        "Bank transactions other than spend money",
        XeroCollection("BankTransactions", "BankTransactionID", where='Type!="SPEND"'),
        BANK_TRANSACTION,
    ),
    "expenses": (
        "Spend-money bank transactions (expenses)",
        XeroCollection("BankTransactions", "BankTransactionID", where='Type=="SPEND"'),
        BANK_TRANSACTION,
    ),
}

MAPPINGS = load_mapping(MAPPING_PATH, EntityMapping, {entity: record[0] for entity, (_, _, record) in ENTITIES.items()})
SPECS = flow_specs(FLOW, ENTITIES, lambda entity: SegmentTarget(MAPPINGS[entity]))
INVOICES = SPECS[0]
ENRICHMENT = "contact_enrichment"


class EnrichmentConfig(dg.Config):
    as_of: str = ""  # "YYYY-MM-DD" the balances are judged on (overdue or not); today in UTC when empty


@dg.asset(
    key=["segment", f"xero_{ENRICHMENT}"],
    deps=[spec.staged_key for spec in SPECS if spec.entity in ("invoices", "bills", "payments")],
    group_name=FLOW,
    kinds={"duckdb", "segment"},
    required_resource_keys={"segment", "staging_db"},
    description=(
        "Per-contact traits computed from staged invoices, bills and payments (lifetime revenue, outstanding "
        "and overdue balances per currency, days to pay, ...), sent as identify traits only when they changed."
    ),
)
def contact_enrichment(context: dg.AssetExecutionContext, config: EnrichmentConfig) -> dg.MaterializeResult:
    started = time.monotonic()
    as_of = date.fromisoformat(config.as_of) if config.as_of else datetime.now(UTC).date()
    namespace = f"xero_{ENRICHMENT}"
    with context.resources.staging_db.connect() as conn:
        conn.execute("BEGIN TRANSACTION")
        traits = contact_traits(conn, as_of)
        changed = staging.changed_identities(conn, namespace, traits)
        versions = staging.remember_identities(conn, namespace, changed)
        messages = identify_messages(changed, versions, namespace=namespace)
        staging.enqueue(conn, flow=FLOW, entity=ENRICHMENT, messages=messages, run_id=context.run.run_id)
        conn.execute("COMMIT")
    # No per-row mapping: the identify calls are built above, the target only delivers them.
    figures = deliver_outbox(
        context, flow=FLOW, entity=ENRICHMENT, source="xero", target=SegmentTarget(EntityMapping())
    )
    return dg.MaterializeResult(
        metadata={
            **figures,
            "as_of": as_of.isoformat(),
            "contacts_with_traits": len(traits),
            "contacts_changed": len(changed),
            "seconds": round(time.monotonic() - started, 3),
        }
    )


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        *(build_entity_sync(spec) for spec in SPECS), dg.Definitions(assets=[contact_enrichment])
    )
