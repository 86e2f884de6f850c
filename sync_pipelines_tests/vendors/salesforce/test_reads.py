"""SOQL reads against the sandbox: paging, SystemModstamp ties, incremental windows, deletes and faults."""

from __future__ import annotations

import datetime as dt

import pytest

from sync_pipelines.vendors.salesforce.client import Position, SalesforceApiError
from sync_pipelines_tests.vendors.salesforce.conftest import ids_of, sandbox_calls, sandbox_records

QUERY = "GET /services/data/v62.0/query"


@pytest.fixture
def accounts(admin) -> list[dict]:
    """4,400-odd live Accounts: three REST pages, with SystemModstamp ties across both page boundaries."""
    admin.salesforce_reset(accounts=4500, contacts_per_account=0, leads=0, opportunities=0)
    return sandbox_records(admin, "Account")


def test_pages_of_2000_follow_next_records_url(admin, salesforce, accounts):
    admin.reset_stats()
    client = salesforce.client()

    pages = list(client.query_pages("SELECT Id, Name FROM Account"))

    assert [len(page) for page in pages] == [2000, 2000, len(accounts) - 4000]
    assert sorted(ids_of(pages)) == sorted(row["Id"] for row in accounts)
    assert sandbox_calls(admin, QUERY) == 3
    assert all("attributes" not in record for page in pages for record in page)
    assert client.stats.rest_calls == 3 and client.stats.bulk_calls == 0 and client.stats.bytes_received > 0


def test_a_read_stopped_inside_a_tie_resumes_without_losing_or_repeating_rows(salesforce, accounts):
    client = salesforce.client()
    first = next(client.changed_since("Account", ["Name"]))
    stop = Position.of(first[-1])
    stamp = first[-1]["SystemModstamp"]
    # The sandbox seeds a tie across the page boundary: rows with the last delivered stamp are still to come.
    assert accounts[2000]["SystemModstamp"] == stamp
    literal = stop.system_modstamp.strftime("%Y-%m-%dT%H:%M:%SZ")

    rest = list(client.changed_since("Account", ["Name"], since=stop, overlap=dt.timedelta(0)))
    strictly_later = list(client.query_pages(f"SELECT Id FROM Account WHERE SystemModstamp > {literal}"))

    assert ids_of([first, *rest]) == [row["Id"] for row in accounts]
    assert rest[0][0]["SystemModstamp"] == stamp
    # salesforce.md §3.2: a strict `>` on the last stamp would have lost the rest of the tie.
    assert len(ids_of(strictly_later)) < len(accounts) - 2000


def test_incremental_read_returns_changes_and_rereads_the_overlap(admin, salesforce, accounts):
    client = salesforce.client()
    cursor = Position.of(accounts[-1])
    changed = [row["Id"] for row in accounts[:3]]
    for record_id in changed:
        admin.salesforce_update("Account", record_id, Description="changed")
    overlap = dt.timedelta(days=3)

    pages = list(client.changed_since("Account", ["Description"], since=cursor, overlap=overlap))

    records = [record for page in pages for record in page]
    window = [row["Id"] for row in sandbox_records(admin, "Account") if _stamp(row) >= cursor.system_modstamp - overlap]
    assert set(changed) < set(window)
    assert [record["Id"] for record in records] == window
    assert {record["Id"] for record in records if record["Description"] == "changed"} == set(changed)
    # The window reaches behind the cursor: rows already read are read again, to be deduplicated downstream.
    assert any(_stamp(record) < cursor.system_modstamp for record in records)


def test_query_all_and_include_deleted_return_soft_deleted_rows(admin, salesforce, accounts):
    client = salesforce.client()
    cursor = Position.of(accounts[-1])
    victim = accounts[100]["Id"]
    admin.salesforce_delete("Account", victim)
    soql = f"SELECT Id, IsDeleted FROM Account WHERE Id = '{victim}'"

    live = list(client.query_pages(soql))
    everything = list(client.query_all_pages(soql))
    changes = list(
        client.changed_since("Account", ["Name"], since=cursor, overlap=dt.timedelta(0), include_deleted=True)
    )
    live_changes = list(client.changed_since("Account", ["Name"], since=cursor, overlap=dt.timedelta(0)))

    assert live == []
    assert everything == [[{"Id": victim, "IsDeleted": True}]]
    assert [(r["Id"], r["IsDeleted"]) for page in changes for r in page] == [(victim, True)]
    assert live_changes == []


def test_faults_still_deliver_every_row_exactly_once(admin, salesforce, accounts):
    client = salesforce.client(max_attempts=12, batch_size=500)
    assert list(client.query_pages("SELECT Id FROM Account LIMIT 1"))  # a session before the faults start
    admin.faults(salesforce={"error_rate": 0.1, "rate_limit_rate": 0.1, "drop_rate": 0.1, "retry_after_seconds": 0})

    pages = list(client.changed_since("Account", ["Name"]))

    assert ids_of(pages) == [row["Id"] for row in accounts]
    assert admin.stats()["faults_injected"] > 0
    assert client.stats.retries > 0


def test_a_refused_query_raises_salesforce_s_error_without_retrying(admin, salesforce):
    client = salesforce.client()
    admin.reset_stats()

    with pytest.raises(SalesforceApiError) as raised:
        list(client.query_pages("SELECT Nope FROM Account"))

    assert raised.value.status == 400 and raised.value.error_code == "INVALID_FIELD"
    assert sandbox_calls(admin, QUERY) == 1
    assert client.stats.retries == 0


def _stamp(record: dict) -> dt.datetime:
    return Position.of(record).system_modstamp
