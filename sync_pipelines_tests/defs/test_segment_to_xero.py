"""Segment -> Xero against the sandbox: identified people become one Xero contact each, with their merged traits;
a late message never overwrites a newer trait; a rerun writes nothing."""

import json

import dagster as dg

from sync_pipelines.definitions import defs
from sync_pipelines.defs.segment_to_xero import NAME as FLOW
from sync_pipelines.webhooks.receiver import WebhookReceiver

GROUP = "Segment: paying customers"


def _flow_assets() -> list[dg.AssetKey]:
    return list(dg.AssetSelection.groups(FLOW).upstream().resolve(defs().resolve_asset_graph()))


def _segment_sends(admin, env: dict[str, str], *messages: dict) -> None:
    """The sandbox's web source emits the messages; its Webhooks destination delivers them to the receiver."""
    with WebhookReceiver(env["SYNC_PIPELINES_WEBHOOK_INBOX"], {"segment": env["SEGMENT_WEBHOOK_SECRET"]}) as receiver:
        admin.segment_destination(url=receiver.url_for("segment"), secret=env["SEGMENT_WEBHOOK_SECRET"])
        admin.segment_emit("web", *messages)
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
