"""The receiver keeps Xero's contract (xero.md §6): only correctly signed deliveries are stored, each event once."""

import json
import logging
import sqlite3
from collections import Counter

import pytest
import requests

from sync_pipelines.vendors.xero.webhooks import WEBHOOKS as XERO
from sync_pipelines.vendors.xero.webhooks import sign
from sync_pipelines.webhooks.inbox import WebhookInbox
from sync_pipelines_tests.webhooks.conftest import (
    KEY,
    chunked,
    deliver,
    delivery_body,
    flood,
    post,
    raw_post,
    response_head,
    stored_events,
    takes_no_more,
    xero_event,
)


def test_a_signed_delivery_is_stored_then_acknowledged_with_an_empty_200(receiver, inbox_path):
    events = [xero_event("INVOICE", "CREATE"), xero_event("CONTACT", "UPDATE")]

    response = deliver(receiver.url_for("xero"), delivery_body(events))

    assert response.status_code == 200
    assert response.content == b""
    assert "set-cookie" not in response.headers
    rows = stored_events(inbox_path)
    assert [json.loads(row["payload"]) for row in rows] == events
    assert [(r["tenant_id"], r["category"], r["event_type"], r["resource_id"], r["event_date"]) for r in rows] == [
        (e["tenantId"], e["eventCategory"], e["eventType"], e["resourceId"], e["eventDateUtc"]) for e in events
    ]


def _reserialised(body: bytes) -> bytes:
    """Same JSON, different bytes: what a receiver that parses before verifying would check (xero-node#563)."""
    return json.dumps(json.loads(body), indent=2).encode()


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda body: (body, None), id="missing"),
        pytest.param(lambda body: (body, ""), id="empty"),
        pytest.param(lambda body: (body, sign("another-apps-key", body)), id="wrong-key"),
        pytest.param(lambda body: (body.replace(b"UPDATE", b"CREATE"), sign(KEY, body)), id="tampered-body"),
        pytest.param(lambda body: (_reserialised(body), sign(KEY, body)), id="reserialised-body"),
        # A valid signature captured from an earlier delivery, replayed on a new body.
        pytest.param(
            lambda body: (body, sign(KEY, delivery_body([xero_event("CONTACT", "CREATE")]))), id="replayed-signature"
        ),
        pytest.param(lambda body: (body, sign(KEY, body)[:-4]), id="truncated"),
        pytest.param(lambda body: (body, "not base64 at all \u00e9"), id="garbage"),
    ],
)
def test_forged_or_missing_signatures_get_an_empty_401_and_nothing_is_stored(receiver, inbox_path, forge):
    body, signature = forge(delivery_body([xero_event("INVOICE", "UPDATE")]))

    response = post(receiver.url_for("xero"), body, signature)

    assert response.status_code == 401
    assert response.content == b""
    assert stored_events(inbox_path) == []


def test_a_replayed_delivery_is_acknowledged_but_stored_once(receiver, inbox_path):
    first, second = xero_event("INVOICE", "UPDATE"), xero_event("INVOICE", "UPDATE")
    body = delivery_body([first])

    # xero.md §6: the same signed body again (a retry or a replay), then a batch overlapping it.
    replies = [deliver(receiver.url_for("xero"), body), deliver(receiver.url_for("xero"), body)]
    replies.append(deliver(receiver.url_for("xero"), delivery_body([first, second], first=1)))

    assert [r.status_code for r in replies] == [200, 200, 200]
    assert [row["resource_id"] for row in stored_events(inbox_path)] == [first["resourceId"], second["resourceId"]]


def test_the_same_record_changing_again_is_a_new_event(receiver, inbox_path):
    """Dedupe is on the whole event identity: a later eventDateUtc for the same record is a real change."""
    earlier = xero_event("INVOICE", "UPDATE")
    later = {**earlier, "eventDateUtc": "2099-01-01T00:00:00.000"}

    assert deliver(receiver.url_for("xero"), delivery_body([earlier, later])).status_code == 200

    assert [row["event_date"] for row in stored_events(inbox_path)] == [earlier["eventDateUtc"], later["eventDateUtc"]]


def test_intent_to_receive_probes_get_200_when_signed_and_401_when_not(receiver, inbox_path):
    probe = delivery_body([])

    assert deliver(receiver.url_for("xero"), probe).status_code == 200
    assert post(receiver.url_for("xero"), probe, sign("mis-signed", probe)).status_code == 401
    assert stored_events(inbox_path) == []


def test_a_signed_body_that_is_not_a_xero_delivery_is_rejected_and_not_stored(receiver, inbox_path):
    incomplete = {k: v for k, v in xero_event().items() if k != "eventDateUtc"}

    for body in (b"not json", json.dumps({"events": [incomplete]}).encode(), delivery_body([incomplete])):
        assert deliver(receiver.url_for("xero"), body).status_code == 400

    assert stored_events(inbox_path) == []


def test_only_post_to_the_webhook_path_is_served(receiver):
    base = receiver.url_for("xero").removesuffix("/xero/webhooks")
    body = delivery_body([])

    assert requests.get(receiver.url_for("xero"), timeout=5).status_code == 405
    assert deliver(f"{base}/xero/webhook", body).status_code == 404
    assert deliver(f"{base}/", body).status_code == 404


def test_the_receiver_passes_the_sandboxs_intent_to_receive(admin, receiver, inbox_path):
    admin.call("PUT", "/xero/webhooks", {"url": receiver.url_for("xero"), "key": KEY})

    itr = admin.post("/xero/webhooks/itr")

    assert itr["passed"], itr
    assert {probe["signed"] for probe in itr["probes"]} == {True, False}
    assert stored_events(inbox_path) == []


def test_events_past_the_replay_window_are_dropped_as_new_ones_arrive(receiver, inbox_path):
    assert deliver(receiver.url_for("xero"), delivery_body([xero_event("INVOICE", "UPDATE")])).status_code == 200
    with sqlite3.connect(inbox_path) as conn:
        conn.execute("UPDATE webhook_events SET received_at = '2000-01-01T00:00:00+00:00'")
    fresh = xero_event("CONTACT", "UPDATE")
    assert deliver(receiver.url_for("xero"), delivery_body([fresh], first=2)).status_code == 200
    assert [row["resource_id"] for row in stored_events(inbox_path)] == [fresh["resourceId"]]


def _signed(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "x-xero-signature": sign(KEY, body)}


def test_a_delivery_as_large_as_the_cap_is_stored(receiver, inbox_path):
    event = xero_event()
    body = delivery_body([event])
    padded = body + b" " * (XERO.max_body_bytes - len(body))  # JSON allows whitespace after the value

    assert deliver(receiver.url_for("xero"), padded).status_code == 200
    chunked_headers = {**_signed(padded), "Transfer-Encoding": "chunked"}
    with raw_post(receiver.url_for("xero"), chunked_headers, chunked(padded, end=True)) as sock:
        assert response_head(sock).startswith(b"HTTP/1.1 200 ")

    assert [row["resource_id"] for row in stored_events(inbox_path)] == [event["resourceId"]]


@pytest.mark.parametrize("declared", [XERO.max_body_bytes + 1, 64 * XERO.max_body_bytes])
def test_a_body_declared_over_the_cap_is_refused_before_it_is_read(receiver, inbox_path, declared):
    body = delivery_body([xero_event()])

    # Far less is sent than promised: the 413 can only come back if the server did not wait for the rest.
    with raw_post(receiver.url_for("xero"), {**_signed(body), "Content-Length": str(declared)}, [body]) as sock:
        assert response_head(sock).startswith(b"HTTP/1.1 413 ")

    assert stored_events(inbox_path) == []


def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_cap(receiver, inbox_path):
    body = b" " * (XERO.max_body_bytes + 1)

    # The stream never ends: the 413 comes from the server stopping at the cap, and it reads nothing after.
    with raw_post(
        receiver.url_for("xero"), {**_signed(body), "Transfer-Encoding": "chunked"}, chunked(body, False)
    ) as sock:
        assert response_head(sock).startswith(b"HTTP/1.1 413 ")
        assert takes_no_more(sock)

    assert stored_events(inbox_path) == []


def test_a_flood_of_signed_deliveries_is_all_acknowledged_and_each_event_stored_once(receiver, inbox_path):
    events = [xero_event() for _ in range(2000)]
    bodies = [delivery_body([event]) for event in events]

    statuses = flood(receiver.url_for("xero"), [(body, _signed(body)) for body in bodies], senders=32)

    assert Counter(statuses) == {200: 2000}
    stored = sorted(row["resource_id"] for row in stored_events(inbox_path))
    assert stored == sorted(event["resourceId"] for event in events)


def test_a_delivery_the_inbox_stays_locked_for_gets_a_503_without_a_traceback(receiver, inbox_path, caplog):
    """Another process holding the write lock past the timeout: the vendor is told to retry, and nothing is lost."""
    WebhookInbox(inbox_path).pending("xero", 0)  # the file, in WAL mode
    event = xero_event()
    body = delivery_body([event])
    server_log = logging.getLogger("uvicorn")  # does not propagate: where an unhandled exception's traceback goes
    server_log.addHandler(caplog.handler)
    try:
        with sqlite3.connect(inbox_path, isolation_level=None) as other_process:
            other_process.execute("BEGIN IMMEDIATE")
            refused = deliver(receiver.url_for("xero"), body)
            other_process.execute("ROLLBACK")
        other_process.close()
    finally:
        server_log.removeHandler(caplog.handler)

    assert refused.status_code == 503
    assert [record.getMessage() for record in caplog.records if record.exc_info] == []
    assert any("deferred" in record.getMessage() for record in caplog.records)
    assert stored_events(inbox_path) == []
    assert deliver(receiver.url_for("xero"), body).status_code == 200  # the vendor's retry
    assert [row["resource_id"] for row in stored_events(inbox_path)] == [event["resourceId"]]
