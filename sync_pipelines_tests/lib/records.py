"""Hand-written Xero records shaped as the Accounting API renders them (spec examples; the sandbox's rendering).

Tests build exact fixtures from these, change one field, and judge them with the pipeline's own validation.
"""

from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd
import pandera.pandas as pa

from sync_pipelines.lib.validation import split_valid

BANK_ACCOUNT = {"AccountID": "5690f1e8-1d02-4893-90c2-ee1a69eff942", "Code": "090"}


def xero_date(day: str, time: str = "00:00:00") -> str:
    """A date as Xero renders it: .NET JSON ms with +0000; calendar dates are midnight UTC (xero.md §2.2)."""
    moment = datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=UTC)
    return f"/Date({int(moment.timestamp() * 1000)}+0000)/"


def judge(model: type[pa.DataFrameModel], flatten, records: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """(valid rows, reasons of each rejected record) as the validated asset would find them."""
    valid, rejected = split_valid(pd.DataFrame([flatten(record) for record in records], dtype=object), model)
    return valid, rejected["reasons"].tolist()


def rows(frame: pd.DataFrame) -> list[dict]:
    """Validated rows as plain dicts, any missing value (None, NA, NaT) as None."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def contact(contact_id: str, name: str = "Ridgeway University", **fields) -> dict:
    """A full (paged) Contacts element: both address types and the four phone types, as Xero lists them."""
    record = {
        "ContactID": contact_id,
        "ContactStatus": "ACTIVE",
        "Name": name,
        "FirstName": "Emma",
        "LastName": "Stone",
        "EmailAddress": "emma.stone@ridgeway.example",
        "BankAccountDetails": "",
        "Addresses": [
            {"AddressType": "STREET", "AddressLine1": "", "City": "", "Region": "", "PostalCode": "", "Country": ""},
            {
                "AddressType": "POBOX",
                "AddressLine1": "PO Box 8721",
                "City": "Oaktown",
                "Region": "CA",
                "PostalCode": "94608",
                "Country": "United States",
            },
        ],
        "Phones": [
            {"PhoneType": "DEFAULT", "PhoneNumber": "555-0100", "PhoneAreaCode": "415", "PhoneCountryCode": "1"},
            {"PhoneType": "DDI", "PhoneNumber": "", "PhoneAreaCode": "", "PhoneCountryCode": ""},
            {"PhoneType": "FAX", "PhoneNumber": "", "PhoneAreaCode": "", "PhoneCountryCode": ""},
            {"PhoneType": "MOBILE", "PhoneNumber": "", "PhoneAreaCode": "", "PhoneCountryCode": ""},
        ],
        "UpdatedDateUTC": xero_date("2025-01-15", "09:30:00"),
        "ContactGroups": [],
        "IsSupplier": False,
        "IsCustomer": True,
        "ContactPersons": [],
        "HasAttachments": False,
        "HasValidationErrors": False,
    }
    return {**record, **fields}


def invoice(
    invoice_id: str,
    contact_id: str,
    *,
    invoice_type: str = "ACCREC",
    status: str = "AUTHORISED",
    currency: str = "USD",
    date: str = "2025-01-01",
    due: str = "2025-01-31",
    sub_total: str = "100.00",
    tax: str = "0.00",
    paid: str = "0.00",
    fully_paid_on: str | None = None,
    account_codes: tuple[str, ...] = ("200",),
    **fields,
) -> dict:
    """An Invoices element; Total, AmountPaid and AmountDue follow Xero's rules (xero.md §2.4, §7: VOIDED and
    DELETED owe nothing)."""
    total = Decimal(sub_total) + Decimal(tax)
    due_amount = Decimal(0) if status in ("VOIDED", "DELETED") else total - Decimal(paid)
    lines = [
        {
            "LineItemID": f"00000000-0000-4000-8000-{n:012d}",
            "Description": f"Line {n}",
            "Quantity": 1.0,
            "UnitAmount": float(Decimal(sub_total) / len(account_codes)),
            "AccountCode": code,
            "TaxType": "NONE",
        }
        for n, code in enumerate(account_codes)
    ]
    record = {
        "Type": invoice_type,
        "InvoiceID": invoice_id,
        "InvoiceNumber": f"INV-{invoice_id[:4]}",
        "Reference": "",
        "Payments": [],
        "AmountDue": float(due_amount),
        "AmountPaid": float(paid),
        "AmountCredited": 0.0,
        "CurrencyRate": 1.0,
        "HasErrors": False,
        "Contact": {"ContactID": contact_id, "Name": "Ridgeway University", "EmailAddress": ""},
        "Date": xero_date(date),
        "DateString": f"{date}T00:00:00",
        "DueDate": xero_date(due),
        "DueDateString": f"{due}T00:00:00",
        "Status": status,
        "LineAmountTypes": "Exclusive",
        "LineItems": lines,
        "SubTotal": float(sub_total),
        "TotalTax": float(tax),
        "Total": float(total),
        "UpdatedDateUTC": xero_date(date, "12:00:00"),
        "CurrencyCode": currency,
    }
    if fully_paid_on is not None:
        record["FullyPaidOnDate"] = xero_date(fully_paid_on)
    return {**record, **fields}


def payment(
    payment_id: str,
    paid: dict,
    amount: str,
    date: str,
    *,
    status: str = "AUTHORISED",
    **fields,
) -> dict:
    """A Payments element against the invoice `paid`, shaped like the spec's getPayments example."""
    record = {
        "PaymentID": payment_id,
        "Date": xero_date(date),
        "BankAmount": float(amount),
        "Amount": float(amount),
        "Reference": "",
        "CurrencyRate": 1.0,
        "PaymentType": "ACCRECPAYMENT" if paid["Type"] == "ACCREC" else "ACCPAYPAYMENT",
        "Status": status,
        "UpdatedDateUTC": xero_date(date, "13:00:00"),
        "UpdatedDateUTCString": f"{date}T13:00:00Z",
        "HasAccount": True,
        "IsReconciled": False,
        "Account": dict(BANK_ACCOUNT),
        "Invoice": {
            "Type": paid["Type"],
            "InvoiceID": paid["InvoiceID"],
            "InvoiceNumber": paid["InvoiceNumber"],
            "Contact": paid["Contact"],
            "CurrencyCode": paid["CurrencyCode"],
        },
        "HasValidationErrors": False,
    }
    return {**record, **fields}


def bank_transaction(transaction_id: str, contact_id: str | None, **fields) -> dict:
    """A BankTransactions element: a SPEND of 100.00 + 15.00 tax over two expense lines (xero.md §2.8)."""
    record = {
        "BankTransactionID": transaction_id,
        "BankAccount": {**BANK_ACCOUNT, "Name": "Business Bank Account"},
        "Type": "SPEND",
        "Reference": "Card 4411",
        "IsReconciled": True,
        "HasAttachments": False,
        "Date": xero_date("2025-02-03"),
        "DateString": "2025-02-03T00:00:00",
        "Status": "AUTHORISED",
        "LineAmountTypes": "Exclusive",
        "LineItems": [
            {"Description": "Taxi", "Quantity": 1.0, "UnitAmount": 40.0, "AccountCode": "493", "TaxType": "INPUT"},
            {"Description": "Paper", "Quantity": 1.0, "UnitAmount": 60.0, "AccountCode": "453", "TaxType": "INPUT"},
        ],
        "SubTotal": 100.0,
        "TotalTax": 15.0,
        "Total": 115.0,
        "UpdatedDateUTC": xero_date("2025-02-03", "17:45:00"),
        "CurrencyCode": "USD",
    }
    if contact_id is not None:
        record["Contact"] = {"ContactID": contact_id, "Name": "City Taxis", "EmailAddress": ""}
    return {**record, **fields}
