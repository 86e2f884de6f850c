"""OAuth 2.0 in the sandbox: single-use codes, refresh-token rotation with grace, client credentials, revocation."""

import time

import requests

from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines_tests.sandbox.conftest import CLIENT, authorize, token


def _invoices(base: str, access_token: str, tenant_id: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
    if tenant_id:
        headers["xero-tenant-id"] = tenant_id
    return requests.get(
        f"{base}/xero/api/api.xro/2.0/Invoices", params={"page": 1, "pageSize": 1}, headers=headers, timeout=10
    )


def test_code_flow_issues_a_full_token_set_and_codes_are_single_use(sandbox):
    tokens = authorize(sandbox.url)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 1800
    assert {"access_token", "refresh_token", "id_token", "scope"} <= set(tokens)
    assert tokens["access_token"].count(".") == 2  # a JWT (xero.md §1.3)
    connections = requests.get(
        f"{sandbox.url}/xero/api/connections", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    assert [c["tenantId"] for c in connections.json()] == [sandbox.tenant_id]
    assert "X-AppMinLimit-Remaining" in connections.headers and "X-MinLimit-Remaining" not in connections.headers

    consent = requests.get(
        f"{sandbox.url}/xero/login/identity/connect/authorize",
        params={
            "response_type": "code",
            "client_id": CLIENT[0],
            "redirect_uri": "http://localhost:9/cb",
            "scope": "offline_access",
        },
        allow_redirects=False,
        timeout=10,
    )
    code = consent.headers["location"].split("code=")[1].split("&")[0]
    first = token(sandbox.url, grant_type="authorization_code", code=code, redirect_uri="http://localhost:9/cb")
    second = token(sandbox.url, grant_type="authorization_code", code=code, redirect_uri="http://localhost:9/cb")
    assert first.status_code == 200 and "id_token" not in first.json()
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"


def test_refresh_rotation_old_token_dies_once_the_new_one_is_used(sandbox):
    original = authorize(sandbox.url)
    rotated = token(sandbox.url, grant_type="refresh_token", refresh_token=original["refresh_token"]).json()
    assert rotated["refresh_token"] != original["refresh_token"]
    # The response was "lost": retrying the old token inside the grace window still works (xero.md §1.4).
    retried = token(sandbox.url, grant_type="refresh_token", refresh_token=original["refresh_token"])
    assert retried.status_code == 200
    latest = retried.json()
    # The unused successor it replaced is gone; the newest one works and, once used, kills the original.
    assert (
        token(sandbox.url, grant_type="refresh_token", refresh_token=rotated["refresh_token"]).json()["error"]
        == "invalid_grant"
    )
    assert _invoices(sandbox.url, latest["access_token"], sandbox.tenant_id).status_code == 200
    dead = token(sandbox.url, grant_type="refresh_token", refresh_token=original["refresh_token"])
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"


def test_superseded_refresh_token_dies_after_its_successor_refreshes(sandbox):
    first = authorize(sandbox.url)
    second = token(sandbox.url, grant_type="refresh_token", refresh_token=first["refresh_token"]).json()
    third = token(sandbox.url, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert third.status_code == 200
    assert token(sandbox.url, grant_type="refresh_token", refresh_token=first["refresh_token"]).json() == {
        "error": "invalid_grant",
        "error_description": "The refresh token has been superseded",
    }


def test_grace_window_limits_retries_of_a_superseded_token(tmp_path):
    settings = SandboxSettings(state_path=tmp_path / "s.db", invoices=5, contacts=3, refresh_grace_seconds=0)
    with SandboxServer(settings) as server:
        original = authorize(server.url)
        assert token(server.url, grant_type="refresh_token", refresh_token=original["refresh_token"]).status_code == 200
        time.sleep(0.01)
        assert token(server.url, grant_type="refresh_token", refresh_token=original["refresh_token"]).status_code == 400


def test_client_auth_by_form_fields_and_wrong_secret(sandbox):
    tokens = authorize(sandbox.url)
    by_form = requests.post(
        f"{sandbox.url}/xero/identity/connect/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": CLIENT[0],
            "client_secret": CLIENT[1],
        },
        timeout=10,
    )
    assert by_form.status_code == 200
    wrong = requests.post(
        f"{sandbox.url}/xero/identity/connect/token",
        data={"grant_type": "refresh_token", "refresh_token": by_form.json()["refresh_token"]},
        auth=(CLIENT[0], "nope"),
        timeout=10,
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_client"


def test_client_credentials_has_no_refresh_token_and_no_tenant_header(sandbox):
    issued = token(sandbox.url, grant_type="client_credentials").json()
    assert "refresh_token" not in issued
    assert _invoices(sandbox.url, issued["access_token"], None).status_code == 200


def test_revocation_kills_the_refresh_token_and_disconnects(sandbox):
    tokens = authorize(sandbox.url)
    revoked = requests.post(
        f"{sandbox.url}/xero/identity/connect/revocation",
        data={"token": tokens["refresh_token"]},
        auth=CLIENT,
        timeout=10,
    )
    assert revoked.status_code == 200 and revoked.content == b""
    assert (
        token(sandbox.url, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()["error"]
        == "invalid_grant"
    )
    fresh = authorize(sandbox.url)
    connections = requests.get(
        f"{sandbox.url}/xero/api/connections", headers={"Authorization": f"Bearer {fresh['access_token']}"}, timeout=10
    ).json()
    assert connections[0]["createdDateUtc"] != connections[0]["updatedDateUtc"]  # reconnected (xero.md §1.6)
