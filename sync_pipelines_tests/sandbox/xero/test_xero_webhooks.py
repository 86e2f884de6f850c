"""The Xero webhook emitter, observed from a real receiver on 127.0.0.1 (xero.md §6)."""

import re
from pathlib import Path

import requests

from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines.sandbox.xero.dates import event_date_string, parse_net
from sync_pipelines_tests.conftest import SandboxAdmin
from sync_pipelines_tests.sandbox.conftest import xero_signature

EVENT_FIELDS = {"resourceUrl", "resourceId", "eventDateUtc", "eventType", "eventCategory", "tenantId", "tenantType"}


def announced(receiver) -> list[tuple[str, str, str, str]]:
    return [(e["eventCategory"], e["eventType"], e["resourceId"], e["eventDateUtc"]) for e in receiver.events()]


def expected(*changes: tuple[str, str, str, dict]) -> list[tuple[str, str, str, str]]:
    """(category, type, id, record as returned) -> events; the emitter announces one event per resource and
    UpdatedDateUTC, so two writes to one record within the same millisecond are one event."""
    events: list[tuple[str, str, str, str]] = []
    for category, event_type, record_id, record in changes:
        event = (category, event_type, record_id, event_date_string(parse_net(record["UpdatedDateUTC"])))
        if not any(e[0] == event[0] and e[2] == event[2] and e[3] == event[3] for e in events):
            events.append(event)
    return events


def test_every_path_that_changes_an_invoice_or_contact_announces_it(api, admin, receiver):
    admin.webhooks(url=receiver.url)
    person = admin.post("/xero/contacts", {"Name": "Grace Hopper", "FirstName": "Grace", "LastName": "Hopper"})
    contact_id = person["ContactID"]
    emailed = admin.post(f"/xero/contacts/{contact_id}", {"EmailAddress": "grace@navy.test"})
    invoice = admin.post("/xero/invoices", {"ContactID": contact_id})  # makes Grace a customer: no event of its own
    referenced = admin.post(f"/xero/invoices/{invoice['InvoiceID']}", {"Reference": "R-7"})
    new_supplier_bill = {
        "Type": "ACCPAY",
        "Contact": {"Name": "Paper Supplies Ltd"},
        "LineItems": [{"Description": "Paper", "UnitAmount": 5, "AccountCode": "453"}],
    }
    bill = api.request("PUT", "Invoices", json=new_supplier_bill).json()["Invoices"][0]
    websited = api.request("POST", f"Contacts/{contact_id}", json={"Website": "https://grace.test"}).json()
    archived = admin.post(f"/xero/contacts/{contact_id}/archive")
    # A failed element is rolled back, and so is its event.
    failed = api.request(
        "PUT", "Invoices", params={"summarizeErrors": "false"}, json={"Type": "ACCREC", "LineItems": []}
    )
    assert failed.json()["Invoices"][0]["StatusAttributeString"] == "ERROR"
    admin.flush_webhooks()

    assert announced(receiver) == expected(
        ("CONTACT", "CREATE", contact_id, person),
        ("CONTACT", "UPDATE", contact_id, emailed),
        ("INVOICE", "CREATE", invoice["InvoiceID"], invoice),
        ("INVOICE", "UPDATE", invoice["InvoiceID"], referenced),
        ("CONTACT", "CREATE", bill["Contact"]["ContactID"], bill),  # created by name with the bill
        ("INVOICE", "CREATE", bill["InvoiceID"], bill),
        ("CONTACT", "UPDATE", contact_id, websited["Contacts"][0]),
        ("CONTACT", "UPDATE", contact_id, archived),  # archiving is an UPDATE (xero.md §7)
    )


def test_payments_and_bank_transactions_announce_only_the_invoice_they_change(api, admin, receiver):
    admin.webhooks(url=receiver.url)
    contact_id = next(c["ContactID"] for c in admin.get("/xero/contacts") if c["ContactStatus"] == "ACTIVE")
    invoice = admin.post("/xero/invoices", {"ContactID": contact_id})
    invoice_id = invoice["InvoiceID"]
    admin.flush_webhooks()
    before = len(announced(receiver))

    part_paid = admin.post(f"/xero/invoices/{invoice_id}/pay", {"Amount": 40, "Date": "2025-03-01"})
    paid = api.request(
        "PUT", "Payments", json={"Invoice": {"InvoiceID": invoice_id}, "Account": {"Code": "090"}, "Amount": 75}
    ).json()["Payments"][0]
    admin.post(f"/xero/payments/{paid['PaymentID']}/delete")
    reopened = next(i for i in admin.get("/xero/invoices") if i.get("InvoiceID") == invoice_id)
    spend = admin.post("/xero/bank-transactions", {"Type": "SPEND"})
    admin.post("/xero/bank-transactions", {"Type": "RECEIVE", "ContactID": contact_id})
    admin.post(f"/xero/bank-transactions/{spend['BankTransactionID']}/delete")
    api.request(
        "PUT",
        "BankTransactions",
        json={"Type": "SPEND", "BankAccount": {"Code": "090"}, "LineItems": [{"Description": "Fee", "UnitAmount": 3}]},
    )
    admin.flush_webhooks()

    assert (reopened["Status"], reopened["AmountDue"]) == ("AUTHORISED", 75.0)
    assert announced(receiver)[before:] == expected(
        ("INVOICE", "UPDATE", invoice_id, part_paid),
        ("INVOICE", "UPDATE", invoice_id, {"UpdatedDateUTC": paid["UpdatedDateUTC"]}),
        ("INVOICE", "UPDATE", invoice_id, reopened),
    )


def test_batches_are_signed_over_the_raw_body_and_numbered_in_order(api, admin, receiver):
    key = "sandbox-signing-kéy"  # non-ASCII: the key is used as UTF-8 bytes, never base64-decoded
    admin.webhooks(url=receiver.url, key=key)
    touched = admin.post("/xero/touch", {"count": 150})["ids"]  # one transaction, 150 events at once
    admin.flush_webhooks()

    payloads = receiver.payloads()
    assert [len(p["events"]) for p in payloads] == [100, 50]
    assert [e["resourceId"] for e in receiver.events()] == touched
    for body, headers in receiver.requests:
        assert headers["content-type"] == "application/json"
        assert headers["x-xero-signature"] == xero_signature(key, body)
        assert headers["x-xero-signature"] != xero_signature(key, body.replace(b",", b", "))
    first, second = payloads
    assert first["lastEventSequence"] - first["firstEventSequence"] == 99
    assert second["firstEventSequence"] == first["lastEventSequence"] + 1
    assert second["lastEventSequence"] - second["firstEventSequence"] == 49
    assert first["entropy"] and first["entropy"] != second["entropy"]
    event = first["events"][0]
    assert set(event) == EVENT_FIELDS
    assert (event["eventCategory"], event["eventType"], event["tenantType"]) == ("INVOICE", "UPDATE", "ORGANISATION")
    assert event["tenantId"] == api.tenant_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", event["eventDateUtc"])  # no Z (xero.md §6)
    assert event["resourceUrl"] == f"{api.base}/xero/api/api.xro/2.0/Invoices/{event['resourceId']}"
    fetched = requests.get(event["resourceUrl"], headers=api.headers(), timeout=10).json()["Invoices"][0]
    assert event_date_string(parse_net(fetched["UpdatedDateUTC"])) == event["eventDateUtc"]


def test_a_failed_delivery_is_retried_with_the_same_body_and_later_events_wait(admin, receiver):
    receiver.failures = 2
    admin.webhooks(url=receiver.url, backoff_seconds=0.05)
    first = admin.post("/xero/invoices")
    second = admin.post("/xero/invoices")
    admin.flush_webhooks()

    first_body, first_headers = receiver.requests[0]
    assert receiver.requests[1] == receiver.requests[2] == (first_body, first_headers)
    assert [e["resourceId"] for e in receiver.events()] == [first["InvoiceID"], second["InvoiceID"]]
    deliveries = admin.webhook_deliveries()
    assert deliveries[0]["attempts"] == [500, 500, 200] and all(d["delivered"] for d in deliveries)
    assert sum(d["events"] for d in deliveries) == 2
    assert [d["first"] for d in deliveries] == sorted(d["first"] for d in deliveries)


def test_a_given_up_delivery_can_be_redelivered_byte_for_byte(sandbox, admin, receiver):
    receiver.failures = 2
    admin.webhooks(url=receiver.url, attempts=2, backoff_seconds=0.05)
    admin.post("/xero/invoices")
    admin.flush_webhooks()
    [given_up] = admin.webhook_deliveries()
    assert (given_up["events"], given_up["attempts"], given_up["delivered"]) == (1, [500, 500], False)

    replay = admin.post("/xero/webhooks/redeliver", {"first": given_up["first"]})
    assert replay == {"first": given_up["first"], "status": 200}
    (body, headers), replayed = receiver.requests[0], receiver.requests[-1]
    assert replayed[0] == body and replayed[1]["x-xero-signature"] == headers["x-xero-signature"]
    assert admin.webhook_deliveries() == [{**given_up, "attempts": [500, 500, 200], "delivered": True}]
    unknown = requests.post(f"{sandbox.url}/_admin/xero/webhooks/redeliver", json={"first": 10**6}, timeout=10)
    assert unknown.status_code == 404


def test_intent_to_receive_passes_only_a_receiver_that_checks_signatures(sandbox, admin, receiver):
    admin.webhooks(url=receiver.url, key="itr-key")
    receiver.key = "itr-key"
    checked = admin.post("/xero/webhooks/itr")
    assert checked["passed"] is True
    assert sorted(p["signed"] for p in checked["probes"]) == [False, False, True, True]
    assert all(p["status"] == (200 if p["signed"] else 401) for p in checked["probes"])
    for body, _ in receiver.requests:
        assert body.startswith(b'{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"')

    receiver.key = None  # answers 200 to everything
    careless = admin.post("/xero/webhooks/itr")
    assert careless["passed"] is False and {p["status"] for p in careless["probes"]} == {200}
    receiver.key = "another-key"  # rejects even the good signatures
    assert admin.post("/xero/webhooks/itr")["passed"] is False
    assert admin.webhook_deliveries() == []  # probes are not deliveries

    admin.webhooks(url=None)
    assert requests.post(f"{sandbox.url}/_admin/xero/webhooks/itr", timeout=10).status_code == 400


def test_without_a_subscription_nothing_is_queued_and_unsubscribing_drops_the_queue(sandbox, admin, receiver):
    admin.post("/xero/invoices")
    assert admin.webhooks()["queued"] == 0 and admin.webhook_deliveries() == []
    off_machine = requests.put(
        f"{sandbox.url}/_admin/xero/webhooks", json={"url": "http://example.com/hook"}, timeout=10
    )
    assert off_machine.status_code == 400 and admin.webhooks()["url"] is None

    receiver.failures = 10**6  # a receiver that never recovers holds the queue
    admin.webhooks(url=receiver.url, attempts=1000, backoff_seconds=0.05)
    admin.post("/xero/invoices")
    admin.post("/xero/invoices")
    stuck = requests.post(f"{sandbox.url}/_admin/xero/webhooks/flush", json={"timeout": 0.3}, timeout=10)
    assert stuck.status_code == 504 and stuck.json()["idle"] is False
    unsubscribed = admin.webhooks(url=None)
    assert (unsubscribed["url"], unsubscribed["queued"]) == (None, 0)
    admin.flush_webhooks(timeout=5)  # nothing is owed to no one


def test_sequences_keep_rising_across_restarts_and_urls_follow_the_server(tmp_path: Path, receiver):
    settings = SandboxSettings(state_path=tmp_path / "state.db", invoices=10, contacts=3, webhook_url=receiver.url)
    bases = []
    for _ in range(2):
        with SandboxServer(settings) as server:
            admin = SandboxAdmin(server.url)
            admin.post("/xero/invoices")
            admin.flush_webhooks()
            bases.append(server.url)
    first, second = receiver.payloads()
    assert second["firstEventSequence"] > first["lastEventSequence"]
    assert first["events"][0]["resourceUrl"].startswith(bases[0] + "/xero/api/api.xro/2.0/Invoices/")
    assert second["events"][0]["resourceUrl"].startswith(bases[1] + "/xero/api/api.xro/2.0/Invoices/")
