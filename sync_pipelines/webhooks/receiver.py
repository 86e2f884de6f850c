"""The webhook receiver: verify the signature on the raw body, store the events, acknowledge; one route per vendor.

Each vendor's contract (xero.md §6, intercom.md §9): 2xx within 5 s for a correctly signed delivery, 401 for a
wrong signature, and the work itself done later (here: by the vendor's webhook sensor reading the inbox). A
vendor differs only in its path, its signature, its event format and the largest body it could send (`Vendor`).
Anything else a delivery may get is a 5xx, which the vendor retries: 503 when the inbox is locked for too long.
"""

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync_pipelines.lib.serving import BackgroundServer
from sync_pipelines.vendors.intercom import settings as intercom_settings
from sync_pipelines.vendors.intercom.client import signature_valid
from sync_pipelines.vendors.xero import settings as xero_settings
from sync_pipelines.webhooks.inbox import InboxBusy, InboxEvent, WebhookInbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Vendor:
    """What differs between vendors' webhooks."""

    name: str  # the inbox's source
    path: str
    # (secret, raw body, headers) -> whether the vendor signed this body; constant time.
    signed: Callable[[str, bytes, Mapping[str, str]], bool]
    # The raw body's events for the inbox (none for a probe or a ping); ValidationError if not the vendor's format.
    events: Callable[[bytes], list[InboxEvent]]
    # Larger than the vendor ever sends (its settings say why): refused with 413 before it is read in full.
    max_body_bytes: int


# -- Xero (xero.md §6) ---------------------------------------------------------------------------------------


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


def _xero_signed(key: str, body: bytes, headers: Mapping[str, str]) -> bool:
    return hmac.compare_digest(sign(key, body).encode(), headers.get("x-xero-signature", "").encode())


def _xero_events(body: bytes) -> list[InboxEvent]:
    return [
        InboxEvent(
            source="xero", event_id=None, tenant_id=e.tenantId, category=e.eventCategory, event_type=e.eventType,
            resource_id=e.resourceId, event_date=e.eventDateUtc, payload=e.model_dump(),
        )
        for e in XeroDelivery.model_validate_json(body).events
    ]  # fmt: skip


XERO = Vendor("xero", "/xero/webhooks", _xero_signed, _xero_events, xero_settings.MAX_WEBHOOK_BODY_BYTES)


# -- Intercom (intercom.md §9) -------------------------------------------------------------------------------

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


def _intercom_signed(client_secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    given = headers.get(intercom_settings.SIGNATURE_HEADER)
    # hmac.compare_digest raises on non-ASCII str, and header bytes above 0x7f arrive as such: a forgery, not a 500.
    return given is not None and given.isascii() and signature_valid(body, given, client_secret)


def _intercom_events(body: bytes) -> list[InboxEvent]:
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


INTERCOM = Vendor(
    "intercom", "/intercom/webhooks", _intercom_signed, _intercom_events, intercom_settings.MAX_WEBHOOK_BODY_BYTES
)


# -- the receiver ----------------------------------------------------------------------------------------------


async def _body_within(request: Request, limit: int) -> bytes | None:
    """The raw body, or None as soon as it is known to pass `limit` bytes: by its Content-Length, before any of it
    is read, or (chunked) by the chunk that passes it. Nothing after that chunk is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _route(inbox: WebhookInbox, vendor: Vendor, secret: str) -> Route:
    async def receive(request: Request) -> Response:
        body = await _body_within(request, vendor.max_body_bytes)
        if body is None:
            log.warning(f"{vendor.name} webhook delivery refused: body over {vendor.max_body_bytes} bytes")
            # Closing the connection stops the server reading the rest, which would otherwise be read and dropped.
            return Response(status_code=413, headers={"Connection": "close"})
        # Verify the raw bytes before parsing (re-serialising breaks the HMAC), in constant time.
        if not vendor.signed(secret, body, request.headers):
            # Expected during Xero's Intent to Receive; otherwise a forgery or a secret that differs from the app's.
            log.warning(f"{vendor.name} webhook delivery refused: signature missing or wrong")
            return Response(status_code=401)
        try:
            events = vendor.events(body)
        except ValidationError as invalid:
            log.error(f"signed webhook delivery is not in {vendor.name}'s format: {invalid.error_count()} errors")
            return Response(status_code=400)
        if events:
            # Durable before the 200: an acknowledged event is never lost. A failure here is a 5xx and the vendor
            # retries.
            try:
                await run_in_threadpool(inbox.store, events)
            except InboxBusy as busy:
                log.warning(f"{vendor.name} webhook delivery deferred (503, the vendor retries): {busy}")
                return Response(status_code=503)
        return Response(status_code=200)

    return Route(vendor.path, receive, methods=["POST"])


def build_app(inbox: WebhookInbox, key: str | None, intercom_secret: str | None = None) -> Starlette:
    """POST /xero/webhooks when a Xero webhook key is given, POST /intercom/webhooks when an Intercom client
    secret is; any other path is 404 and any other method 405. A vendor without a secret has no route, so
    nobody can post it unsigned events."""
    routes = [_route(inbox, vendor, secret) for vendor, secret in ((XERO, key), (INTERCOM, intercom_secret)) if secret]
    if not routes:
        raise ValueError("a Xero webhook key or an Intercom client secret is required: nothing could be signed")
    return Starlette(routes=routes)


class WebhookReceiver(BackgroundServer):
    """The receiver under uvicorn: in a background thread (`dev`, tests, benchmarks) or in the foreground (CLI)."""

    def __init__(
        self,
        inbox_path: str | Path,
        key: str | None,
        intercom_secret: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        """`key` is the Xero app's webhook key, `intercom_secret` the Intercom app's client secret."""
        app = build_app(WebhookInbox(inbox_path), key, intercom_secret)
        super().__init__(lambda url: app, host, port, name="webhook receiver")

    @property
    def webhook_url(self) -> str:
        """The delivery URL to configure for the Xero app (behind HTTPS on 443 in production, xero.md §6)."""
        return self.url + XERO.path

    @property
    def intercom_webhook_url(self) -> str:
        """The endpoint URL to configure for the Intercom app in the Developer Hub (intercom.md §9)."""
        return self.url + INTERCOM.path
