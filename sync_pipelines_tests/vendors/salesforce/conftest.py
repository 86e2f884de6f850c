"""Fixtures for the Salesforce client: a token set connected through the sandbox's code flow."""

from __future__ import annotations

import dataclasses

import pytest

from sync_pipelines.vendors.salesforce.auth import connect_with_authorization_code
from sync_pipelines.vendors.salesforce.client import SalesforceClient
from sync_pipelines.vendors.token_store import EncryptedTokenStore

CLIENT_ID = "sandbox-sf-client-id"
CLIENT_SECRET = "sandbox-sf-client-secret"
REDIRECT_URI = "http://127.0.0.1/salesforce/callback"


@dataclasses.dataclass
class Salesforce:
    """Sandbox login URL and credentials for one connected token set."""

    base: str
    store: EncryptedTokenStore
    key: str
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET

    @property
    def login_url(self) -> str:
        return f"{self.base}/salesforce"

    def client(self, **overrides) -> SalesforceClient:
        return SalesforceClient(
            **{
                "login_url": self.login_url,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "token_store": self.store,
                **overrides,
            }
        )


@pytest.fixture
def salesforce(sandbox, tmp_path, fernet_key) -> Salesforce:
    """A refresh token obtained the way the CLI would, stored encrypted."""
    store = EncryptedTokenStore(tmp_path / "salesforce-token.bin", fernet_key)
    connect_with_authorization_code(f"{sandbox.url}/salesforce", CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, store)
    return Salesforce(sandbox.url, store, fernet_key)


def sandbox_records(admin, sobject: str, deleted: bool = False) -> list[dict]:
    """An object's rows as the sandbox holds them, in the (SystemModstamp, Id) order of an incremental read."""
    rows = admin.salesforce_records(sobject, deleted=deleted)
    return sorted(rows, key=lambda row: (row["SystemModstamp"], row["Id"]))


def sandbox_calls(admin, prefix: str) -> int:
    """Requests the sandbox saw on Salesforce routes starting with "<METHOD> <path prefix>"."""
    return sum(count for route, count in admin.stats()["salesforce"].items() if route.startswith(prefix))


def ids_of(pages: list[list[dict]]) -> list[str]:
    return [record["Id"] for page in pages for record in page]
