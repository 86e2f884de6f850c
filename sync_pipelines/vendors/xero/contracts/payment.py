"""The contract of a Xero invoice payment (money received for a sales invoice or paid for a bill)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from sync_pipelines.vendors.xero.contracts.common import (
    CURRENCY_PATTERN,
    UTC_TIMESTAMP,
    UUID_PATTERN,
    nested,
    optional_text,
    parse_xero_date,
)

# xero.md §2.9: the payment types of invoices and bills, and the invoice type each one pays. Payments of credit
# notes, prepayments and overpayments (ARCREDITPAYMENT, ...) pay no invoice and are outside this contract.
INVOICE_TYPE_OF_PAYMENT = {"ACCRECPAYMENT": "ACCREC", "ACCPAYPAYMENT": "ACCPAY"}
PAYMENT_STATUSES = ["AUTHORISED", "DELETED"]


class XeroPayment(pa.DataFrameModel):
    """One row per payment at its latest UpdatedDateUTC; money in the invoice currency."""

    payment_id: Series[pd.StringDtype] = pa.Field(str_matches=UUID_PATTERN, unique=True, description="Xero PaymentID")
    payment_type: Series[pd.StringDtype] = pa.Field(
        isin=list(INVOICE_TYPE_OF_PAYMENT), description="ACCRECPAYMENT received, ACCPAYPAYMENT made"
    )
    status: Series[pd.StringDtype] = pa.Field(isin=PAYMENT_STATUSES, description="DELETED reverses the payment (§2.9)")
    date: Series[UTC_TIMESTAMP] = pa.Field(description="Date the payment was made")
    amount: Series[float] = pa.Field(ge=0, description="Amount in the invoice currency")
    currency_code: Series[pd.StringDtype] = pa.Field(str_matches=CURRENCY_PATTERN, description="Invoice.CurrencyCode")
    currency_rate: Series[float] = pa.Field(gt=0, description="CurrencyRate to the organisation's base currency")
    invoice_id: Series[pd.StringDtype] = pa.Field(str_matches=UUID_PATTERN, description="Invoice.InvoiceID")
    invoice_number: Series[pd.StringDtype] = pa.Field(nullable=True, description="Invoice.InvoiceNumber")
    invoice_type: Series[pd.StringDtype] = pa.Field(
        isin=list(INVOICE_TYPE_OF_PAYMENT.values()), description="Invoice.Type"
    )
    contact_id: Series[pd.StringDtype] = pa.Field(str_matches=UUID_PATTERN, description="Invoice.Contact.ContactID")
    contact_name: Series[pd.StringDtype] = pa.Field(nullable=True, description="Invoice.Contact.Name")
    bank_account_id: Series[pd.StringDtype] = pa.Field(
        nullable=True, str_matches=UUID_PATTERN, description="Account.AccountID paid into or from"
    )
    bank_account_code: Series[pd.StringDtype] = pa.Field(nullable=True, description="Account.Code")
    reference: Series[pd.StringDtype] = pa.Field(nullable=True)
    is_reconciled: Series[pd.BooleanDtype] = pa.Field(description="IsReconciled")
    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="UpdatedDateUTC: the incremental cursor")

    @pa.dataframe_check(description="PaymentType matches the paid invoice's Type")
    def payment_type_matches_invoice_type(cls, df: pd.DataFrame) -> Series[bool]:
        return df["payment_type"].map(INVOICE_TYPE_OF_PAYMENT) == df["invoice_type"]

    class Config:
        coerce = True
        strict = True


def flatten_payment(record: dict) -> dict:
    """A raw Payments element as a contract row; values are left as they came for the contract to judge."""
    invoice, account = nested(record, "Invoice"), nested(record, "Account")
    contact = nested(invoice, "Contact")
    return {
        "payment_id": record.get("PaymentID"),
        "payment_type": record.get("PaymentType"),
        "status": record.get("Status"),
        "date": parse_xero_date(record.get("Date")),
        "amount": record.get("Amount"),
        "currency_code": invoice.get("CurrencyCode"),
        "currency_rate": record.get("CurrencyRate"),
        "invoice_id": invoice.get("InvoiceID"),
        "invoice_number": optional_text(invoice.get("InvoiceNumber")),
        "invoice_type": invoice.get("Type"),
        "contact_id": contact.get("ContactID"),
        "contact_name": optional_text(contact.get("Name")),
        "bank_account_id": optional_text(account.get("AccountID")),
        "bank_account_code": optional_text(account.get("Code")),
        "reference": optional_text(record.get("Reference")),
        "is_reconciled": record.get("IsReconciled"),
        "updated_at": parse_xero_date(record.get("UpdatedDateUTC")),
    }
