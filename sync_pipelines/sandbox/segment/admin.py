"""Admin routes under /_admin/segment: what the Tracking API accepted and dropped, and the workspace's sources
emitting messages to its Webhooks destination (sources.py, destination.py).

Like the rest of /_admin they are unauthenticated and never fault-injected. Errors come back as {"error"} with a
400 (404 for an unknown source or delivery).
"""

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipelines.sandbox.admin import _bad, _json, _only, _value_error
from sync_pipelines.sandbox.segment.sources import SOURCES, find_source
from sync_pipelines.sandbox.segment.workspace import Refused, SegmentWorkspace
from sync_pipelines.sandbox.store import Store

_DESTINATION_OPTIONS = {"url", "secret", "batch_size", "attempts", "backoff_seconds"}


class SegmentAdmin:
    def __init__(self, store: Store, workspace: SegmentWorkspace):
        self.store = store
        self.workspace = workspace
        self.destination = workspace.destination

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/messages", self.messages, methods=["GET"]),
                Route("/dropped", self.dropped, methods=["GET"]),
                Route("/sources", self.sources, methods=["GET"]),
                Route("/emit", self.emit, methods=["POST"]),
                Route("/destination", self.configure, methods=["GET", "PUT"]),
                Route("/webhook-deliveries", self.deliveries, methods=["GET"]),
                Route("/webhook-deliveries/{seq:int}/redeliver", self.redeliver, methods=["POST"]),
                Route("/webhooks/flush", self.flush, methods=["POST"]),
            ],
            exception_handlers={ValueError: _value_error},
        )

    # -- the Tracking API's side --------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        return JSONResponse(self.store.messages())

    async def dropped(self, request: Request) -> Response:
        """Each as {"message", "reason"}, in arrival order."""
        return JSONResponse(self.store.dropped())

    # -- sources ------------------------------------------------------------------------------

    async def sources(self, request: Request) -> Response:
        """[{id, slug, name, enabled, metadata: {slug}, library, channel}]."""
        return JSONResponse([source.as_json() for source in SOURCES])

    async def emit(self, request: Request) -> Response:
        """{"source": slug or id, "messages": [message, ...]} -> {"source": id, "messages": [as delivered]}.

        A message Segment would drop refuses the whole emission: 400 {"error", "reasons": [{"index", "reason"}]}.
        """
        body = _only(await _json(request), {"source", "messages"})
        source = find_source(body.get("source")) if isinstance(body.get("source"), str) else None
        if source is None:
            return _bad(f"no source has slug or id {body.get('source')!r}", 404)
        messages = body.get("messages")
        if not isinstance(messages, list):
            return _bad('"messages" is a list of identify, track, group, page, screen or alias messages')
        try:
            emitted = await run_in_threadpool(self.workspace.emit, source, messages)
        except Refused as refused:
            return JSONResponse({"error": str(refused), "reasons": refused.reasons}, 400)
        return JSONResponse({"source": source.id, "messages": emitted})

    # -- the Webhooks destination ---------------------------------------------------------------

    async def configure(self, request: Request) -> Response:
        """{url, secret, batch_size, attempts, backoff_seconds, queued}; PUT changes any of them. A new sandbox's
        destination is off: url null (setting it back to null drops the queued messages), secret null (unsigned),
        batch_size 1 (one message per POST; more: a JSON array of up to that many)."""
        destination = self.destination
        if request.method == "PUT":
            body = _only(await _json(request), _DESTINATION_OPTIONS)
            attempts = body.get("attempts", destination.attempts)
            backoff = body.get("backoff_seconds", destination.backoff_seconds)
            if type(attempts) is not int or attempts < 1 or not isinstance(backoff, int | float) or backoff < 0:
                return _bad("attempts must be at least 1 and backoff_seconds not negative")
            await run_in_threadpool(
                destination.configure,
                body.get("url", destination.url),
                body.get("secret", destination.secret),
                body.get("batch_size", destination.batch_size),
            )
            destination.attempts, destination.backoff_seconds = attempts, backoff
        return JSONResponse(
            {
                "url": destination.url,
                "secret": destination.secret,
                "batch_size": destination.batch_size,
                "attempts": destination.attempts,
                "backoff_seconds": destination.backoff_seconds,
                "queued": await run_in_threadpool(destination.queue_length),
            }
        )

    async def deliveries(self, request: Request) -> Response:
        """[{seq, message_ids, attempts: [status or error name], delivered}] in the order they were sent."""
        return JSONResponse(await run_in_threadpool(self.workspace.store.deliveries))

    async def redeliver(self, request: Request) -> Response:
        """Post a logged delivery's exact body and signature again -> {seq, status}."""
        seq = request.path_params["seq"]
        if self.destination.url is None:
            return _bad("the destination has no url")
        outcome = await run_in_threadpool(self.destination.redeliver, seq)
        if outcome is None:
            return _bad(f"no delivery has seq {seq}", 404)
        return JSONResponse({"seq": seq, "status": outcome})

    async def flush(self, request: Request) -> Response:
        """{"timeout": s (30)}: wait (in a worker thread: the receiver may be this very server) until nothing is
        queued or being posted -> {idle, queued}, 504 if the timeout passed first."""
        timeout = float((await _json(request)).get("timeout", 30))
        idle = await run_in_threadpool(self.destination.wait_idle, timeout)
        queued = await run_in_threadpool(self.destination.queue_length)
        return JSONResponse({"idle": idle, "queued": queued}, 200 if idle else 504)
