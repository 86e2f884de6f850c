"""The Xero webhook receiver: verify the signature on the raw body, store the events, acknowledge.

Xero's receiver contract (xero.md §6): 200 with no body within 5 s for a correctly signed delivery, 401 for a
wrong signature, and the work itself done later (here: by the `xero_webhook_sensor` reading the inbox).
"""

import base64
import hashlib
import hmac
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync_pipelines.lib.serving import BackgroundServer
from sync_pipelines.webhooks.inbox import WebhookInbox

WEBHOOK_PATH = "/xero/webhooks"
log = logging.getLogger(__name__)


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


def build_app(inbox: WebhookInbox, key: str) -> Starlette:
    """POST /xero/webhooks; any other path is 404 and any other method 405."""
    if not key:
        raise ValueError("a webhook key is required: without one anybody could sign events")

    async def receive(request: Request) -> Response:
        # xero.md §6: verify the raw bytes before parsing (re-serialising breaks the HMAC), in constant time.
        body = await request.body()
        given = request.headers.get("x-xero-signature", "")
        if not hmac.compare_digest(sign(key, body).encode(), given.encode()):
            # Expected during Intent to Receive; otherwise a forgery or a key that differs from the app's.
            log.warning("webhook delivery refused: signature missing or wrong")
            return Response(status_code=401)
        try:
            delivery = XeroDelivery.model_validate_json(body)
        except ValidationError as invalid:
            log.error(f"signed webhook delivery is not in Xero's format: {invalid.error_count()} errors")
            return Response(status_code=400)
        if delivery.events:
            # Durable before the 200: an acknowledged event is never lost. A failure here is a 500 and Xero retries.
            await run_in_threadpool(inbox.store, [event.model_dump() for event in delivery.events])
        return Response(status_code=200)

    return Starlette(routes=[Route(WEBHOOK_PATH, receive, methods=["POST"])])


class WebhookReceiver(BackgroundServer):
    """The receiver under uvicorn: in a background thread (`dev`, tests, benchmarks) or in the foreground (CLI)."""

    def __init__(self, inbox_path: str | Path, key: str, host: str = "127.0.0.1", port: int = 0):
        app = build_app(WebhookInbox(inbox_path), key)
        super().__init__(lambda url: app, host, port, name="webhook receiver")

    @property
    def webhook_url(self) -> str:
        """The delivery URL to configure for the Xero app (behind HTTPS on 443 in production, xero.md §6)."""
        return self.url + WEBHOOK_PATH
