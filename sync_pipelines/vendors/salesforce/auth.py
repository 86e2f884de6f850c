"""Salesforce OAuth 2.0: the code flow, refresh_token and client_credentials grants (salesforce.md §1)."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from sync_pipelines.lib import json_codec
from sync_pipelines.vendors.retrying import TRANSIENT_ERRORS, retrying
from sync_pipelines.vendors.salesforce import settings
from sync_pipelines.vendors.token_store import CredentialsError, EncryptedTokenStore, consent_by_redirect

log = logging.getLogger(__name__)

GRANTS = ("refresh_token", "client_credentials")


class SalesforceAuthError(CredentialsError):
    """The login server refused our credentials or grant; a person has to (re)connect the app."""


@dataclasses.dataclass(frozen=True)
class SalesforceSession:
    """What every REST and Bulk call needs: the bearer token and the org's instance (salesforce.md §1.5)."""

    access_token: str
    instance_url: str


def organization_id(token: dict) -> str | None:
    """The org a token set belongs to: its identity URL ends /id/<OrganizationId>/<UserId> (salesforce.md §1.5)."""
    parts = urlsplit(token.get("id") or "").path.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 3 and parts[-3] == "id" else None


class _TransientLoginError(Exception):
    """5xx/429 from the login server: the same grant may succeed on a later try."""


_TOKEN_RETRYABLE = (*TRANSIENT_ERRORS, _TransientLoginError)


def _token_request(login_url: str, form: dict[str, str], timeout: float = 30, max_attempts: int = 4) -> dict:
    """POST one grant to the token endpoint (salesforce.md §1): form-encoded, JSON back, errors as OAuth errors."""
    url = login_url.rstrip("/") + settings.TOKEN_PATH

    def attempt() -> requests.Response:
        response = requests.post(url, data=form, headers={"Accept": "application/json"}, timeout=timeout)
        if response.status_code == 429 or response.status_code >= 500:
            raise _TransientLoginError(f"login server answered {response.status_code}")
        return response

    try:
        response = retrying(max_attempts, retry_on=_TOKEN_RETRYABLE)(attempt)
    except _TOKEN_RETRYABLE as exc:
        raise SalesforceAuthError(f"Salesforce login server unavailable: {exc}") from None
    try:
        body = json_codec.response_json(response)
    except ValueError:
        body = {}
    if response.status_code != 200 or "access_token" not in body:
        # salesforce.md §1.5: {"error": "invalid_grant", "error_description": "authentication failure"}.
        error = body.get("error", response.status_code)
        raise SalesforceAuthError(
            f"Salesforce refused the {form['grant_type']} grant: {error}: {body.get('error_description')}"
        )
    if not body.get("instance_url"):
        raise SalesforceAuthError("Salesforce token response carries no instance_url (salesforce.md §1.5)")
    return body


def authorization_url(login_url: str, client_id: str, redirect_uri: str, scopes=settings.SCOPES) -> tuple[str, str]:
    """Browser URL that asks a user to connect the app (salesforce.md §1.1); returns (url, state)."""
    state = secrets.token_urlsafe(24)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
        }
    )
    return f"{login_url.rstrip('/')}{settings.AUTHORIZE_PATH}?{query}", state


def exchange_redirected_url(
    login_url: str,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    redirected_url: str,
    state: str,
    token_store: EncryptedTokenStore,
    timeout: float = 30,
) -> str | None:
    """Swap the code in the callback URL for tokens and store them encrypted (salesforce.md §1.1 step 3); the
    OrganizationId of the org the person consented in."""
    query = parse_qs(urlsplit(redirected_url).query)
    if query.get("state") != [state]:
        raise SalesforceAuthError("the callback's state does not match the request's; start the flow again")
    if "code" not in query:
        raise SalesforceAuthError(f"authorization was not granted: {query.get('error', ['no code'])[0]}")
    token = _token_request(
        login_url,
        {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uri": redirect_uri,
        },
        timeout,
    )
    if "refresh_token" not in token:
        # salesforce.md §1.5: a refresh token comes only with the refresh_token (or offline_access) scope.
        raise SalesforceAuthError("Salesforce returned no refresh token; request the refresh_token scope")
    token_store.save(token)
    log.info("Stored a new Salesforce token set for %s (scopes: %s)", token["instance_url"], token.get("scope"))
    return organization_id(token)


def connect_with_authorization_code(
    login_url: str,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    token_store: EncryptedTokenStore,
    scopes=settings.SCOPES,
    timeout: float = 30,
) -> None:
    """Code flow without a browser: works where the authorize endpoint consents by redirecting (the sandbox)."""
    url, state = authorization_url(login_url, client_id, redirect_uri, scopes)
    redirected = consent_by_redirect(url, timeout)
    exchange_redirected_url(login_url, client_id, client_secret, redirect_uri, redirected, state, token_store, timeout)


class TokenManager:
    """Hands out the current session and renews it after Salesforce rejects it.

    Salesforce states no access-token lifetime (salesforce.md §1.5), so a token is used until a call
    answers 401 INVALID_SESSION_ID (§5). The store's file lock makes one process the renewer; after
    taking it the store is re-read, because another process may already have renewed.
    """

    def __init__(
        self,
        login_url: str,
        client_id: str,
        client_secret: str,
        token_store: EncryptedTokenStore,
        grant: str = "refresh_token",
        timeout: float = 30,
        max_attempts: int = 4,
        organization_id: str | None = None,
    ) -> None:
        """`organization_id`, when given, is the only org whose tokens this manager uses (a connection's org)."""
        if grant not in GRANTS:
            raise ValueError(f"grant must be one of {GRANTS}, not {grant!r}")
        self._login_url = login_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._store = token_store
        self._grant = grant
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._organization_id = organization_id
        self._token: dict | None = None
        self._lock = threading.Lock()

    def session(self) -> SalesforceSession:
        token = self._token
        if token is None:
            token = self._renew(rejected=None)
        return SalesforceSession(token["access_token"], token["instance_url"].rstrip("/"))

    def renew_rejected(self, rejected_access_token: str) -> SalesforceSession:
        """Called once after a 401 INVALID_SESSION_ID (salesforce.md §5: refresh and retry once)."""
        token = self._renew(rejected=rejected_access_token)
        return SalesforceSession(token["access_token"], token["instance_url"].rstrip("/"))

    def _renew(self, rejected: str | None) -> dict:
        with self._lock, self._store.lock:
            stored = self._store.load()
            for candidate in (self._token, stored):
                if candidate and candidate.get("access_token") and candidate["access_token"] != rejected:
                    self._token = self._of_the_org(candidate)
                    return candidate
            if self._grant == "client_credentials":
                # salesforce.md §1.4: no refresh token; every renewal is a fresh grant.
                form = {"grant_type": "client_credentials"}
                token = _token_request(self._login_url, self._form(form), self._timeout, self._max_attempts)
            else:
                if not stored or not stored.get("refresh_token"):
                    raise SalesforceAuthError("no stored Salesforce refresh token; connect the app first")
                form = {"grant_type": "refresh_token", "refresh_token": stored["refresh_token"]}
                # salesforce.md §1.2: normally no new refresh token comes back; with rotation on, the new
                # one replaces the old, which is invalid from now on.
                token = {
                    **stored,
                    **_token_request(self._login_url, self._form(form), self._timeout, self._max_attempts),
                }
            self._token = self._of_the_org(token)
            self._store.save(token)
            log.info("Obtained a new Salesforce session for %s", token["instance_url"])
            return token

    def _of_the_org(self, token: dict) -> dict:
        """The token, when it is of the expected org (15- or 18-character ids alike): a connection whose token file
        or login URL leads to another org must not read or write that org's records."""
        found = organization_id(token)
        if self._organization_id and found and found[:15] != self._organization_id[:15]:
            raise SalesforceAuthError(
                f"the Salesforce tokens at {self._store.path} are for org {found}, not {self._organization_id}: "
                "connect the app in the right org (sync-pipelines salesforce-connect)"
            )
        return token

    def _form(self, form: dict[str, str]) -> dict[str, str]:
        # salesforce.md §1.2, §1.4: client id and secret as form fields work for both grants.
        return {**form, "client_id": self._client_id, "client_secret": self._client_secret}
