"""Segment -> Xero against the sandbox: identified people become one Xero contact each, with their merged traits;
a late message never overwrites a newer trait; a rerun writes nothing."""

import json
from collections import Counter

import dagster as dg
import pytest

from sync_pipelines.defs.segment_to_xero import NAME as FLOW
from sync_pipelines.lib.flows import synced
from sync_pipelines.lib.reconcile import latest_reconciliation
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.webhooks.receiver import WebhookReceiver
from sync_pipelines_tests.conftest import code_location, stock_item, xero_resource

GROUP = "Segment: paying customers"


def _flow_assets() -> list[dg.AssetKey]:
    return list(synced(FLOW).resolve(code_location().resolve_asset_graph()))


def _segment_sends(admin, env: dict[str, str], *messages: dict, source: str = "web") -> None:
    """A source of the sandbox emits the messages; its Webhooks destination delivers them to the receiver."""
    with WebhookReceiver(env["SYNC_PIPELINES_WEBHOOK_INBOX"], {"segment": env["SEGMENT_WEBHOOK_SECRET"]}) as receiver:
        admin.segment_destination(url=receiver.url_for("segment"), secret=env["SEGMENT_WEBHOOK_SECRET"])
        admin.segment_emit(source, *messages)
        admin.segment_flush_webhooks()
    assert all(delivery["delivered"] for delivery in admin.segment_webhook_deliveries())


def _identify(user_id: str, timestamp: str, **traits) -> dict:
    """An identify call as the site makes it at `timestamp`; the source fills in the rest (messageId, context)."""
    return {"type": "identify", "userId": user_id, "traits": traits, "timestamp": timestamp}


def _writes(admin) -> int:
    return sum(n for call, n in admin.stats()["xero"].items() if call.startswith(("POST", "PUT", "DELETE")))


def _contacts_by_number(admin) -> dict[str, dict]:
    return {c["ContactNumber"]: c for c in admin.get("/xero/contacts") if c.get("ContactNumber")}


def test_an_identified_person_becomes_one_xero_contact_with_the_mapped_traits(admin, run_sync, sync_env):
    traits = {
        "email": "ana.lima@example.test", "firstName": "Ana", "lastName": "Lima", "phone": "+44 20 7946 0000",
        "website": "https://lima.example.test", "tax_number": "GB999999973", "plan": "pro", "title": "Founder",
        "company": {"name": "Lima Studio"}, "owner_email": "sam@seller.test", "favourite_colour": "teal",
        "address": {"street": "1 Long Lane", "city": "London", "state": "Greater London", "postal_code": "SE1 4PG",
                    "country": "GB"},
    }  # fmt: skip
    _segment_sends(admin, sync_env, _identify("user-ana", "2026-03-01T10:00:00.000Z", **traits))

    assert run_sync(_flow_assets()).success

    contact = _contacts_by_number(admin)["user-ana"]
    assert {k: contact.get(k) for k in ("Name", "FirstName", "LastName", "EmailAddress", "Website", "TaxNumber")} == {
        "Name": "Ana Lima", "FirstName": "Ana", "LastName": "Lima", "EmailAddress": "ana.lima@example.test",
        "Website": "https://lima.example.test", "TaxNumber": "GB999999973",
    }  # fmt: skip
    assert [p["PhoneNumber"] for p in contact["Phones"] if p["PhoneType"] == "DEFAULT"] == ["+44 20 7946 0000"]
    (street,) = [a for a in contact["Addresses"] if a["AddressType"] == "STREET"]
    assert (street["AddressLine1"], street["City"], street["Region"], street["PostalCode"], street["Country"]) == (
        "1 Long Lane", "London", "Greater London", "SE1 4PG", "GB"
    )  # fmt: skip
    groups = {g["Name"]: {c["ContactID"] for c in g["Contacts"]} for g in admin.get("/xero/contact-groups")}
    assert groups[GROUP] == {contact["ContactID"]}
    (note,) = [n["Details"] for n in admin.get(f"/xero/contacts/{contact['ContactID']}/history")]
    # What has no Xero field is kept on the contact's History: the owner, the company, the custom traits.
    assert "owner sam@seller.test" in note and "Lima Studio" in note and json.dumps("favourite_colour") in note

    writes = _writes(admin)
    assert run_sync(_flow_assets()).success
    assert _writes(admin) == writes


def test_traits_merge_across_calls_and_a_late_older_call_never_overwrites_a_newer_trait(admin, run_sync, sync_env):
    first = _identify("user-bo", "2026-03-01T10:00:00Z", email="bo@example.test", name="Bo Chen", phone="111")
    _segment_sends(admin, sync_env, first)
    assert run_sync(_flow_assets()).success

    newer = _identify("user-bo", "2026-03-03T10:00:00Z", phone="333", plan="business")
    # Sent before the newer call, delivered after it (Segment's deliveries may come in any order).
    older = _identify("user-bo", "2026-03-02T10:00:00Z", phone="222", email="old@example.test")
    _segment_sends(admin, sync_env, newer)
    _segment_sends(admin, sync_env, older)
    assert run_sync(_flow_assets()).success

    contact = _contacts_by_number(admin)["user-bo"]
    assert [p["PhoneNumber"] for p in contact["Phones"] if p["PhoneType"] == "DEFAULT"] == ["333"]
    # The older call's email is newer than the first call's: merged in timestamp order, it stands.
    assert (contact["Name"], contact["EmailAddress"]) == ("Bo Chen", "old@example.test")
    assert sum(c.get("ContactNumber") == "user-bo" for c in admin.get("/xero/contacts")) == 1


def test_a_person_xero_already_has_is_matched_by_email_not_made_twice(admin, run_sync, sync_env):
    existing = next(c for c in admin.get("/xero/contacts") if c.get("EmailAddress") and not c.get("ContactNumber"))
    contacts = len(admin.get("/xero/contacts"))
    message = _identify("user-known", "2026-03-01T10:00:00Z", email=existing["EmailAddress"].upper(), name="Known")
    _segment_sends(admin, sync_env, message)

    assert run_sync(_flow_assets()).success

    assert len(admin.get("/xero/contacts")) == contacts
    matched = next(c for c in admin.get("/xero/contacts") if c["ContactID"] == existing["ContactID"])
    assert matched["ContactNumber"] == "user-known"


def test_a_group_call_makes_an_organisation_contact_with_its_people_as_contact_persons(admin, run_sync, sync_env):
    people = [
        _identify("user-gi", "2026-03-01T10:00:00Z", email="gi@acme.test", firstName="Gi", lastName="Park"),
        _identify("user-ho", "2026-03-01T10:01:00Z", email="ho@acme.test", name="Ho Lee"),
    ]
    traits = {"name": "Acme Studio", "website": "https://acme.test", "industry": "Design", "employees": 12}
    joined = [
        {"type": "group", "userId": user, "groupId": "acct-acme", "timestamp": stamp, "traits": traits}
        for user, stamp in (("user-gi", "2026-03-01T10:02:00Z"), ("user-ho", "2026-03-01T10:03:00Z"))
    ]
    _segment_sends(admin, sync_env, *people, *joined)

    assert run_sync(_flow_assets()).success

    organisation = _contacts_by_number(admin)["acct-acme"]
    assert (organisation["Name"], organisation["Website"]) == ("Acme Studio", "https://acme.test")
    client = xero_resource(sync_env).get_client()
    (held,) = client.read(f"Contacts/{organisation['ContactID']}", key="Contacts")
    assert [(p["FirstName"], p["LastName"], p["EmailAddress"]) for p in held["ContactPersons"]] == [
        ("Gi", "Park", "gi@acme.test"), ("Ho", "Lee", "ho@acme.test")
    ]  # fmt: skip
    (note,) = [n["Details"] for n in admin.get(f"/xero/contacts/{organisation['ContactID']}/history")]
    assert "industry Design, employees 12" in note
    # Each person is a contact of their own too.
    assert {"user-gi", "user-ho"} <= set(_contacts_by_number(admin))

    writes = _writes(admin)
    assert run_sync(_flow_assets()).success
    assert _writes(admin) == writes


def test_a_mapped_event_is_noted_on_its_persons_contact_once_and_others_are_only_staged(admin, run_sync, sync_env):
    signed_up = {"type": "track", "userId": "user-ed", "event": "Signed Up", "timestamp": "2026-03-01T10:01:00Z",
                 "properties": {"type": "organic", "first_name": "Ed"}}  # fmt: skip
    browsed = {"type": "track", "userId": "user-ed", "event": "Product Viewed", "timestamp": "2026-03-01T10:02:00Z",
               "properties": {"sku": "MUG-01"}}  # fmt: skip
    anonymous = {"type": "track", "anonymousId": "anon-1", "event": "Signed Up", "timestamp": "2026-03-01T10:03:00Z"}
    _segment_sends(admin, sync_env, _identify("user-ed", "2026-03-01T10:00:00Z", email="ed@example.test", name="Ed"),
                   signed_up, browsed, anonymous)  # fmt: skip

    assert run_sync(_flow_assets()).success

    contact = _contacts_by_number(admin)["user-ed"]
    notes = [n["Details"] for n in admin.get(f"/xero/contacts/{contact['ContactID']}/history")]
    events = [note for note in notes if note.startswith("Segment event")]
    assert len(events) == 1 and "Signed Up from Web" in events[0] and '"type": "organic"' in events[0]
    with StagingResource(database=sync_env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        staged = conn.execute("SELECT event, user_id FROM stg_segment_events ORDER BY event").fetchall()
    # Both of the person's events are kept for reference; the anonymous visitor's has no contact to go to.
    assert staged == [("Product Viewed", "user-ed"), ("Signed Up", "user-ed")]

    writes = _writes(admin)
    assert run_sync(_flow_assets()).success
    assert _writes(admin) == writes


def _mugs(quantity: int) -> list[dict]:
    return [{"sku": "MUG", "name": "Mug", "quantity": quantity, "price": 12.5}]


def _lines(client, invoice: dict) -> list[dict]:
    """An invoice's lines (a list of invoices carries none: xero.md §3.1)."""
    return client.read(f"Invoices/{invoice['InvoiceID']}", key="Invoices")[0]["LineItems"]


def _order(event: str, order_id: str, timestamp: str, **properties) -> dict:
    return {"type": "track", "userId": "user-cy", "event": event, "timestamp": timestamp,
            "properties": {"order_id": order_id, "currency": "USD", **properties}}  # fmt: skip


def test_orders_become_invoices_of_items_per_channel_and_a_refund_a_credit_note_on_its_invoice(
    admin, run_sync, sync_env
):
    stock_item(sync_env, 10)
    _segment_sends(admin, sync_env, _identify("user-cy", "2026-03-01T09:00:00Z", email="cy@example.test", name="Cy"))
    web = _order("Order Completed", "ord-1", "2026-03-01T10:00:00Z", products=_mugs(2), total=30, shipping=7.5,
                 discount=2.5, coupon="SPRING")  # fmt: skip
    _segment_sends(admin, sync_env, web)
    shop = _order("Order Completed", "ord-2", "2026-03-02T10:00:00Z", products=_mugs(1), total=12.5)
    refund = _order("Order Refunded", "ord-2", "2026-03-03T10:00:00Z")
    _segment_sends(admin, sync_env, shop, refund, source="point-of-sale")

    assert run_sync(_flow_assets()).success

    contact = _contacts_by_number(admin)["user-cy"]
    client = xero_resource(sync_env).get_client()
    invoices = {i["Reference"]: i for page in client.iter_pages("Invoices", where='Type=="ACCREC"') for i in page}
    first, second = invoices["ord-1"], invoices["ord-2"]
    assert {first["Contact"]["ContactID"], second["Contact"]["ContactID"]} == {contact["ContactID"]}
    assert [(line.get("ItemCode"), line["Quantity"], line["UnitAmount"]) for line in _lines(client, first)] == [
        ("MUG", 2.0, 12.5), (None, 1.0, 7.5), (None, 1.0, -2.5)
    ]  # fmt: skip
    channels = [
        {t["Option"] for line in _lines(client, invoice) for t in line["Tracking"]} for invoice in (first, second)
    ]
    assert channels == [{"Web"}, {"Point of Sale"}]
    (note,) = [n for page in client.iter_pages("CreditNotes") for n in page]
    assert (note["Reference"], note["Type"], note["RemainingCredit"]) == ("ord-2", "ACCRECCREDIT", 0.0)
    assert client.read(f"Invoices/{second['InvoiceID']}", key="Invoices")[0]["AmountDue"] == 0.0
    # Ten in, three sold, one returned.
    assert client.read("Items/MUG", key="Items")[0]["QuantityOnHand"] == 8.0

    writes = _writes(admin)
    assert run_sync(_flow_assets()).success
    assert _writes(admin) == writes


def _members(admin) -> dict[str, set[str]]:
    return {g["Name"]: {c["ContactID"] for c in g["Contacts"]} for g in admin.get("/xero/contact-groups")}


def test_engage_audiences_and_computed_traits_become_contact_groups_whose_members_follow_them(
    admin, run_sync, sync_env
):
    stock_item(sync_env, 50)
    _segment_sends(admin, sync_env, _identify("user-cy", "2026-03-01T09:00:00Z", email="cy@example.test", name="Cy"))
    orders = [
        _order("Order Completed", f"ord-{n}", f"2026-03-0{n}T10:00:00Z", products=_mugs(8), total=100)
        for n in (1, 2, 3)
    ]
    _segment_sends(admin, sync_env, *orders)

    assert run_sync(_flow_assets()).success

    contact = _contacts_by_number(admin)["user-cy"]["ContactID"]
    joined = {name for name, members in _members(admin).items() if contact in members}
    # Three orders of 100: a repeat buyer of high value, and the computed trait's condition holds.
    assert joined == {"Segment audience: repeat_buyers", "Segment audience: high_value_customers",
                      "Segment: 3+ orders"}  # fmt: skip

    _segment_sends(admin, sync_env, _order("Order Refunded", "ord-3", "2026-03-04T10:00:00Z", total=100),
                   _order("Order Refunded", "ord-2", "2026-03-04T11:00:00Z", total=100))  # fmt: skip
    assert run_sync(_flow_assets()).success

    # Lifetime revenue fell to 100: Engage has them leave the high-value audience, and so does the Xero group.
    members = _members(admin)
    assert contact not in members["Segment audience: high_value_customers"]
    assert {contact} <= members["Segment audience: repeat_buyers"] & members["Segment: 3+ orders"]

    writes = _writes(admin)
    assert run_sync(_flow_assets()).success
    assert _writes(admin) == writes


def _write_calls(admin) -> Counter:
    """Xero's write requests by route, record ids left out ("PUT Contacts/History")."""
    return Counter(
        {
            " ".join((method, "/".join(part for part in path.split("/")[3:] if "-" not in part))): count
            for call, count in admin.stats()["xero"].items()
            for method, path in [call.split(" ", 1)]
            if method != "GET" and path.startswith("/api.xro/")
        }
    )


# Bounds a hung run only, several times what it takes on a loaded 2-core machine (it is no speed claim).
@pytest.mark.timeout(900)
def test_both_flows_in_turn_carry_each_change_once_and_echo_nothing_back(admin, run_sync, sync_env):
    """Segment -> Xero and Xero -> Segment, run one after the other several times after each change (three rounds
    are enough for an echo to come back and go out again), with what the product sends Segment coming back through
    Segment's Webhooks destination as any source's messages do."""
    definitions = code_location().resolve_asset_graph()
    to_segment = list(synced("xero_to_segment").resolve(definitions))
    secret = sync_env["SEGMENT_WEBHOOK_SECRET"]
    stock_item(sync_env, 10)
    admin.limits(minute_limit=10_000)  # thirty runs read Xero more often than its 60 calls a minute (xero.md §5)
    with WebhookReceiver(sync_env["SYNC_PIPELINES_WEBHOOK_INBOX"], {"segment": secret}) as receiver:
        admin.segment_destination(url=receiver.url_for("segment"), secret=secret)

        def in_turn(times: int) -> tuple[Counter, list[dict]]:
            """Both flows `times` times; the Xero writes and the Segment messages each received meanwhile."""
            xero, segment = _write_calls(admin), len(admin.segment_messages())
            for _ in range(times):
                assert run_sync(_flow_assets()).success
                assert run_sync(to_segment).success
                admin.segment_flush_webhooks()
            return _write_calls(admin) - xero, admin.segment_messages()[segment:]

        in_turn(1)  # the seeded Xero organisation reaches Segment, and comes back as Segment's own messages
        assert in_turn(1) == (Counter(), [])

        # A change in Segment: someone signs up and buys. Xero gets the contact (and its History note), the invoice
        # (and the Channel tracking option its lines name, made once); Segment gets no echo of either, only the
        # balance Xero now computes for the person, on their own profile.
        person = _identify("user-rt", "2026-03-01T09:00:00Z", email="rt@example.test", name="Rae Tan", phone="111")
        order = {**_order("Order Completed", "ord-rt", "2026-03-01T10:00:00Z", products=_mugs(2), total=25),
                 "userId": "user-rt"}  # fmt: skip
        admin.segment_emit("web", person, order)
        xero_writes, segment_messages = in_turn(4)
        assert xero_writes == Counter(
            {"POST Contacts": 1, "PUT Contacts/History": 1, "PUT Invoices": 1, "PUT TrackingCategories": 1,
             "PUT TrackingCategories/Options": 1}
        )  # fmt: skip
        (balances,) = segment_messages
        assert (balances["type"], balances["userId"], balances["traits"]["outstanding_balance_usd"]) == (
            "identify", "user-rt", 28.75
        )  # fmt: skip

        # A change in Xero: the invoice is paid. Segment hears it once, for the person the order came from.
        client = xero_resource(sync_env).get_client()
        (invoice,) = [i for page in client.iter_pages("Invoices", where='Reference=="ord-rt"') for i in page]
        admin.post(f"/xero/invoices/{invoice['InvoiceID']}/pay")
        xero_writes, segment_messages = in_turn(3)
        assert xero_writes == Counter()
        assert {m["userId"] for m in segment_messages} == {"user-rt"}
        assert sorted(m.get("event") or m["type"] for m in segment_messages) == [
            "Invoice Paid", "Payment Received", "identify", "identify"
        ]  # fmt: skip

        # A person edits the contact's phone in Xero: Segment gets one identify; its echo writes nothing to Xero.
        contact = _contacts_by_number(admin)["user-rt"]
        phones = [{"PhoneType": "DEFAULT", "PhoneNumber": "222"}]
        client.write("POST", "Contacts", [{"ContactID": contact["ContactID"], "Phones": phones}], "test:edit:phone")
        xero_writes, segment_messages = in_turn(3)
        assert xero_writes == Counter()
        (identify,) = segment_messages
        assert (identify["type"], identify["userId"], identify["traits"]["phone"]) == ("identify", "user-rt", "222")

    # Every delivery reconciles: an echo is not a change Segment was owed (its totals are Segment's own order's).
    with StagingResource(database=sync_env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        assert [(row["flow"], row["entity"]) for row in latest_reconciliation(conn) if not row["ok"]] == []
