"""OAuth against the sandbox's login host: the code flow, both grants, storage and session renewal."""

from __future__ import annotations

import logging

import pytest
import requests

from sync_pipelines.vendors.salesforce.auth import (
    SalesforceAuthError,
    TokenManager,
    authorization_url,
    exchange_redirected_url,
)
from sync_pipelines.vendors.salesforce.resource import SalesforceResource
from sync_pipelines.vendors.token_store import EncryptedTokenStore
from sync_pipelines_tests.vendors.salesforce.conftest import REDIRECT_URI, sandbox_calls

TOKEN = "POST /services/oauth2/token"
QUERY = "GET /services/data/v62.0/query"
SOQL = "SELECT Id, Name FROM Account"


def secrets_of(token: dict) -> list[bytes]:
    return [token[name].encode() for name in ("access_token", "refresh_token") if token.get(name)]


def test_code_flow_stores_an_encrypted_token_set_with_its_instance(sandbox, salesforce):
    token = salesforce.store.load()

    assert token["refresh_token"] and token["access_token"]
    # salesforce.md §1.5: the instance every later call goes to comes with the token.
    assert token["instance_url"] == f"{sandbox.url}/salesforce"
    blob = salesforce.store.path.read_bytes()
    assert not any(secret in blob for secret in secrets_of(token))


def test_callback_must_carry_our_state_and_a_code_is_single_use(salesforce, tmp_path):
    store = EncryptedTokenStore(tmp_path / "pasted.bin", salesforce.key)
    url, state = authorization_url(salesforce.login_url, salesforce.client_id, REDIRECT_URI)
    redirected = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
    exchange = [salesforce.login_url, salesforce.client_id, salesforce.client_secret, REDIRECT_URI, redirected]

    with pytest.raises(SalesforceAuthError, match="state"):
        exchange_redirected_url(*exchange, "someone-elses-state", store)
    exchange_redirected_url(*exchange, state, store)

    assert store.load()["refresh_token"]
    with pytest.raises(SalesforceAuthError, match="invalid_grant"):
        exchange_redirected_url(*exchange, state, store)


def test_a_stored_session_is_reused_without_a_token_call(admin, salesforce):
    admin.reset_stats()

    pages = list(salesforce.client().query_pages(SOQL))

    assert pages
    assert sandbox_calls(admin, TOKEN) == 0


def test_expired_session_is_refreshed_once_and_the_call_retried(admin, salesforce):
    client = salesforce.client()
    assert list(client.query_pages(SOQL))
    before = salesforce.store.load()
    admin.salesforce_expire_tokens()
    admin.reset_stats()

    pages = list(client.query_pages(SOQL))

    after = salesforce.store.load()
    assert pages
    assert sandbox_calls(admin, TOKEN) == 1
    assert sandbox_calls(admin, QUERY) == 2  # the rejected call and its one retry
    assert client.stats.session_refreshes == 1
    assert after["access_token"] != before["access_token"]
    # salesforce.md §1.2: without rotation the refresh token stays what it was.
    assert after["refresh_token"] == before["refresh_token"]


def test_rotated_refresh_token_is_persisted_and_the_old_one_is_dead(admin, salesforce, tmp_path):
    admin.salesforce_settings(refresh_token_rotation=True)
    client = salesforce.client()
    assert list(client.query_pages(SOQL))
    before = salesforce.store.load()
    admin.salesforce_expire_tokens()

    assert list(client.query_pages(SOQL))

    after = salesforce.store.load()
    assert after["refresh_token"] != before["refresh_token"]
    stale = EncryptedTokenStore(tmp_path / "stale.bin", salesforce.key)
    stale.save({**before, "access_token": None})
    manager = TokenManager(salesforce.login_url, salesforce.client_id, salesforce.client_secret, stale)
    with pytest.raises(SalesforceAuthError, match="invalid_grant"):
        manager.session()


def test_refused_refresh_token_asks_for_reconnect_without_retrying(admin, salesforce):
    token = salesforce.store.load()
    salesforce.store.save({**token, "access_token": None, "refresh_token": "not-a-real-token"})
    admin.reset_stats()

    with pytest.raises(SalesforceAuthError, match="invalid_grant"):
        list(salesforce.client().query_pages(SOQL))

    assert sandbox_calls(admin, TOKEN) == 1
    assert sandbox_calls(admin, QUERY) == 0


def test_client_credentials_grant_needs_no_stored_token(admin, salesforce, tmp_path):
    store = EncryptedTokenStore(tmp_path / "cc.bin", salesforce.key)
    admin.reset_stats()

    pages = list(salesforce.client(grant="client_credentials", token_store=store).query_pages(SOQL))

    token = store.load()
    assert pages
    assert token["access_token"] and token["instance_url"] == salesforce.login_url
    assert "refresh_token" not in token  # salesforce.md §1.4
    assert sandbox_calls(admin, TOKEN) == 1


def test_wrong_client_secret_is_an_auth_error(salesforce, tmp_path):
    store = EncryptedTokenStore(tmp_path / "cc.bin", salesforce.key)
    client = salesforce.client(grant="client_credentials", client_secret="wrong", token_store=store)

    with pytest.raises(SalesforceAuthError, match="invalid_client"):
        list(client.query_pages(SOQL))
    assert store.load() is None


def test_no_token_reaches_the_logs(caplog, admin, salesforce):
    caplog.set_level(logging.DEBUG)
    client = salesforce.client()
    list(client.query_pages(SOQL))
    first = salesforce.store.load()
    admin.salesforce_expire_tokens()
    list(client.query_pages(SOQL))

    assert caplog.records
    assert not any(secret.decode() in caplog.text for secret in secrets_of(first) + secrets_of(salesforce.store.load()))


def test_resource_shares_one_client(salesforce):
    resource = SalesforceResource(
        login_url=salesforce.login_url,
        client_id=salesforce.client_id,
        client_secret=salesforce.client_secret,
        token_path=str(salesforce.store.path),
        token_key=salesforce.key,
    )

    client = resource.get_client()
    assert list(client.query_pages(SOQL))
    assert resource.get_client() is client
    assert client.stats.rest_calls == 1


def test_tokens_of_another_org_are_refused_before_any_call(admin, salesforce):
    """A connection's client reads its own org only: tokens that lead elsewhere (a token file or login URL of
    another connection) are refused, naming both orgs."""
    org = salesforce.store.load()["id"].split("/")[-2]
    admin.reset_stats()

    with pytest.raises(SalesforceAuthError, match=f"for org {org}, not 00D5g1000000001"):
        list(salesforce.client(organization_id="00D5g1000000001").query_pages(SOQL))

    assert sandbox_calls(admin, QUERY) == 0
    assert list(salesforce.client(organization_id=org[:15]).query_pages(SOQL))  # its own, by 15 characters too
