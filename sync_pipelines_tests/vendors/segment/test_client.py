"""SegmentClient against the sandbox: byte-bounded batches, local drop rules, retries and failure reports."""

from __future__ import annotations

import json
import math

import pytest

from sync_pipelines.vendors.segment import settings
from sync_pipelines.vendors.segment.client import SegmentClient, drop_reason

WRITE_KEY = "sandbox-write-key"
BATCH = "POST /v1/batch"


def track(n: int, padding: int = 0, **extra) -> dict:
    return {
        "type": "track",
        "userId": f"user-{n % 7}",
        "event": "Invoice Paid",
        "messageId": f"test:invoice:{n}:paid",
        "properties": {"invoice_id": f"INV-{n:05d}", "padding": "x" * padding},
        **extra,
    }


@pytest.fixture
def client(sandbox) -> SegmentClient:
    return SegmentClient(f"{sandbox.url}/segment", WRITE_KEY)


def accepted_ids(admin) -> list[str]:
    return [message["messageId"] for message in admin.call("GET", "/segment/messages")]


def test_batches_are_filled_by_bytes_up_to_the_working_size(admin, client):
    messages = [track(n, padding=30_000) for n in range(40)]
    admin.reset_stats()

    report = client.send(messages)

    assert report.delivered == [m["messageId"] for m in messages]
    assert report.failed == report.rejected == []
    assert accepted_ids(admin) == report.delivered
    item_bytes = len(json.dumps(messages[0], separators=(",", ":"))) + 1
    per_batch = settings.WORKING_BATCH_BYTES // item_bytes
    assert admin.count("segment", BATCH) == math.ceil(len(messages) / per_batch)
    assert client.stats.bytes_sent / client.stats.calls <= settings.WORKING_BATCH_BYTES


def test_batches_stop_at_the_event_cap(admin, client):
    messages = [track(n) for n in range(settings.MAX_BATCH_EVENTS + 10)]
    admin.reset_stats()

    report = client.send(messages)

    assert len(report.delivered) == len(messages)
    assert admin.count("segment", BATCH) == 2
    assert admin.call("GET", "/segment/dropped") == []
    assert len(accepted_ids(admin)) == len(messages)


def test_messages_segment_would_drop_are_rejected_locally(admin, client):
    bad = {
        "anon": {"type": "track", "event": "Invoice Paid", "messageId": "m-anon"},
        "event": {"type": "track", "userId": "u", "messageId": "m-event"},
        "group": {"type": "group", "userId": "u", "messageId": "m-group"},
        "long-id": {"type": "identify", "userId": "u", "messageId": "m" * 101},
        "no-id": {"type": "identify", "userId": "u"},
        "big": track(1, padding=settings.MAX_EVENT_BYTES),
    }
    good = track(2)

    report = client.send([*bad.values(), good])

    assert report.delivered == [good["messageId"]]
    assert [reason for _, reason in report.rejected] == [
        "no_user_anon_id",
        "missing_event",
        "missing_group_id",
        "message_id_too_long",
        "missing_message_id",
        "message_too_large",
    ]
    assert [message_id for message_id, _ in report.rejected] == [m.get("messageId") for m in bad.values()]
    assert accepted_ids(admin) == [good["messageId"]]
    assert admin.call("GET", "/segment/dropped") == []
    assert drop_reason(good) is None


def test_faults_are_retried_and_each_message_lands_once(admin, sandbox):
    client = SegmentClient(f"{sandbox.url}/segment", WRITE_KEY, max_attempts=12, max_batch_bytes=12_000)
    messages = [track(n, padding=1_000) for n in range(100)]
    admin.faults(segment={"error_rate": 0.1, "rate_limit_rate": 0.1, "drop_rate": 0.1, "retry_after_seconds": 0})

    report = client.send(messages)

    assert report.delivered == [m["messageId"] for m in messages]
    assert report.failed == []
    assert client.stats.retries > 0
    assert sorted(accepted_ids(admin)) == sorted(report.delivered)


def test_resending_is_deduplicated_by_message_id(admin, client):
    messages = [track(n) for n in range(5)]

    client.send(messages)
    again = client.send(messages)

    assert again.delivered == [m["messageId"] for m in messages]
    assert accepted_ids(admin) == again.delivered


def test_a_batch_that_keeps_failing_is_reported_not_raised(admin, sandbox):
    client = SegmentClient(f"{sandbox.url}/segment", WRITE_KEY, max_attempts=2)
    admin.faults(segment={"error_rate": 1.0})

    report = client.send([track(n) for n in range(3)])

    assert report.delivered == []
    assert [message_id for message_id, _ in report.failed] == [track(n)["messageId"] for n in range(3)]
    assert all(error for _, error in report.failed)
    assert client.stats.calls == 2


def test_a_missing_write_key_fails_without_retrying(sandbox):
    """Segment refuses only an empty key (400); a wrong one is answered 200 and dropped (sandbox/segment/app.py)."""
    client = SegmentClient(f"{sandbox.url}/segment", "")

    report = client.send([track(1)])

    assert report.failed and report.failed[0][0] == track(1)["messageId"]
    assert client.stats.calls == 1
