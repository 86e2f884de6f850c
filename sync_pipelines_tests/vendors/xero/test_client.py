"""XeroClient against the sandbox: paging, incremental reads, retries, limits and writes."""

from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sync_pipelines.vendors.xero.client import CallLimiter, XeroApiError, XeroDailyLimitReached

INVOICES = "GET /api.xro/2.0/Invoices"


def all_invoice_ids(admin) -> list[str]:
    return [invoice["InvoiceID"] for invoice in admin.call("GET", "/xero/invoices")]


def test_pages_at_max_size_with_minimum_calls(admin, xero):
    admin.reset(invoices=2000)
    admin.reset_stats()
    client = xero.client()

    pages = list(client.iter_pages("Invoices"))

    assert [len(page) for page in pages] == [1000, 1000]
    ids = [invoice["InvoiceID"] for page in pages for invoice in page]
    assert sorted(ids) == sorted(all_invoice_ids(admin))
    # xero.md §3.1: page >= pageCount ends the read, so no trailing empty-page call.
    assert admin.count("xero", INVOICES) == 2
    assert client.stats.retries == 0
    assert client.stats.bytes_received > 0
    assert client.stats.min_limit_remaining is not None and client.stats.day_limit_remaining is not None


def test_pages_are_fetched_together_and_yielded_in_order(admin, xero):
    admin.reset(invoices=1050)
    admin.faults(xero={"latency_ms": 50})  # later pages could overtake earlier ones
    admin.reset_stats()
    client = xero.client(page_size=100)

    pages = list(client.iter_pages("Invoices", params={"order": "InvoiceNumber"}))

    assert [len(page) for page in pages] == [100] * 10 + [50]
    numbers = [invoice["InvoiceNumber"] for page in pages for invoice in page]
    assert numbers == sorted(numbers) and len(set(numbers)) == 1050
    assert admin.count("xero", INVOICES) == 11 and client.stats.retries == 0


def test_a_reread_told_about_how_many_records_there_are_asks_for_their_pages_with_the_first(admin, xero):
    admin.reset(invoices=300)
    # Each call stays in flight for a second: the calls asked for together are in flight together.
    admin.faults(xero={"latency_ms": 1000})
    admin.reset_stats()
    client = xero.client(page_size=100)

    pages = list(client.iter_pages("Invoices", params={"order": "InvoiceNumber"}, expected_rows=300))

    numbers = [invoice["InvoiceNumber"] for page in pages for invoice in page]
    assert [len(page) for page in pages] == [100, 100, 100] and numbers == sorted(numbers)
    (tenant,) = admin.stats()["xero_tenants"].values()
    assert admin.count("xero", INVOICES) == 3 and tenant["peak_in_flight"] == 3  # read alone first, it would be 2

    # Told of more than there are (records were deleted since): the pages past the end, up to Xero's 5 in flight,
    # are one call each, and the read yields what there is.
    admin.reset_stats()
    assert sum(len(page) for page in client.iter_pages("Invoices", expected_rows=1000)) == 300
    assert admin.count("xero", INVOICES) == 5


def test_short_last_page_ends_the_read(admin, xero):
    admin.reset(invoices=250)
    admin.reset_stats()

    pages = list(xero.client(page_size=100).iter_pages("Invoices"))

    assert [len(page) for page in pages] == [100, 100, 50]
    assert admin.count("xero", INVOICES) == 3


def test_modified_since_returns_only_changed_records(admin, xero):
    client = xero.client()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    changed = all_invoice_ids(admin)[:3]
    for invoice_id in changed:
        admin.call("POST", f"/xero/invoices/{invoice_id}", {"Reference": "changed"})

    pages = list(client.iter_pages("Invoices", modified_since=since))

    assert sorted(i["InvoiceID"] for page in pages for i in page) == sorted(changed)
    assert list(client.iter_pages("Invoices", modified_since=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))) == []


def test_where_filter_is_passed_through(xero):
    pages = list(xero.client().iter_pages("Invoices", where='Status=="AUTHORISED"'))

    statuses = {invoice["Status"] for page in pages for invoice in page}
    assert statuses == {"AUTHORISED"}


def test_faults_still_deliver_every_page_exactly_once(admin, xero):
    admin.reset(invoices=1500)
    client = xero.client(page_size=100, max_attempts=12)
    assert client.tenant_id  # discovered before faults start
    admin.faults(xero={"error_rate": 0.1, "rate_limit_rate": 0.1, "drop_rate": 0.1, "retry_after_seconds": 0})

    pages = list(client.iter_pages("Invoices"))

    ids = [invoice["InvoiceID"] for page in pages for invoice in page]
    assert len(pages) == 15
    assert len(ids) == len(set(ids)) == 1500
    assert sorted(ids) == sorted(all_invoice_ids(admin))
    assert admin.stats()["faults_injected"] > 0
    assert client.stats.retries > 0


def test_day_limit_raises_without_retrying(admin, xero):
    admin.reset(invoices=500)
    client = xero.client(page_size=100)
    assert client.tenant_id
    admin.reset_stats()
    admin.limits(day_limit=3)
    pages = []

    with pytest.raises(XeroDailyLimitReached) as raised:
        for page in client.iter_pages("Invoices"):
            pages.append(page)

    # xero.md §5: a day breach means defer the run: no refused call is retried. As the allowance ends, only as many
    # pages are asked for at once as it has left (X-DayLimit-Remaining), so its last calls go to the next pages in
    # order, and one call finds it spent.
    assert raised.value.retry_after and raised.value.retry_after > 0
    assert [len(page) for page in pages] == [100, 100, 100]
    assert admin.count("xero", INVOICES) == 4
    assert client.stats.retries == 0


def test_burst_stays_under_minute_and_concurrency_limits(admin, xero):
    admin.limits(minute_limit=12, concurrent_limit=2)
    admin.faults(xero={"latency_ms": 100})
    client = xero.client(page_size=10, calls_per_minute=12, max_concurrent=2)
    assert client.tenant_id
    admin.reset_stats()

    with ThreadPoolExecutor(max_workers=6) as pool:
        pages = list(pool.map(lambda _: next(client.iter_pages("Invoices")), range(12)))

    assert all(len(page) == 10 for page in pages)
    # No 429 was met: every request the sandbox saw was a first attempt.
    assert admin.count("xero", INVOICES) == 12
    assert client.stats.retries == 0
    # The burst used the whole minute allowance: one more call from anyone is refused.
    beyond = requests.get(
        f"{xero.api_url}/api.xro/2.0/Invoices",
        headers={
            "Authorization": f"Bearer {xero.store.load()['access_token']}",
            "xero-tenant-id": client.tenant_id,
            "Accept": "application/json",
        },
        timeout=10,
    )
    assert beyond.status_code == 429 and beyond.headers["X-Rate-Limit-Problem"] == "minute"


def test_limiter_bounds_calls_per_window_and_in_flight():
    limiter = CallLimiter(calls_per_window=4, max_concurrent=2, window_seconds=0.5)
    starts: list[float] = []
    in_flight = peak = 0
    lock = threading.Lock()

    def call(_):
        nonlocal in_flight, peak
        with limiter.slot():
            with lock:
                starts.append(time.monotonic())
                in_flight += 1
                peak = max(peak, in_flight)
            time.sleep(0.02)
            with lock:
                in_flight -= 1

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(call, range(10)))

    starts.sort()
    assert peak == 2
    # A start is observed a thread switch after the limiter granted it, so two observations can sit a
    # little closer than the window; without the window they would sit ~0.04 s apart.
    observed_slack = 0.05
    assert all(later - earlier >= 0.5 - observed_slack for earlier, later in zip(starts, starts[4:], strict=False))


def test_limiter_counts_calls_reported_by_the_server():
    limiter = CallLimiter(calls_per_window=50, max_concurrent=5, window_seconds=0.3)
    limiter.observe_remaining(0)
    started = time.monotonic()

    with limiter.slot():
        waited = time.monotonic() - started

    assert waited >= 0.3


def test_expired_access_token_is_refreshed_once_and_the_call_retried(admin, xero):
    client = xero.client()
    assert client.tenant_id
    before = xero.store.load()
    admin.faults(expire_access_tokens=True)
    admin.reset_stats()

    pages = list(client.iter_pages("Invoices"))

    after = xero.store.load()
    assert pages
    assert admin.count("xero", "POST /connect/token") == 1
    assert admin.count("xero", INVOICES) == 2
    assert after["refresh_token"] != before["refresh_token"]
    assert after["access_token"] != before["access_token"]


def invoice_payload(admin, reference: str) -> dict:
    contact = admin.call("GET", "/xero/contacts")[0]
    return {
        "Type": "ACCREC",
        "Contact": {"ContactID": contact["ContactID"]},
        "Reference": reference,
        "LineItems": [{"Description": "Consulting", "Quantity": 2, "UnitAmount": 50.0, "AccountCode": "200"}],
    }


def test_write_is_idempotent_across_retries(admin, xero):
    client = xero.client(max_attempts=12)
    assert client.tenant_id
    before = len(all_invoice_ids(admin))
    payload = [invoice_payload(admin, "idem-1")]
    admin.reset_stats()
    admin.faults(xero={"drop_rate": 0.75})

    created = client.write("PUT", "Invoices", payload, idempotency_key="run-1:invoices:0")
    replayed = client.write("PUT", "Invoices", payload, idempotency_key="run-1:invoices:0")

    assert admin.stats()["faults_injected"] > 0
    assert admin.count("xero", "PUT /api.xro/2.0/Invoices") > 2
    assert created[0]["InvoiceID"] == replayed[0]["InvoiceID"]
    assert len(all_invoice_ids(admin)) == before + 1


def test_write_reports_validation_errors(admin, xero):
    client = xero.client()
    bad = invoice_payload(admin, "bad")
    del bad["Contact"]

    elements = client.write("PUT", "Invoices", [invoice_payload(admin, "good"), bad], idempotency_key="k-1")
    assert [e["StatusAttributeString"] for e in elements] == ["OK", "ERROR"]
    assert elements[1]["ValidationErrors"]

    with pytest.raises(XeroApiError) as raised:
        client.write("PUT", "Invoices", [bad], idempotency_key="k-2", summarize_errors=True)
    assert raised.value.status == 400
    assert raised.value.validation_errors


def test_write_rejects_an_over_long_idempotency_key(xero):
    with pytest.raises(ValueError):
        xero.client().write("PUT", "Invoices", [], idempotency_key="k" * 129)
