"""Admin API under /_admin for tests and demos: reset, limits, faults, captured notifications and stats.

Each vendor package serves its own admin routes under /_admin/<vendor> (sandbox/xero/admin.py and its siblings),
built with the helpers here. Never fault-injected, never rate-limited and unauthenticated: the sandbox only listens
on 127.0.0.1.
"""

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipelines.sandbox.runtime import LIMIT_NAMES, Runtime
from sync_pipelines.sandbox.xero.dates import now_ms


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    body = json.loads(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _only(body: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    if set(body) - allowed:
        raise ValueError(f"unknown fields {sorted(set(body) - allowed)}; expected some of {sorted(allowed)}")
    return body


async def _value_error(request: Request, exc: Exception) -> Response:
    return _bad(str(exc))


class AdminApi:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.store = runtime.store

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/reset", self.reset, methods=["POST"]),
                Route("/limits", self.limits, methods=["GET", "PUT"]),
                Route("/faults", self.faults, methods=["GET", "PUT"]),
                Route("/notifications", self.notifications, methods=["GET"]),
                Route("/stats", self.stats, methods=["GET"]),
                Route("/stats/reset", self.reset_stats, methods=["POST"]),
            ],
            exception_handlers={ValueError: _value_error},
        )

    async def reset(self, request: Request) -> Response:
        body = await _json(request)
        unknown = set(body) - {"seed", "invoices", "contacts", "malformed"}
        if unknown:
            return _bad(f"unknown reset options: {sorted(unknown)}")
        return JSONResponse(self.runtime.reset(**{k: int(v) for k, v in body.items()}))

    async def limits(self, request: Request) -> Response:
        if request.method == "PUT":
            body = await _json(request)
            if set(body) - set(LIMIT_NAMES) or any(int(v) < 1 for v in body.values()):
                return _bad(f"limits are positive integers named {', '.join(LIMIT_NAMES)}")
            self.runtime.limits.update({k: int(v) for k, v in body.items()})
        return JSONResponse(self.runtime.limits)

    async def faults(self, request: Request) -> Response:
        extra: dict[str, Any] = {}
        if request.method == "PUT":
            body = await _json(request)
            try:
                self.runtime.set_faults(body)
            except (ValueError, TypeError) as exc:
                return _bad(str(exc))
            if body.get("expire_access_tokens"):
                # One shot: every access token issued so far now fails with 401 TokenExpired (xero.md §1.9).
                extra["expired_access_tokens"] = self.store.expire_access_tokens(now_ms())
        return JSONResponse({**self.runtime.faults, "expire_access_tokens": False, **extra})

    async def notifications(self, request: Request) -> Response:
        return JSONResponse(self.store.notifications())

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.runtime.stats_snapshot())

    async def reset_stats(self, request: Request) -> Response:
        self.runtime.reset_stats()
        return JSONResponse(self.runtime.stats_snapshot())
