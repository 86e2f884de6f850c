"""Admin routes under /_admin/segment: what the Tracking API accepted and dropped, the workspace's sources emitting
messages to its Webhooks destination (sources.py, destination.py), a seeded history (seed.py) emitted or written as
the AWS S3 destination's archive (archive.py), and whether the Tracking API's messages are forwarded (workspace.py).

Like the rest of /_admin they are unauthenticated and never fault-injected. Errors come back as {"error"} with a
400 (404 for an unknown source or delivery).
"""

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipelines.sandbox.admin import _bad, _json, _only, _value_error
from sync_pipelines.sandbox.segment.archive import archive_history
from sync_pipelines.sandbox.segment.seed import MAX_PEOPLE, history, summary
from sync_pipelines.sandbox.segment.sources import SOURCES, find_source
from sync_pipelines.sandbox.segment.workspace import Refused, SegmentWorkspace
from sync_pipelines.sandbox.store import Store

_DESTINATION_OPTIONS = {"url", "secret", "batch_size", "attempts", "backoff_seconds"}
DEFAULT_PEOPLE = 50


def _whole(body: dict[str, Any], name: str, default: int, low: int | None = None, high: int | None = None) -> int:
    """A whole-number option, within the bounds given."""
    value = body.get(name, default)
    if type(value) is not int or (low is not None and value < low) or (high is not None and value > high):
        bounds = "".join(f" {word} {bound}" for word, bound in (("from", low), ("to", high)) if bound is not None)
        raise ValueError(f"{name} must be a whole number{bounds}, not {value!r}")
    return value


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
                Route("/seed", self.seed, methods=["POST"]),
                Route("/archive", self.archive, methods=["POST"]),
                Route("/settings", self.settings, methods=["GET", "PUT"]),
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

    # -- a seeded history -----------------------------------------------------------------------

    def _history_options(self, body: dict[str, Any]) -> tuple[int, int]:
        """seed (default: the sandbox's, as /_admin/reset last set it) and people (default 50)."""
        seed = _whole(body, "seed", self.store.meta_get("seed"))
        return seed, _whole(body, "people", DEFAULT_PEOPLE, 1, MAX_PEOPLE)

    async def seed(self, request: Request) -> Response:
        """{"seed", "people"} -> {seed, people, messages, counts: {types, events, sources}, message_ids}: the sources
        emit the seeded history through the workspace, so the destination delivers it when it has a URL.

        Its messageIds are the seed's: the same history twice without /_admin/reset is refused, 400 {"error",
        "reasons"}, as any emission of messageIds already seen (segment.md §4)."""
        seed, people = self._history_options(_only(await _json(request), {"seed", "people"}))
        emissions = await run_in_threadpool(history, seed, people)
        try:
            await run_in_threadpool(self.workspace.emit_all, emissions)
        except Refused as refused:
            return JSONResponse({"error": str(refused), "reasons": refused.reasons}, 400)
        return JSONResponse({"seed": seed, "people": people, **summary(emissions)})

    async def archive(self, request: Request) -> Response:
        """{"path": an existing absolute directory, "seed", "people" (as /seed), "messages": n (all)} -> {path, files,
        messages}: the seeded history, or its first n messages, written under `path` as the AWS S3 destination lays
        it out (archive.py); files are keys relative to `path`. Nothing is emitted or delivered."""
        body = _only(await _json(request), {"path", "seed", "people", "messages"})
        bucket = Path(body["path"]) if isinstance(body.get("path"), str) else None
        if bucket is None or not bucket.is_absolute() or not bucket.is_dir():
            return _bad('"path" must name an existing directory by its absolute path')
        seed, people = self._history_options(body)
        limit = _whole(body, "messages", 0, low=0) if "messages" in body else None
        written = await run_in_threadpool(archive_history, bucket, seed, people, limit)
        return JSONResponse({"path": str(bucket), **written})

    async def settings(self, request: Request) -> Response:
        """{"forward_tracking_api": true}: whether what our product sends to the Tracking API is also queued for
        the destination, as its source's messages (workspace.py); PUT changes it."""
        if request.method == "PUT":
            body = _only(await _json(request), {"forward_tracking_api"})
            forward = body.get("forward_tracking_api", self.workspace.forward_tracking_api)
            if not isinstance(forward, bool):
                return _bad("forward_tracking_api must be true or false")
            self.workspace.forward_tracking_api = forward
        return JSONResponse({"forward_tracking_api": self.workspace.forward_tracking_api})
