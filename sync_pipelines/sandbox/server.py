"""SandboxServer: one Starlette app (Xero, Segment, admin) served by uvicorn on a loopback address.

Tests start it on port 0 in a background thread; the CLI calls run_sandbox() to serve in the foreground.
"""

import ipaddress
import socket
import threading
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from sync_pipelines.sandbox.admin import AdminApi
from sync_pipelines.sandbox.faults import FaultInjector
from sync_pipelines.sandbox.notify import NotificationCapture
from sync_pipelines.sandbox.runtime import Runtime, SandboxSettings
from sync_pipelines.sandbox.segment import SegmentSandbox
from sync_pipelines.sandbox.store import Store
from sync_pipelines.sandbox.xero import XeroSandbox

__all__ = ["SandboxServer", "SandboxSettings", "build_app", "run_sandbox"]


def build_app(runtime: Runtime) -> Starlette:
    """The URL layout of DESIGN.md: /xero/{login,identity,api}, /segment, /_admin, plus notification capture."""
    return Starlette(
        routes=[
            Mount("/xero", app=FaultInjector(XeroSandbox(runtime).app(), "xero", runtime)),
            Mount("/segment", app=FaultInjector(SegmentSandbox(runtime).app(), "segment", runtime)),
            Mount("/_admin", app=AdminApi(runtime).app()),
            *NotificationCapture(runtime).routes(),
        ]
    )


def _loopback(host: str) -> str:
    """The sandbox has no auth on /_admin, so it refuses to listen anywhere but loopback."""
    address = "127.0.0.1" if host == "localhost" else host
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"the sandbox only binds loopback addresses, not {host!r}")
    return address


class SandboxServer:
    """A running sandbox; state lives in settings.state_path and is seeded only when that file is new."""

    def __init__(self, settings: SandboxSettings, host: str = "127.0.0.1", port: int = 0):
        self.settings = settings
        self.host = _loopback(host)
        self._requested_port = port
        self._store = Store(settings.state_path)
        self.runtime = Runtime(settings, self._store)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the sandbox is not listening yet")
        return f"http://{self.host}:{self._port}"

    @property
    def tenant_id(self) -> str:
        """The one Xero tenant's ID (also listed by GET /connections)."""
        return self.runtime.tenant_id

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._port = sock.getsockname()[1]
        self.runtime.webhooks.base_url = self.url
        return sock

    def _uvicorn(self) -> uvicorn.Server:
        config = uvicorn.Config(build_app(self.runtime), log_level="warning", lifespan="off", access_log=False)
        return uvicorn.Server(config)

    def start(self) -> "SandboxServer":
        """Serve in a daemon thread; returns once the socket accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the sandbox is already running")
        sock = self._bind()
        self._server = self._uvicorn()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="sandbox", daemon=True
        )
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the sandbox server failed to start")
            self._thread.join(0.01)
        self.runtime.webhooks.start()
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None
        self.runtime.webhooks.stop()
        self._store.close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (uvicorn handles SIGINT/SIGTERM)."""
        sock = self._bind()
        self._server = self._uvicorn()
        self.runtime.webhooks.start()
        try:
            self._server.run(sockets=[sock])
        finally:
            self.runtime.webhooks.stop()
            self._store.close()

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_sandbox(settings: SandboxSettings, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Entry point for `sync-pipelines sandbox`: serve until interrupted."""
    SandboxServer(settings, host, port).serve_forever()
