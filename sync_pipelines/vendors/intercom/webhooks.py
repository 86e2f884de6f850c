"""Intercom's webhooks (intercom.md §9): the notification format, its signature, and its events for the inbox."""

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sync_pipelines.vendors.intercom import settings
from sync_pipelines.webhooks.inbox import InboxEvent
from sync_pipelines.webhooks.vendor import Vendor

PING = "ping"  # intercom.md §9: always subscribed, and says nothing changed


class IntercomNotificationData(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["notification_event_data"]
    item: dict


class IntercomNotification(BaseModel):
    """A notification; `data.item` is the topic's object (only identifying fields for `*.deleted` topics)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["notification_event"]
    app_id: str
    id: str
    topic: str = Field(min_length=1)
    created_at: int
    data: IntercomNotificationData


def signature_valid(raw_body: bytes, header: str | None, client_secret: str) -> bool:
    """Whether a webhook's X-Hub-Signature matches its raw body (intercom.md §9); check before parsing JSON."""
    if not header or not header.startswith(settings.SIGNATURE_PREFIX):
        return False
    expected = hmac.new(client_secret.encode(), raw_body, hashlib.sha1).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII text, and a forged header may carry any.
    return hmac.compare_digest(header.removeprefix(settings.SIGNATURE_PREFIX).encode(), expected.encode())


def _signed(client_secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    given = headers.get(settings.SIGNATURE_HEADER)
    # hmac.compare_digest raises on non-ASCII str, and header bytes above 0x7f arrive as such: a forgery, not a 500.
    return given is not None and given.isascii() and signature_valid(body, given, client_secret)


def _events(body: bytes) -> list[InboxEvent]:
    notification = IntercomNotification.model_validate_json(body)
    if notification.topic == PING:
        return []
    # The topic's object names the category: contact.user.tag.created -> contact.
    category = notification.topic.split(".", 1)[0]
    event = InboxEvent(
        source="intercom",
        event_id=notification.id,  # intercom.md §9: delivery is at least once; dedupe on `id`
        tenant_id=notification.app_id,  # intercom.md §9: which workspace the notification is from
        category=category,
        event_type=notification.topic,
        resource_id=str(notification.data.item.get("id", "")),
        event_date=datetime.fromtimestamp(notification.created_at, UTC).isoformat(),
        payload=notification.model_dump(),
    )
    return [event]


WEBHOOKS = Vendor("intercom", "/intercom/webhooks", _signed, _events, settings.MAX_WEBHOOK_BODY_BYTES)
