"""Writes: sObject create/read/update/delete, upsert by external id, sObject Collections and the org's rules."""

import pytest
import requests

from sync_pipelines_tests.sandbox.salesforce.conftest import VERSION


def _error(response) -> tuple[int, str, list | None]:
    [error] = response.json()
    return response.status_code, error["errorCode"], error.get("fields")


def test_create_read_update_delete(sf, admin):
    created = sf.request("POST", "sobjects/Account", json={"Name": "Acme Anvils", "Phone": "555-0100"})
    assert created.status_code == 201
    body = created.json()
    assert body["success"] is True and body["errors"] == [] and body["id"].startswith("001") and len(body["id"]) == 18

    record = sf.request("GET", f"sobjects/Account/{body['id']}").json()
    assert record["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v{VERSION}/sobjects/Account/{body['id']}",
    }
    assert (record["Name"], record["IsDeleted"], record["Xero_Contact_ID__c"]) == ("Acme Anvils", False, None)
    assert record["OwnerId"] == record["CreatedById"] and record["SystemModstamp"].endswith(".000+0000")
    subset = sf.request("GET", f"sobjects/Account/{body['id'][:15]}", params={"fields": "Name,phone"}).json()
    assert list(subset) == ["attributes", "Name", "Phone"]

    updated = sf.request("PATCH", f"sobjects/Account/{body['id']}", json={"Phone": "555-0199", "Website": None})
    assert updated.status_code == 204 and updated.content == b""
    after = sf.request("GET", f"sobjects/Account/{body['id']}").json()
    assert after["Phone"] == "555-0199" and after["SystemModstamp"] >= record["SystemModstamp"]

    assert sf.request("DELETE", f"sobjects/Account/{body['id']}").status_code == 204
    assert _error(sf.request("GET", f"sobjects/Account/{body['id']}"))[:2] == (404, "NOT_FOUND")
    assert _error(sf.request("PATCH", f"sobjects/Account/{body['id']}", json={"Phone": "1"}))[:2] == (
        404,
        "ENTITY_IS_DELETED",
    )
    [deleted] = [r for r in admin.salesforce_records("Account") if r["Id"] == body["id"]]
    assert deleted["IsDeleted"] is True


def test_deleting_an_account_takes_its_contacts_and_opportunities_along(sf, admin):
    account = sf.request("POST", "sobjects/Account", json={"Name": "Cascade Ltd"}).json()["id"]
    contact = sf.request("POST", "sobjects/Contact", json={"LastName": "Child", "AccountId": account}).json()["id"]
    opportunity = sf.request(
        "POST",
        "sobjects/Opportunity",
        json={"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2025-03-01", "AccountId": account},
    ).json()["id"]
    sf.request("DELETE", f"sobjects/Account/{account}")
    rows = sf.records(
        f"SELECT Id, IsDeleted FROM Contact WHERE Id = '{contact}' OR AccountId = '{account}'", "queryAll"
    ) + sf.records(f"SELECT Id, IsDeleted FROM Opportunity WHERE Id = '{opportunity}'", "queryAll")
    assert {(r["Id"], r["IsDeleted"]) for r in rows} == {(contact, True), (opportunity, True)}


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "fields"),
    [
        ("sobjects/Account", {"Phone": "1"}, 400, "REQUIRED_FIELD_MISSING", ["Name"]),
        ("sobjects/Account", {"Name": "A", "Colour__c": "red"}, 400, "INVALID_FIELD", None),
        ("sobjects/Account", {"Name": "A", "IsDeleted": True}, 400, "INVALID_FIELD_FOR_INSERT_UPDATE", ["IsDeleted"]),
        ("sobjects/Account", {"Name": "A", "NumberOfEmployees": "many"}, 400, "JSON_PARSER_ERROR", None),
        ("sobjects/Account", {"Name": "A", "ParentId": "not-an-id"}, 400, "MALFORMED_ID", ["ParentId"]),
        ("sobjects/Account", {"Name": "A" * 256}, 400, "STRING_TOO_LONG", ["Name"]),
        ("sobjects/Contact", {"LastName": "B", "Email": "nope"}, 400, "INVALID_EMAIL_ADDRESS", ["Email"]),
        (
            "sobjects/Lead",
            {"LastName": "C", "Company": "D", "Status": "Warm"},
            400,
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            ["Status"],
        ),
        ("sobjects/User", {"LastName": "E", "Email": "e@x.test"}, 400, "INSUFFICIENT_ACCESS_OR_READONLY", []),
        ("sobjects/Account", {"Name": "A", "Id": "001000000000000AAA"}, 400, "INVALID_FIELD_FOR_INSERT_UPDATE", ["Id"]),
        ("sobjects/Widget", {"Name": "A"}, 404, "NOT_FOUND", None),
    ],
)
def test_write_errors_are_salesforces(sf, path, body, status, code, fields):
    assert _error(sf.request("POST", path, json=body)) == (status, code, fields)


def test_references_must_point_at_live_records_of_the_right_object(sf):
    contact = sf.records("SELECT Id FROM Contact LIMIT 1")[0]["Id"]
    wrong_type = sf.request("POST", "sobjects/Contact", json={"LastName": "X", "AccountId": contact})
    assert _error(wrong_type) == (400, "FIELD_INTEGRITY_EXCEPTION", ["AccountId"])
    missing = sf.request("POST", "sobjects/Contact", json={"LastName": "X", "AccountId": "0015g00000zzzzzAAA"})
    assert _error(missing)[1] == "INVALID_CROSS_REFERENCE_KEY"
    assert _error(sf.request("POST", "sobjects/Account", data=b"{not json"))[:2] == (400, "JSON_PARSER_ERROR")


def test_upsert_by_external_id(sf):
    value = "9f8e7d6c-0000-4000-8000-000000000001"
    path = f"sobjects/Account/Xero_Contact_ID__c/{value}"
    created = sf.request("PATCH", path, json={"Name": "Upserted Ltd"})
    record_id = created.json()["id"]
    assert (created.status_code, created.json()) == (
        201,
        {"id": record_id, "success": True, "errors": [], "created": True},
    )
    # salesforce.md §4.1: one match is an update, 200 with created=false from v46 (the value matches
    # case-insensitively), 204 without a body before v46.
    updated = sf.request("PATCH", f"sobjects/Account/Xero_Contact_ID__c/{value.upper()}", json={"Phone": "1"})
    assert (updated.status_code, updated.json()) == (
        200,
        {"id": record_id, "success": True, "errors": [], "created": False},
    )
    legacy = requests.patch(
        f"{sf.instance_url}/services/data/v45.0/{path}", json={"Phone": "2"}, headers=sf.headers(), timeout=10
    )
    assert legacy.status_code == 204 and legacy.content == b""
    fetched = sf.request("GET", path).json()
    assert (fetched["Id"], fetched["Name"], fetched["Phone"]) == (record_id, "Upserted Ltd", "2")

    assert _error(sf.request("PATCH", "sobjects/Account/Nickname__c/x", json={"Name": "N"}))[:2] == (404, "NOT_FOUND")
    clash = sf.request("POST", "sobjects/Account", json={"Name": "Clash", "Xero_Contact_ID__c": value})
    assert _error(clash) == (400, "DUPLICATE_VALUE", ["Xero_Contact_ID__c"])
    assert record_id in clash.json()[0]["message"]


def test_collections_give_one_result_per_record_in_order(sf, admin):
    before = len(admin.salesforce_records("Contact"))
    records = [{"attributes": {"type": "Contact"}, "LastName": f"Bulk {n}"} for n in range(199)]
    records.insert(7, {"attributes": {"type": "Contact"}, "FirstName": "No last name"})
    response = sf.request("POST", "composite/sobjects", json={"allOrNone": False, "records": records})
    results = response.json()
    assert response.status_code == 200 and len(results) == 200
    assert results[7] == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [LastName]",
                "fields": ["LastName"],
            }
        ],
    }
    assert all(r["success"] and r["id"].startswith("003") for i, r in enumerate(results) if i != 7)
    assert len(admin.salesforce_records("Contact")) == before + 199

    too_many = sf.request("POST", "composite/sobjects", json={"records": records + records[:1]})
    assert _error(too_many)[:2] == (400, "EXCEEDED_ID_LIMIT")

    rolled_back = sf.request("POST", "composite/sobjects", json={"allOrNone": True, "records": records[:10]}).json()
    assert [r["errors"][0]["statusCode"] for r in rolled_back] == ["ALL_OR_NONE_OPERATION_ROLLED_BACK"] * 7 + [
        "REQUIRED_FIELD_MISSING"
    ] + ["ALL_OR_NONE_OPERATION_ROLLED_BACK"] * 2
    assert len(admin.salesforce_records("Contact")) == before + 199

    ids = [r["id"] for r in results if r["success"]][:3]
    updates = [{"attributes": {"type": "Contact"}, "Id": i, "Title": "Buyer"} for i in ids]
    updates.append({"attributes": {"type": "Contact"}, "Title": "No id"})
    updated = sf.request("PATCH", "composite/sobjects", json={"records": updates}).json()
    assert [r["success"] for r in updated] == [True, True, True, False] and updated[3]["errors"][0][
        "statusCode"
    ] == "MISSING_ARGUMENT"
    fetched = sf.request(
        "GET",
        "composite/sobjects/Contact",
        params={"ids": ",".join([*ids, "0035g00000zzzzzAAA"]), "fields": "Title,LastName"},
    ).json()
    assert [r["Title"] for r in fetched[:3]] == ["Buyer"] * 3 and fetched[3] is None

    deleted = sf.request("DELETE", "composite/sobjects", params={"ids": ",".join(ids[:2])}).json()
    assert [r["success"] for r in deleted] == [True, True]
    assert sf.request("GET", f"sobjects/Contact/{ids[0]}").status_code == 404


def test_collection_upsert_reports_created(sf):
    body = {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Account"}, "Name": "First", "Xero_Contact_ID__c": "xc-1"},
            {"attributes": {"type": "Account"}, "Name": "Second", "Xero_Contact_ID__c": "xc-2"},
        ],
    }
    first = sf.request("PATCH", "composite/sobjects/Account/Xero_Contact_ID__c", json=body).json()
    assert [r["created"] for r in first] == [True, True]
    body["records"][1]["Name"] = "Second, renamed"
    body["records"].append({"attributes": {"type": "Account"}, "Name": "No key"})
    second = sf.request("PATCH", "composite/sobjects/Account/Xero_Contact_ID__c", json=body).json()
    assert [(r["success"], r.get("created")) for r in second] == [(True, False), (True, False), (False, None)]
    assert [r["id"] for r in second[:2]] == [r["id"] for r in first]
    [renamed] = sf.records("SELECT Name FROM Account WHERE Xero_Contact_ID__c = 'XC-2'")
    assert renamed["Name"] == "Second, renamed"


def test_line_items_roll_up_into_the_opportunity(sf, admin):
    account = sf.request("POST", "sobjects/Account", json={"Name": "Rollup Co"}).json()["id"]
    opportunity = sf.request(
        "POST",
        "sobjects/Opportunity",
        json={
            "Name": "Big deal",
            "StageName": "Prospecting",
            "CloseDate": "2025-02-28",
            "AccountId": account,
            "Amount": 10,
        },
    ).json()["id"]
    before = sf.request("GET", f"sobjects/Opportunity/{opportunity}").json()
    assert (before["Probability"], before["IsClosed"], before["FiscalQuarter"], before["ExpectedRevenue"]) == (
        10.0,
        False,
        1,
        1.0,
    )
    product = sf.records("SELECT Id, Name, ProductCode FROM Product2 LIMIT 1")[0]
    item = sf.request(
        "POST",
        "sobjects/OpportunityLineItem",
        json={
            "OpportunityId": opportunity,
            "Product2Id": product["Id"],
            "Quantity": 3,
            "UnitPrice": 100,
            "Discount": 10,
        },
    )
    assert item.status_code == 201, item.text
    line = sf.request("GET", f"sobjects/OpportunityLineItem/{item.json()['id']}").json()
    assert (line["Subtotal"], line["TotalPrice"], line["Name"], line["ProductCode"]) == (
        300.0,
        270.0,
        f"Big deal {product['Name']}",
        product["ProductCode"],
    )
    after = sf.request("GET", f"sobjects/Opportunity/{opportunity}").json()
    # The roll-up is a system change: SystemModstamp moves, LastModifiedDate does not (salesforce.md §3.2, §8).
    assert (after["Amount"], after["HasOpportunityLineItem"]) == (270.0, True)
    assert after["LastModifiedDate"] == before["LastModifiedDate"]
    assert _error(sf.request("PATCH", f"sobjects/Opportunity/{opportunity}", json={"Amount": 5})) == (
        400,
        "FIELD_INTEGRITY_EXCEPTION",
        ["Amount"],
    )
    sf.request("PATCH", f"sobjects/Opportunity/{opportunity}", json={"StageName": "Closed Won"})
    won = sf.request("GET", f"sobjects/Opportunity/{opportunity}").json()
    assert (won["IsClosed"], won["IsWon"], won["Probability"], won["ForecastCategoryName"]) == (
        True,
        True,
        100.0,
        "Closed",
    )
    both = sf.request(
        "POST",
        "sobjects/OpportunityLineItem",
        json={
            "OpportunityId": opportunity,
            "Product2Id": product["Id"],
            "Quantity": 1,
            "UnitPrice": 1,
            "TotalPrice": 1,
        },
    )
    assert _error(both)[:2] == (400, "FIELD_INTEGRITY_EXCEPTION")


def test_converted_leads_are_read_only(sf, admin):
    lead = sf.request("POST", "sobjects/Lead", json={"LastName": "Lovelace", "Company": "Engines Ltd"}).json()["id"]
    assert sf.request("GET", f"sobjects/Lead/{lead}").json()["Status"] == "Open - Not Contacted"
    converted = admin.call("POST", f"/salesforce/leads/{lead}/convert", {"opportunity": True})
    assert converted["lead"]["IsConverted"] is True and converted["account"]["Name"] == "Engines Ltd"
    assert converted["lead"]["ConvertedOpportunityId"] == converted["opportunity"]["Id"]
    assert converted["contact"]["AccountId"] == converted["account"]["Id"]
    assert _error(sf.request("PATCH", f"sobjects/Lead/{lead}", json={"Title": "CEO"}))[:2] == (
        400,
        "CANNOT_UPDATE_CONVERTED_LEAD",
    )
    seeded = [row for row in admin.salesforce_records("Lead") if row["IsConverted"]]
    assert seeded and all(row["ConvertedAccountId"] and row["Status"] == "Closed - Converted" for row in seeded)
