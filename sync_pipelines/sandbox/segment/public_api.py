"""The Segment Public API sandbox (workspace management, read side), mounted under /segmentapis: it mirrors
https://api.segmentapis.com, so a client differs only by base URL, "{base}/segmentapis" (segment.md §8).

Served: GET /sources, /sources/{sourceId}, /sources/{sourceId}/connected-destinations, /destinations and
/destinations/{destinationId}, over the workspace's five sources (sources.py) and its Webhooks destination
(destination.py). What the docs say, and what the sandbox does with it:

- Auth: `Authorization: Bearer <token>` on every request (https://docs.segmentapis.com/tag/Authentication); the
  token is SandboxSettings.segment_public_api_token. Missing or wrong: 401 (https://docs.segmentapis.com/tag/
  Error-Handling lists 401 for "a missing API Token, an invalid API token").
- Envelope: a success is {"data": {...}}, an error {"errors": [{"type", "message", "field"?, "data"?}]}, never
  both (Error-Handling; the RequestError model of https://github.com/segmentio/public-api-sdk-python). Only the
  422 type, "input-validation", is documented (https://docs.segmentapis.com/tag/Request-Validation) and the 429's,
  "RequestError" (https://docs.segmentapis.com/tag/Rate-Limits); the 401, 404 and 5xx types used here
  ("unauthorized", "not-found", "server") are unconfirmed.
- Pagination (https://docs.segmentapis.com/tag/Pagination): `pagination.count` (1-1000) and an opaque
  `pagination.cursor` as query parameters; the answer's `pagination` has `current`, `next` (left out on the last
  page, per the SDK's PaginationOutput), `previous` (null on the first page, as in the docs' example) and
  `totalEntries`. A cursor is the base64 of the offset, as the docs' example ("MA==" then "Mw==" with count 3)
  suggests. The docs disagree on whether count may be omitted: the Pagination page opens with "if you omit
  pagination parameters, the requests fail validation", later says an optional pagination defaults to a count of
  200, and the SDK has marked it optional on List Sources since May 2024. The sandbox takes the strict reading, a
  422 without a count, so a client that passes here passes under either reading.
- Sources and destinations carry the fields of the SDK's SourceV1 and DestinationV1. A destination instance has
  one sourceId, so the sandbox's one Webhooks destination, connected to every source, appears as one instance per
  source, enabled while it has a URL, with the classic Webhooks settings `hooks` and `sharedSecret` (the shape of
  an exported Webhooks destination; whether the real API masks the secret is unconfirmed, the sandbox masks it).
  writeKeys is empty, as for a token without the source-admin permission (SourceV1); catalog ids are the
  sandbox's own.
- Rate limits: the Rate-Limits page gives the 429's headers (X-RateLimit-Remaining, X-RateLimit-Reset as an
  RFC 5322 date) and body (data.msBeforeNext) but no numbers, so there is no limiter here; Segment's fault knobs
  (/_admin/faults "segment", shared with the Tracking API) inject 429s and 5xx in that shape.
"""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sync_pipelines.sandbox.faults import FaultInjector
from sync_pipelines.sandbox.runtime import Runtime
from sync_pipelines.sandbox.segment.destination import WebhooksDestination
from sync_pipelines.sandbox.segment.sources import SOURCES, Source

VENDOR = "segment"
WORKSPACE_ID = "9mQ2vHqZk3TBcW5xLr8sYe"  # the sandbox workspace's id
MAX_COUNT = 1000
MASKED = "********"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# The catalog entries the sources were created from (Source.catalog): name and category, as Segment's catalog
# names them (https://segment.com/docs/connections/sources/catalog/).
_SOURCE_CATALOG = {
    "javascript": ("Javascript", "Website"),
    "ios": ("iOS", "Mobile"),
    "python": ("Python", "Server"),
    "http-api": ("HTTP API", "Server"),
}
_WEBHOOKS_METADATA = {
    "id": "54521fdc25e721e32a72ef04",  # classic Webhooks' catalog id as workspace exports show it (unconfirmed)
    "name": "Webhooks",
    "slug": "webhooks",
    "description": "Send data to your own HTTP endpoints.",
    "logos": {"default": ""},
    "options": [],
    "status": "PUBLIC",
    "previousNames": ["Webhooks"],
    "categories": ["Raw Data"],
    "website": "https://segment.com/docs/connections/destinations/catalog/webhooks/",
    "components": [],
    "supportedFeatures": {},
    "supportedMethods": {"pageview": True, "identify": True, "alias": True, "track": True, "group": True},
    "supportedPlatforms": {"browser": True, "server": True, "mobile": True},
    "actions": [],
    "presets": [],
}


class PublicApiError(Exception):
    """An error answer: a status and one entry of the `errors` envelope."""

    def __init__(self, status: int, kind: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.field = status, kind, message, field

    def response(self) -> JSONResponse:
        return JSONResponse(_errors(self.kind, self.message, self.field), self.status)


def _errors(kind: str, message: str, field: str | None = None, data: dict[str, Any] | None = None) -> dict:
    error: dict[str, Any] = {"type": kind, "message": message}
    if field is not None:
        error["field"] = field
    if data is not None:
        error["data"] = data
    return {"errors": [error]}


def _base62(seed: str) -> str:
    """A 22-character id like Segment's, the same for the same seed."""
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:17])
    digits = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    return "".join(digits)


def _cursor(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode()


def _offset(cursor: str) -> int:
    try:
        text = base64.b64decode(cursor, validate=True).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        text = ""
    if not text.isdigit():
        raise PublicApiError(
            422, "input-validation", '"cursor" must be a cursor from a previous page', "pagination.cursor"
        )
    return int(text)


def _count(request: Request) -> int:
    value = request.query_params.get("pagination.count")
    if value is None:
        raise PublicApiError(422, "input-validation", '"count" is required', "pagination.count")
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_COUNT:
        message = f'"count" must be an integer from 1 to {MAX_COUNT}'
        raise PublicApiError(422, "input-validation", message, "pagination.count")
    return int(value)


def _page(request: Request, key: str, items: list[dict[str, Any]]) -> JSONResponse:
    """One page of a list call, as https://docs.segmentapis.com/tag/Pagination shows it."""
    count = _count(request)
    cursor = request.query_params.get("pagination.cursor")
    offset = 0 if cursor is None else _offset(cursor)
    pagination: dict[str, Any] = {
        "current": _cursor(offset),
        "previous": _cursor(max(0, offset - count)) if offset > 0 else None,
        "totalEntries": len(items),
    }
    if offset + count < len(items):
        pagination["next"] = _cursor(offset + count)
    return JSONResponse({"data": {key: items[offset : offset + count], "pagination": pagination}})


def source_json(source: Source) -> dict[str, Any]:
    """A source as SourceV1."""
    name, category = _SOURCE_CATALOG[source.catalog]
    return {
        "id": source.id,
        "slug": source.slug,
        "name": source.name,
        "metadata": {
            "id": _base62(f"catalog:{source.catalog}"),
            "name": name,
            "slug": source.catalog,
            "description": f"The {name} source.",
            "logos": {"default": ""},
            "options": [],
            "categories": [category],
            "isCloudEventSource": False,
            "status": "PUBLIC",
        },
        "workspaceId": WORKSPACE_ID,
        "enabled": True,
        "writeKeys": [],
        "settings": {},
        "labels": [],
    }


def destination_json(source: Source, destination: WebhooksDestination) -> dict[str, Any]:
    """The Webhooks destination's instance on one source, as DestinationV1."""
    return {
        "id": _base62(f"webhooks:{source.id}"),
        "name": "Webhooks",
        "enabled": destination.url is not None,
        "metadata": _WEBHOOKS_METADATA,
        "sourceId": source.id,
        "settings": {
            "hooks": [] if destination.url is None else [{"hook": destination.url, "headers": []}],
            "sharedSecret": "" if destination.secret is None else MASKED,
        },
    }


class PublicApiSandbox:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.destination = runtime.segment.destination

    def app(self) -> ASGIApp:
        """The routes behind Segment's fault injector, with Public API error bodies for unknown paths too."""
        routes = [
            Route("/sources", self.sources, methods=["GET"]),
            Route("/sources/{sourceId}", self.source, methods=["GET"]),
            Route("/sources/{sourceId}/connected-destinations", self.connected_destinations, methods=["GET"]),
            Route("/destinations", self.destinations, methods=["GET"]),
            Route("/destinations/{destinationId}", self.get_destination, methods=["GET"]),
        ]
        app = Starlette(
            routes=routes,
            exception_handlers={PublicApiError: _error_response, 404: _http_error, 405: _http_error},
        )
        return PublicApiFaults(_BearerAuth(app, self.runtime), self.runtime)

    async def sources(self, request: Request) -> Response:
        return _page(request, "sources", [source_json(source) for source in SOURCES])

    async def source(self, request: Request) -> Response:
        source = self._source(request.path_params["sourceId"])
        # GetSourceV1Output also names the source's Tracking Plan; the sandbox's sources have none.
        return JSONResponse({"data": {"source": source_json(source), "trackingPlanId": None}})

    async def connected_destinations(self, request: Request) -> Response:
        source = self._source(request.path_params["sourceId"])
        return _page(request, "destinations", [destination_json(source, self.destination)])

    async def destinations(self, request: Request) -> Response:
        return _page(request, "destinations", [destination_json(source, self.destination) for source in SOURCES])

    async def get_destination(self, request: Request) -> Response:
        wanted = request.path_params["destinationId"]
        for source in SOURCES:
            destination = destination_json(source, self.destination)
            if destination["id"] == wanted:
                return JSONResponse({"data": {"destination": destination}})
        raise PublicApiError(404, "not-found", f"Destination {wanted} not found")

    @staticmethod
    def _source(source_id: str) -> Source:
        """Sources are addressed by id only: a slug is the app's handle, not the API's."""
        source = next((source for source in SOURCES if source.id == source_id), None)
        if source is None:
            raise PublicApiError(404, "not-found", f"Source {source_id} not found")
        return source


async def _error_response(request: Request, exc: PublicApiError) -> Response:
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in the errors envelope, not Starlette's plain text."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return PublicApiError(405, "method-not-allowed", f"{request.method} is not allowed here").response()
    return PublicApiError(404, "not-found", "Resource not found").response()


class _BearerAuth:
    """Every request needs `Authorization: Bearer <the workspace token>`; anything else is a 401."""

    def __init__(self, app: ASGIApp, runtime: Runtime):
        self.app, self.runtime = app, runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(Request(scope)):
            response = PublicApiError(401, "unauthorized", "Missing or invalid API token").response()
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expected = self.runtime.settings.segment_public_api_token
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


class PublicApiFaults(FaultInjector):
    """Segment's fault injector with the Public API's error bodies (the module docstring); stats are keyed by the
    path as https://api.segmentapis.com sees it, e.g. "GET /sources"."""

    def __init__(self, app: ASGIApp, runtime: Runtime):
        super().__init__(app, VENDOR, runtime)

    def _error(self, server_error: bool, retry_after: int) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """A 500, or a 429 with the documented X-RateLimit-* headers and data.msBeforeNext (no Retry-After: the
        docs name none)."""
        headers = [(b"content-type", b"application/json")]
        if server_error:
            return 500, headers, json.dumps(_errors("server", "Internal server error")).encode()
        reset = datetime.now(UTC) + timedelta(seconds=retry_after)
        headers += [
            (b"x-ratelimit-remaining", b"0"),
            (b"x-ratelimit-reset", format_datetime(reset, usegmt=True).encode()),
        ]
        data = {"remainingPoints": 0, "msBeforeNext": retry_after * 1000}
        return 429, headers, json.dumps(_errors("RequestError", "Too many requests", data=data)).encode()
