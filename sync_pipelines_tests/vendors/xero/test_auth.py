"""Token storage, rotation and the code flow against the sandbox's identity server."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

import pytest
import requests
from cryptography.fernet import Fernet

from sync_pipelines.sandbox.server import SandboxServer, SandboxSettings
from sync_pipelines.vendors.token_store import EncryptedTokenStore
from sync_pipelines.vendors.xero.auth import (
    TokenManager,
    XeroAuthError,
    authorization_url,
    exchange_redirected_url,
)

TOKEN_ROUTE = "POST /connect/token"


def stored_secrets(token: dict) -> list[bytes]:
    return [token[name].encode() for name in ("access_token", "refresh_token") if token.get(name)]


def expire_stored_token(store: EncryptedTokenStore) -> dict:
    token = store.load()
    token["expires_at"] = time.time() - 1
    store.save(token)
    return token


def test_store_round_trips_encrypted_and_atomically(tmp_path, fernet_key):
    store = EncryptedTokenStore(tmp_path / "token.bin", fernet_key)
    token = {"access_token": "eyJ-access-secret", "refresh_token": "refresh-secret", "expires_at": 1.0}

    assert store.load() is None
    store.save(token)

    assert store.load() == token
    blob = store.path.read_bytes()
    assert b"secret" not in blob and b"access_token" not in blob
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token.bin", "token.bin.lock"]
    with pytest.raises(XeroAuthError):
        EncryptedTokenStore(store.path, Fernet.generate_key().decode()).load()


def test_code_flow_stores_an_encrypted_token_set(xero):
    token = xero.store.load()

    assert token["refresh_token"] and token["access_token"]
    blob = xero.store.path.read_bytes()
    assert not any(secret in blob for secret in stored_secrets(token))


def test_code_flow_through_a_pasted_redirect_url(xero, tmp_path, fernet_key):
    store = EncryptedTokenStore(tmp_path / "pasted.bin", fernet_key)
    url, state = authorization_url(xero.login_url, xero.client_id, xero.redirect_uri, xero.scopes)
    # What a person would paste after consenting in the browser.
    redirected = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]

    exchange_redirected_url(
        xero.identity_url, xero.client_id, xero.client_secret, xero.redirect_uri, redirected, state, store
    )

    assert store.load()["refresh_token"]
    with pytest.raises(XeroAuthError):
        # xero.md §1.2: the code is single-use.
        exchange_redirected_url(
            xero.identity_url, xero.client_id, xero.client_secret, xero.redirect_uri, redirected, state, store
        )


def test_rotation_is_persisted_and_a_new_process_uses_it(admin, xero):
    before = expire_stored_token(xero.store)
    admin.reset_stats()

    assert list(xero.client().iter_pages("Invoices"))

    after = xero.store.load()
    assert after["refresh_token"] != before["refresh_token"]
    assert admin.count("xero", TOKEN_ROUTE) == 1
    blob = xero.store.path.read_bytes()
    assert not any(secret in blob for secret in stored_secrets(after))

    script = f"""
from sync_pipelines.vendors.token_store import EncryptedTokenStore
from sync_pipelines.vendors.xero.client import XeroClient
store = EncryptedTokenStore({str(xero.store.path)!r}, {xero.key!r})
client = XeroClient({xero.api_url!r}, {xero.identity_url!r}, {xero.client_id!r}, {xero.client_secret!r}, store)
print(sum(len(page) for page in client.iter_pages("Invoices")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert int(result.stdout) == len(admin.call("GET", "/xero/invoices"))
    # The stored access token was still fresh, so the new process did not refresh.
    assert admin.count("xero", TOKEN_ROUTE) == 1
    assert xero.store.load() == after


@pytest.fixture
def strict_sandbox(tmp_path):
    """A sandbox without the 30-minute grace for superseded refresh tokens (xero.md §1.4)."""
    server = SandboxServer(SandboxSettings(state_path=tmp_path / "strict.sqlite", refresh_grace_seconds=0))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def strict_xero(strict_sandbox, connect_xero):
    return connect_xero(strict_sandbox.url, "strict-token.bin")


def test_old_refresh_token_is_rejected_after_rotation(strict_xero):
    old = expire_stored_token(strict_xero.store)
    assert list(strict_xero.client().iter_pages("Invoices"))

    # A second copy of the token set that still holds the superseded refresh token.
    stale_store = EncryptedTokenStore(strict_xero.store.path.with_name("stale.bin"), strict_xero.key)
    stale_store.save(old)
    manager = TokenManager(strict_xero.identity_url, strict_xero.client_id, strict_xero.client_secret, stale_store)

    with pytest.raises(XeroAuthError, match="invalid_grant"):
        manager.access_token()
    assert stale_store.load() == old


def test_concurrent_refreshers_refresh_once(strict_sandbox, strict_xero):
    expire_stored_token(strict_xero.store)
    requests.post(f"{strict_sandbox.url}/_admin/stats/reset", timeout=10).raise_for_status()
    tokens: list[str] = []

    def worker():
        # Separate objects per worker, as separate processes would have.
        store = EncryptedTokenStore(strict_xero.store.path, strict_xero.key)
        manager = TokenManager(strict_xero.identity_url, strict_xero.client_id, strict_xero.client_secret, store)
        tokens.append(manager.access_token())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stats = requests.get(f"{strict_sandbox.url}/_admin/stats", timeout=10).json()
    assert stats["xero"].get(TOKEN_ROUTE) == 1
    assert len(set(tokens)) == 1 and tokens[0] == strict_xero.store.load()["access_token"]


def test_client_credentials_grant_needs_no_stored_token(xero, tmp_path):
    store = EncryptedTokenStore(tmp_path / "cc.bin", xero.key)
    client = xero.client(grant="client_credentials", token_store=store)

    assert list(client.iter_pages("Invoices"))
    token = store.load()
    assert token["access_token"] and "refresh_token" not in token


def test_unusable_refresh_token_asks_for_reconsent(admin, xero):
    token = expire_stored_token(xero.store)
    xero.store.save({**token, "refresh_token": "not-a-real-token"})
    admin.reset_stats()

    with pytest.raises(XeroAuthError):
        list(xero.client().iter_pages("Invoices"))
    assert admin.count("xero", TOKEN_ROUTE) == 1
    assert xero.store.load()["refresh_token"] == "not-a-real-token"


def test_no_token_reaches_the_logs(caplog, sandbox, connect_xero):
    caplog.set_level(logging.DEBUG)
    xero = connect_xero(sandbox.url, "logged.bin")
    first = expire_stored_token(xero.store)
    list(xero.client().iter_pages("Invoices"))

    secrets = stored_secrets(first) + stored_secrets(xero.store.load())
    assert caplog.records
    assert not any(secret.decode() in caplog.text for secret in secrets)
