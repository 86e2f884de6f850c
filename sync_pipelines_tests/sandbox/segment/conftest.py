"""A receiver for the Segment workspace's Webhooks destination, on a free 127.0.0.1 port."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Endpoint:
    """Records every POST (raw body, lower-cased headers) in arrival order; answers the statuses put in `answers`,
    one per request, then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self.answers: list[int] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/segment/webhooks"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="segment-endpoint", daemon=True
        )
        self._thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with endpoint._lock:
                    endpoint.requests.append((body, {k.lower(): v for k, v in self.headers.items()}))
                    status = endpoint.answers.pop(0) if endpoint.answers else 200
                    endpoint._arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the test asserts on what was recorded."""

        return Handler

    def bodies(self) -> list[bytes]:
        return [body for body, _ in list(self.requests)]

    def wait_for(self, count: int) -> None:
        """Return once `count` requests arrived (for a delivery still being retried, which a flush would wait out);
        a delivery that never comes is left to the suite's per-test timeout, not to a clock here."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.requests) >= count)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    yield server
    server.close()
