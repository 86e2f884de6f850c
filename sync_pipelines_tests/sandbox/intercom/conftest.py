"""A caller of the sandbox's Intercom workspace over real HTTP, pinned to API version 2.16."""

import pytest
import requests

from sync_pipelines.lib import json_codec
from sync_pipelines.sandbox import SandboxServer

TOKEN = "sandbox-intercom-token"
VERSION = "2.16"


class IntercomApi:
    """Bearer-token requests against {base}/intercom, the sandbox's https://api.intercom.io."""

    def __init__(self, server: SandboxServer):
        self.base = f"{server.url}/intercom"

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}", "Intercom-Version": VERSION, "Accept": "application/json", **extra}

    def request(self, method: str, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        headers = self.headers() if headers is None else headers
        return requests.request(method, self.base + path, headers=headers, timeout=60, **kwargs)

    def ok(self, method: str, path: str, **kwargs) -> dict:
        response = self.request(method, path, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def search(self, query: dict, resource: str = "contacts", **body) -> requests.Response:
        return self.request("POST", f"/{resource}/search", json={"query": query, **body})

    def search_all(self, query: dict, resource: str = "contacts", per_page: int = 150, **body) -> list[dict]:
        """Every record a search matches, following pages.next with the cursor in the body (intercom.md §4)."""
        key = "data" if resource == "contacts" else "conversations"
        records, cursor = [], None
        while True:
            pagination = {"per_page": per_page, **({"starting_after": cursor} if cursor else {})}
            page = self.search(query, resource, pagination=pagination, **body)
            assert page.status_code == 200, page.text
            answer = json_codec.response_json(page)
            records.extend(answer[key])
            cursor = (answer["pages"].get("next") or {}).get("starting_after")
            if cursor is None:
                return records

    def error(self, response: requests.Response) -> tuple[int, str]:
        """(status, first error code) of an error.list answer (intercom.md §2)."""
        body = response.json()
        assert body["type"] == "error.list", body
        return response.status_code, body["errors"][0]["code"]


@pytest.fixture
def ic(sandbox: SandboxServer) -> IntercomApi:
    return IntercomApi(sandbox)
