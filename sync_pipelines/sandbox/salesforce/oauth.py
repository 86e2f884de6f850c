"""The login host: OAuth 2.0 authorize (auto-consent), token, revoke and the identity URL (salesforce.md §1).

Grants: authorization_code (with PKCE), refresh_token (no rotation unless the org setting is on) and
client_credentials (form fields or HTTP Basic). Unlike Salesforce, the sandbox accepts client_credentials on
its login host too: it has only one host (salesforce.md §1.4). The JWT bearer flow is not simulated.
"""

import base64
import hashlib
import hmac
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sync_pipelines.sandbox.oauth import (
    client_credentials,
    form_body,
    redirect_with,
    refused_authorization,
    verifier_matches,
)
from sync_pipelines.sandbox.salesforce.errors import SalesforceError, invalid_session, oauth_error
from sync_pipelines.sandbox.salesforce.org import SalesforceOrg, now_ms
from sync_pipelines.sandbox.salesforce.schema import OBJECTS

CODE_TTL_MS = 15 * 60 * 1000
DEFAULT_SCOPE = "api refresh_token"  # what the connected app grants when the request names no scope
CLIENT_CREDENTIALS_SCOPE = "api"
_REFRESH_SCOPES = {"refresh_token", "offline_access", "full"}


def instance_url(request: Request) -> str:
    """Where the org is served: this app's mount point on the host the client called (salesforce.md §1.5)."""
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"


class OAuth:
    def __init__(self, org: SalesforceOrg):
        self.org = org
        self.store = org.store
        self.settings = org.settings

    def routes(self) -> list[Route]:
        return [
            Route("/services/oauth2/authorize", self.authorize, methods=["GET"]),
            Route("/services/oauth2/token", self.token, methods=["POST"]),
            Route("/services/oauth2/revoke", self.revoke, methods=["GET", "POST"]),
            Route("/id/{org_id}/{user_id}", self.identity, methods=["GET"]),
        ]

    # -- web server flow (salesforce.md §1.1) -------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        """Auto-consent: validate the request and redirect straight back with a single-use code."""
        query = request.query_params
        redirect_uri = query.get("redirect_uri", "")
        refused = refused_authorization(query, self.settings.salesforce_client_id)
        if refused is not None:
            return refused
        code = secrets.token_urlsafe(32)
        data = {
            "redirect_uri": redirect_uri,
            "scope": query.get("scope") or DEFAULT_SCOPE,
            "code_challenge": query.get("code_challenge"),
        }
        with self.store.transaction() as conn:
            self.store.add_token(conn, code, "code", now_ms() + CODE_TTL_MS, data)
        params = {"code": code}
        return redirect_with(redirect_uri, params, query.get("state"))

    # -- token endpoint -----------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        form = await form_body(request)
        client_id, secret = client_credentials(request, form)
        grant = form.get("grant_type")
        if client_id != self.settings.salesforce_client_id:
            return oauth_error("invalid_client_id", "client identifier invalid")
        # salesforce.md §1.1: the secret may be left out when a PKCE verifier proves the caller instead.
        pkce = grant == "authorization_code" and form.get("code_verifier") and secret is None
        if secret != self.settings.salesforce_client_secret and not pkce:
            return oauth_error("invalid_client", "invalid client credentials")
        base = instance_url(request)
        if grant == "authorization_code":
            return self._exchange_code(form, base)
        if grant == "refresh_token":
            return self._refresh(form.get("refresh_token", ""), base)
        if grant == "client_credentials":
            with self.store.transaction() as conn:
                return JSONResponse(self._issue(conn, base, CLIENT_CREDENTIALS_SCOPE, "client_credentials"))
        return oauth_error("unsupported_grant_type", "grant type not supported")

    def _exchange_code(self, form: dict[str, str], base: str) -> Response:
        """Codes are single-use, short-lived and bound to their redirect_uri and PKCE challenge."""
        with self.store.transaction() as conn:
            record = self.store.token(conn, form.get("code", ""))
            if record is None or record["kind"] != "code" or record["revoked"] or record["expires_ms"] <= now_ms():
                return oauth_error("invalid_grant", "invalid authorization code")
            self.store.revoke_token(conn, record["token"])
            data = record["data"]
            if form.get("redirect_uri") != data["redirect_uri"]:
                return oauth_error("redirect_uri_mismatch", "redirect_uri must match configuration")
            if data["code_challenge"]:
                if not verifier_matches(form.get("code_verifier", ""), data["code_challenge"]):
                    return oauth_error("invalid_grant", "invalid code verifier")
            elif form.get("code_verifier"):
                return oauth_error("invalid_grant", "invalid code verifier")
            refresh = bool(_REFRESH_SCOPES & set(data["scope"].split()))
            return JSONResponse(self._issue(conn, base, data["scope"], "authorization_code", new_refresh=refresh))

    def _refresh(self, presented: str, base: str) -> Response:
        """A new access token; the refresh token itself is only replaced when rotation is on (salesforce.md §1.2)."""
        with self.store.transaction() as conn:
            record = self.store.token(conn, presented)
            if record is None or record["kind"] != "refresh" or record["revoked"]:
                return oauth_error("invalid_grant", "expired access/refresh token")
            scope = record["data"]["scope"]
            if self.org.refresh_token_rotation:
                self.store.revoke_token(conn, presented, family=False)
                return JSONResponse(self._issue(conn, base, scope, "refresh_token", new_refresh=True))
            return JSONResponse(self._issue(conn, base, scope, "refresh_token", parent=presented))

    def _issue(
        self, conn: Any, base: str, scope: str, grant: str, new_refresh: bool = False, parent: str | None = None
    ) -> dict[str, Any]:
        """The token response of salesforce.md §1.5; there is no expires_in, clients learn of expiry by a 401."""
        issued_at = str(now_ms())
        refresh = secrets.token_urlsafe(48) if new_refresh else None
        access = f"{self.org.org_id[:15]}!{secrets.token_urlsafe(72)}"
        data = {"scope": scope, "grant": grant}
        if refresh:
            self.store.add_token(conn, refresh, "refresh", None, data)
        expires_ms = int(issued_at) + self.org.access_token_ttl * 1000
        self.store.add_token(conn, access, "access", expires_ms, data, parent=refresh or parent)
        identity = f"{base}/id/{self.org.org_id}/{self.org.user_id}"
        secret = self.settings.salesforce_client_secret.encode()
        signature = base64.b64encode(hmac.new(secret, (identity + issued_at).encode(), hashlib.sha256).digest())
        body: dict[str, Any] = {"access_token": access}
        if refresh:
            body["refresh_token"] = refresh
        body.update(
            signature=signature.decode(),
            scope=scope,
            instance_url=base,
            id=identity,
            token_type="Bearer",
            issued_at=issued_at,
        )
        return body

    async def revoke(self, request: Request) -> Response:
        """Revoking a refresh token also ends the access tokens issued from it."""
        params = await form_body(request) if request.method == "POST" else dict(request.query_params)
        with self.store.transaction() as conn:
            record = self.store.token(conn, params.get("token", ""))
            if record is None or record["kind"] == "code":
                # Sandbox choice (the fact sheet is silent): an unknown token is a 400, as Salesforce answers.
                return oauth_error("unsupported_token_type", "this token type is not supported")
            self.store.revoke_token(conn, record["token"])
        return Response(status_code=200)

    # -- sessions -----------------------------------------------------------------------------

    def authenticate(self, request: Request) -> dict[str, Any]:
        """The access token record of a call, or 401 INVALID_SESSION_ID (salesforce.md §5)."""
        header = request.headers.get("authorization", "")
        if not header.lower().startswith(("bearer ", "oauth ")):
            raise invalid_session()
        with self.store.reading() as conn:
            record = self.store.token(conn, header.split(" ", 1)[1].strip())
        if record is None or record["kind"] != "access" or record["revoked"] or record["expires_ms"] <= now_ms():
            raise invalid_session()
        return record

    async def identity(self, request: Request) -> Response:
        """The identity URL named by a token response's `id` (salesforce.md §1.5), for the API user."""
        try:
            self.authenticate(request)
        except SalesforceError as exc:
            return exc.response()
        org_id, user_id = request.path_params["org_id"], request.path_params["user_id"]
        if (org_id, user_id) != (self.org.org_id, self.org.user_id):
            return PlainTextResponse("Bad_Id", 404)
        base = instance_url(request)
        with self.store.reading() as conn:
            user = self.store.get(conn, OBJECTS["User"], user_id)
        return JSONResponse(
            {
                "id": f"{base}/id/{org_id}/{user_id}",
                "user_id": user_id,
                "organization_id": org_id,
                "username": user["Username"],
                "display_name": user["Name"],
                "email": user["Email"],
                "active": bool(user["IsActive"]),
                "urls": {
                    "rest": f"{base}/services/data/v{{version}}/",
                    "query": f"{base}/services/data/v{{version}}/query/",
                },
            }
        )
