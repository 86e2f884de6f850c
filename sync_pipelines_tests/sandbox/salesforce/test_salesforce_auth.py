"""The Salesforce login host: grants, token responses, error bodies, revocation and expired sessions."""

import base64
import hashlib
import hmac
import secrets
from urllib.parse import parse_qs, urlsplit

import requests

from sync_pipelines_tests.sandbox.salesforce.conftest import CLIENT, VERSION, token

REDIRECT_URI = "http://127.0.0.1/callback"


def _consent(base: str, **params: str) -> str:
    """The auto-consenting authorize step: returns the code from the redirect (salesforce.md §1.1)."""
    response = requests.get(
        f"{base}/salesforce/services/oauth2/authorize",
        params={"response_type": "code", "client_id": CLIENT[0], "redirect_uri": REDIRECT_URI, **params},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query.get("state") == (["s1"] if "state" in params else None)
    return query["code"][0]


def _limits(instance_url: str, access_token: str) -> requests.Response:
    return requests.get(
        f"{instance_url}/services/data/v{VERSION}/limits",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )


def test_client_credentials_by_basic_or_form_fields_returns_the_documented_fields(sandbox):
    basic = token(sandbox.url, grant_type="client_credentials")
    form = token(sandbox.url, auth=None, grant_type="client_credentials", client_id=CLIENT[0], client_secret=CLIENT[1])
    for response in (basic, form):
        body = response.json()
        assert response.status_code == 200
        # salesforce.md §1.5: no refresh token for client credentials; issued_at is epoch ms as a string.
        assert set(body) == {"access_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at"}
        assert body["instance_url"] == f"{sandbox.url}/salesforce" and body["token_type"] == "Bearer"
        assert body["issued_at"].isdigit() and len(body["issued_at"]) == 13
        expected = hmac.new(CLIENT[1].encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256).digest()
        assert base64.b64decode(body["signature"]) == expected
        assert _limits(body["instance_url"], body["access_token"]).status_code == 200
    identity = requests.get(
        basic.json()["id"], headers={"Authorization": f"Bearer {basic.json()['access_token']}"}, timeout=10
    ).json()
    assert identity["user_id"] == basic.json()["id"].rsplit("/", 1)[1] and identity["display_name"]


def test_token_endpoint_error_bodies(sandbox):
    def error(response: requests.Response) -> tuple[int, str]:
        return response.status_code, response.json()["error"]

    assert error(token(sandbox.url, auth=("nobody", CLIENT[1]), grant_type="client_credentials")) == (
        400,
        "invalid_client_id",
    )
    assert error(token(sandbox.url, auth=(CLIENT[0], "wrong"), grant_type="client_credentials")) == (
        400,
        "invalid_client",
    )
    assert error(token(sandbox.url, grant_type="password")) == (400, "unsupported_grant_type")
    refused = token(sandbox.url, grant_type="refresh_token", refresh_token="not-a-token")
    assert refused.json() == {"error": "invalid_grant", "error_description": "expired access/refresh token"}


def test_authorization_code_with_pkce_then_refresh_without_rotation(sandbox):
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    code = _consent(
        sandbox.url, scope="api refresh_token", state="s1", code_challenge=challenge, code_challenge_method="S256"
    )
    wrong = token(sandbox.url, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI, code_verifier="x")
    assert wrong.json()["error"] == "invalid_grant"
    # Codes are single-use: the failed attempt above consumed this one, so consent again.
    code = _consent(sandbox.url, scope="api refresh_token", code_challenge=challenge, code_challenge_method="S256")
    exchanged = token(
        sandbox.url,
        auth=None,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT_URI,
        client_id=CLIENT[0],
        code_verifier=verifier,
    )
    tokens = exchanged.json()
    assert exchanged.status_code == 200 and tokens["refresh_token"] and tokens["scope"] == "api refresh_token"
    again = token(sandbox.url, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI)
    assert again.json()["error"] == "invalid_grant"

    # salesforce.md §1.2: a refresh returns a new access token and no new refresh token; the old one keeps working.
    for _ in range(2):
        refreshed = token(sandbox.url, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
        assert "refresh_token" not in refreshed and refreshed["access_token"] != tokens["access_token"]
        assert _limits(refreshed["instance_url"], refreshed["access_token"]).status_code == 200


def test_refresh_token_rotation_when_the_org_enables_it(sandbox, admin):
    admin.salesforce_settings(refresh_token_rotation=True)
    tokens = token(sandbox.url, grant_type="authorization_code", code=_consent(sandbox.url), redirect_uri=REDIRECT_URI)
    original = tokens.json()["refresh_token"]
    rotated = token(sandbox.url, grant_type="refresh_token", refresh_token=original).json()
    assert rotated["refresh_token"] != original
    assert token(sandbox.url, grant_type="refresh_token", refresh_token=original).json()["error"] == "invalid_grant"
    assert token(sandbox.url, grant_type="refresh_token", refresh_token=rotated["refresh_token"]).status_code == 200


def test_expired_revoked_and_unknown_sessions_get_invalid_session_id(sandbox, admin):
    tokens = token(sandbox.url, grant_type="authorization_code", code=_consent(sandbox.url), redirect_uri=REDIRECT_URI)
    body = tokens.json()
    assert _limits(body["instance_url"], body["access_token"]).status_code == 200
    assert admin.salesforce_expire_tokens() >= 1
    expired = _limits(body["instance_url"], body["access_token"])
    # salesforce.md §5: 401 with the error array; Sforce-Limit-Info still present.
    assert expired.status_code == 401
    assert expired.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    assert expired.headers["Sforce-Limit-Info"].startswith("api-usage=")
    assert _limits(body["instance_url"], "00Dbogus!token").status_code == 401

    refreshed = token(sandbox.url, grant_type="refresh_token", refresh_token=body["refresh_token"]).json()
    assert _limits(refreshed["instance_url"], refreshed["access_token"]).status_code == 200
    revoke = requests.post(
        f"{sandbox.url}/salesforce/services/oauth2/revoke", data={"token": body["refresh_token"]}, timeout=10
    )
    assert revoke.status_code == 200
    # Revoking the refresh token ends the sessions issued from it and the token itself.
    assert _limits(refreshed["instance_url"], refreshed["access_token"]).status_code == 401
    assert token(sandbox.url, grant_type="refresh_token", refresh_token=body["refresh_token"]).status_code == 400


def test_short_session_lifetime_expires_on_its_own(sandbox, admin):
    admin.salesforce_settings(access_token_ttl=0)
    body = token(sandbox.url, grant_type="client_credentials").json()
    assert _limits(body["instance_url"], body["access_token"]).json()[0]["errorCode"] == "INVALID_SESSION_ID"
