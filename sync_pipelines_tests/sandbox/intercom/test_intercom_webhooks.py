"""Intercom webhook notifications, observed from a real receiver on 127.0.0.1 (intercom.md §9)."""

import hashlib
import hmac
import json

import requests

from sync_pipelines_tests.sandbox.conftest import xero_signature

SECRET = "sandbox-intercom-client-secret"


def hub_signature(secret: str, body: bytes) -> str:
    """What a receiver computes: "sha1=" + hex HMAC-SHA1 of the raw body keyed with the client secret."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def notifications(receiver) -> list[dict]:
    """Intercom notifications received, first arrival of each id, in order."""
    seen: dict[str, dict] = {}
    for body, headers in list(receiver.requests):
        if "x-hub-signature" in headers:
            payload = json.loads(body)
            seen.setdefault(payload["id"], payload)
    return list(seen.values())


def topics(receiver) -> list[str]:
    return [n["topic"] for n in notifications(receiver)]


def test_contact_changes_through_the_api_and_the_admin_are_announced(ic, admin, receiver):
    admin.intercom_webhooks(url=receiver.url)
    user = ic.ok("POST", "/contacts", json={"email": "hook@example.org", "name": "Hook"})
    ic.ok("PUT", f"/contacts/{user['id']}", json={"phone": "+1 555 0101"})
    ic.ok("PUT", f"/contacts/{user['id']}", json={"phone": "+1 555 0101"})  # no change: no notification
    assert ic.error(ic.request("POST", "/contacts", json={"email": "HOOK@example.org"})) == (409, "conflict")
    lead = admin.intercom_create("contacts", role="lead", name="Lee")
    admin.intercom_update("contacts", lead["id"], role="user", email="lee@example.org")
    ic.ok("POST", f"/contacts/{user['id']}/tags", json={"id": "101"})
    ic.ok("DELETE", f"/contacts/{user['id']}/tags/101")
    ic.ok("POST", f"/contacts/{user['id']}/archive")
    ic.ok("POST", f"/contacts/{user['id']}/unarchive")
    ic.ok("DELETE", f"/contacts/{user['id']}")
    admin.intercom_flush_webhooks()

    assert topics(receiver) == [
        "contact.user.created",
        "contact.user.updated",
        "contact.lead.created",
        "contact.lead.signed_up",
        "contact.user.tag.created",
        "contact.user.tag.deleted",
        "contact.archived",
        "contact.unarchived",
        "contact.deleted",
    ]
    created, updated, *_, tag_created, _, _, _, deleted = notifications(receiver)
    assert created["data"]["item"]["id"] == user["id"] and created["data"]["item"]["type"] == "contact"
    assert updated["data"]["item"]["phone"] == "+1 555 0101"
    assert tag_created["data"]["item"]["type"] == "contact_tag" and tag_created["data"]["item"]["tag"]["id"] == "101"
    assert deleted["data"]["item"] == {"id": user["id"], "external_id": None, "type": "contact"}
    for body, headers in receiver.requests:
        payload = json.loads(body)
        assert headers["content-type"] == "application/json"
        assert headers["x-hub-signature"] == hub_signature(SECRET, body)
        assert headers["x-hub-signature"] != hub_signature(SECRET, body.replace(b",", b", "))
        assert payload["type"] == "notification_event" and payload["app_id"] == "sandboxapp"
        assert payload["data"]["type"] == "notification_event_data" and payload["id"].startswith("notif_")
    assert len({n["id"] for n in notifications(receiver)}) == len(receiver.requests)


def test_company_and_conversation_changes_are_announced(ic, admin, receiver):
    contact = admin.intercom_records("contacts")[3]
    conversation = admin.intercom_records("conversations")[0]
    admin.intercom_webhooks(url=receiver.url)
    company = ic.ok("POST", "/companies", json={"company_id": "hooked", "name": "Hooked"})
    ic.ok("POST", "/companies", json={"company_id": "hooked", "industry": "Fishing"})
    ic.ok("POST", f"/contacts/{contact['id']}/companies", json={"id": company["id"]})
    ic.ok("DELETE", f"/contacts/{contact['id']}/companies/{company['id']}")
    ic.ok("DELETE", f"/companies/{company['id']}")
    admin.intercom_conversation(conversation["id"], "reply", author="admin", admin_id="991267402", body="On it")
    admin.intercom_conversation(conversation["id"], "reply", author="contact", body="Thanks")
    admin.intercom_conversation(conversation["id"], "reply", author="admin", part_type="note", body="internal")
    admin.intercom_conversation(conversation["id"], "assign", admin_id="991267403")
    admin.intercom_conversation(conversation["id"], "state", state="closed")
    admin.intercom_conversation(conversation["id"], "state", state="open")
    admin.intercom_conversation(conversation["id"], "state", state="snoozed")
    started = admin.intercom_create("conversations", contact_id=contact["id"], body="Help!")
    admin.intercom_flush_webhooks()

    assert topics(receiver) == [
        "company.created",
        "company.updated",
        "company.contact.attached",
        "company.contact.detached",
        "company.deleted",
        "conversation.admin.replied",
        "conversation.user.replied",
        "conversation.admin.noted",
        "conversation.admin.assigned",
        "conversation.admin.closed",
        "conversation.admin.opened",
        "conversation.admin.snoozed",
        "conversation.user.created",
    ]
    items = [n["data"]["item"] for n in notifications(receiver)]
    assert items[1]["industry"] == "Fishing" and items[2]["company"]["id"] == company["id"]
    assert items[4] == {"type": "company", "id": company["id"], "company_id": "hooked"}
    replied = items[5]
    assert replied["conversation_parts"]["conversation_parts"][-1]["body"] == "<p>On it</p>"
    assert replied["updated_at"] >= conversation["updated_at"]
    assert items[8]["admin_assignee_id"] == 991267403 and items[9]["state"] == "closed"
    assert items[11]["snoozed_until"] > items[11]["updated_at"]
    assert items[12]["id"] == started["id"] and items[12]["source"]["author"]["id"] == contact["id"]


def test_a_failed_delivery_is_retried_with_the_same_bytes_and_later_ones_wait(ic, admin, receiver):
    receiver.failures = 2
    admin.intercom_webhooks(url=receiver.url, backoff_seconds=0.05)
    first = ic.ok("POST", "/contacts", json={"email": "one@example.org"})
    second = ic.ok("POST", "/contacts", json={"email": "two@example.org"})
    admin.intercom_flush_webhooks()

    assert receiver.requests[0] == receiver.requests[1] == receiver.requests[2]
    assert [n["data"]["item"]["id"] for n in notifications(receiver)] == [first["id"], second["id"]]
    deliveries = admin.intercom_webhook_deliveries()
    assert [d["attempts"] for d in deliveries] == [[500, 500, 200], [200]]
    assert all(d["delivered"] for d in deliveries) and [d["topic"] for d in deliveries] == ["contact.user.created"] * 2

    receiver.failures = 10**6
    admin.intercom_webhooks(attempts=2)
    ic.ok("POST", "/contacts", json={"email": "three@example.org"})
    admin.intercom_flush_webhooks()
    given_up = admin.intercom_webhook_deliveries()[-1]
    assert given_up["attempts"] == [500, 500] and given_up["delivered"] is False
    receiver.failures = 0
    replay = admin.post("/intercom/webhooks/redeliver", {"seq": given_up["seq"]})
    assert replay == {"seq": given_up["seq"], "status": 200}
    assert receiver.requests[-1] == receiver.requests[-2]  # byte for byte, same signature


def test_topics_filter_what_is_sent_ping_is_always_on_and_unsubscribing_drops_the_queue(ic, admin, receiver):
    ic.ok("POST", "/contacts", json={"email": "unheard@example.org"})
    assert admin.intercom_webhooks()["queued"] == 0 and admin.intercom_webhook_deliveries() == []

    hooks = admin.intercom_webhooks(url=receiver.url, topics=["company.created"], client_secret="rotated")
    assert hooks["topics"] == ["company.created"] and hooks["client_secret"] == "rotated"
    ic.ok("POST", "/contacts", json={"email": "filtered@example.org"})
    ic.ok("POST", "/companies", json={"company_id": "heard", "name": "Heard"})
    admin.post("/intercom/webhooks/ping")
    admin.intercom_flush_webhooks()
    assert topics(receiver) == ["company.created", "ping"]
    assert all(h["x-hub-signature"] == hub_signature("rotated", b) for b, h in receiver.requests)

    receiver.failures = 10**6  # a receiver that never recovers holds the queue
    admin.intercom_webhooks(topics=None, attempts=1000, backoff_seconds=0.05)
    ic.ok("POST", "/contacts", json={"email": "stuck1@example.org"})
    ic.ok("POST", "/contacts", json={"email": "stuck2@example.org"})
    stuck = requests.post(f"{admin.url}/intercom/webhooks/flush", json={"timeout": 0.3}, timeout=10)
    assert stuck.status_code == 504 and stuck.json()["idle"] is False
    assert admin.intercom_webhooks(url=None)["queued"] == 0
    admin.intercom_flush_webhooks(timeout=5)
    off_machine = requests.put(f"{admin.url}/intercom/webhooks", json={"url": "http://example.com/hook"}, timeout=10)
    assert off_machine.status_code == 400


def test_one_delivery_loop_serves_xero_and_intercom_side_by_side(ic, admin, receiver):
    admin.webhooks(url=receiver.url, key="xero-key")
    admin.intercom_webhooks(url=receiver.url)
    admin.post("/xero/invoices")
    contact = ic.ok("POST", "/contacts", json={"email": "both@example.org"})
    admin.flush_webhooks()
    admin.intercom_flush_webhooks()
    xero = [(b, h) for b, h in receiver.requests if "x-xero-signature" in h]
    intercom = [(b, h) for b, h in receiver.requests if "x-hub-signature" in h]
    assert len(xero) == 1 and xero[0][1]["x-xero-signature"] == xero_signature("xero-key", xero[0][0])
    assert [n["data"]["item"]["id"] for n in notifications(receiver)] == [contact["id"]] and len(intercom) == 1
