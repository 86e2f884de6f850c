"""The Webhooks destination, observed from a real receiver on 127.0.0.1 (segment.md §9,
sandbox/segment/destination.py)."""

import hashlib
import hmac
import json

import requests

SECRET = "segment-shared-secret"


def x_signature(signed: bytes, secret: str = SECRET) -> str:
    """What a receiver computes: lowercase hex HMAC-SHA1 keyed with the shared secret."""
    return hmac.new(secret.encode(), signed, hashlib.sha1).hexdigest()


def compact(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def first_element(body: bytes) -> bytes:
    """A batch's first message as its bytes stand in the body, found as a receiver finds it."""
    text = body.decode()
    assert text.startswith("[")
    _, end = json.JSONDecoder().raw_decode(text, 1)
    return text[1:end].encode()


def tracks(*events: str) -> list[dict]:
    return [{"type": "track", "userId": "u-1", "event": event, "properties": {"note": "héllo"}} for event in events]


def test_each_message_is_posted_alone_signed_over_its_raw_body(admin, endpoint):
    admin.segment_destination(url=endpoint.url, secret=SECRET)
    emitted = admin.segment_emit("web", *tracks("Signed Up", "Signed In"))
    identified = admin.segment_emit("server", {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}})
    admin.segment_flush_webhooks()

    assert endpoint.bodies() == [compact(m) for m in emitted + identified]
    for body, headers in endpoint.requests:
        assert headers["user-agent"] == "Segment.io/1.0" and headers["content-type"] == "application/json"
        assert headers["x-signature"] == x_signature(body)
        assert headers["x-signature"] != x_signature(body.replace(b",", b", "))  # over the bytes, not the JSON
    deliveries = admin.segment_webhook_deliveries()
    assert [d["message_ids"] for d in deliveries] == [[m["messageId"]] for m in emitted + identified]
    assert all(d["attempts"] == [200] and d["delivered"] for d in deliveries)


def test_a_batch_is_an_array_signed_over_its_first_message(admin, endpoint):
    admin.segment_destination(url=endpoint.url, secret=SECRET, batch_size=3)
    emitted = admin.segment_emit("ios", *tracks("One", "Two", "Three", "Four", "Five"))
    admin.segment_flush_webhooks()

    assert endpoint.bodies() == [
        b"[" + b",".join(compact(m) for m in emitted[:3]) + b"]",
        b"[" + b",".join(compact(m) for m in emitted[3:]) + b"]",
    ]
    for (body, headers), first in zip(endpoint.requests, (emitted[0], emitted[3]), strict=True):
        assert first_element(body) == compact(first)
        assert headers["x-signature"] == x_signature(first_element(body)) != x_signature(body)
    assert [len(d["message_ids"]) for d in admin.segment_webhook_deliveries()] == [3, 2]

    admin.segment_destination(secret=None, batch_size=1)
    (unsigned,) = admin.segment_emit("ios", *tracks("Six"))
    admin.segment_flush_webhooks()
    assert endpoint.bodies()[-1] == compact(unsigned) and "x-signature" not in endpoint.requests[-1][1]


def test_a_5xx_is_retried_with_the_same_bytes_and_later_messages_wait(admin, endpoint):
    endpoint.answers = [500, 503]
    admin.segment_destination(url=endpoint.url, secret=SECRET, backoff_seconds=0.01)
    first, second = admin.segment_emit("server", *tracks("First", "Second"))
    admin.segment_flush_webhooks()

    assert endpoint.requests[0] == endpoint.requests[1] == endpoint.requests[2]  # body and signature alike
    assert endpoint.bodies() == [compact(first)] * 3 + [compact(second)]
    assert [(d["attempts"], d["delivered"]) for d in admin.segment_webhook_deliveries()] == [
        ([500, 503, 200], True),
        ([200], True),
    ]

    endpoint.answers = [500] * 10
    admin.segment_destination(attempts=3)
    admin.segment_emit("server", *tracks("Given Up"))
    admin.segment_flush_webhooks()
    given_up = admin.segment_webhook_deliveries()[-1]
    assert (given_up["attempts"], given_up["delivered"]) == ([500, 500, 500], False)


def test_a_4xx_is_final_and_not_retried(admin, endpoint):
    endpoint.answers = [400]
    admin.segment_destination(url=endpoint.url, backoff_seconds=0.01)
    refused, accepted = admin.segment_emit("point-of-sale", *tracks("Refused", "Accepted"))
    admin.segment_flush_webhooks()

    assert endpoint.bodies() == [compact(refused), compact(accepted)]
    assert [(d["attempts"], d["delivered"]) for d in admin.segment_webhook_deliveries()] == [
        ([400], False),
        ([200], True),
    ]


def test_a_logged_delivery_is_redelivered_byte_for_byte(admin, endpoint):
    admin.segment_destination(url=endpoint.url, secret=SECRET, batch_size=2)
    admin.segment_emit("web", *tracks("Order Completed", "Order Refunded"))
    admin.segment_flush_webhooks()
    (delivery,) = admin.segment_webhook_deliveries()

    replay = admin.post(f"/segment/webhook-deliveries/{delivery['seq']}/redeliver")
    assert replay == {"seq": delivery["seq"], "status": 200}
    assert len(endpoint.requests) == 2 and endpoint.requests[0] == endpoint.requests[1]
    assert admin.segment_webhook_deliveries()[0]["attempts"] == [200, 200]
    unknown = requests.post(f"{admin.url}/segment/webhook-deliveries/999/redeliver", timeout=10)
    assert unknown.status_code == 404


def test_without_a_url_nothing_is_queued_and_unsubscribing_drops_the_queue(admin, endpoint):
    assert admin.segment_destination() == {
        "url": None, "secret": None, "batch_size": 1, "attempts": 8, "backoff_seconds": 0.5, "queued": 0
    }  # fmt: skip
    admin.segment_emit("web", *tracks("Unheard"))
    admin.segment_destination(url=endpoint.url)
    admin.segment_flush_webhooks()
    assert endpoint.requests == [] and admin.segment_webhook_deliveries() == []

    endpoint.answers = [500] * 1000  # the first message is retried while the others wait in the queue
    admin.segment_destination(backoff_seconds=0.05, attempts=1000)
    in_flight, *_ = admin.segment_emit("web", *tracks("In Flight", "Queued", "Also Queued"))
    endpoint.wait_for(1)
    assert admin.segment_destination(url=None)["queued"] == 0
    endpoint.answers = []
    admin.segment_destination(url=endpoint.url)
    admin.segment_flush_webhooks()
    assert set(endpoint.bodies()) == {compact(in_flight)}
    assert [d["message_ids"] for d in admin.segment_webhook_deliveries()] == [[in_flight["messageId"]]]

    off_machine = requests.put(f"{admin.url}/segment/destination", json={"url": "http://example.com/hook"}, timeout=10)
    too_big = requests.put(f"{admin.url}/segment/destination", json={"batch_size": 4001}, timeout=10)
    assert off_machine.status_code == too_big.status_code == 400
