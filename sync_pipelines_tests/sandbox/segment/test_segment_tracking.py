"""The Segment tracking sandbox: auth, payload limits, silent drops and messageId dedupe (segment.md §1-§4)."""

import requests

WRITE_KEY = ("sandbox-write-key", "")


def _post(sandbox, path: str, body, auth=WRITE_KEY, **kwargs) -> requests.Response:
    if body is not None:
        kwargs["json"] = body
    return requests.post(f"{sandbox.url}/segment/v1/{path}", auth=auth, timeout=30, **kwargs)


def test_auth_by_basic_or_body_write_key(sandbox, admin):
    assert _post(sandbox, "track", {"userId": "u1", "event": "A"}).json() == {"success": True}
    assert _post(sandbox, "identify", {"userId": "u1", "writeKey": WRITE_KEY[0]}, auth=None).status_code == 200
    missing = _post(sandbox, "track", {"userId": "u1", "event": "A"}, auth=None)
    assert missing.status_code == 400 and missing.json()["code"] == "invalid_request"
    assert [m["type"] for m in admin.call("GET", "/segment/messages")] == ["track", "identify"]


def test_a_wrong_write_key_is_answered_200_and_its_messages_dropped(sandbox, admin):
    """Segment's edge does not check keys: 200 {"success": true}, and nothing reaches the source
    (sandbox/segment/app.py)."""
    single = _post(sandbox, "track", {"userId": "u1", "event": "A", "messageId": "m1"}, auth=("wrong", ""))
    in_body = _post(sandbox, "identify", {"userId": "u1", "messageId": "m2", "writeKey": "wrong"}, auth=None)
    item = {"type": "track", "userId": "u", "event": "E", "messageId": "m3"}
    batch = _post(sandbox, "batch", {"batch": [item]}, auth=("wrong", ""))

    assert [r.status_code for r in (single, in_body, batch)] == [200, 200, 200]
    assert single.json() == {"success": True}
    assert admin.segment_messages() == []
    dropped = admin.call("GET", "/segment/dropped")
    assert [(d["message"]["messageId"], d["reason"]) for d in dropped] == [
        ("m1", "invalid_write_key"),
        ("m2", "invalid_write_key"),
        ("m3", "invalid_write_key"),
    ]


def test_invalid_json_and_payload_limits_are_400(sandbox):
    assert _post(sandbox, "batch", None, data=b"{nope", headers={"Content-Type": "application/json"}).status_code == 400
    too_big_single = _post(sandbox, "track", {"userId": "u", "event": "E", "properties": {"blob": "x" * 33_000}})
    assert too_big_single.status_code == 400
    assert too_big_single.json() == {"code": "payload_too_large", "message": "Exceed payload limit"}
    big_item = {"type": "track", "userId": "u", "event": "E", "properties": {"blob": "x" * 33_000}}
    assert _post(sandbox, "batch", {"batch": [big_item]}).json()["code"] == "payload_too_large"
    many = [{"type": "track", "userId": "u", "event": "E", "properties": {"blob": "x" * 20_000}} for _ in range(30)]
    assert _post(sandbox, "batch", {"batch": many}).status_code == 400


def test_drop_rules_and_dedupe(sandbox, admin):
    batch = [
        {"type": "track", "userId": "u1", "event": "Invoice Paid", "messageId": "m-1"},
        {"type": "track", "userId": "u1", "event": "Invoice Paid", "messageId": "m-1"},
        {"type": "track", "event": "Invoice Paid", "messageId": "m-2"},
        {"type": "track", "anonymousId": "a1", "messageId": "m-3"},
        {"type": "group", "userId": "u1", "messageId": "m-4"},
        {"type": "identify", "anonymousId": "a1", "traits": {"email": "x@example.com"}},
    ]
    response = _post(sandbox, "batch", {"batch": batch, "context": {"library": {"name": "test"}}})
    assert response.status_code == 200
    accepted = admin.call("GET", "/segment/messages")
    assert [m.get("messageId") for m in accepted][0] == "m-1" and len(accepted) == 2
    assert accepted[1]["type"] == "identify" and accepted[1]["messageId"]  # assigned when absent
    assert all(m["context"]["library"]["name"] == "test" for m in accepted)
    reasons = [(d["message"].get("messageId"), d["reason"]) for d in admin.call("GET", "/segment/dropped")]
    assert reasons == [
        ("m-1", "duplicate_message_id"),
        ("m-2", "no_user_anon_id"),
        ("m-3", "missing_event"),
        ("m-4", "missing_group_id"),
    ]
    _post(sandbox, "track", {"userId": "u9", "event": "Again", "messageId": "m-1"})
    assert len(admin.call("GET", "/segment/messages")) == 2


def test_batches_over_2500_items_are_accepted_then_dropped(sandbox, admin):
    batch = [{"type": "track", "userId": "u", "event": "E", "messageId": f"big-{n}"} for n in range(2501)]
    assert _post(sandbox, "batch", {"batch": batch}).status_code == 200
    assert admin.call("GET", "/segment/messages") == []
    dropped = admin.call("GET", "/segment/dropped")
    assert len(dropped) == 2501 and {d["reason"] for d in dropped} == {"batch_too_large"}
