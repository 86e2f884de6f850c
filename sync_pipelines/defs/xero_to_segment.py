"""Xero -> Segment: accounting records become Segment track and identify calls."""

import dagster as dg

from sync_pipelines.lib.entity_sync import EntitySyncSpec, build_entity_sync
from sync_pipelines.lib.sources.xero import XeroCollection
from sync_pipelines.lib.targets.segment import SegmentTarget, TrackMapping
from sync_pipelines.schemas.xero_invoice import XeroInvoice, flatten_invoice

FLOW = "xero_to_segment"

INVOICES = EntitySyncSpec(
    flow=FLOW,
    entity="invoices",
    description="Sales invoices (ACCREC)",
    source=XeroCollection("Invoices", id_field="InvoiceID", where='Type=="ACCREC"', webhook_category="INVOICE"),
    contract=XeroInvoice,
    key="invoice_id",
    flatten=flatten_invoice,
    target=SegmentTarget(
        TrackMapping(
            object_name="Invoice",
            user_id="contact_id",
            timestamp="updated_at",
            properties={
                "invoice_id": "invoice_id",
                "invoice_number": "invoice_number",
                "status": "status",
                "total": "total",
                "amount_due": "amount_due",
                "amount_paid": "amount_paid",
                "date": "date",
                "due_date": "due_date",
            },
            status_events={"PAID": "Paid", "VOIDED": "Voided", "DELETED": "Deleted"},
            revenue_column="total",
            currency_column="currency_code",
            amount_property="total",
            traits={"name": "contact_name", "email": "contact_email", "xero_contact_id": "contact_id"},
        )
    ),
)

SPECS = [INVOICES]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(*(build_entity_sync(spec) for spec in SPECS))
