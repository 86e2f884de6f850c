"""XeroBankTransaction: how a BankTransactions element becomes a row, and which ones the contract refuses."""

import pandas as pd
import pytest

from sync_pipelines.vendors.xero.contracts.bank_transaction import XeroBankTransaction, flatten_bank_transaction
from sync_pipelines_tests.lib.records import BANK_ACCOUNT, bank_transaction, judge, rows

ID = "d20b6c54-7f5d-4ce6-ab83-55f609719126"
CONTACT = "6d42f03b-181f-43e3-93fb-2025c012de92"


def test_a_spend_flattens_with_its_bank_account_and_distinct_line_account_codes():
    lines = bank_transaction(ID, CONTACT)["LineItems"]
    record = bank_transaction(ID, CONTACT, LineItems=[*lines, {**lines[0], "Description": "Airport taxi"}])
    valid, reasons = judge(XeroBankTransaction, flatten_bank_transaction, [record])
    assert reasons == []
    assert rows(valid) == [
        {
            "bank_transaction_id": ID,
            "type": "SPEND",
            "status": "AUTHORISED",
            "contact_id": CONTACT,
            "contact_name": "City Taxis",
            "date": pd.Timestamp("2025-02-03T00:00:00Z"),
            "currency_code": "USD",
            "sub_total": 100.0,
            "total_tax": 15.0,
            "total": 115.0,
            "bank_account_id": BANK_ACCOUNT["AccountID"],
            "bank_account_code": "090",
            "bank_account_name": "Business Bank Account",
            "reference": "Card 4411",
            "is_reconciled": True,
            "line_item_count": 3,
            "account_codes": "453,493",  # lines post to 493, 453, 493: distinct and sorted
            "updated_at": pd.Timestamp("2025-02-03T17:45:00Z"),
        }
    ]


def test_a_bank_fee_without_a_contact_and_a_deleted_receipt_meet_the_contract():
    fee = bank_transaction(ID, None, Reference="")
    receipt = bank_transaction(ID[:-1] + "7", CONTACT, Type="RECEIVE", Status="DELETED")
    valid, reasons = judge(XeroBankTransaction, flatten_bank_transaction, [fee, receipt])
    assert reasons == []
    assert [(r["type"], r["status"], r["contact_id"], r["reference"]) for r in rows(valid)] == [
        ("SPEND", "AUTHORISED", None, None),
        ("RECEIVE", "DELETED", CONTACT, "Card 4411"),
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"BankTransactionID": "txn-1"}, "bank_transaction_id: str_matches"),
        ({"Type": "TRANSFER"}, "type: isin"),
        ({"Status": "DRAFT"}, "status: isin"),  # xero.md §2.8: no draft state
        ({"Contact": {"ContactID": "nobody", "Name": "City Taxis"}}, "contact_id: str_matches"),
        ({"CurrencyCode": None}, "currency_code: missing"),
        ({"Total": 151.0}, "row: total_adds_up failed"),
        ({"Total": -15.0, "SubTotal": -15.0}, "total: greater_than_or_equal_to(0)"),
        ({"BankAccount": {"Code": "090", "Name": "Business Bank Account"}}, "bank_account_id: missing"),
        ({"IsReconciled": "no"}, "is_reconciled: 'no' is not a valid"),
        ({"UpdatedDateUTC": None}, "updated_at: missing"),
    ],
)
def test_a_broken_bank_transaction_is_refused_with_a_reason_naming_the_field(change, reason):
    records = [bank_transaction(ID, CONTACT, **change), bank_transaction(ID[:-1] + "0", CONTACT)]
    valid, reasons = judge(XeroBankTransaction, flatten_bank_transaction, records)
    assert len(valid) == 1
    assert len(reasons) == 1 and reason in reasons[0], reasons
