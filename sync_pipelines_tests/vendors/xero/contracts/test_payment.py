"""XeroPayment: how a Payments element becomes a row, and which elements the contract refuses, and why."""

import pandas as pd
import pytest

from sync_pipelines.vendors.xero.contracts.payment import XeroPayment, flatten_payment
from sync_pipelines_tests.lib.records import BANK_ACCOUNT, invoice, judge, payment, rows

CONTACT = "a3675fc4-f8dd-4f03-ba5b-f1870566bcd7"
SALE = invoice("046d8a6d-1ae1-4b4d-9340-5601bdf41b87", CONTACT, currency="NZD", sub_total="46.00")
BILL = invoice("8f2b1c3a-0d4e-4f5a-9b6c-7d8e9f0a1b2c", CONTACT, invoice_type="ACCPAY", account_codes=("429",))
ID = "99ea7f6b-c513-4066-bc27-b7c65dcd76c2"


def test_a_payment_carries_its_invoice_currency_and_contact():
    received = payment(ID, SALE, "46.00", "2025-02-14", Reference="Direct Debit", CurrencyRate=0.6123)
    valid, reasons = judge(XeroPayment, flatten_payment, [received])
    assert reasons == []
    assert rows(valid) == [
        {
            "payment_id": ID,
            "payment_type": "ACCRECPAYMENT",
            "status": "AUTHORISED",
            "date": pd.Timestamp("2025-02-14T00:00:00Z"),
            "amount": 46.0,
            "currency_code": "NZD",
            "currency_rate": 0.6123,
            "invoice_id": SALE["InvoiceID"],
            "invoice_number": SALE["InvoiceNumber"],
            "invoice_type": "ACCREC",
            "contact_id": CONTACT,
            "contact_name": "Ridgeway University",
            "bank_account_id": BANK_ACCOUNT["AccountID"],
            "bank_account_code": "090",
            "reference": "Direct Debit",
            "is_reconciled": False,
            "updated_at": pd.Timestamp("2025-02-14T13:00:00Z"),
        }
    ]


def test_a_bill_payment_and_a_deleted_payment_meet_the_contract():
    made = payment(ID, BILL, "100.00", "2025-02-20", Reference="")
    deleted = payment(ID[:-1] + "3", SALE, "10.00", "2025-02-21", status="DELETED")
    valid, reasons = judge(XeroPayment, flatten_payment, [made, deleted])
    assert reasons == []
    assert [(r["payment_type"], r["status"], r["reference"]) for r in rows(valid)] == [
        ("ACCPAYPAYMENT", "AUTHORISED", None),
        ("ACCRECPAYMENT", "DELETED", None),
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"PaymentID": None}, "payment_id: missing"),
        # xero.md §2.9: a credit-note payment pays no invoice; it is not an invoice payment.
        ({"PaymentType": "ARCREDITPAYMENT"}, "payment_type: isin"),
        ({"PaymentType": "ACCPAYPAYMENT"}, "row: payment_type_matches_invoice_type failed"),
        ({"Status": "VOIDED"}, "status: isin"),
        ({"Amount": -46.0}, "amount: greater_than_or_equal_to(0)"),
        ({"Amount": "46,00"}, "amount: '46,00' is not a valid"),
        ({"CurrencyRate": 0}, "currency_rate: greater_than(0)"),
        ({"Date": "2025-02-30"}, "date: '2025-02-30' is not a valid"),
        (
            {"Invoice": {**payment(ID, SALE, "1", "2025-01-01")["Invoice"], "Type": "ACCRECCREDIT"}},
            "invoice_type: isin",
        ),
        ({"Invoice": {**payment(ID, SALE, "1", "2025-01-01")["Invoice"], "Contact": {}}}, "contact_id: missing"),
        ({"Account": {"AccountID": "not-a-guid", "Code": "090"}}, "bank_account_id: str_matches"),
        ({"IsReconciled": None}, "is_reconciled: missing"),
    ],
)
def test_a_broken_payment_is_refused_with_a_reason_naming_the_field(change, reason):
    broken = payment(ID, SALE, "46.00", "2025-02-14", **change)
    valid, reasons = judge(XeroPayment, flatten_payment, [broken, payment(ID[:-1] + "0", SALE, "1.00", "2025-02-14")])
    assert len(valid) == 1
    assert len(reasons) == 1 and reason in reasons[0], reasons


def test_a_payment_without_its_invoice_names_every_field_it_lacks():
    _, reasons = judge(XeroPayment, flatten_payment, [payment(ID, SALE, "46.00", "2025-02-14", Invoice=None)])
    assert reasons == [
        "currency_code: missing; invoice_id: missing; invoice_type: missing; contact_id: missing",
    ]
