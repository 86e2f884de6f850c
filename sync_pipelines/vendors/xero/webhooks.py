"""Xero's webhooks (xero.md §6): the delivery format, its signature, and its events for the inbox."""

import base64
import hashlib
import hmac
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from sync_pipelines.vendors.xero import settings
from sync_pipelines.webhooks.inbox import InboxEvent
from sync_pipelines.webhooks.vendor import Vendor


class XeroEvent(BaseModel):
    """One event; all seven fields are required (xero.md §6). Extra fields (e.g. CREDITNOTE's data) are kept."""

    model_config = ConfigDict(extra="allow")

    resourceUrl: str
    resourceId: str
    eventDateUtc: str
    eventType: str
    eventCategory: str
    tenantId: str
    tenantType: str


class XeroDelivery(BaseModel):
    """A delivery; an Intent-to-Receive probe is one with no events (xero.md §6)."""

    events: list[XeroEvent]
    firstEventSequence: int
    lastEventSequence: int
    entropy: str


def sign(key: str, body: bytes) -> str:
    """xero.md §6: Base64(HMAC-SHA256(the key's UTF-8 bytes, not base64-decoded; the raw body bytes))."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def _signed(key: str, body: bytes, headers: Mapping[str, str]) -> bool:
    return hmac.compare_digest(sign(key, body).encode(), headers.get("x-xero-signature", "").encode())


def _events(body: bytes) -> list[InboxEvent]:
    return [
        InboxEvent(
            source="xero", event_id=None, tenant_id=e.tenantId, category=e.eventCategory, event_type=e.eventType,
            resource_id=e.resourceId, event_date=e.eventDateUtc, payload=e.model_dump(),
        )
        for e in XeroDelivery.model_validate_json(body).events
    ]  # fmt: skip


WEBHOOKS = Vendor("xero", "/xero/webhooks", _signed, _events, settings.MAX_WEBHOOK_BODY_BYTES)
