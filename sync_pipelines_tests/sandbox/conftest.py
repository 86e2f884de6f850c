"""Fixtures for testing the sandbox itself over real HTTP."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

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
            body = self.request(
                "GET", path, headers=headers, params={**params, "page": page, "pageSize": page_size}
            ).json()
            records.extend(body[path])
            if page >= body["pagination"]["pageCount"]:
                return records
            page += 1


@pytest.fixture
def api(sandbox: SandboxServer) -> XeroApi:
    return XeroApi(sandbox)
