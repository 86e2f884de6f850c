"""The workspace's sources emit messages as their libraries send them and Segment passes them on
(sandbox/segment/sources.py)."""

import re
import uuid
from datetime import datetime, timedelta

import requests

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_sources_are_listed_with_their_libraries(admin):
    sources = admin.segment_sources()
    assert [(s["slug"], s["name"], s["metadata"]["slug"]) for s in sources] == [
        ("web", "Web", "javascript"),
        ("ios", "iOS", "ios"),
        ("server", "Server", "python"),
        ("point-of-sale", "Point of Sale", "http-api"),
        ("xero-sync", "Xero (sync_pipelines)", "http-api"),
    ]
    assert all(re.fullmatch(r"[0-9A-Za-z]{22}", s["id"]) and s["enabled"] for s in sources)
    assert admin.segment_sources() == sources  # ids are fixed, not drawn per run


def test_each_source_fills_in_what_its_library_and_segment_add(admin):
    sources = {s["slug"]: s for s in admin.segment_sources() if s["slug"] != "xero-sync"}
    bare = {"type": "track", "userId": "u-1", "event": "Order Completed", "properties": {"revenue": 19.99}}
    web, ios, server, pos = (admin.segment_emit(slug, bare)[0] for slug in sources)

    assert web["messageId"].startswith("ajs-next-") and web["channel"] == "client"
    assert web["context"] == {"library": {"name": "analytics.js", "version": "next-1.39.1"}, "ip": "127.0.0.1"}
    assert str(uuid.UUID(ios["messageId"])).upper() == ios["messageId"] and ios["channel"] == "server"
    assert ios["context"]["library"]["name"] == "analytics-ios" and "ip" in ios["context"]
    assert uuid.UUID(server["messageId"]).version == 4 and server["channel"] == "server"
    assert server["context"] == {"library": {"name": "analytics-python", "version": "2.3.4"}}
    assert pos["messageId"].startswith("api-") and pos["context"] == {
        "library": {"name": "unknown", "version": "unknown"}
    }
    for slug, message in zip(sources, (web, ios, server, pos), strict=True):
        assert message["projectId"] == sources[slug]["id"]
        assert {k: message[k] for k in bare} == bare
        assert message["version"] == 2 and message["integrations"] == {}
        stamps = [message[k] for k in ("timestamp", "originalTimestamp", "sentAt", "receivedAt")]
        assert all(ISO_MS.fullmatch(stamp) for stamp in stamps) and len(set(stamps)) == 1
    assert len({m["messageId"] for m in (web, ios, server, pos)}) == 4


def test_given_fields_are_kept_and_a_skewed_clock_is_corrected(admin):
    (message,) = admin.segment_emit(
        "web",
        {
            "type": "identify",
            "userId": 42,
            "messageId": "given-1",
            "traits": {"email": "ana@example.test"},
            "context": {"page": {"path": "/pricing"}, "library": {"name": "mine"}, "ip": "192.0.2.7"},
            "integrations": {"All": True},
            "timestamp": "2030-01-01T00:00:00Z",
            "sentAt": "2030-01-01T00:05:00Z",  # the device clock runs five minutes ahead of the call
        },
    )
    assert message["messageId"] == "given-1" and message["userId"] == "42"
    assert message["context"] == {
        "page": {"path": "/pricing"},
        "library": {"name": "analytics.js", "version": "next-1.39.1"},
        "ip": "192.0.2.7",
    }
    assert message["integrations"] == {"All": True}
    assert (message["originalTimestamp"], message["sentAt"]) == ("2030-01-01T00:00:00.000Z", "2030-01-01T00:05:00.000Z")
    received = datetime.fromisoformat(message["receivedAt"])
    assert datetime.fromisoformat(message["timestamp"]) == received - timedelta(minutes=5)

    (backfill,) = admin.segment_emit(
        "server", {"type": "group", "userId": "u", "groupId": "acct_77", "timestamp": "2024-05-01T12:00:00"}
    )
    assert backfill["timestamp"] == backfill["originalTimestamp"] == "2024-05-01T12:00:00.000Z"  # naive: UTC


def test_messages_segment_would_drop_refuse_the_whole_emission(admin):
    def emit(source: str, *messages: dict) -> requests.Response:
        body = {"source": source, "messages": list(messages)}
        return requests.post(f"{admin.url}/segment/emit", json=body, timeout=30)

    admin.segment_emit("server", {"type": "track", "userId": "u", "event": "Seen", "messageId": "m-1"})
    refused = emit(
        "server",
        {"type": "track", "userId": "u", "event": "Fine", "messageId": "m-2"},
        {"type": "track", "event": "No One"},
        {"type": "track", "anonymousId": "a"},
        {"type": "group", "userId": "u"},
        {"type": "track", "userId": "u", "event": "Again", "messageId": "m-1"},
        {"type": "track", "userId": "u", "event": "Late", "timestamp": "yesterday"},
        {"type": "shout", "userId": "u"},
        {"type": "track", "userId": "u", "event": "Big", "properties": {"blob": "x" * 33_000}},
        {"type": "track", "userId": "u", "event": "Broken \ud800 text"},
    )
    assert refused.status_code == 400
    assert refused.json()["reasons"] == [
        {"index": 1, "reason": "no_user_anon_id"},
        {"index": 2, "reason": "missing_event"},
        {"index": 3, "reason": "missing_group_id"},
        {"index": 5, "reason": "invalid_timestamp"},
        {"index": 6, "reason": "invalid_type"},
        {"index": 7, "reason": "payload_too_large"},
        {"index": 8, "reason": "invalid_json"},
    ]
    duplicates = emit(
        "server",
        {"type": "track", "userId": "u", "event": "Again", "messageId": "m-1"},
        {"type": "track", "userId": "u", "event": "Twice", "messageId": "m-3"},
        {"type": "track", "userId": "u", "event": "Twice", "messageId": "m-3"},
    )
    assert duplicates.status_code == 400
    assert duplicates.json()["reasons"] == [
        {"index": 0, "reason": "duplicate_message_id"},
        {"index": 2, "reason": "duplicate_message_id"},
    ]
    # Nothing of a refused emission was kept: its messageIds are still free.
    fine = {"type": "track", "userId": "u", "event": "Fine", "messageId": "m-2"}
    assert [m["messageId"] for m in admin.segment_emit("server", fine, {**fine, "messageId": "m-3"})] == ["m-2", "m-3"]
    assert emit("nowhere", fine).status_code == 404
    assert admin.segment_messages() == []  # what sources emit is not what our product sent to the Tracking API
