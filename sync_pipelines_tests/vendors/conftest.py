"""Fixtures for the vendor clients: all of them talk to the real sandbox over 127.0.0.1."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.fernet import Fernet

from sync_pipelines.vendors.token_store import EncryptedTokenStore
from sync_pipelines.vendors.xero.auth import connect_with_authorization_code
from sync_pipelines.vendors.xero.client import XeroClient
from sync_pipelines.vendors.xero.settings import SCOPES

CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-client-secret"
REDIRECT_URI = "http://127.0.0.1/callback"
URL_PARTS = ("api", "identity", "login")


@dataclasses.dataclass
class Xero:
    """Sandbox URLs and credentials for one connected token set."""

    base: str
    store: EncryptedTokenStore
    key: str
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    redirect_uri: str = REDIRECT_URI
    scopes: tuple[str, ...] = SCOPES
    api_url: str = dataclasses.field(init=False)
    identity_url: str = dataclasses.field(init=False)
    login_url: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.api_url, self.identity_url, self.login_url = (
            f"{self.base}/xero/{p}" for p in ("api", "identity", "login")
        )

    def client(self, **overrides) -> XeroClient:
        return XeroClient(
            **{
                "api_url": self.api_url,
                "identity_url": self.identity_url,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "token_store": self.store,
                **overrides,
            }
        )


@pytest.fixture
def fernet_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def connect_xero(tmp_path, fernet_key):
    """Factory: run the code flow against a sandbox and store the token set encrypted, as the CLI would."""

    def connect(base: str, name: str = "xero-token.bin") -> Xero:
        store = EncryptedTokenStore(tmp_path / name, fernet_key)
        connect_with_authorization_code(
            f"{base}/xero/login", f"{base}/xero/identity", CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, store, SCOPES
        )
        return Xero(base, store, fernet_key)

    return connect


@pytest.fixture
def xero(sandbox, connect_xero) -> Xero:
    return connect_xero(sandbox.url)
