"""Whatever a record holds, judging it never raises: each poison value becomes a reason naming its field."""

import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.typing import Series

from sync_pipelines.lib.validation import split_valid
from sync_pipelines.vendors.intercom.contracts import IntercomContact, flatten_contact
from sync_pipelines.vendors.salesforce.contracts import SalesforceAccount, flatten_account
from sync_pipelines.vendors.xero.contracts.invoice import XeroInvoice, flatten_invoice
from sync_pipelines_tests.lib.records import invoice, judge

ID = "046d8a6d-1ae1-4b4d-9340-5601bdf41b87"
OTHER = ID[:-1] + "0"
CONTACT = "a3675fc4-f8dd-4f03-ba5b-f1870566bcd7"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"Total": "100.00"}, "total: '100.00' is not a valid number"),  # a string where a number is
        ({"AmountPaid": True}, "amount_paid: True is not a valid number"),
        ({"AmountDue": float("nan")}, "amount_due: nan is not a finite number"),
        ({"Total": float("inf"), "SubTotal": float("inf")}, "total: inf is not a finite number"),
        ({"Total": 10**400}, "total: 1000000000"),  # beyond any float
        ({"InvoiceNumber": 1001}, "invoice_number: 1001 is not text"),  # a number where a string is
        ({"Status": ["PAID"]}, "status: ['PAID'] is not text"),  # a list where a scalar is
        ({"Type": {"is": "ACCREC"}}, "type: {'is': 'ACCREC'} is not text"),
        ({"InvoiceID": 12345}, "invoice_id: 12345 is not text"),
        ({"InvoiceID": [ID]}, "invoice_id: ['046d8a6d"),  # unhashable, in the unique key column
        ({"Date": "/Date(99999999999999999+0000)/"}, "date: '/Date(99999999999999999+0000)/' is not a valid date"),
        ({"Date": "3170843-01-01T00:00:00"}, "date: '3170843-01-01T00:00:00' is not a valid date"),
        ({"Date": f"/Date({'9' * 400})/"}, "date: '/Date(999"),  # beyond any float
        ({"DueDate": "/Date(32503680000000+0000)/"}, "due_date: '/Date(32503680000000+0000)/' is not a valid date"),
        ({"UpdatedDateUTC": 1736942400000}, "updated_at: 1736942400000 is not a valid date"),
        ({"InvoiceNumber": "INV\x00-1"}, "invoice_number: 'INV\\x00-1' holds the control character"),
        ({"Reference": "PO\x1b[31m"}, "reference: 'PO\\x1b[31m' holds the control character or lone surrogate U+001B"),
        ({"InvoiceNumber": "INV-\ud800"}, "holds the control character or lone surrogate U+D800"),
        ({"InvoiceNumber": "INV-1\r\nX"}, "holds a tab or line break (U+000D) in a single-line field"),
    ],
)
def test_a_poison_value_is_refused_with_a_reason_naming_its_field(change, reason):
    valid, reasons = judge(XeroInvoice, flatten_invoice, [invoice(ID, CONTACT, **change), invoice(OTHER, CONTACT)])
    assert valid["invoice_id"].tolist() == [OTHER]
    assert len(reasons) == 1 and reason in reasons[0], reasons


def test_a_200_kb_string_is_quoted_short_in_its_reason():
    _, reasons = judge(XeroInvoice, flatten_invoice, [invoice(ID, CONTACT, InvoiceNumber=["x" * 200_000])])
    assert reasons[0].startswith("invoice_number: ['xxx") and len(reasons[0]) < 200


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"Contact": [{"ContactID": CONTACT}]}, "Contact is list, not an object"),
        ({"Contact": "Ridgeway"}, "Contact is str, not an object"),
        ({"LineItems": {"Description": "one"}}, "LineItems is dict, not a list"),
        ({"LineItems": [{"Description": "one"}, 7]}, "LineItems[1] is int, not an object"),
    ],
)
def test_nested_junk_is_no_invoice_the_flatten_can_read(change, error):
    with pytest.raises(ValueError, match=error.replace("[", r"\[").replace("]", r"\]")):
        flatten_invoice(invoice(ID, CONTACT, **change))


def test_versions_of_one_record_are_judged_each_on_its_own():
    versions = [invoice(ID, CONTACT), invoice(ID, CONTACT, Total="x"), invoice(ID, CONTACT, Status="PAID")]
    valid, reasons = judge(XeroInvoice, flatten_invoice, versions)
    assert valid["status"].tolist() == ["AUTHORISED", "PAID"] and reasons == ["total: 'x' is not a valid number"]


class _Named(pa.DataFrameModel):
    name: Series[str]
    code: Series[str]

    class Config:
        strict = True


def test_a_failure_naming_no_row_quarantines_every_row_instead_of_failing_the_batch():
    frame = pd.DataFrame([{"name": "a"}, {"name": "b"}], dtype=object)  # the contract's `code` column is missing
    valid, rejected = split_valid(frame, _Named)
    assert valid.empty and len(rejected) == 2
    assert rejected["reasons"].tolist() == ["batch: column_in_dataframe failed for 'code'"] * 2


ACCOUNT = {"Id": "001000000000000AAA", "IsDeleted": False, "SystemModstamp": "2025-01-15T10:20:30.000+0000",
           "Name": "Acme", "BillingStreet": "1 Main St\nSuite 2"}  # fmt: skip


def test_a_free_text_field_keeps_its_line_breaks_where_a_single_line_field_may_not():
    records = [ACCOUNT, {**ACCOUNT, "Id": "001000000000000AAB", "Name": "Acme\nLtd"}]
    valid, reasons = judge(SalesforceAccount, flatten_account, records)
    assert valid["street"].tolist() == ["1 Main St\nSuite 2"]
    assert reasons == ["name: 'Acme\\nLtd' holds a tab or line break (U+000A) in a single-line field"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"Name": "A" * 256}, "name: str_length(1, 255) failed"),  # Salesforce holds at most 255
        ({"SystemModstamp": "9999-01-15T10:20:30.000+0000"}, "updated_at: '9999-01-15T10:20:30.000+0000' is not"),
        ({"IsDeleted": "false"}, "is_deleted: 'false' is not a valid boolean"),
        ({"Id": 1}, "id: 1 is not text"),
    ],
)
def test_a_poison_salesforce_account_is_refused(change, reason):
    valid, reasons = judge(SalesforceAccount, flatten_account, [{**ACCOUNT, **change}])
    assert valid.empty and reason in reasons[0], reasons


CONTACT_RECORD = {"id": "65f0a1b2c3d4e5f607182930", "role": "user", "email": "ana@example.com", "name": "Ana",
                  "updated_at": 1_736_942_400}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"updated_at": 10**15}, "updated_at: 1000000000000000 is not a valid date"),  # year 31 million
        ({"updated_at": 1_736_942_400.5}, "updated_at: 1736942400.5 is not a valid date"),
        ({"updated_at": True}, "updated_at: True is not a valid date"),
        ({"name": ["Ana"]}, "name: ['Ana'] is not text"),
    ],
)
def test_a_poison_intercom_contact_is_refused(change, reason):
    valid, reasons = judge(IntercomContact, flatten_contact, [{**CONTACT_RECORD, **change}])
    assert valid.empty and reason in reasons[0], reasons
