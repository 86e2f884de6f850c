"""The receiver keeps Intercom's contract (intercom.md §9): only notifications signed with the client secret are
stored, each notification id once; pings are acknowledged and dropped."""

import json
from collections import Counter

import pytest
import requests

from sync_pipelines.sandbox.intercom.webhooks import signature
from sync_pipelines.vendors.intercom.webhooks import WEBHOOKS as INTERCOM
from sync_pipelines.vendors.xero.webhooks import sign
from sync_pipelines.webhooks.receiver import WebhookReceiver
from sync_pipelines_tests.webhooks.conftest import (
    APP_ID,
    INTERCOM_SECRET,
    KEY,
    chunked,
    deliver,
    delivery_body,
    flood,
    intercom_notification,
    notify,
    post_intercom,
    raw_post,
    response_head,
    stored_events,
    takes_no_more,
    xero_event,
)


def test_a_signed_notification_is_stored_then_acknowledged_with_an_empty_200(receiver, inbox_path):
    notification = intercom_notification("contact.user.created")

    response = notify(receiver.url_for("intercom"), notification)

    assert response.status_code == 200
    assert response.content == b""
    (row,) = stored_events(inbox_path)
    assert json.loads(row["payload"]) == notification
    assert (row["source"], row["event_id"], row["tenant_id"], row["category"], row["event_type"]) == (
        "intercom", notification["id"], APP_ID, "contact", "contact.user.created"
    )  # fmt: skip
    assert row["resource_id"] == notification["data"]["item"]["id"]


@pytest.mark.parametrize(
    ("topic", "category"),
    [
        ("contact.user.tag.created", "contact"),
        ("contact.deleted", "contact"),
        ("company.contact.attached", "company"),
        ("company.updated", "company"),
        ("conversation.admin.replied", "conversation"),
    ],
)
def test_the_category_is_the_topics_object(receiver, inbox_path, topic, category):
    assert notify(receiver.url_for("intercom"), intercom_notification(topic)).status_code == 200

    assert [row["category"] for row in stored_events(inbox_path)] == [category]


def _sha1_hex(body: bytes, secret: str) -> str:
    return signature(secret, body).removeprefix("sha1=")


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda body: (body, None), id="missing"),
        pytest.param(lambda body: (body, ""), id="empty"),
        pytest.param(lambda body: (body, signature("another-apps-secret", body)), id="wrong-secret"),
        pytest.param(
            lambda body: (
                body.replace(b"contact.user.updated", b"contact.user.created"),
                signature(INTERCOM_SECRET, body),
            ),
            id="tampered-body",
        ),
        pytest.param(
            lambda body: (json.dumps(json.loads(body), indent=2).encode(), signature(INTERCOM_SECRET, body)),
            id="reserialised-body",
        ),
        pytest.param(lambda body: (body, _sha1_hex(body, INTERCOM_SECRET)), id="no-sha1-prefix"),
        pytest.param(lambda body: (body, "sha256=" + _sha1_hex(body, INTERCOM_SECRET)), id="other-prefix"),
        pytest.param(lambda body: (body, signature(INTERCOM_SECRET, body)[:-2]), id="truncated"),
        pytest.param(lambda body: (body, signature(INTERCOM_SECRET, body).upper()), id="upper-case"),
        # A Xero-style signature (xero.md §6) made with the right secret is still not Intercom's.
        pytest.param(lambda body: (body, sign(INTERCOM_SECRET, body)), id="xero-style"),
        # Header bytes above 0x7f: hmac.compare_digest cannot compare them, and a forgery is not a 500.
        pytest.param(lambda body: (body, "sha1=not hex at all \u00e9"), id="garbage"),
        pytest.param(
            lambda body: (body, signature(INTERCOM_SECRET, json.dumps(intercom_notification()).encode())),
            id="replayed-signature",
        ),
    ],
)
def test_forged_or_missing_signatures_get_an_empty_401_and_nothing_is_stored(receiver, inbox_path, forge):
    body, hub_signature = forge(json.dumps(intercom_notification("contact.user.updated")).encode())

    response = post_intercom(receiver.url_for("intercom"), body, hub_signature)

    assert response.status_code == 401
    assert response.content == b""
    assert stored_events(inbox_path) == []


def test_a_xero_signed_delivery_on_the_intercom_route_is_refused(receiver, inbox_path):
    """Each route checks its own vendor's signature with its own secret."""
    body = delivery_body([xero_event("CONTACT")])

    assert deliver(receiver.url_for("intercom"), body).status_code == 401
    assert notify(receiver.url_for("xero"), body).status_code == 401
    assert stored_events(inbox_path) == []


def test_a_signed_body_that_is_not_a_notification_event_is_rejected_and_not_stored(receiver, inbox_path):
    notification = intercom_notification()
    missing_id = {k: v for k, v in notification.items() if k != "id"}
    bodies = [
        b"not json",
        json.dumps([notification]).encode(),
        json.dumps({**notification, "type": "notification_event_data"}).encode(),
        json.dumps(missing_id).encode(),
        json.dumps({**notification, "data": {"type": "notification_event_data", "item": "contact"}}).encode(),
        json.dumps({**notification, "topic": ""}).encode(),
        delivery_body([xero_event("CONTACT")]),
    ]

    assert [notify(receiver.url_for("intercom"), body).status_code for body in bodies] == [400] * len(bodies)
    assert stored_events(inbox_path) == []


def test_a_ping_is_acknowledged_and_not_stored(receiver, inbox_path):
    ping = intercom_notification("ping", item={"type": "ping", "message": "something something interzen"})

    response = notify(receiver.url_for("intercom"), ping)

    assert response.status_code == 200
    assert stored_events(inbox_path) == []


def test_a_redelivered_notification_is_acknowledged_but_stored_once(receiver, inbox_path):
    notification = intercom_notification("contact.user.updated")
    body = json.dumps(notification).encode()

    replies = [notify(receiver.url_for("intercom"), body) for _ in range(3)]  # intercom.md §9: at least once

    assert [reply.status_code for reply in replies] == [200, 200, 200]
    assert [row["event_id"] for row in stored_events(inbox_path)] == [notification["id"]]


def test_two_notifications_of_one_record_topic_and_second_are_both_kept(receiver, inbox_path):
    """Dedupe is on the notification id only: a second change within the same second is a real change."""
    first = intercom_notification("contact.user.updated")
    second = {**first, "id": "notif_second"}

    assert notify(receiver.url_for("intercom"), first).status_code == 200
    assert notify(receiver.url_for("intercom"), second).status_code == 200

    assert [row["event_id"] for row in stored_events(inbox_path)] == [first["id"], "notif_second"]


def test_a_vendor_without_a_secret_has_no_route(inbox_path):
    notification = intercom_notification()
    body = delivery_body([xero_event("CONTACT")])
    with WebhookReceiver(inbox_path, {"xero": KEY}) as xero_only:
        assert notify(xero_only.url_for("intercom"), notification).status_code == 404
        assert deliver(xero_only.url_for("xero"), body).status_code == 200
    with WebhookReceiver(inbox_path, {"intercom": INTERCOM_SECRET}) as intercom_only:
        assert deliver(intercom_only.url_for("xero"), delivery_body([xero_event("CONTACT")])).status_code == 404
        assert notify(intercom_only.url_for("intercom"), notification).status_code == 200
    assert [row["source"] for row in stored_events(inbox_path)] == ["xero", "intercom"]
    with pytest.raises(ValueError, match="required"):
        WebhookReceiver(inbox_path, {"intercom": ""})


def test_only_post_is_served(receiver):
    assert requests.get(receiver.url_for("intercom"), timeout=5).status_code == 405
    assert notify(receiver.url_for("intercom").removesuffix("s"), intercom_notification()).status_code == 404


def _a_contact(admin) -> dict:
    return next(c for c in admin.intercom_records("contacts") if not c.get("_archived"))


def test_the_sandboxs_notifications_are_stored_once_even_when_redelivered(admin, receiver, inbox_path):
    """The real Intercom sandbox signs and posts; a teammate's edit arrives as one stored contact event."""
    contact = _a_contact(admin)
    admin.intercom_webhooks(url=receiver.url_for("intercom"), client_secret=INTERCOM_SECRET)

    admin.intercom_update("contacts", contact["id"], email="changed@example.com")
    admin.intercom_flush_webhooks()
    (delivery,) = admin.intercom_webhook_deliveries()
    # intercom.md §9: the same bytes and signature again, as an at-least-once retry brings them.
    assert admin.post("/intercom/webhooks/redeliver", {"seq": delivery["seq"]})["status"] == 200

    assert delivery["delivered"] and delivery["attempts"] == [200]
    (row,) = stored_events(inbox_path)
    assert (row["source"], row["event_id"], row["category"], row["resource_id"]) == (
        "intercom", delivery["id"], "contact", contact["id"]
    )  # fmt: skip
    assert json.loads(row["payload"])["data"]["item"]["email"] == "changed@example.com"


def delivery_topic(contact: dict) -> str:
    """The topic the sandbox announces a teammate's edit of this contact under (intercom.md §9)."""
    return f"contact.{contact['role']}.updated"


def test_the_sandboxs_pings_and_wrongly_signed_notifications_store_nothing(admin, receiver, inbox_path):
    contact = _a_contact(admin)
    admin.intercom_webhooks(url=receiver.url_for("intercom"), client_secret="not-the-apps-secret", attempts=1)
    admin.intercom_update("contacts", contact["id"], email="forged@example.com")
    admin.intercom_flush_webhooks()
    admin.intercom_webhooks(client_secret=INTERCOM_SECRET)
    admin.post("/intercom/webhooks/ping")
    admin.intercom_flush_webhooks()

    assert [(d["topic"], d["attempts"]) for d in admin.intercom_webhook_deliveries()] == [
        (delivery_topic(contact), [401]),
        ("ping", [200]),
    ]
    assert stored_events(inbox_path) == []


def _signed(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature": signature(INTERCOM_SECRET, body)}


def test_a_notification_as_large_as_the_cap_is_stored(receiver, inbox_path):
    notification = intercom_notification("contact.user.updated")
    body = json.dumps(notification).encode()
    padded = body + b" " * (INTERCOM.max_body_bytes - len(body))  # JSON allows whitespace after the value

    assert notify(receiver.url_for("intercom"), padded).status_code == 200

    assert [row["event_id"] for row in stored_events(inbox_path)] == [notification["id"]]


@pytest.mark.parametrize("declared", [INTERCOM.max_body_bytes + 1, 16 * INTERCOM.max_body_bytes])
def test_a_body_declared_over_the_cap_is_refused_before_it_is_read(receiver, inbox_path, declared):
    body = json.dumps(intercom_notification()).encode()

    # Far less is sent than promised: the 413 can only come back if the server did not wait for the rest.
    with raw_post(receiver.url_for("intercom"), {**_signed(body), "Content-Length": str(declared)}, [body]) as sock:
        assert response_head(sock).startswith(b"HTTP/1.1 413 ")

    assert stored_events(inbox_path) == []


def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_cap(receiver, inbox_path):
    body = b" " * (INTERCOM.max_body_bytes + 1)
    headers = {**_signed(body), "Transfer-Encoding": "chunked"}

    # The stream never ends: the 413 comes from the server stopping at the cap, and it reads nothing after.
    with raw_post(receiver.url_for("intercom"), headers, chunked(body, end=False)) as sock:
        assert response_head(sock).startswith(b"HTTP/1.1 413 ")
        assert takes_no_more(sock)

    assert stored_events(inbox_path) == []


def test_a_flood_of_signed_notifications_is_all_acknowledged_and_each_stored_once(receiver, inbox_path):
    notifications = [intercom_notification("contact.user.updated") for _ in range(2000)]
    bodies = [json.dumps(notification).encode() for notification in notifications]

    statuses = flood(receiver.url_for("intercom"), [(body, _signed(body)) for body in bodies], senders=32)

    assert Counter(statuses) == {200: 2000}
    stored = sorted(row["event_id"] for row in stored_events(inbox_path))
    assert stored == sorted(notification["id"] for notification in notifications)
