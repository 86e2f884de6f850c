"""Segment's Webhooks destinations: a message or a batch of them, its signature, its inbox events.

https://segment.com/docs/connections/destinations/catalog/webhooks/ and .../catalog/actions-webhook/.

A message comes whole, so unlike Xero's and Intercom's webhooks it is the record itself: the inbox keeps it, and
the Segment entities land it from there (vendors/segment/entities.py).
"""

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from sync_pipelines.vendors.segment import settings
from sync_pipelines.webhooks.inbox import InboxEvent
from sync_pipelines.webhooks.vendor import Vendor


class SegmentMessage(BaseModel):
    """The fields the inbox keys a message by (https://segment.com/docs/connections/spec/common/); the rest is kept
    as it came."""

    model_config = ConfigDict(extra="allow")

    type: Literal["identify", "track", "page", "screen", "group", "alias"]
    messageId: str = Field(min_length=1, max_length=settings.MAX_MESSAGE_ID_CHARS)
    timestamp: str = Field(min_length=1)
    userId: str | None = None
    anonymousId: str | None = None
    event: str | None = None
    groupId: str | None = None


_DELIVERY = TypeAdapter(SegmentMessage | list[SegmentMessage])
MESSAGE = TypeAdapter(SegmentMessage)


def signed_part(body: bytes) -> bytes | None:
    """What the signature covers: the whole body, or a batch's first event as its bytes stand in the body (a
    batch is signed over its first event only); None for a body that has no first event to sign."""
    text = body.decode("utf-8", errors="strict").lstrip()
    if not text.startswith("["):
        return body
    start = len(text) - len(text[1:].lstrip())
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    return text[start:end].encode()


def _signed(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    given = headers.get(settings.SIGNATURE_HEADER, "")
    try:
        part = signed_part(body)
    except UnicodeDecodeError:
        return False
    expected = hmac.new(secret.encode(), part or b"", hashlib.sha1).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII text, and a forged header may carry any.
    return part is not None and given.isascii() and hmac.compare_digest(given.lower().encode(), expected.encode())


def inbox_event(m: SegmentMessage) -> InboxEvent:
    """How the inbox keeps a message: deduplicated on its messageId, found again by its person or group."""
    return InboxEvent(
        source="segment",
        event_id=m.messageId,  # retried deliveries repeat it; Segment dedupes on it, and so does the inbox
        tenant_id=str(getattr(m, "projectId", None) or ""),  # the source that sent it, where Segment says
        category=m.type,
        event_type=m.event or m.type,
        resource_id=(m.groupId if m.type == "group" else m.userId or m.anonymousId) or "",
        event_date=m.timestamp,
        payload=m.model_dump(exclude_unset=True),
    )


def _events(body: bytes) -> list[InboxEvent]:
    delivered = _DELIVERY.validate_json(body)
    return [inbox_event(m) for m in (delivered if isinstance(delivered, list) else [delivered])]


WEBHOOKS = Vendor("segment", "/segment/webhooks", _signed, _events, settings.MAX_WEBHOOK_BODY_BYTES)
