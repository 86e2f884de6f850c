"""Writes against the sandbox: single updates, upserts by external id, and sObject Collections."""

from __future__ import annotations

import uuid

import pytest

from sync_pipelines.vendors.salesforce.client import RecordResult, SalesforceApiError
from sync_pipelines_tests.vendors.salesforce.conftest import sandbox_calls, sandbox_records

COLLECTIONS = "PATCH /services/data/v62.0/composite/sobjects"


def by_id(admin, sobject: str) -> dict[str, dict]:
    return {row["Id"]: row for row in sandbox_records(admin, sobject)}


def test_update_changes_the_fields_and_moves_system_modstamp(admin, salesforce):
    account = sandbox_records(admin, "Account")[0]

    salesforce.client().update("Account", account["Id"], {"Phone": "+64 9 555 0100"})

    after = by_id(admin, "Account")[account["Id"]]
    assert after["Phone"] == "+64 9 555 0100"
    assert after["SystemModstamp"] > account["SystemModstamp"]


def test_upsert_creates_then_updates_by_external_id(admin, salesforce):
    client = salesforce.client()
    xero_id = str(uuid.uuid4())

    created = client.upsert("Account", "Xero_Contact_ID__c", xero_id, {"Name": "Upserted Ltd"})
    updated = client.upsert("Account", "Xero_Contact_ID__c", xero_id, {"Name": "Upserted Limited"})

    assert created.created and created.success and created.id
    assert updated == RecordResult(created.id, True, [], False)
    row = by_id(admin, "Account")[created.id]
    assert (row["Name"], row["Xero_Contact_ID__c"]) == ("Upserted Limited", xero_id)


def test_upsert_on_a_field_that_is_no_external_id_is_not_found(salesforce):
    with pytest.raises(SalesforceApiError) as raised:
        salesforce.client().upsert("Account", "Name", "Acme", {"Phone": "1"})

    # salesforce.md §4.1: an unknown (or non-external-id) field is a 404 NOT_FOUND.
    assert raised.value.status == 404 and raised.value.error_code == "NOT_FOUND"


def test_collection_update_sends_chunks_of_200_and_reports_every_record(admin, salesforce):
    admin.salesforce_reset(accounts=300, contacts_per_account=2)
    contacts = sandbox_records(admin, "Contact")[:450]
    assert len(contacts) == 450
    records = [{"Id": row["Id"], "Title": f"Title {n}"} for n, row in enumerate(contacts)]
    records[7] = {"Id": contacts[7]["Id"], "LastName": None}  # salesforce.md §8: LastName is required
    records[300] = {"Id": contacts[300]["Id"], "Title": "x" * 200}  # Title holds 128 characters
    admin.reset_stats()

    results = salesforce.client().collection_update("Contact", records)

    assert sandbox_calls(admin, COLLECTIONS) == 3  # 200 + 200 + 50 (salesforce.md §4.2)
    assert [result.id for result in results] == [row["Id"] for row in contacts]
    failed = {n: result.errors[0]["statusCode"] for n, result in enumerate(results) if not result.success}
    assert failed == {7: "REQUIRED_FIELD_MISSING", 300: "STRING_TOO_LONG"}
    after = by_id(admin, "Contact")
    assert all(after[r["Id"]]["Title"] == r["Title"] for n, r in enumerate(records) if n not in failed)
    assert after[contacts[7]["Id"]]["LastName"] == contacts[7]["LastName"]


def test_collection_update_all_or_none_rolls_back_every_record(admin, salesforce):
    contacts = sandbox_records(admin, "Contact")[:3]
    records = [{"Id": row["Id"], "Title": "All or none"} for row in contacts]
    records[1]["LastName"] = None

    results = salesforce.client().collection_update("Contact", records, all_or_none=True)

    assert not any(result.success for result in results)
    after = by_id(admin, "Contact")
    assert all(after[row["Id"]]["Title"] == row["Title"] for row in contacts)


def test_collection_update_refuses_records_without_an_id(salesforce):
    with pytest.raises(ValueError, match="Id"):
        salesforce.client().collection_update("Contact", [{"Title": "No Id"}])
