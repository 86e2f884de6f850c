"""Reading from the sandbox's Accounting API: paging, filters, ordering and the request gate."""

import re
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import requests

from sync_pipelines.sandbox.xero.dates import parse_net

NOT_FOUND = "The resource you're looking for cannot be found"


def _key(invoice: dict) -> tuple[int, str]:
    return parse_net(invoice["UpdatedDateUTC"]), invoice["InvoiceID"]


def test_pages_carry_the_envelope_and_pagination(api):
    body = api.request("GET", "Invoices", params={"page": 2, "pageSize": 50}).json()
    assert body["Status"] == "OK" and re.fullmatch(r"/Date\(\d+\)/", body["DateTimeUTC"])
    assert body["pagination"] == {"page": 2, "pageSize": 50, "pageCount": 4, "itemCount": 200}
    assert len(body["Invoices"]) == 50
    assert re.fullmatch(r"/Date\(\d+\+0000\)/", body["Invoices"][0]["UpdatedDateUTC"])
    assert api.request("GET", "Invoices", params={"page": 1}).json()["pagination"]["pageSize"] == 100
    clamped = api.request("GET", "Invoices", params={"page": 1, "pageSize": 5000}).json()
    assert clamped["pagination"]["pageSize"] == 1000 and len(clamped["Invoices"]) == 200
    assert api.request("GET", "Invoices", params={"page": 9, "pageSize": 50}).json()["Invoices"] == []


def test_default_order_is_updated_then_id_and_ties_exist(api):
    """Records sharing an UpdatedDateUTC are ordered by ID so pages never skip or repeat (xero.md §3.1)."""
    invoices = api.all_pages("Invoices", page_size=7)
    assert [_key(i) for i in invoices] == sorted(_key(i) for i in invoices)
    assert len({i["InvoiceID"] for i in invoices}) == 200
    assert max(Counter(i["UpdatedDateUTC"] for i in invoices).values()) > 1
    newest_first = api.request(
        "GET", "Invoices", params={"page": 1, "pageSize": 3, "order": "UpdatedDateUTC DESC"}
    ).json()
    newest = [_key(i) for i in newest_first["Invoices"]]
    assert [ms for ms, _ in newest] == sorted((ms for ms, _ in map(_key, invoices)), reverse=True)[:3]


def test_a_page_after_a_write_is_the_page_of_the_listing_as_it_is_now(api):
    """Pages are numbered over the listing as it stands at each request, as Xero's are: a record edited between two
    page reads moves to the end, and the next page starts one record later in what was read before."""
    before = api.all_pages("Invoices", page_size=50)
    first = api.request("GET", "Invoices", params={"page": 1, "pageSize": 50}).json()["Invoices"]
    assert first == before[:50]
    edited = first[0]["InvoiceID"]
    assert api.request("POST", "Invoices", json={"InvoiceID": edited, "Reference": "edited"}).ok
    second = api.request("GET", "Invoices", params={"page": 2, "pageSize": 50}).json()["Invoices"]
    assert [i["InvoiceID"] for i in second] == [i["InvoiceID"] for i in before[51:101]]
    last = api.request("GET", "Invoices", params={"page": 4, "pageSize": 50}).json()["Invoices"]
    assert last[-1]["InvoiceID"] == edited and last[-1]["Reference"] == "edited"


def test_if_modified_since_is_inclusive_and_accepts_offsets(api):
    invoices = api.all_pages("Invoices")
    pivot = parse_net(invoices[120]["UpdatedDateUTC"])
    expected = {i["InvoiceID"] for i in invoices if parse_net(i["UpdatedDateUTC"]) >= pivot}
    moment = datetime.fromtimestamp(pivot / 1000, UTC)
    naive = moment.replace(tzinfo=None).isoformat(timespec="milliseconds")
    shifted = moment.astimezone(UTC).replace(tzinfo=None) + timedelta(hours=2)
    with_offset = shifted.isoformat(timespec="milliseconds") + "+02:00"
    for stamp in (naive, with_offset):
        got = api.all_pages("Invoices", headers=api.headers(**{"If-Modified-Since": stamp}))
        assert {i["InvoiceID"] for i in got} == expected
    bad = api.request("GET", "Invoices", headers=api.headers(**{"If-Modified-Since": "yesterday"}), params={"page": 1})
    assert bad.status_code == 400 and bad.json()["Type"] == "QueryParseException"


def test_where_clauses_filter_on_indexed_fields(api):
    invoices = api.all_pages("Invoices")
    contact_id = invoices[0]["Contact"]["ContactID"]
    where = f'Status=="AUTHORISED" AND Type=="ACCREC" && Contact.ContactID==Guid("{contact_id}")'
    got = api.all_pages("Invoices", where=where)
    assert got == [
        i
        for i in invoices
        if i["Status"] == "AUTHORISED" and i["Type"] == "ACCREC" and i["Contact"]["ContactID"] == contact_id
    ]
    since = api.all_pages("Invoices", where="UpdatedDateUTC>=DateTime(2024, 10, 01)")
    cutoff = datetime(2024, 10, 1, tzinfo=UTC).timestamp() * 1000
    assert since == [i for i in invoices if parse_net(i["UpdatedDateUTC"]) >= cutoff]
    assert {i["Status"] for i in api.all_pages("Invoices", where='Status!="PAID"')} == {
        "DRAFT",
        "SUBMITTED",
        "AUTHORISED",
        "VOIDED",
        "DELETED",
    }
    rejected = api.request("GET", "Invoices", params={"page": 1, "where": 'Reference.Contains("x")'})
    assert rejected.status_code == 400 and rejected.json()["ErrorNumber"] == 16


def test_explicit_filters_and_single_get(api):
    removed = api.all_pages("Invoices", Statuses="DELETED,VOIDED")
    assert removed and {i["Status"] for i in removed} == {"DELETED", "VOIDED"}
    ids = [removed[0]["InvoiceID"], removed[-1]["InvoiceID"]]
    assert sorted(i["InvoiceID"] for i in api.all_pages("Invoices", IDs=",".join(ids))) == sorted(set(ids))
    one = api.request("GET", f"Invoices/{ids[0]}").json()
    assert "pagination" not in one and [i["InvoiceID"] for i in one["Invoices"]] == [ids[0]]
    by_number = api.request("GET", f"Invoices/{one['Invoices'][0]['InvoiceNumber']}")
    assert by_number.status_code == 200
    missing = api.request("GET", "Invoices/00000000-0000-0000-0000-000000000000")
    assert (missing.status_code, missing.text, missing.headers["content-type"].split(";")[0]) == (
        404,
        NOT_FOUND,
        "text/plain",
    )


def test_unpaged_list_is_summary_form(api):
    body = api.request("GET", "Invoices").json()
    assert "pagination" not in body and len(body["Invoices"]) == 200
    assert all("LineItems" not in i for i in body["Invoices"])


def test_archived_contacts_are_hidden_unless_asked_for(api, admin):
    contacts = admin.call("GET", "/xero/contacts")
    archived = {c["ContactID"] for c in contacts if c["ContactStatus"] == "ARCHIVED"}
    if not archived:
        archived = {admin.call("POST", f"/xero/contacts/{contacts[0]['ContactID']}/archive")["ContactID"]}
    visible = {c["ContactID"] for c in api.all_pages("Contacts")}
    everything = {c["ContactID"] for c in api.all_pages("Contacts", includeArchived="true")}
    assert not visible & archived and archived <= everything and len(everything) == 40


def test_gate_statuses_for_accept_auth_and_tenant(api):
    assert api.request("GET", "Invoices", headers={**api.headers(), "Accept": "application/xml"}).status_code == 406
    anonymous = api.request("GET", "Invoices", headers={"Accept": "application/json", "xero-tenant-id": api.tenant_id})
    assert anonymous.status_code == 401 and anonymous.json()["Detail"] == "AuthenticationUnsuccessful"
    no_tenant = {k: v for k, v in api.headers().items() if k != "xero-tenant-id"}
    forbidden = api.request("GET", "Invoices", headers=no_tenant)
    assert forbidden.status_code == 403
    assert {k: forbidden.json()[k] for k in ("Title", "Status", "Detail")} == {
        "Title": "Forbidden",
        "Status": 403,
        "Detail": "AuthenticationUnsuccessful",
    }
    wrong = api.request(
        "GET", "Invoices", headers=api.headers(**{"xero-tenant-id": "8a6f8f7e-0000-4000-8000-000000000000"})
    )
    assert wrong.status_code == 403


def test_expired_access_tokens_get_token_expired(api, admin):
    assert api.request("GET", "Invoices", params={"page": 1}).status_code == 200
    assert admin.call("PUT", "/faults", {"expire_access_tokens": True})["expired_access_tokens"] >= 1
    expired = api.request("GET", "Invoices", params={"page": 1})
    assert expired.status_code == 401
    assert re.fullmatch(r"TokenExpired: token expired at \d\d/\d\d/\d{4} \d\d:\d\d:\d\d", expired.json()["Detail"])


def test_rate_limit_headers_and_429s(api, admin):
    admin.call("PUT", "/limits", {"minute_limit": 3})
    remaining = []
    for _ in range(3):
        response = api.request("GET", "Invoices", params={"page": 1, "pageSize": 1})
        assert response.status_code == 200
        assert all(
            h in response.headers for h in ("X-DayLimit-Remaining", "X-MinLimit-Remaining", "X-AppMinLimit-Remaining")
        )
        remaining.append(int(response.headers["X-MinLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    limited = api.request("GET", "Invoices", params={"page": 1})
    assert limited.status_code == 429 and limited.headers["X-Rate-Limit-Problem"] == "minute"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    admin.call("PUT", "/limits", {"minute_limit": 1000, "day_limit": 3})
    day = api.request("GET", "Invoices", params={"page": 1})
    assert (
        day.status_code == 429
        and day.headers["X-Rate-Limit-Problem"] == "day"
        and int(day.headers["Retry-After"]) > 3600
    )


def test_concurrent_limit(api, admin):
    """Slow responses stay in flight; the sixth concurrent call for a tenant is refused (xero.md §5)."""
    admin.call("PUT", "/limits", {"concurrent_limit": 2})
    admin.call("PUT", "/faults", {"xero": {"latency_ms": 400}})
    results: list[requests.Response] = []

    def call() -> None:
        results.append(api.request("GET", "Invoices", params={"page": 1, "pageSize": 1}))

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    problems = Counter(r.headers.get("X-Rate-Limit-Problem") for r in results)
    assert problems["concurrent"] >= 1 and problems[None] >= 2
