"""The contract of a Xero bank transaction (money spent or received outside invoices and bills)."""

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

# xero.md §2.8
BANK_TRANSACTION_TYPES = [
    "RECEIVE",
    "RECEIVE-OVERPAYMENT",
    "RECEIVE-PREPAYMENT",
    "SPEND",
    "SPEND-OVERPAYMENT",
    "SPEND-PREPAYMENT",
    "RECEIVE-TRANSFER",
    "SPEND-TRANSFER",
]
BANK_TRANSACTION_STATUSES = ["AUTHORISED", "DELETED", "VOIDED"]  # no draft state (xero.md §2.8)


class XeroBankTransaction(XeroDocument):
    """One row per bank transaction at its latest UpdatedDateUTC; money in the transaction currency."""

    bank_transaction_id: Series[pd.StringDtype] = pa.Field(
        str_matches=UUID_PATTERN, unique=True, description="Xero BankTransactionID"
    )
    type: Series[pd.StringDtype] = pa.Field(
        isin=BANK_TRANSACTION_TYPES, description="SPEND is an expense, RECEIVE income"
    )
    status: Series[pd.StringDtype] = pa.Field(isin=BANK_TRANSACTION_STATUSES)
    contact_id: Series[pd.StringDtype] = pa.Field(
        nullable=True, str_matches=UUID_PATTERN, description="Contact.ContactID; a bank fee may have none"
    )
    contact_name: Series[pd.StringDtype] = pa.Field(nullable=True, description="Contact.Name")
    date: Series[UTC_TIMESTAMP] = pa.Field(description="Date of the transaction")
    currency_code: Series[pd.StringDtype] = pa.Field(str_matches=CURRENCY_PATTERN, description="ISO 4217")
    bank_account_id: Series[pd.StringDtype] = pa.Field(str_matches=UUID_PATTERN, description="BankAccount.AccountID")
    bank_account_code: Series[pd.StringDtype] = pa.Field(nullable=True, description="BankAccount.Code, e.g. '090'")
    bank_account_name: Series[pd.StringDtype] = pa.Field(nullable=True, description="BankAccount.Name")
    reference: Series[pd.StringDtype] = pa.Field(nullable=True, description="Reference (SPEND and RECEIVE only)")
    is_reconciled: Series[pd.BooleanDtype] = pa.Field(description="IsReconciled")


def flatten_bank_transaction(record: dict) -> dict:
    """A raw BankTransactions element as a contract row; values are left as they came for the contract to judge."""
    contact, account = nested(record, "Contact"), nested(record, "BankAccount")
    return {
        "bank_transaction_id": record.get("BankTransactionID"),
        "type": record.get("Type"),
        "status": record.get("Status"),
        "contact_id": optional_text(contact.get("ContactID")),
        "contact_name": optional_text(contact.get("Name")),
        "date": parse_xero_date(record.get("Date")),
        "currency_code": record.get("CurrencyCode"),
        "bank_account_id": account.get("AccountID"),
        "bank_account_code": optional_text(account.get("Code")),
        "bank_account_name": optional_text(account.get("Name")),
        "reference": optional_text(record.get("Reference")),
        "is_reconciled": record.get("IsReconciled"),
        **document_totals(record),
    }
