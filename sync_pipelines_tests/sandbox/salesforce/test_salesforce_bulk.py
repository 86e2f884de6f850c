"""Bulk API 2.0 query jobs: lifecycle, CSV pages chained by Sforce-Locator, failures and a 50,000-row backfill."""

import csv
import io
import time

import requests

from sync_pipelines_tests.sandbox.salesforce.conftest import VERSION

SOQL = "SELECT Id, Name, IsDeleted, AnnualRevenue, NumberOfEmployees, SystemModstamp, Owner.Name FROM Account"


def _create(sf, soql: str = SOQL, **options) -> dict:
    response = sf.request("POST", "jobs/query", json={"operation": "query", "query": soql, **options})
    assert response.status_code == 200, response.text
    return response.json()


def _wait(sf, job_id: str, deadline_s: float = 30) -> dict:
    """Poll the job with a deadline until it leaves UploadComplete/InProgress (salesforce.md §6)."""
    deadline = time.monotonic() + deadline_s
    while True:
        info = sf.request("GET", f"jobs/query/{job_id}").json()
        if info["state"] not in ("UploadComplete", "InProgress") or time.monotonic() > deadline:
            return info
        time.sleep(0.05)


def _pages(sf, job_id: str, **params) -> list[requests.Response]:
    """Every results page, following Sforce-Locator until it is "null"."""
    pages, locator = [], None
    while locator != "null":
        query = {**params, **({"locator": locator} if locator else {})}
        page = sf.request("GET", f"jobs/query/{job_id}/results", params=query)
        assert page.status_code == 200, page.text
        pages.append(page)
        locator = page.headers["Sforce-Locator"]
    return pages


def test_job_lifecycle_and_csv_pages(sf, admin):
    admin.salesforce_settings(bulk_job_seconds=600)  # hold the job InProgress until released below
    job = _create(sf)
    assert (job["state"], job["object"], job["operation"], job["contentType"]) == (
        "UploadComplete",
        "Account",
        "query",
        "CSV",
    )
    assert job["id"].startswith("750") and job["apiVersion"] == float(VERSION) and job["columnDelimiter"] == "COMMA"
    early = sf.request("GET", f"jobs/query/{job['id']}/results")
    assert (early.status_code, early.json()[0]["errorCode"]) == (412, "JOB_NOT_COMPLETE")
    assert sf.request("GET", f"jobs/query/{job['id']}").json()["state"] == "InProgress"

    admin.salesforce_settings(bulk_job_seconds=0.2)
    info = _wait(sf, job["id"])
    live = sf.records("SELECT Id, Name, AnnualRevenue, Owner.Name FROM Account")
    assert (info["state"], info["jobType"], info["numberRecordsProcessed"]) == ("JobComplete", "V2Query", len(live))

    pages = _pages(sf, job["id"], maxRecords=100)
    assert [int(p.headers["Sforce-NumberOfRecords"]) for p in pages] == [100] * (len(live) // 100) + (
        [len(live) % 100] if len(live) % 100 else []
    )
    assert pages[-1].headers["Sforce-Locator"] == "null" and pages[0].headers["Content-Type"].startswith("text/csv")
    assert all(p.headers["Sforce-Limit-Info"].startswith("api-usage=") for p in pages)
    rows = [row for p in pages for row in csv.DictReader(io.StringIO(p.text))]
    header = pages[1].text.split("\n", 1)[0]
    assert header == "Id,Name,IsDeleted,AnnualRevenue,NumberOfEmployees,SystemModstamp,Owner.Name"  # every page
    assert [r["Id"] for r in rows] == [r["Id"] for r in live]
    by_id = {r["Id"]: r for r in live}
    for row in rows:
        assert row["Name"] == by_id[row["Id"]]["Name"] and row["Owner.Name"] == by_id[row["Id"]]["Owner"]["Name"]
        assert row["IsDeleted"] == "false" and row["SystemModstamp"].endswith(".000Z")
        revenue = by_id[row["Id"]]["AnnualRevenue"]
        assert row["AnnualRevenue"] == ("" if revenue is None else str(revenue))  # null is an empty field

    second_page = sf.request(
        "GET",
        f"jobs/query/{job['id']}/results",
        params={"maxRecords": 100, "locator": pages[0].headers["Sforce-Locator"]},
    )
    assert second_page.text == pages[1].text  # a locator can be read again
    other_version = requests.get(
        f"{sf.instance_url}/services/data/v61.0/jobs/query/{job['id']}/results", headers=sf.headers(), timeout=10
    )
    assert other_version.status_code == 409  # salesforce.md §6
    assert job["id"] in [j["id"] for j in sf.request("GET", "jobs/query").json()["records"]]
    assert sf.request("DELETE", f"jobs/query/{job['id']}").status_code == 204
    assert sf.request("GET", f"jobs/query/{job['id']}").status_code == 404


def test_query_all_job_with_other_delimiters_includes_deleted_rows(sf, admin):
    admin.salesforce_settings(bulk_job_seconds=0)
    job = _create(
        sf,
        "SELECT Id, IsDeleted, Name FROM Contact WHERE IsDeleted = true",
        operation="queryAll",
        columnDelimiter="PIPE",
        lineEnding="CRLF",
    )
    assert _wait(sf, job["id"])["state"] == "JobComplete"
    [page] = _pages(sf, job["id"])
    rows = list(csv.DictReader(io.StringIO(page.text, newline=""), delimiter="|"))
    assert page.text.endswith("\r\n") and rows
    assert {r["Id"] for r in rows} == {r["Id"] for r in admin.salesforce_records("Contact") if r["IsDeleted"]}
    assert {r["IsDeleted"] for r in rows} == {"true"}


def test_forced_failure_abort_and_bad_jobs(sf, admin):
    admin.salesforce_settings(bulk_job_seconds=0)
    admin.salesforce_fail_bulk(jobs=1, message="InternalServerError: try again")
    failed = _wait(sf, _create(sf)["id"])
    assert (failed["state"], failed["errorMessage"], failed["numberRecordsProcessed"]) == (
        "Failed",
        "InternalServerError: try again",
        0,
    )
    assert sf.request("GET", f"jobs/query/{failed['id']}/results").status_code == 412
    assert _wait(sf, _create(sf)["id"])["state"] == "JobComplete"  # only the next job failed

    admin.salesforce_settings(bulk_job_seconds=60)
    running = _create(sf)
    aborted = sf.request("PATCH", f"jobs/query/{running['id']}", json={"state": "Aborted"})
    assert aborted.json()["state"] == "Aborted"
    assert sf.request("GET", f"jobs/query/{running['id']}").json()["state"] == "Aborted"

    count = sf.request("POST", "jobs/query", json={"operation": "query", "query": "SELECT COUNT() FROM Account"})
    assert count.status_code == 400
    malformed = sf.request("POST", "jobs/query", json={"operation": "query", "query": "SELECT FROM Account"})
    assert (malformed.status_code, malformed.json()[0]["errorCode"]) == (400, "MALFORMED_QUERY")


def test_fifty_thousand_accounts_seed_and_backfill_through_bulk(sf, admin):
    # How fast the org seeds is measured by benchmarks/salesforce_backfill.py, not asserted here.
    summary = admin.salesforce_reset(accounts=50_000, contacts_per_account=0, leads=0, opportunities=0)
    admin.salesforce_settings(bulk_job_seconds=0)
    job = _create(sf, "SELECT Id, Name, BillingCity, SystemModstamp FROM Account")
    assert _wait(sf, job["id"])["numberRecordsProcessed"] == summary["records"]["Account"]
    pages = _pages(sf, job["id"], maxRecords=20_000)
    assert [p.headers["Sforce-NumberOfRecords"] for p in pages] == [
        "20000",
        "20000",
        str(summary["records"]["Account"] - 40_000),
    ]
    ids = [row["Id"] for p in pages for row in csv.DictReader(io.StringIO(p.text))]
    assert len(set(ids)) == len(ids) == summary["records"]["Account"] > 48_000
    assert sf.query("SELECT COUNT() FROM Account").json()["totalSize"] == len(ids)
