"""Admin routes under /_admin/segment: the messages the Tracking API accepted and the ones it silently dropped."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipelines.sandbox.store import Store


class SegmentAdmin:
    def __init__(self, store: Store):
        self.store = store

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/messages", self.messages, methods=["GET"]),
                Route("/dropped", self.dropped, methods=["GET"]),
            ]
        )

    async def messages(self, request: Request) -> Response:
        return JSONResponse(self.store.messages())

    async def dropped(self, request: Request) -> Response:
        """Each as {"message", "reason"}, in arrival order."""
        return JSONResponse(self.store.dropped())
