"""The daily API quota: Sforce-Limit-Info, the client's budget and a clean, resumable stop."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from sync_pipelines.vendors.salesforce.client import (
    ApiUsage,
    Position,
    SalesforceQuotaBudgetReached,
    parse_limit_info,
)
from sync_pipelines_tests.vendors.salesforce.conftest import ids_of, sandbox_calls, sandbox_records

QUERY = "GET /services/data/v62.0/query"


def test_parse_limit_info_reads_org_and_app_usage():
    # salesforce.md §2: both header forms.
    assert parse_limit_info("api-usage=25/5000") == ApiUsage(25, 5000)
    assert parse_limit_info("api-usage=25/5000; per-app-api-usage=17/250(appName=my-app)") == ApiUsage(
        25, 5000, "my-app", 17, 250
    )
    assert parse_limit_info(None) is None
    assert parse_limit_info("per-app-api-usage=17/250(appName=my-app)") is None


def test_stats_follow_the_org_s_usage(admin, salesforce):
    admin.salesforce_limits(daily_api_limit=5000, used=1234)
    client = salesforce.client()

    list(client.query_pages("SELECT Id FROM Account"))

    usage = admin.salesforce_limits()
    assert (client.stats.api_used, client.stats.api_limit) == (usage["used"], 5000) == (1235, 5000)


def test_budget_stops_before_the_share_and_the_read_resumes_where_it_stopped(admin, salesforce):
    admin.salesforce_reset(accounts=4500, contacts_per_account=0, leads=0, opportunities=0)
    accounts = sandbox_records(admin, "Account")
    # A budget of 80 calls (quota_share 0.8 of 100) with 78 used: two pages, then a clean stop.
    admin.salesforce_limits(daily_api_limit=100, used=78)
    admin.reset_stats()
    pages = []

    with pytest.raises(SalesforceQuotaBudgetReached) as raised:
        for page in salesforce.client(quota_share=0.8).changed_since("Account", ["Name"]):
            pages.append(page)

    stop = raised.value
    assert (stop.used, stop.limit, stop.budget) == (80, 100, 80)
    assert admin.salesforce_limits()["used"] == 80  # no call went past the budget
    assert sandbox_calls(admin, QUERY) == 2
    assert stop.position == Position.of(pages[-1][-1])

    admin.salesforce_limits(used=0)  # the next day, from the position kept as a run cursor
    kept = Position.from_dict(json.loads(json.dumps(stop.position.as_dict())))
    resumed = list(salesforce.client().changed_since("Account", ["Name"], since=kept, overlap=dt.timedelta(0)))

    # The stop fell inside a SystemModstamp tie (the sandbox seeds one at each 2,000-row boundary).
    assert resumed[0][0]["SystemModstamp"] == pages[-1][-1]["SystemModstamp"]
    assert ids_of(pages + resumed) == [row["Id"] for row in accounts]


def test_a_stop_before_any_row_has_no_position(admin, salesforce):
    client = salesforce.client()
    list(client.query_pages("SELECT Id FROM Account LIMIT 1"))
    admin.salesforce_limits(daily_api_limit=100, used=95)
    list(client.query_pages("SELECT Id FROM Account LIMIT 1"))

    with pytest.raises(SalesforceQuotaBudgetReached) as raised:
        list(client.changed_since("Account", ["Name"]))

    assert raised.value.position is None


def test_a_spent_daily_allocation_stops_without_retrying(admin, salesforce):
    admin.salesforce_limits(daily_api_limit=10, used=10)
    client = salesforce.client(quota_share=1.0)
    admin.reset_stats()

    with pytest.raises(SalesforceQuotaBudgetReached):
        list(client.query_pages("SELECT Id FROM Account"))

    # salesforce.md §5: 403 REQUEST_LIMIT_EXCEEDED "TotalRequests" means stop for today, not retry.
    assert sandbox_calls(admin, QUERY) == 1
    assert client.stats.retries == 0
    assert (client.stats.api_used, client.stats.api_limit) == (10, 10)
