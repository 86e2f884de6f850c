"""Fixtures for testing the sandbox itself over real HTTP."""

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from sync_pipelines.lib import json_codec
from sync_pipelines.sandbox import SandboxServer

CLIENT = ("sandbox-client-id", "sandbox-client-secret")
REDIRECT_URI = "http://127.0.0.1/callback"
SCOPE = "openid offline_access accounting.transactions accounting.contacts"


def authorize(base: str, scope: str = SCOPE) -> dict:
    """Run the browserless code flow (the sandbox auto-consents) and return the token response."""
    consent = requests.get(
        f"{base}/xero/login/identity/connect/authorize",
        params={
            "response_type": "code",
            "client_id": CLIENT[0],
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": "s1",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert consent.status_code == 302
    query = parse_qs(urlsplit(consent.headers["location"]).query)
    assert query["state"] == ["s1"]
    response = token(base, grant_type="authorization_code", code=query["code"][0], redirect_uri=REDIRECT_URI)
    assert response.status_code == 200, response.text
    return response.json()


def token(base: str, **form: str) -> requests.Response:
    return requests.post(f"{base}/xero/identity/connect/token", data=form, auth=CLIENT, timeout=10)


class XeroApi:
    """A connected caller of the Accounting API with the headers Xero requires (xero.md §1.7, §2.1)."""

    def __init__(self, server: SandboxServer):
        self.base = server.url
        self.tokens = authorize(self.base)
        self.tenant_id = server.tenant_id

    def headers(self, **extra: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.tokens['access_token']}",
            "xero-tenant-id": self.tenant_id,
            "Accept": "application/json",
            **extra,
        }

    def request(self, method: str, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        return requests.request(
            method, f"{self.base}/xero/api/api.xro/2.0/{path}", headers=headers or self.headers(), timeout=30, **kwargs
        )

    def all_pages(self, path: str, page_size: int = 1000, headers: dict | None = None, **params) -> list[dict]:
        """Every record, following pagination.pageCount (xero.md §3.1)."""
        records, page = [], 1
        while True:
            answer = self.request("GET", path, headers=headers, params={**params, "page": page, "pageSize": page_size})
            body = json_codec.response_json(answer)
            records.extend(body[path])
            if page >= body["pagination"]["pageCount"]:
                return records
            page += 1


@pytest.fixture
def api(sandbox: SandboxServer) -> XeroApi:
    return XeroApi(sandbox)


def xero_signature(key: str, body: bytes) -> str:
    """What a receiver computes: Base64 HMAC-SHA256 of the raw body with the key's UTF-8 bytes (xero.md §6)."""
    return base64.b64encode(hmac.new(key.encode("utf-8"), body, hashlib.sha256).digest()).decode()


class Receiver:
    """A webhook receiver on a free loopback port: records every POST (raw body, lower-cased headers) and answers
    500 to the first `failures` of them; with `key` set it answers 401 to a signature that does not verify. A
    successful answer carries `answer_body`; `refuse` (body -> bool) turns more requests away with a 500."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self.answered: list[int] = []  # the status of each request, in the same order
        self.failures = 0
        self.key: str | None = None
        self.answer_body = b""
        self.refuse: Callable[[bytes], bool] = lambda body: False
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/xero/webhooks"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="receiver", daemon=True
        )
        self._thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver._answer(body, {k.lower(): v for k, v in self.headers.items()})
                answer = receiver.answer_body if status == 200 else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the test asserts on what was recorded."""

        return Handler

    def _answer(self, body: bytes, headers: dict[str, str]) -> int:
        with self._lock:
            self.requests.append((body, headers))
            status = self._status(body, headers)
            self.answered.append(status)
            return status

    def _status(self, body: bytes, headers: dict[str, str]) -> int:
        if self.failures:
            self.failures -= 1
            return 500
        if self.refuse(body):
            return 500
        if self.key is not None and not hmac.compare_digest(
            headers.get("x-xero-signature", ""), xero_signature(self.key, body)
        ):
            return 401
        return 200

    def payloads(self) -> list[dict]:
        """Each distinct payload that carried events, in first-arrival order (retries and replays collapse)."""
        seen: dict[bytes, dict] = {}
        for body, _ in list(self.requests):
            payload = json.loads(body)
            if payload["events"] and body not in seen:
                seen[body] = payload
        return list(seen.values())

    def events(self) -> list[dict]:
        return [event for payload in self.payloads() for event in payload["events"]]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()
