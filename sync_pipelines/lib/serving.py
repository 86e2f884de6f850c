"""An ASGI app under uvicorn on one socket: in a daemon thread (tests, `dev`) or in the foreground (CLI)."""

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

TLS_SHUTDOWN_SECONDS = 3


class BackgroundServer:
    """Binds first, so `url` holds the real port before serving (port 0 picks a free one)."""

    def __init__(
        self,
        app: Callable[[str], ASGIApp],
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "server",
        started: Callable[[], None] = lambda: None,
        stopped: Callable[[], None] = lambda: None,
        tls: Path | None = None,
    ):
        """`app` builds the application from the URL it is served at; `started` and `stopped` bracket serving.

        `tls`, a PEM file holding the private key and the certificate chain, makes it serve HTTPS.
        """
        self.host, self.name, self.tls = host, name, tls
        self._make_app, self._started, self._stopped = app, started, stopped
        self._requested_port = port
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where it listens, or will: a free port is only known once bound."""
        port = self._port or self._requested_port
        if not port:
            raise RuntimeError(f"the {self.name} is not listening yet")
        return f"{'https' if self.tls else 'http'}://{self.host}:{port}"

    def _bind(self) -> tuple[socket.socket, uvicorn.Server]:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._make_app(self.url),
            log_level="warning",
            lifespan="off",
            access_log=False,
            ssl_certfile=self.tls,  # the key comes from the same file when ssl_keyfile is unset
            # A client idling on a kept-alive TLS connection does not answer the server's close_notify, and
            # asyncio would wait 30 s for it on every shutdown; in-flight requests still get this long to finish.
            timeout_graceful_shutdown=TLS_SHUTDOWN_SECONDS if self.tls else None,
        )
        return sock, uvicorn.Server(config)

    def start(self):
        """Serve in a daemon thread; returns once the socket accepts connections."""
        if self._thread is not None:
            raise RuntimeError(f"the {self.name} is already running")
        sock, self._server = self._bind()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=self.name, daemon=True
        )
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the {self.name} failed to start")
            self._thread.join(0.01)
        self._started()
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None
        self._stopped()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (uvicorn handles SIGINT/SIGTERM)."""
        sock, server = self._bind()
        self._started()
        try:
            server.run(sockets=[sock])
        finally:
            self._stopped()

    def __enter__(self):
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
