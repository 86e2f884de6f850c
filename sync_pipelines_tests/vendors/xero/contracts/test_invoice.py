"""XeroInvoice: the columns enrichment and the expense flows read, and the reasons a broken invoice gets."""

import pandas as pd
import pytest

from sync_pipelines.vendors.xero.contracts.invoice import XeroInvoice, flatten_invoice
from sync_pipelines_tests.lib.records import invoice, judge, rows

ID = "046d8a6d-1ae1-4b4d-9340-5601bdf41b87"
CONTACT = "a3675fc4-f8dd-4f03-ba5b-f1870566bcd7"


def test_a_paid_invoice_has_its_fully_paid_date_reference_and_account_codes():
    paid = invoice(
        ID,
        CONTACT,
        status="PAID",
        date="2025-01-10",
        due="2025-02-09",
        sub_total="300.00",
        tax="45.00",
        paid="345.00",
        fully_paid_on="2025-01-26",
        account_codes=("200", "260", "200"),
        Reference="PO-5521",
    )
    valid, reasons = judge(XeroInvoice, flatten_invoice, [paid])
    assert reasons == []
    (row,) = rows(valid)
    assert {k: row[k] for k in ("reference", "date", "due_date", "fully_paid_on_date", "account_codes")} == {
        "reference": "PO-5521",
        "date": pd.Timestamp("2025-01-10T00:00:00Z"),
        "due_date": pd.Timestamp("2025-02-09T00:00:00Z"),
        "fully_paid_on_date": pd.Timestamp("2025-01-26T00:00:00Z"),
        "account_codes": "200,260",
    }
    assert (row["total"], row["amount_paid"], row["amount_due"], row["line_item_count"]) == (345.0, 345.0, 0.0, 3)


def test_an_unpaid_bill_has_no_paid_date_and_no_reference():
    bill = invoice(ID, CONTACT, invoice_type="ACCPAY", account_codes=("429",))
    valid, reasons = judge(XeroInvoice, flatten_invoice, [bill, invoice(ID[:-1] + "0", CONTACT, LineItems=[])])
    assert reasons == []
    assert [(r["type"], r["fully_paid_on_date"], r["reference"], r["account_codes"]) for r in rows(valid)] == [
        ("ACCPAY", None, None, "429"),
        ("ACCREC", None, None, None),
    ]


def test_an_invoice_whose_discount_line_nets_its_tax_below_zero_is_kept():
    """Zero-rated goods and a discount line on a taxed account: Xero computes the tax per line and keeps it."""
    discounted = invoice(ID, CONTACT, sub_total="95.00", tax="-0.75")
    valid, reasons = judge(XeroInvoice, flatten_invoice, [discounted])
    assert reasons == []
    assert [(row["total_tax"], row["total"]) for row in rows(valid)] == [(-0.75, 94.25)]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"InvoiceID": None}, "invoice_id: missing"),
        ({"Type": "ACCRECCREDIT"}, "type: isin"),
        ({"Status": "PENDING"}, "status: isin"),
        ({"FullyPaidOnDate": "/Date(yesterday)/"}, "fully_paid_on_date: '/Date(yesterday)/' is not a valid"),
        ({"Total": "12,34.x"}, "total: '12,34.x' is not a valid"),
        ({"Total": 99.0}, "row: total_adds_up failed"),
        ({"CurrencyCode": "US$"}, "currency_code: str_matches"),
    ],
)
def test_a_broken_invoice_is_refused_with_a_reason_naming_the_field(change, reason):
    records = [invoice(ID, CONTACT, **change), invoice(ID[:-1] + "0", CONTACT)]
    valid, reasons = judge(XeroInvoice, flatten_invoice, records)
    assert len(valid) == 1
    assert len(reasons) == 1 and reason in reasons[0], reasons
