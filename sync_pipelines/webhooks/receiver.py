"""The webhook receiver: verify the signature on the raw body, store the events, acknowledge; one route per vendor.

Each vendor's contract (xero.md §6, intercom.md §9, salesforce.md §9; Segment's at
https://segment.com/docs/connections/destinations/catalog/webhooks/): 2xx within 5 s for a correctly signed
delivery, 401 for a wrong signature, and the work itself done later (here: by the vendor's webhook sensor reading
the inbox). A vendor differs only in its path, its signature, its event format and the largest body it could send: its
`Vendor`, which its package describes (vendors/<vendor>/webhooks.py).
Anything else a delivery may get is a 5xx, which the vendor retries: 503 when the inbox is locked for too long.
"""

import logging
from collections.abc import Mapping
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync_pipelines.lib.serving import BackgroundServer
from sync_pipelines.vendors.intercom.webhooks import WEBHOOKS as INTERCOM
from sync_pipelines.vendors.salesforce.webhooks import WEBHOOKS as SALESFORCE
from sync_pipelines.vendors.segment.webhooks import WEBHOOKS as SEGMENT
from sync_pipelines.vendors.xero.webhooks import WEBHOOKS as XERO
from sync_pipelines.webhooks.inbox import InboxBusy, WebhookInbox
from sync_pipelines.webhooks.vendor import Vendor

log = logging.getLogger(__name__)
VENDORS = {vendor.name: vendor for vendor in (XERO, INTERCOM, SEGMENT, SALESFORCE)}


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
        try:
            # Verify the raw bytes before parsing (re-serialising breaks the HMAC), in constant time.
            if not vendor.signed(secret, body, request.headers):
                # Expected during Xero's Intent to Receive; otherwise a forgery or a secret that differs from the
                # app's.
                log.warning(f"{vendor.name} webhook delivery refused: signature missing or wrong")
                return Response(status_code=401)
            events = vendor.events(body)
        except ValueError as invalid:  # pydantic's ValidationError too; its text would echo the body, not logged
            log.error(f"webhook delivery is not in {vendor.name}'s format: {type(invalid).__name__}")
            return Response(status_code=400)
        if events:
            # Durable before the 200: an acknowledged event is never lost. A failure here is a 5xx and the vendor
            # retries.
            try:
                await run_in_threadpool(inbox.store, events)
            except InboxBusy as busy:
                log.warning(f"{vendor.name} webhook delivery deferred (503, the vendor retries): {busy}")
                return Response(status_code=503)
        return Response(vendor.ack, status_code=200, media_type=vendor.ack_media_type)

    return Route(vendor.path, receive, methods=["POST"])


def build_app(inbox: WebhookInbox, secrets: Mapping[str, str | None]) -> Starlette:
    """POST /<vendor>/webhooks for each vendor given a secret (Xero's webhook key, Intercom's client secret,
    Segment's shared secret), POST /salesforce/outbound given the Salesforce organisation's id; any other path is
    404 and any other method 405. A vendor without a secret has no route, so nobody can post it unverified events."""
    unknown = set(secrets) - set(VENDORS)
    if unknown:
        raise ValueError(f"no webhooks are known for {sorted(unknown)}; expected some of {sorted(VENDORS)}")
    routes = [_route(inbox, VENDORS[name], secret) for name, secret in secrets.items() if secret]
    if not routes:
        raise ValueError(f"a secret for at least one of {sorted(VENDORS)} is required: nothing could be signed")
    return Starlette(routes=routes)


class WebhookReceiver(BackgroundServer):
    """The receiver under uvicorn: in a background thread (`dev`, tests, benchmarks) or in the foreground (CLI)."""

    def __init__(
        self, inbox_path: str | Path, secrets: Mapping[str, str | None], host: str = "127.0.0.1", port: int = 0
    ):
        """`secrets` by vendor: what signs its webhooks."""
        app = build_app(WebhookInbox(inbox_path), secrets)
        super().__init__(lambda url: app, host, port, name="webhook receiver")

    def url_for(self, vendor: str) -> str:
        """The delivery URL to configure at the vendor (behind HTTPS in production, e.g. xero.md §6)."""
        return self.url + VENDORS[vendor].path
