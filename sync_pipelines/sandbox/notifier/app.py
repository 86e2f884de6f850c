"""Capture of outgoing team notifications: a Slack incoming-webhook lookalike and a generic JSON receiver.

{base}/slack/services/<path> stands for https://hooks.slack.com/services/<path>; {base}/webhook/<path> takes any
JSON. What arrives is listed, in arrival order, by GET /_admin/notifications.
"""

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sync_pipelines.sandbox.runtime import Runtime


async def _json_body(request: Request) -> Any:
    """The parsed body, or ValueError when it is not JSON (bad UTF-8 included)."""
    return json.loads(await request.body())


class NotificationCapture:
    def __init__(self, runtime: Runtime):
        self.store = runtime.store

    def routes(self) -> list[Route]:
        return [
            Route("/slack/services/{path:path}", self.slack, methods=["POST"]),
            Route("/webhook/{path:path}", self.generic, methods=["POST"]),
        ]

    async def slack(self, request: Request) -> Response:
        """200 "ok" for a message with text or blocks, else Slack's plain-text error strings (Slack API changelog
        2016-05-17, "Improving error conditions for Incoming Webhooks": 400 invalid_payload)."""
        try:
            body = await _json_body(request)
        except ValueError:
            return PlainTextResponse("invalid_payload", 400)
        if not isinstance(body, dict):
            return PlainTextResponse("invalid_payload", 400)
        if not body.get("text") and not body.get("blocks"):
            return PlainTextResponse("no_text", 400)
        self.store.add_notification("slack", request.path_params["path"], body)
        return PlainTextResponse("ok")

    async def generic(self, request: Request) -> Response:
        try:
            body = await _json_body(request)
        except ValueError:
            return PlainTextResponse("invalid JSON", 400)
        self.store.add_notification("generic", request.path_params["path"], body)
        return Response(status_code=200)
