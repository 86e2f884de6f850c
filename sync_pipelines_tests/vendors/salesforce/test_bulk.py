"""Bulk API 2.0 query jobs against the sandbox: locator pages, the volume choice and the fallback to REST."""

from __future__ import annotations

import pytest
import requests

from sync_pipelines.vendors.salesforce.client import BulkJobFailed
from sync_pipelines_tests.vendors.salesforce.conftest import ids_of, sandbox_calls, sandbox_records

JOBS = "/services/data/v62.0/jobs/query"
FIELDS = ["Name", "AnnualRevenue", "NumberOfEmployees", "IsDeleted", "CreatedDate", "Xero_Contact_ID__c"]


@pytest.fixture
def accounts(admin) -> list[dict]:
    admin.salesforce_reset(accounts=4500, contacts_per_account=0, leads=0, opportunities=0)
    return sandbox_records(admin, "Account")


def rest_read(salesforce) -> list[dict]:
    """The same incremental read over REST only: what every Bulk read must equal, row for row."""
    pages = salesforce.client(bulk_threshold=10**9).changed_since("Account", FIELDS)
    return [record for page in pages for record in page]


def test_bulk_query_streams_csv_pages_by_locator_typed_like_rest(admin, salesforce, accounts):
    client = salesforce.client(bulk_page_records=1000)
    soql = f"SELECT Id, {', '.join(FIELDS)}, SystemModstamp FROM Account"
    admin.reset_stats()

    pages = list(client.bulk_query(soql))

    assert [len(page) for page in pages] == [1000] * 4 + [len(accounts) - 4000]
    assert sum(count for route, count in admin.stats()["salesforce"].items() if route.endswith("/results")) == 5
    rest = {record["Id"]: record for page in client.query_pages(soql) for record in page}
    # salesforce.md §6: CSV is all text; rows come back as REST renders them (numbers, booleans, nulls).
    assert {row["Id"]: row for page in pages for row in page} == rest
    assert any(row["Xero_Contact_ID__c"] is None for page in pages for row in page)
    assert client.stats.bulk_calls >= 7  # create, at least one poll, five result pages


def test_large_incremental_read_goes_through_bulk_in_order(admin, salesforce, accounts):
    expected = rest_read(salesforce)
    client = salesforce.client(bulk_threshold=3000)
    admin.reset_stats()

    pages = list(client.changed_since("Account", FIELDS))

    assert [record for page in pages for record in page] == expected
    assert ids_of(pages) == [row["Id"] for row in accounts]
    # The first REST page showed more than bulk_threshold rows; the rest came from one Bulk job.
    assert sandbox_calls(admin, "GET /services/data/v62.0/query") == 1
    assert sandbox_calls(admin, f"POST {JOBS}") == 1
    assert client.stats.bulk_calls > 0 and client.stats.bulk_fallbacks == 0


def test_small_incremental_read_stays_on_rest(admin, salesforce, accounts):
    client = salesforce.client(bulk_threshold=len(accounts))
    admin.reset_stats()

    pages = list(client.changed_since("Account", FIELDS))

    assert ids_of(pages) == [row["Id"] for row in accounts]
    assert sandbox_calls(admin, f"POST {JOBS}") == 0
    assert client.stats.bulk_calls == 0


def test_failed_bulk_job_falls_back_to_rest_without_losing_rows(admin, salesforce, accounts):
    expected = rest_read(salesforce)
    client = salesforce.client(bulk_threshold=1000)
    admin.salesforce_fail_bulk(1, "InternalServerError: sandbox says no")

    pages = list(client.changed_since("Account", FIELDS))

    records = [record for page in pages for record in page]
    assert records == expected
    assert len({record["Id"] for record in records}) == len(accounts)
    assert client.stats.bulk_fallbacks == 1


def test_bulk_query_raises_the_job_s_failure(admin, salesforce, accounts):
    admin.salesforce_fail_bulk(1, "InternalServerError: sandbox says no")

    with pytest.raises(BulkJobFailed, match="sandbox says no") as raised:
        list(salesforce.client().bulk_query("SELECT Id FROM Account"))

    assert raised.value.state == "Failed"


def test_a_job_that_outlives_its_timeout_is_aborted(admin, salesforce, accounts):
    admin.salesforce_settings(bulk_job_seconds=60)
    client = salesforce.client(bulk_job_timeout=1)

    with pytest.raises(BulkJobFailed) as raised:
        list(client.bulk_query("SELECT Id FROM Account"))

    assert raised.value.state == "InProgress"
    token = salesforce.store.load()
    job = requests.get(
        f"{token['instance_url']}{JOBS}/{raised.value.job_id}",
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=10,
    ).json()
    assert job["state"] == "Aborted"


def test_bulk_results_lost_mid_read_fall_back_to_rest_after_the_last_delivered_row(admin, salesforce, accounts):
    expected = rest_read(salesforce)
    client = salesforce.client(bulk_threshold=1000, bulk_page_records=500)
    token = salesforce.store.load()
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    pages = []

    for page in client.changed_since("Account", FIELDS):
        pages.append(page)
        if len(pages) == 3:
            # Two Bulk pages in, the job disappears: its next locator page answers 404 (salesforce.md §6).
            jobs = requests.get(f"{token['instance_url']}{JOBS}", headers=auth, timeout=10).json()["records"]
            for job in jobs:
                requests.delete(f"{token['instance_url']}{JOBS}/{job['id']}", headers=auth, timeout=10)

    assert [len(page) for page in pages[:3]] == [2000, 500, 500]
    assert [record for page in pages for record in page] == expected
    assert client.stats.bulk_fallbacks == 1
