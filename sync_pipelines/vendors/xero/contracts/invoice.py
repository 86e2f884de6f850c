"""The contract of a Xero invoice (ACCREC sales invoice or ACCPAY bill) as the sync relies on it."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from sync_pipelines.vendors.xero.contracts.common import (
    CURRENCY_PATTERN,
    UTC_TIMESTAMP,
    UUID_PATTERN,
    XeroDocument,
    document_totals,
    nested,
    optional_text,
    parse_xero_date,
)

# xero.md §2.4
INVOICE_STATUSES = ["DRAFT", "SUBMITTED", "AUTHORISED", "PAID", "VOIDED", "DELETED"]


class XeroInvoice(XeroDocument):
    """One row per invoice at its latest UpdatedDateUTC; money in the invoice currency."""

    invoice_id: Series[str] = pa.Field(str_matches=UUID_PATTERN, unique=True, description="Xero InvoiceID")
    invoice_number: Series[str] = pa.Field(nullable=True, description="InvoiceNumber (a bill's reference)")
    reference: Series[pd.StringDtype] = pa.Field(
        nullable=True, description="Reference (sales invoices only, xero.md §2.4)"
    )
    type: Series[str] = pa.Field(isin=["ACCREC", "ACCPAY"], description="ACCREC sales invoice, ACCPAY bill")
    status: Series[str] = pa.Field(isin=INVOICE_STATUSES)
    contact_id: Series[str] = pa.Field(str_matches=UUID_PATTERN, description="Xero ContactID of the customer")
    contact_name: Series[str] = pa.Field(nullable=True)
    contact_email: Series[str] = pa.Field(nullable=True)
    currency_code: Series[str] = pa.Field(str_matches=CURRENCY_PATTERN, description="ISO 4217")
    date: Series[UTC_TIMESTAMP] = pa.Field(description="Invoice date")
    due_date: Series[UTC_TIMESTAMP] = pa.Field(nullable=True)
    fully_paid_on_date: Series[UTC_TIMESTAMP] = pa.Field(
        nullable=True, description="FullyPaidOnDate: set once payments cover the total (xero.md §2.4)"
    )
    amount_due: Series[float] = pa.Field(ge=0)
    amount_paid: Series[float] = pa.Field(ge=0)


def flatten_invoice(record: dict) -> dict:
    """A raw Invoices element as a contract row; values are left as they came for the contract to judge."""
    contact = nested(record, "Contact")
    return {
        "invoice_id": record.get("InvoiceID"),
        "invoice_number": record.get("InvoiceNumber"),
        "reference": optional_text(record.get("Reference")),
        "type": record.get("Type"),
        "status": record.get("Status"),
        "contact_id": contact.get("ContactID"),
        "contact_name": contact.get("Name"),
        "contact_email": contact.get("EmailAddress"),
        "currency_code": record.get("CurrencyCode"),
        "date": parse_xero_date(record.get("Date")),
        "due_date": parse_xero_date(record.get("DueDate")),
        "fully_paid_on_date": parse_xero_date(record.get("FullyPaidOnDate")),
        "amount_due": record.get("AmountDue"),
        "amount_paid": record.get("AmountPaid"),
        **document_totals(record),
    }
