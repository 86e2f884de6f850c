"""What our product sends to the Tracking API under the sandbox's write key belongs to the "Xero (sync_pipelines)"
source, which is connected to the Webhooks destination like every source (sandbox/segment/app.py, workspace.py)."""

import json
from datetime import datetime, timedelta

import requests

WRITE_KEY = ("sandbox-write-key", "")
TOKEN = "sandbox-segment-public-api-token"


def send_batch(sandbox, *items: dict, auth=WRITE_KEY, **envelope) -> None:
    """A /v1/batch as analytics-python posts it: the items, and the batch's sentAt beside them."""
    response = requests.post(
        f"{sandbox.url}/segment/v1/batch", json={"batch": list(items), **envelope}, auth=auth, timeout=30
    )
    assert response.status_code == 200 and response.json() == {"success": True}


def invoice_paid(message_id: str) -> dict:
    return {
        "type": "track", "userId": "xero-contact-1", "event": "Invoice Paid", "messageId": message_id,
        "properties": {"invoice_id": "INV-0042", "revenue": 1200.0, "currency": "USD"},
        "timestamp": "2026-03-01T10:00:00.000Z",
    }  # fmt: skip


def xero_sync(admin) -> dict:
    return next(s for s in admin.segment_sources() if s["slug"] == "xero-sync")


def test_tracking_api_messages_reach_the_destination_from_the_products_source(sandbox, admin, endpoint):
    source = xero_sync(admin)
    assert (source["name"], source["metadata"]["slug"]) == ("Xero (sync_pipelines)", "http-api")
    admin.segment_destination(url=endpoint.url)
    identify = {"type": "identify", "userId": "xero-contact-1", "messageId": "xero-id-1", "traits": {"plan": "pro"}}
    no_one = {"type": "track", "event": "Lost", "messageId": "xero-lost"}  # dropped by Segment, so not forwarded
    send_batch(sandbox, invoice_paid("xero-inv-1"), identify, no_one, sentAt="2026-03-01T10:00:05.000Z")
    send_batch(sandbox, invoice_paid("xero-inv-1"))  # a duplicate messageId is dropped, not forwarded again
    send_batch(sandbox, invoice_paid("xero-other-key"), auth=("someone-elses-key", ""))
    admin.segment_flush_webhooks()

    forwarded = [json.loads(body) for body in endpoint.bodies()]
    stored = {m["messageId"]: m for m in admin.segment_messages()}
    assert [m["messageId"] for m in forwarded] == list(stored) == ["xero-inv-1", "xero-id-1"]
    for message in forwarded:
        assert message["projectId"] == source["id"] and message["channel"] == "server"
        assert message["receivedAt"] == stored[message["messageId"]]["receivedAt"]
        assert message["context"] == {"library": {"name": "unknown", "version": "unknown"}}
        assert message["version"] == 2 and message["integrations"] == {}
        for field in ("type", "userId", "event", "properties", "traits"):
            assert message.get(field) == stored[message["messageId"]].get(field), field
    paid = forwarded[0]
    # The batch's sentAt is each item's: sent five seconds after the event, so its timestamp is corrected by that.
    assert (paid["originalTimestamp"], paid["sentAt"]) == ("2026-03-01T10:00:00.000Z", "2026-03-01T10:00:05.000Z")
    received = datetime.fromisoformat(paid["receivedAt"])
    assert datetime.fromisoformat(paid["timestamp"]) == received - timedelta(seconds=5)
    assert [d["message_ids"] for d in admin.segment_webhook_deliveries()] == [["xero-inv-1"], ["xero-id-1"]]


def test_forwarding_can_be_turned_off(sandbox, admin, endpoint):
    admin.segment_destination(url=endpoint.url)
    assert admin.segment_settings() == {"forward_tracking_api": True}
    assert admin.segment_settings(forward_tracking_api=False) == {"forward_tracking_api": False}
    send_batch(sandbox, invoice_paid("xero-inv-quiet"))
    admin.segment_flush_webhooks()
    assert endpoint.requests == [] and [m["messageId"] for m in admin.segment_messages()] == ["xero-inv-quiet"]

    admin.segment_settings(forward_tracking_api=True)
    send_batch(sandbox, invoice_paid("xero-inv-heard"))
    admin.segment_flush_webhooks()
    assert [json.loads(body)["messageId"] for body in endpoint.bodies()] == ["xero-inv-heard"]
    refused = requests.put(f"{admin.url}/segment/settings", json={"forward_tracking_api": "no"}, timeout=10)
    assert refused.status_code == 400


def test_the_public_api_lists_the_products_source_with_the_destination_connected(admin, endpoint):
    source = xero_sync(admin)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    base = admin.url.removesuffix("/_admin") + "/segmentapis"
    listed = requests.get(f"{base}/sources", params={"pagination.count": 10}, headers=headers, timeout=10).json()
    assert source["id"] in [s["id"] for s in listed["data"]["sources"]]
    admin.segment_destination(url=endpoint.url)
    connected = requests.get(
        f"{base}/sources/{source['id']}/connected-destinations",
        params={"pagination.count": 10},
        headers=headers,
        timeout=10,
    ).json()["data"]["destinations"]
    assert [(d["name"], d["sourceId"], d["enabled"]) for d in connected] == [("Webhooks", source["id"], True)]
