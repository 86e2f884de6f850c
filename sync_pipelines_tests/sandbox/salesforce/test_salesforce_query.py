"""SOQL over REST: paging by nextRecordsUrl, ties at the page boundary, queryAll, parsing, errors and limits."""

import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
import requests

from sync_pipelines_tests.sandbox.salesforce.conftest import VERSION


def _literal(stamp: str) -> str:
    """A SOQL datetime literal for an API datetime: unquoted, UTC (salesforce.md §2)."""
    return stamp[:19] + "Z"


def _key(record: dict) -> tuple[str, str]:
    return record["SystemModstamp"], record["Id"]


def test_paging_by_next_records_url_in_batches_of_2000_with_ties_across_the_boundary(sf, admin):
    admin.salesforce_reset(accounts=4500, contacts_per_account=0, leads=0, opportunities=0)
    live = admin.salesforce_records("Account", deleted=False)
    soql = "SELECT Id, Name, SystemModstamp FROM Account ORDER BY SystemModstamp, Id"
    pages = sf.pages(soql)
    assert [len(page["records"]) for page in pages] == [2000, 2000, len(live) - 4000]
    assert {page["totalSize"] for page in pages} == {len(live)}
    assert [page["done"] for page in pages] == [False, False, True] and "nextRecordsUrl" not in pages[-1]
    assert re.fullmatch(rf"/services/data/v{VERSION}/query/01g\w{{15}}-2000", pages[0]["nextRecordsUrl"])
    records = [record for page in pages for record in page["records"]]
    assert [_key(r) for r in records] == sorted(_key(r) for r in records)
    assert {r["Id"] for r in records} == {r["Id"] for r in live} and len(records) == len(live)

    # The seed ties SystemModstamp across each page boundary (salesforce.md §3.2).
    last = pages[0]["records"][-1]
    assert pages[1]["records"][0]["SystemModstamp"] == last["SystemModstamp"]
    stamp = _literal(last["SystemModstamp"])
    after_page_one = [r["Id"] for r in records[2000:]]
    strict = [r["Id"] for r in sf.records(f"SELECT Id FROM Account WHERE SystemModstamp > {stamp}")]
    assert set(strict) < set(after_page_one)  # a strict > cursor loses the tied rows
    keyset = sf.records(
        f"SELECT Id FROM Account WHERE SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > '{last['Id']}') "
        "ORDER BY SystemModstamp, Id"
    )
    assert [r["Id"] for r in keyset] == after_page_one

    # A cursor can be re-read while it lives; a made-up one is INVALID_QUERY_LOCATOR.
    again = requests.get(sf.instance_url + pages[0]["nextRecordsUrl"], headers=sf.headers(), timeout=30).json()
    assert again["records"] == pages[1]["records"]
    bogus = sf.request("GET", "query/01g5g0000000999AAA-2000")
    assert (bogus.status_code, bogus.json()[0]["errorCode"]) == (400, "INVALID_QUERY_LOCATOR")


def test_batch_size_header_and_gzip(sf, admin):
    admin.salesforce_reset(accounts=1100, contacts_per_account=0, leads=0, opportunities=0)
    live = len(admin.salesforce_records("Account", deleted=False))
    # The cursor keeps the batch size the first call asked for (salesforce.md §3.1).
    pages = sf.pages("SELECT Id FROM Account", **{"Sforce-Query-Options": "batchSize=500"})
    assert [len(p["records"]) for p in pages] == [500, 500, live - 1000]
    clamped = sf.query("SELECT Id FROM Account", **{"Sforce-Query-Options": "batchSize=50"}).json()
    assert len(clamped["records"]) == 200  # 200 is the minimum
    compressed = sf.query("SELECT Id, Name FROM Account", **{"Accept-Encoding": "gzip"})
    assert compressed.headers["Content-Encoding"] == "gzip" and len(compressed.json()["records"]) == live


def test_query_all_adds_soft_deleted_rows(sf, admin):
    everything = admin.salesforce_records("Contact")
    deleted = {r["Id"] for r in everything if r["IsDeleted"]}
    assert deleted and len(deleted) < len(everything)
    live = sf.records("SELECT Id, IsDeleted FROM Contact")
    assert len(live) == len(everything) - len(deleted) and not any(r["IsDeleted"] for r in live)
    assert not sf.records("SELECT Id FROM Contact WHERE IsDeleted = true")
    in_bin = sf.records("SELECT Id, IsDeleted, SystemModstamp FROM Contact WHERE IsDeleted = true", "queryAll")
    assert {r["Id"] for r in in_bin} == deleted

    victim = live[0]["Id"]
    removed = admin.salesforce_delete("Contact", victim)
    [row] = sf.records(f"SELECT Id, IsDeleted, SystemModstamp FROM Contact WHERE Id = '{victim}'", "queryAll")
    assert row["IsDeleted"] is True and row["SystemModstamp"] == removed["SystemModstamp"]
    assert not sf.records(f"SELECT Id FROM Contact WHERE Id = '{victim}'")


@pytest.mark.parametrize(
    ("soql", "code", "message"),
    [
        ("SELECT Id FROM", "MALFORMED_QUERY", "unexpected token: '<EOF>'"),
        ("SELECT Id, Foo FROM Account", "INVALID_FIELD", "No such column 'Foo' on entity 'Account'"),
        ("SELECT Id FROM Acount", "INVALID_TYPE", "sObject type 'Acount' is not supported"),
        ("SELECT Id FROM Account WHERE Name = 'a' AND Phone = 'b' OR Id = 'c'", "MALFORMED_QUERY", "'OR'"),
        (
            "SELECT Id FROM Account WHERE SystemModstamp > '2024-01-01T00:00:00Z'",
            "INVALID_FIELD",
            "must be of type dateTime and should not be enclosed in quotes",
        ),
        ("SELECT Id FROM Account WHERE Name = 5", "INVALID_FIELD", "must be of type string and should be enclosed"),
        ("SELECT Id FROM Account WHERE Description = 'x'", "INVALID_FIELD", "can not be filtered"),
        ("SELECT Id FROM Account ORDER BY Description", "INVALID_FIELD", "can not be sorted"),
        ("SELECT Id FROM Account WHERE Id = 'abc'", "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: abc"),
        ("SELECT Id FROM Account WHERE Name = 'open", "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Id, id FROM Account", "MALFORMED_QUERY", "duplicate field selected: id"),
        ("SELECT Id FROM Account GROUP BY Name", "MALFORMED_QUERY", "unexpected token: 'GROUP'"),
        ("SELECT Bogus.Name FROM Contact", "INVALID_FIELD", "Didn't understand relationship 'Bogus'"),
        ("SELECT Id FROM Account WHERE Name = 'it\\q'", "MALFORMED_QUERY", "Illegal character sequence '\\q'"),
        ("", "MALFORMED_QUERY", "A query string has to be specified"),
    ],
)
def test_soql_errors_are_salesforces(sf, soql, code, message):
    response = sf.query(soql)
    assert response.status_code == 400
    [error] = response.json()
    assert error["errorCode"] == code and message in error["message"]


def test_malformed_query_message_points_at_the_column(sf):
    [error] = sf.query("SELECT Id FROM Account WHERE").json()
    caret = " " * 28 + "^"
    assert (
        error["message"]
        == f"\nSELECT Id FROM Account WHERE\n{caret}\nERROR at Row:1:Column:29\nunexpected token: '<EOF>'"
    )


def test_soql_semantics(sf, admin):
    tricky = admin.salesforce_create("Account", Name="O'Brien \\ Sons")
    assert [r["Id"] for r in sf.records("SELECT Id FROM Account WHERE Name = 'o\\'brien \\\\ sons'")] == [tricky["Id"]]
    assert [r["Id"] for r in sf.records("SELECT Id FROM Account WHERE Name LIKE 'O\\'Bri%'")] == [tricky["Id"]]

    accounts = admin.salesforce_records("Account", deleted=False)
    energy = sum(a["Industry"] == "Energy" for a in accounts)
    untyped = sum(a["Industry"] is None for a in accounts)
    count = sf.query("SELECT COUNT() FROM Account").json()
    assert count == {"totalSize": len(accounts), "done": True, "records": []}
    # SOQL's != (and NOT IN) keep null values, unlike SQL.
    assert len(sf.records("SELECT Id FROM Account WHERE Industry != 'Energy'")) == len(accounts) - energy
    assert len(sf.records("SELECT Id FROM Account WHERE Industry = null")) == untyped
    assert len(sf.records("SELECT Id FROM Account WHERE Industry IN ('Energy', null)")) == energy + untyped
    assert (
        len(sf.records("SELECT Id FROM Account WHERE NOT Industry IN ('Energy')")) == len(accounts) - energy - untyped
    )
    assert len(sf.records("SELECT Id FROM Account WHERE Industry NOT IN ('Energy')")) == len(accounts) - energy

    # 15-char ids and the case-insensitive 18-char form both find the record (salesforce.md §7).
    for written in (tricky["Id"][:15], tricky["Id"].lower()):
        assert [r["Id"] for r in sf.records(f"SELECT Id FROM Account WHERE Id = '{written}'")] == [tricky["Id"]]

    stamps = sorted(a["SystemModstamp"] for a in accounts)
    middle = stamps[len(stamps) // 2]
    at_or_after = sum(s >= middle for s in stamps)
    assert len(sf.records(f"SELECT Id FROM Account WHERE SystemModstamp >= {_literal(middle)}")) == at_or_after
    # The same instant written with another zone offset.
    instant = datetime.fromisoformat(middle[:19]).replace(tzinfo=UTC)
    zoned = instant.astimezone(timezone(timedelta(hours=2))).isoformat()
    assert len(sf.records(f"SELECT Id FROM Account WHERE SystemModstamp >= {zoned}")) == at_or_after
    closes = [o["CloseDate"] for o in admin.salesforce_records("Opportunity", deleted=False)]
    assert len(sf.records("SELECT Id FROM Opportunity WHERE CloseDate >= 2024-07-01")) == sum(
        c >= "2024-07-01" for c in closes
    )
    limited = sf.query("SELECT Name FROM Account ORDER BY Name DESC LIMIT 5").json()
    assert (
        limited["totalSize"] == 5
        and [r["Name"] for r in limited["records"]]
        == sorted((a["Name"] for a in accounts), key=str.lower, reverse=True)[:5]
    )


def test_parent_relationships_nest_and_null_parents_render_null(sf):
    contacts = sf.records("SELECT Name, Account.Name, Account.Owner.Name FROM Contact")
    linked = next(c for c in contacts if c["Account"])
    assert linked["Account"]["attributes"]["type"] == "Account"
    assert linked["Account"]["Owner"]["attributes"]["type"] == "User" and linked["Account"]["Owner"]["Name"]
    assert list(linked) == ["attributes", "Name", "Account"]
    orphan = next(c for c in contacts if c["Account"] is None)
    assert orphan["Account"] is None
    filtered = sf.records(f"SELECT Id FROM Contact WHERE Account.Name = '{linked['Account']['Name']}'")
    assert filtered


def test_every_call_carries_sforce_limit_info_and_the_daily_quota_is_enforced(sf, admin):
    first = sf.request("GET", "limits")
    used = int(first.headers["Sforce-Limit-Info"].split("=")[1].split("/")[0])
    body = first.json()
    assert body["DailyApiRequests"] == {"Max": 15000, "Remaining": 15000 - used}
    assert sf.request("GET", "sobjects/Account/describe").headers["Sforce-Limit-Info"] == f"api-usage={used + 1}/15000"

    admin.salesforce_limits(daily_api_limit=used + 3)
    assert sf.request("GET", "limits").headers["Sforce-Limit-Info"] == f"api-usage={used + 2}/{used + 3}"
    assert sf.query("SELECT Id FROM User").status_code == 200
    refused = sf.query("SELECT Id FROM User")
    assert refused.status_code == 403
    assert refused.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert refused.headers["Sforce-Limit-Info"] == f"api-usage={used + 3}/{used + 3}"
    assert admin.salesforce_limits()["remaining"] == 0
    admin.salesforce_limits(used=0)
    assert sf.query("SELECT Id FROM User").headers["Sforce-Limit-Info"] == f"api-usage=1/{used + 3}"


def test_versions_and_describe(sf, sandbox):
    versions = requests.get(f"{sandbox.url}/salesforce/services/data/", timeout=10).json()
    assert {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"} in versions
    fields = {f["name"]: f for f in sf.request("GET", "sobjects/Account/describe").json()["fields"]}
    assert fields["Xero_Contact_ID__c"]["externalId"] and fields["Xero_Contact_ID__c"]["unique"]
    assert fields["OwnerId"]["relationshipName"] == "Owner" and not fields["SystemModstamp"]["updateable"]
    names = Counter(s["keyPrefix"] for s in sf.request("GET", "sobjects").json()["sobjects"])
    assert {"001", "003", "00Q", "006", "00k", "005", "01t"} == set(names)
