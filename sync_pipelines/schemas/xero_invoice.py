"""The contract of a Xero invoice (ACCREC sales invoice or ACCPAY bill) as the sync relies on it."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from sync_pipelines.schemas.xero import UUID_PATTERN, parse_xero_date

# xero.md §2.4
INVOICE_STATUSES = ["DRAFT", "SUBMITTED", "AUTHORISED", "PAID", "VOIDED", "DELETED"]
UTC_TIMESTAMP = pd.DatetimeTZDtype(unit="ns", tz="UTC")


class XeroInvoice(pa.DataFrameModel):
    """One row per invoice at its latest UpdatedDateUTC; money in the invoice currency."""

    invoice_id: Series[str] = pa.Field(str_matches=UUID_PATTERN, unique=True, description="Xero InvoiceID")
    invoice_number: Series[str] = pa.Field(nullable=True, description="InvoiceNumber (a bill's reference)")
    type: Series[str] = pa.Field(isin=["ACCREC", "ACCPAY"], description="ACCREC sales invoice, ACCPAY bill")
    status: Series[str] = pa.Field(isin=INVOICE_STATUSES)
    contact_id: Series[str] = pa.Field(str_matches=UUID_PATTERN, description="Xero ContactID of the customer")
    contact_name: Series[str] = pa.Field(nullable=True)
    contact_email: Series[str] = pa.Field(nullable=True)
    currency_code: Series[str] = pa.Field(str_matches=r"^[A-Z]{3}$", description="ISO 4217")
    date: Series[UTC_TIMESTAMP] = pa.Field(description="Invoice date")
    due_date: Series[UTC_TIMESTAMP] = pa.Field(nullable=True)
    sub_total: Series[float] = pa.Field(ge=0)
    total_tax: Series[float] = pa.Field(ge=0)
    total: Series[float] = pa.Field(ge=0)
    amount_due: Series[float] = pa.Field(ge=0)
    amount_paid: Series[float] = pa.Field(ge=0)
    line_item_count: Series[int] = pa.Field(ge=0)
    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="UpdatedDateUTC: the incremental cursor")

    @pa.dataframe_check(description="Total = SubTotal + TotalTax (to the cent)")
    def total_adds_up(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["sub_total"] + df["total_tax"] - df["total"]).abs() < 0.01

    class Config:
        coerce = True
        strict = True


def flatten_invoice(record: dict) -> dict:
    """A raw Invoices element as a contract row; values are left as they came for the contract to judge."""
    contact = record.get("Contact") or {}
    return {
        "invoice_id": record.get("InvoiceID"),
        "invoice_number": record.get("InvoiceNumber"),
        "type": record.get("Type"),
        "status": record.get("Status"),
        "contact_id": contact.get("ContactID"),
        "contact_name": contact.get("Name"),
        "contact_email": contact.get("EmailAddress"),
        "currency_code": record.get("CurrencyCode"),
        "date": parse_xero_date(record.get("Date")),
        "due_date": parse_xero_date(record.get("DueDate")),
        "sub_total": record.get("SubTotal"),
        "total_tax": record.get("TotalTax"),
        "total": record.get("Total"),
        "amount_due": record.get("AmountDue"),
        "amount_paid": record.get("AmountPaid"),
        "line_item_count": len(record.get("LineItems") or []),
        "updated_at": parse_xero_date(record.get("UpdatedDateUTC")),
    }
