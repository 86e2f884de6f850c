"""Seeding, persistence, the admin API and fault injection."""

import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines.sandbox.store import dumps
from sync_pipelines.sandbox.xero.dates import parse_net
from sync_pipelines.sandbox.xero.seed import generate, tenant_id
from sync_pipelines_tests.sandbox.conftest import XeroApi, authorize


def test_same_seed_gives_byte_identical_records():
    first, first_meta = generate(7, 60, 12, malformed=3)
    second, second_meta = generate(7, 60, 12, malformed=3)
    assert dumps(first) == dumps(second) and first_meta == second_meta
    other, _ = generate(8, 60, 12, malformed=3)
    assert dumps(other) != dumps(first) and tenant_id(7) != tenant_id(8)


def test_seeded_invoices_look_like_xero(admin):
    invoices = admin.call("GET", "/xero/invoices")
    contacts = {c["ContactID"]: c for c in admin.call("GET", "/xero/contacts")}
    assert len({c["Name"] for c in contacts.values()}) == len(contacts) == 40
    share = sum(i["Type"] == "ACCREC" for i in invoices) / len(invoices)
    assert 0.75 < share < 0.95
    assert {i["Status"] for i in invoices} == {"DRAFT", "SUBMITTED", "AUTHORISED", "PAID", "VOIDED", "DELETED"}
    assert {i["CurrencyCode"] for i in invoices} <= {"USD", "GBP", "EUR", "AUD", "NZD"}
    for invoice in invoices:
        assert 1 <= len(invoice["LineItems"]) <= 5
        assert invoice["Contact"]["Name"] == contacts[invoice["Contact"]["ContactID"]]["Name"]
        assert round(invoice["SubTotal"] + invoice["TotalTax"], 2) == invoice["Total"]
        assert round(sum(line["LineAmount"] for line in invoice["LineItems"]), 2) == invoice["SubTotal"]
        if invoice["Status"] == "PAID":
            assert invoice["AmountDue"] == 0 and invoice["Payments"] and invoice["AmountPaid"] == invoice["Total"]
    assert len({i["Contact"]["ContactID"] for i in invoices}) < len(invoices) / 2


def test_seeded_contacts_are_people_or_organisations_and_bills_post_to_purchases_or_expenses(admin):
    admin.reset(invoices=600, contacts=120)
    contacts = admin.get("/xero/contacts")
    invoices = admin.get("/xero/invoices")
    people = [c for c in contacts if c["Name"] == f"{c['FirstName']} {c['LastName']}"]
    assert 0.15 < len(people) / len(contacts) < 0.35
    assert all(c["FirstName"] and c["LastName"] for c in contacts)  # organisations keep a primary person
    # xero.md §2.5: IsCustomer / IsSupplier follow from having sales invoices / bills.
    for flag, invoice_type in (("IsCustomer", "ACCREC"), ("IsSupplier", "ACCPAY")):
        having = {i["Contact"]["ContactID"] for i in invoices if i["Type"] == invoice_type}
        assert {c["ContactID"] for c in contacts if c[flag]} == having
    expense_accounts = {"404", "429", "453", "493"}
    bill_accounts = [{line["AccountCode"] for line in i["LineItems"]} for i in invoices if i["Type"] == "ACCPAY"]
    assert all(len(codes) == 1 for codes in bill_accounts)  # one account per bill
    to_purchases = sum(codes == {"300"} for codes in bill_accounts)
    assert 0.3 < to_purchases / len(bill_accounts) < 0.7
    assert set().union(*bill_accounts) == {"300"} | expense_accounts
    assert {line["AccountCode"] for i in invoices if i["Type"] == "ACCREC" for line in i["LineItems"]} == {"200"}
    transactions = admin.get("/xero/bank-transactions")
    assert {t["Type"] for t in transactions} == {"RECEIVE", "SPEND"}
    for txn in transactions:
        codes = {line["AccountCode"] for line in txn["LineItems"]}
        if txn["Type"] == "RECEIVE":
            assert codes == {"200"}
        else:
            assert len(codes) == 1 and codes < expense_accounts  # money spent is an expense


def test_reset_and_malformed_flagging(api, admin):
    summary = admin.call("POST", "/reset", {"seed": 5, "invoices": 30, "contacts": 5, "malformed": 4})
    assert summary["tenant_id"] == tenant_id(5)
    listing = admin.call("GET", "/xero/invoices")
    flagged = [i for i in listing if "_malformed" in i]
    assert Counter(i["_malformed"] for i in flagged) == {"missing InvoiceID": 2, "bad Date": 1, "non-numeric Total": 1}
    assert {i["Type"] for i in flagged} == {"ACCREC"}
    assert any("InvoiceID" not in i for i in flagged) and any(i.get("Total") == "12,34.x" for i in flagged)
    assert any(i.get("Date") in ("/Date(notanumber)/", "2024-13-45") for i in flagged)
    api.tenant_id = summary["tenant_id"]
    assert len(api.all_pages("Invoices")) == 34  # malformed ones page like the rest
    assert admin.call("POST", "/reset", {"seed": 5, "invoices": 30, "contacts": 5, "malformed": 4}) == summary
    assert admin.call("GET", "/xero/invoices") == listing


def test_state_survives_a_restart(tmp_path: Path):
    settings = SandboxSettings(state_path=tmp_path / "state.db", invoices=20, contacts=4)
    with SandboxServer(settings) as server:
        tokens = authorize(server.url)
        created = requests.post(f"{server.url}/_admin/xero/invoices", json={"Status": "DRAFT"}, timeout=10).json()
        requests.post(
            f"{server.url}/segment/v1/track",
            json={"userId": "u", "event": "E", "messageId": "keep"},
            auth=("sandbox-write-key", ""),
            timeout=10,
        )
    with SandboxServer(settings) as server:
        ids = [i.get("InvoiceID") for i in requests.get(f"{server.url}/_admin/xero/invoices", timeout=10).json()]
        assert created["InvoiceID"] in ids and len(ids) == 21
        assert [m["messageId"] for m in requests.get(f"{server.url}/_admin/segment/messages", timeout=10).json()] == [
            "keep"
        ]
        headers = {
            "Authorization": f"Bearer {tokens['access_token']}",
            "xero-tenant-id": server.tenant_id,
            "Accept": "application/json",
        }
        assert (
            requests.get(
                f"{server.url}/xero/api/api.xro/2.0/Invoices/{created['InvoiceID']}", headers=headers, timeout=10
            ).status_code
            == 200
        )


def test_admin_invoice_lifecycle_and_touch(api, admin):
    created = admin.call(
        "POST",
        "/xero/invoices",
        {"Type": "ACCREC", "LineItems": [{"Description": "Widget", "Quantity": 3, "UnitAmount": 20}]},
    )
    assert (created["Status"], created["Total"]) == ("AUTHORISED", 69.0)
    edited = admin.call("POST", f"/xero/invoices/{created['InvoiceID']}", {"Reference": "R-1"})
    assert edited["Reference"] == "R-1" and parse_net(edited["UpdatedDateUTC"]) >= parse_net(created["UpdatedDateUTC"])
    half = admin.call("POST", f"/xero/invoices/{created['InvoiceID']}/pay", {"Amount": 30})
    assert (half["Status"], half["AmountDue"]) == ("AUTHORISED", 39.0)
    assert admin.call("POST", f"/xero/invoices/{created['InvoiceID']}/pay")["Status"] == "PAID"
    # Payments are deleted first (xero.md §7).
    voided = admin.call("POST", f"/xero/invoices/{created['InvoiceID']}/void")
    assert (voided["Status"], voided["AmountDue"], voided["Payments"]) == ("VOIDED", 0.0, [])
    draft = admin.call("POST", "/xero/invoices", {"Status": "DRAFT"})
    assert admin.call("POST", f"/xero/invoices/{draft['InvoiceID']}/void")["Status"] == "DELETED"

    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    touched = admin.call("POST", "/xero/touch", {"count": 5})
    assert touched["touched"] == 5
    changed = api.all_pages("Invoices", headers=api.headers(**{"If-Modified-Since": since}))
    assert set(touched["ids"]) <= {i["InvoiceID"] for i in changed}


def test_faults_errors_rate_limits_and_stats(api, admin):
    admin.call("POST", "/stats/reset")
    admin.call("PUT", "/faults", {"xero": {"error_rate": 1}})
    assert api.request("GET", "Invoices", params={"page": 1}).status_code in (500, 503)
    assert requests.get(f"{api.base}/_admin/stats", timeout=10).status_code == 200  # never faulted
    admin.call("PUT", "/faults", {"xero": {"error_rate": 0, "rate_limit_rate": 1, "retry_after_seconds": 7}})
    limited = api.request("GET", "Invoices", params={"page": 1})
    assert (limited.status_code, limited.headers["X-Rate-Limit-Problem"], limited.headers["Retry-After"]) == (
        429,
        "minute",
        "7",
    )
    admin.call("PUT", "/faults", {"xero": {"rate_limit_rate": 0}, "segment": {"error_rate": 1}})
    assert (
        requests.post(
            f"{api.base}/segment/v1/batch", json={"batch": []}, auth=("sandbox-write-key", ""), timeout=10
        ).status_code
        >= 500
    )
    stats = admin.call("GET", "/stats")
    assert stats["xero"]["GET /api.xro/2.0/Invoices"] == 2 and stats["segment"]["POST /v1/batch"] == 1
    assert stats["faults_injected"] == 3
    assert admin.call("GET", "/faults")["xero"]["retry_after_seconds"] == 7


def test_dropped_connection_still_applies_the_write(api, admin):
    before = len(admin.call("GET", "/xero/invoices"))
    admin.call("PUT", "/faults", {"xero": {"drop_rate": 1}})
    contact_id = next(c["ContactID"] for c in admin.call("GET", "/xero/contacts") if c["ContactStatus"] == "ACTIVE")
    body = {"Type": "ACCREC", "Contact": {"ContactID": contact_id}, "LineItems": [{"Description": "Lost reply"}]}
    with pytest.raises((requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        api.request("PUT", "Invoices", headers=api.headers(**{"Idempotency-Key": "drop-1"}), json=body)
    admin.call("PUT", "/faults", {"xero": {"drop_rate": 0}})
    replay = api.request("PUT", "Invoices", headers=api.headers(**{"Idempotency-Key": "drop-1"}), json=body)
    assert replay.status_code == 200 and len(admin.call("GET", "/xero/invoices")) == before + 1


def test_a_middle_page_of_1000_is_served_whole(tmp_path: Path):
    """Page speed is measured in benchmarks/sync_100k.py; here only the page's shape."""
    settings = SandboxSettings(state_path=tmp_path / "big.db", invoices=5000, contacts=200)
    with SandboxServer(settings) as server:
        api = XeroApi(server)
        body = api.request("GET", "Invoices", params={"page": 3, "pageSize": 1000}).json()
        assert len(body["Invoices"]) == 1000 and body["pagination"]["pageCount"] == 5
