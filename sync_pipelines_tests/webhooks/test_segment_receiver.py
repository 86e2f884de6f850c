"""The receiver keeps the contract of Segment's Webhooks destinations: a message, or a batch signed over its first
event, is stored only with a valid X-Signature, and each messageId once however often it is delivered."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_pipelines.webhooks.receiver import WebhookReceiver
from sync_pipelines_tests.webhooks.conftest import (
    SEGMENT_SECRET,
    body_of,
    identify,
    post_segment,
    signed,
    stored_events,
)


@pytest.fixture
def receiver(inbox_path: Path) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(inbox_path, {"segment": SEGMENT_SECRET}) as running:
        yield running


def test_a_signed_message_is_stored_with_its_identity(receiver, inbox_path):
    message = identify("user-1", email="ana@example.test")

    assert post_segment(receiver, body_of(message), signed(body_of(message))) == 200

    (row,) = stored_events(inbox_path)
    assert (row["source"], row["event_id"], row["category"], row["resource_id"]) == (
        "segment", message["messageId"], "identify", "user-1"
    )  # fmt: skip
    assert json.loads(row["payload"]) == message


def test_a_batch_signed_over_its_first_event_is_stored_whole(receiver, inbox_path):
    first, second = identify("user-1", plan="pro"), identify("user-2", plan="free")
    batch = body_of(first, second)

    assert post_segment(receiver, batch, signed(body_of(first))) == 200

    assert [row["event_id"] for row in stored_events(inbox_path)] == [first["messageId"], second["messageId"]]


def test_forged_and_unsigned_deliveries_are_refused_and_nothing_is_stored(receiver, inbox_path):
    message = identify("user-1", email="ana@example.test")
    body = body_of(message)
    tampered = body.replace(b"ana@", b"eve@")

    assert post_segment(receiver, body, {}) == 401  # no signature
    assert post_segment(receiver, body, signed(body, "another-secret")) == 401
    assert post_segment(receiver, tampered, signed(body)) == 401
    assert post_segment(receiver, body, {"X-Signature": "é" * 40}) == 401
    # A batch signed over the whole body rather than its first event is not Segment's signature.
    batch = body_of(message, identify("user-2"))
    assert post_segment(receiver, batch, signed(batch)) == 401
    assert post_segment(receiver, b"[]", signed(b"[]")) == 401

    assert stored_events(inbox_path) == []


def test_a_redelivered_message_is_stored_once(receiver, inbox_path):
    message = identify("user-1", email="ana@example.test")
    first, again = identify("user-2"), identify("user-3")

    statuses = [post_segment(receiver, body_of(message), signed(body_of(message))) for _ in range(3)]
    statuses.append(post_segment(receiver, body_of(message, first), signed(body_of(message))))
    statuses.append(post_segment(receiver, body_of(again, first), signed(body_of(again))))

    assert statuses == [200] * 5
    assert [row["event_id"] for row in stored_events(inbox_path)] == [
        message["messageId"], first["messageId"], again["messageId"]
    ]  # fmt: skip


def test_a_signed_body_that_is_not_a_segment_message_is_a_400(receiver, inbox_path):
    bodies = [b'{"type": "identify"}', b'{"type": "nonsense", "messageId": "m1", "timestamp": "t"}', b"[1, 2]"]

    assert [post_segment(receiver, body, signed(body)) for body in bodies[:2]] == [400, 400]
    assert post_segment(receiver, bodies[2], signed(b"1")) == 400
    assert stored_events(inbox_path) == []
