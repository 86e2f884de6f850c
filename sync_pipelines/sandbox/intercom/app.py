"""The Intercom sandbox app, mounted at /intercom (intercom.md §1).

A production client differs only by base URL: "{base}/intercom" vs "https://api.intercom.io". Requests pass
the sandbox's fault injector first, with Intercom's own error shapes for injected 429s and 5xx.
"""

import json
import time

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sync_pipelines.sandbox.faults import FaultInjector, route_path
from sync_pipelines.sandbox.intercom.api import Api
from sync_pipelines.sandbox.intercom.errors import IntercomError, error_list, not_found
from sync_pipelines.sandbox.intercom.workspace import WINDOW_SECONDS, IntercomWorkspace
from sync_pipelines.sandbox.runtime import Runtime

VENDOR = "intercom"


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer with an error.list, not Starlette's plain text."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return IntercomError(405, "method_not_allowed", f"{request.method} is not allowed here").response()
    return not_found().response()


class SeedOnFirstUse:
    """Seed the workspace before the first request that reaches it (see workspace.py)."""

    def __init__(self, app: ASGIApp, workspace: IntercomWorkspace):
        self.app, self.workspace = app, workspace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.workspace.ensure_seeded()
        await self.app(scope, receive, send)


class IntercomFaults(FaultInjector):
    """The shared fault injector (counting, latency, 5xx/429 draws, dropped connections) with Intercom's error
    bodies; stats are keyed by the path as https://api.intercom.io would see it."""

    def __init__(self, app: ASGIApp, runtime: Runtime):
        super().__init__(app, VENDOR, runtime)
        self.workspace = runtime.intercom

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.runtime.count(VENDOR, f"{scope['method']} {route_path(scope)}")
        await self._serve(scope, receive, send)

    def _error(self, server_error: bool, retry_after: int) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """A 429 rate_limit_exceeded with X-RateLimit-* headers (intercom.md §3), or a 500 server_error."""
        headers = [(b"content-type", b"application/json")]
        if server_error:
            return 500, headers, json.dumps(error_list("server_error", "Internal server error")).encode()
        limit = self.workspace.limiter.limit
        reset = int(time.time()) + max(1, retry_after)
        headers += [
            (b"x-ratelimit-limit", str(limit).encode()),
            (b"x-ratelimit-remaining", b"0"),
            (b"x-ratelimit-reset", str(reset).encode()),
        ]
        message = f"Exceeded rate limit of {limit} in {WINDOW_SECONDS}_seconds"
        return 429, headers, json.dumps(error_list("rate_limit_exceeded", message)).encode()


def intercom_app(runtime: Runtime) -> ASGIApp:
    workspace = runtime.intercom
    app = Starlette(
        routes=Api(workspace).routes(),
        exception_handlers={404: _http_error, 405: _http_error},
    )
    return IntercomFaults(SeedOnFirstUse(app, workspace), runtime)
