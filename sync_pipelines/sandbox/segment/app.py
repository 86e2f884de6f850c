"""The Segment HTTP Tracking API sandbox, mounted under /segment (mirrors https://api.segment.io).

Like Segment, it answers 200 for everything it accepts for processing and silently drops what it would
discard later (segment.md §2); the admin API exposes both the accepted and the dropped messages.

That includes a wrong write key: Segment's edge does not validate keys, it answers 200 {"success": true} and the
messages never reach a source (maintainers in segmentio/analytics-node#59 and segmentio/analytics-ruby#136,
reproduced with curl in segmentio/analytics-go#205, which also finds an empty key refused with 400). The sandbox
drops such messages with reason "invalid_write_key".

The write key belongs to a source of the workspace, "Xero (sync_pipelines)" (sources.TRACKING_API_SOURCE), and every
source is connected to the Webhooks destination: an accepted message is also queued for it, completed as Segment
passes a server-side message on (workspace.SegmentWorkspace.forward), in the transaction that stores it. A batch's
top-level sentAt is each item's unless the item has its own, as analytics-python sends it once per batch
(segment.md §5) and Segment corrects every item's timestamp with it (§3).
"""

import base64
import gzip
import json
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipelines.sandbox.runtime import Runtime
from sync_pipelines.sandbox.segment.sources import iso, now
from sync_pipelines.sandbox.segment.spec import CALL_TYPES, SINGLE_LIMIT, drop_reason
from sync_pipelines.sandbox.store import dumps

BATCH_LIMIT = 500 * 1024  # segment.md §2: whole /batch body
MAX_BATCH_ITEMS = 2500  # segment.md §2: larger batches get 200 but are dropped
BATCH_PATHS = ("batch", "import")  # /v1/import is an alias of /v1/batch (segment.md §1)


def _error(status: int, code: str, message: str) -> JSONResponse:
    """Error bodies carry "code" and "message", the keys analytics-python reads (segment.md §2)."""
    return JSONResponse({"code": code, "message": message}, status)


def _size(value: Any) -> int:
    return len(dumps(value).encode())


class SegmentSandbox:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/{call}", self.receive, methods=["POST"])])

    def _write_key(self, request: Request, body: dict) -> str | None:
        """Basic auth with the write key as username, or "writeKey" in the body (segment.md §1)."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                return base64.b64decode(header[6:]).decode().partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                return None
        key = body.get("writeKey")
        return key if isinstance(key, str) else None

    async def receive(self, request: Request) -> Response:
        call = request.path_params["call"]
        if call not in CALL_TYPES + BATCH_PATHS:
            return _error(404, "not_found", f"Unknown endpoint /v1/{call}")
        raw = await request.body()
        if request.headers.get("content-encoding", "").lower() == "gzip":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):
                return _error(400, "invalid_request", "Body is not valid gzip")
        batch = call in BATCH_PATHS
        if len(raw) > (BATCH_LIMIT if batch else SINGLE_LIMIT):
            return _error(400, "payload_too_large", "Exceed payload limit")
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "invalid_json", "Invalid JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_request", "Body must be a JSON object")
        write_key = self._write_key(request, body)
        if not write_key:
            return _error(400, "invalid_request", "A write key is required")
        if batch:
            items = body.get("batch")
            if not isinstance(items, list):
                return _error(400, "invalid_request", '"batch" must be an array')
            if any(_size(item) > SINGLE_LIMIT for item in items):
                return _error(400, "payload_too_large", "Exceed payload limit")
            items = [_merge_batch_defaults(item, body) for item in items]
        else:
            items = [{**{k: v for k, v in body.items() if k != "writeKey"}, "type": call}]
        sent_at = body.get("sentAt") if batch else None
        self._record(items, write_key == self.runtime.settings.write_key, sent_at)
        return JSONResponse({"success": True})

    def _record(self, items: list[Any], known_key: bool, sent_at: Any) -> None:
        """Accept or silently drop each message, dedupe on messageId only (segment.md §4); forward what is
        accepted to the destination (the module docstring)."""
        store = self.runtime.store
        received = now()
        with store.transaction() as conn:
            batch_reason = None if known_key else "invalid_write_key"
            if batch_reason is None and len(items) > MAX_BATCH_ITEMS:
                batch_reason = "batch_too_large"
            if batch_reason is not None:
                for item in items:
                    store.drop_message(conn, item, batch_reason)
                return
            for item in items:
                reason = drop_reason(item)
                if reason is None:
                    message = {
                        **item,
                        "messageId": item.get("messageId") or str(uuid.uuid4()),
                        "receivedAt": iso(received),
                    }
                    if store.accept_message(conn, str(message["messageId"]), message):
                        sent = {"sentAt": sent_at} if sent_at is not None and "sentAt" not in item else {}
                        self.runtime.segment.forward(conn, {**message, **sent}, received)
                        continue
                    reason = "duplicate_message_id"
                store.drop_message(conn, item, reason)


def _merge_batch_defaults(item: Any, body: dict) -> Any:
    """Top-level context/integrations of a batch apply to each item unless the item overrides them (segment.md §3)."""
    if not isinstance(item, dict):
        return item
    merged = dict(item)
    for key in ("context", "integrations"):
        if isinstance(body.get(key), dict):
            merged[key] = {**body[key], **(item.get(key) or {})}
    return merged
