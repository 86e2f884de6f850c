"""A connected caller of the sandbox's Salesforce org over real HTTP."""

import pytest
import requests

from sync_pipelines.lib import json_codec
from sync_pipelines.sandbox import SandboxServer

CLIENT = ("sandbox-sf-client-id", "sandbox-sf-client-secret")
VERSION = "62.0"


def token(base: str, auth: tuple[str, str] | None = CLIENT, **form: str) -> requests.Response:
    """POST the token endpoint of the sandbox's login host (salesforce.md §1)."""
    return requests.post(f"{base}/salesforce/services/oauth2/token", data=form, auth=auth, timeout=10)


class SalesforceApi:
    """Client-credentials session against the org's instance_url, pinned to v62.0."""

    def __init__(self, server: SandboxServer):
        self.base = server.url
        self.tokens = token(self.base, grant_type="client_credentials").json()
        self.instance_url = self.tokens["instance_url"]
        self.data = f"{self.instance_url}/services/data/v{VERSION}"

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}", **extra}

    def request(self, method: str, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.data}/{path}", headers=headers or self.headers(), timeout=60, **kwargs)

    def query(self, soql: str, resource: str = "query", **headers: str) -> requests.Response:
        return self.request("GET", resource, headers=self.headers(**headers), params={"q": soql})

    def pages(self, soql: str, resource: str = "query", **headers: str) -> list[dict]:
        """Every page of a query, following nextRecordsUrl verbatim from the instance URL (salesforce.md §3.1)."""
        body = json_codec.response_json(self.query(soql, resource, **headers))
        pages = [body]
        while not body["done"]:
            answer = requests.get(self.instance_url + body["nextRecordsUrl"], headers=self.headers(), timeout=60)
            body = json_codec.response_json(answer)
            pages.append(body)
        return pages

    def records(self, soql: str, resource: str = "query") -> list[dict]:
        return [record for page in self.pages(soql, resource) for record in page["records"]]


@pytest.fixture
def sf(sandbox: SandboxServer) -> SalesforceApi:
    return SalesforceApi(sandbox)
