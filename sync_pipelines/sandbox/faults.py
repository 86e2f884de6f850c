"""Per-vendor ASGI wrapper: counts every request, injects faults and tracks in-flight Xero calls.

Faults are drawn from the runtime's seeded RNG. Latency delays the finished response, so a slow call stays
in flight (and counts towards Xero's concurrent limit) for its whole duration. A dropped connection is
processed normally and then cut short: the headers announce more bytes than are sent and the connection
closes, which is exactly the "did my write land?" case clients must survive.
"""

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sync_pipelines.sandbox.runtime import Runtime
from sync_pipelines.sandbox.salesforce.errors import fault as salesforce_fault

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Sandbox path prefix -> the vendor host it stands for; stats are keyed by the vendor's own path.
_HOST_PREFIXES = {"xero": ("/api", "/identity", "/login"), "segment": (), "salesforce": ()}
XERO_ACCOUNTING_PREFIX = "/api/api.xro/"


def route_path(scope: Scope) -> str:
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def vendor_path(vendor: str, path: str) -> str:
    """ "/api/api.xro/2.0/Invoices" -> "/api.xro/2.0/Invoices", as the request would look in production."""
    for prefix in _HOST_PREFIXES[vendor]:
        if path.startswith(prefix + "/"):
            return path[len(prefix) :]
    return path


class FaultInjector:
    def __init__(self, app: ASGIApp, vendor: str, runtime: Runtime):
        self.app, self.vendor, self.runtime = app, vendor, runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        self.runtime.count(self.vendor, f"{scope['method']} {vendor_path(self.vendor, path)}")
        tenant = None
        if self.vendor == "xero" and path.startswith(XERO_ACCOUNTING_PREFIX):
            tenant = _header(scope, b"xero-tenant-id")
            self.runtime.inflight[tenant] += 1
            with self.runtime.lock:  # how many calls the client had in flight at once, at most
                stats = self.runtime.tenant_stats[tenant]
                stats["peak_in_flight"] = max(stats["peak_in_flight"], self.runtime.inflight[tenant])
        try:
            status = await self._serve(scope, receive, send)
        finally:
            if tenant is not None:
                self.runtime.inflight[tenant] -= 1
        if tenant is not None:
            self.runtime.count_tenant_call(tenant, status)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Answer, or inject a fault in place of the answer; the status sent (a dropped connection's too)."""
        config = self.runtime.faults[self.vendor]
        draw = self.runtime.draw()
        error_cut = config["error_rate"]
        rate_cut = error_cut + config["rate_limit_rate"]
        drop_cut = rate_cut + config["drop_rate"]
        if draw < rate_cut:
            self.runtime.note_fault()
            status, headers, body = self._error(draw < error_cut, int(config["retry_after_seconds"]))
            messages = [
                {"type": "http.response.start", "status": status, "headers": headers},
                {"type": "http.response.body", "body": body},
            ]
        else:
            messages = []

            async def capture(message: Message) -> None:
                messages.append(message)

            await self.app(scope, receive, capture)
        if config["latency_ms"]:
            await asyncio.sleep(config["latency_ms"] / 1000)
        if rate_cut <= draw < drop_cut:
            self.runtime.note_fault()
            await _send_truncated(messages, send)
        else:
            for message in messages:
                await send(message)
        return next((m["status"] for m in messages if m["type"] == "http.response.start"), 0)

    def _error(self, server_error: bool, retry_after: int) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """A 5xx or 429 shaped like the vendor's own (xero.md §4.5, §5; segment.md §2; salesforce.md §5, which
        has no 429: its rate-limit fault is the retryable concurrent-request 403)."""
        if self.vendor == "salesforce":
            status, body = salesforce_fault(server_error, self.runtime.draw())
            return status, _headers("application/json", {}), body
        if self.vendor == "xero":
            if not server_error:
                return (
                    429,
                    _headers(
                        "text/plain",
                        {
                            "Retry-After": str(retry_after),
                            "X-Rate-Limit-Problem": "minute",
                            "X-MinLimit-Remaining": "0",
                        },
                    ),
                    b"Rate limit exceeded",
                )
            choice = self.runtime.draw()
            if choice < 1 / 3:
                body = {
                    "Type": None,
                    "Title": "An error occurred",
                    "Status": 500,
                    "Detail": "An unhandled error occurred in Xero",
                    "Instance": str(uuid.uuid4()),
                    "Extensions": {},
                }
                return 500, _headers("application/json", {}), json.dumps(body).encode()
            text = (
                "The Xero API is currently offline for maintenance" if choice < 2 / 3 else "The Organisation is offline"
            )
            return 503, _headers("text/plain", {}), text.encode()
        if not server_error:
            body = {"code": "rate_limit_exceeded", "message": "Too Many Requests"}
            return (
                429,
                _headers("application/json", {"Retry-After": str(retry_after), "X-RateLimit-Reset": str(retry_after)}),
                json.dumps(body).encode(),
            )
        if self.runtime.draw() < 0.5:
            return (
                500,
                _headers("application/json", {}),
                json.dumps({"code": "internal_error", "message": "Internal Server Error"}).encode(),
            )
        return 502, _headers("text/html", {}), b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _headers(media_type: str, extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", media_type.encode())] + [(k.lower().encode(), v.encode()) for k, v in extra.items()]


async def _send_truncated(messages: list[Message], send: Send) -> None:
    """Announce the full length plus more, send half the body, then return without finishing the response."""
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body) + 1024).encode()))
    await send({"type": "http.response.start", "status": start["status"], "headers": headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
