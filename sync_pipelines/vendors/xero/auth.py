"""Xero OAuth 2.0: encrypted token storage, token refresh with rotation, and the code flow (xero.md §1)."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

import requests
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from sync_pipelines.vendors.retrying import TRANSIENT_ERRORS, retrying
from sync_pipelines.vendors.token_store import CredentialsError as XeroAuthError
from sync_pipelines.vendors.token_store import EncryptedTokenStore, consent_by_redirect
from sync_pipelines.vendors.xero import settings

log = logging.getLogger(__name__)

GRANTS = ("authorization_code", "client_credentials")


class _TransientTokenEndpointError(Exception):
    """5xx/429 from the identity server: worth retrying with the same (still valid) refresh token."""


_TOKEN_RETRYABLE = (*TRANSIENT_ERRORS, _TransientTokenEndpointError)
_transport_lock = threading.Lock()
_redaction_lock = threading.Lock()


class _DropDebug(logging.Filter):
    """requests-oauthlib logs token response bodies at DEBUG; our logs must never carry tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def _redact_library_logs() -> None:
    library_log = logging.getLogger("requests_oauthlib.oauth2_session")
    with _redaction_lock:
        if not any(isinstance(f, _DropDebug) for f in library_log.filters):
            library_log.addFilter(_DropDebug())


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _oauthlib_transport(*urls: str) -> Iterator[None]:
    """Let oauthlib use plain http for loopback URLs only.

    oauthlib refuses http, but Xero accepts http://localhost redirect URIs (xero.md §1.2) and the
    sandbox serves on 127.0.0.1; any other http URL is still refused.
    """
    insecure = [url for url in urls if not url.lower().startswith("https://")]
    if not insecure or not all(_is_loopback(url) for url in insecure):
        yield
        return
    with _transport_lock:
        previous = os.environ.get("OAUTHLIB_INSECURE_TRANSPORT")
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
        try:
            yield
        finally:
            if previous is None:
                del os.environ["OAUTHLIB_INSECURE_TRANSPORT"]
            else:
                os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = previous


def _raise_on_transient(response: requests.Response) -> requests.Response:
    if response.status_code == 429 or response.status_code >= 500:
        raise _TransientTokenEndpointError(f"identity server answered {response.status_code}")
    return response


def _token_call(session: OAuth2Session, call, max_attempts: int) -> dict:
    """Run one token-endpoint call with retries; a lost response is safe to retry (xero.md §1.4 grace)."""
    _redact_library_logs()
    for hook in ("access_token_response", "refresh_token_response"):
        session.register_compliance_hook(hook, _raise_on_transient)
    try:
        token = retrying(max_attempts, retry_on=_TOKEN_RETRYABLE)(call)
    except OAuth2Error as exc:
        # xero.md §1.3/§1.9: invalid_grant means expired, revoked or superseded; never loop on it.
        raise XeroAuthError(f"Xero identity server refused the grant: {exc.error}") from None
    except _TOKEN_RETRYABLE as exc:
        raise XeroAuthError(f"Xero identity server unavailable: {exc}") from None
    return dict(token)


def authorization_url(login_url: str, client_id: str, redirect_uri: str, scopes: Iterable[str]) -> tuple[str, str]:
    """Browser URL that asks the user to connect the app (xero.md §1.2); returns (url, state)."""
    session = OAuth2Session(client_id, redirect_uri=redirect_uri, scope=list(scopes))
    authorize = login_url.rstrip("/") + settings.AUTHORIZE_PATH
    with _oauthlib_transport(authorize):
        return session.authorization_url(authorize)


def exchange_redirected_url(
    identity_url: str,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    redirected_url: str,
    state: str,
    token_store: EncryptedTokenStore,
    timeout: float = 30,
    max_attempts: int = 4,
) -> None:
    """Swap the code in the redirect for tokens and store them (xero.md §1.3).

    Shared by the browserless sandbox flow and the CLI flow where a person pastes the redirected URL.
    """
    token_url = identity_url.rstrip("/") + settings.TOKEN_PATH
    session = OAuth2Session(client_id, redirect_uri=redirect_uri, state=state)
    with _oauthlib_transport(token_url, redirected_url):
        token = _token_call(
            session,
            lambda: session.fetch_token(
                token_url,
                authorization_response=redirected_url,
                auth=HTTPBasicAuth(client_id, client_secret),
                timeout=timeout,
            ),
            max_attempts,
        )
    if "refresh_token" not in token:
        # xero.md §1.3: without offline_access there is nothing to refresh with after 30 minutes.
        raise XeroAuthError("Xero returned no refresh token; request the offline_access scope")
    token_store.save(token)
    log.info("Stored a new Xero token set (scopes: %s)", token.get("scope"))


def connect_with_authorization_code(
    login_url: str,
    identity_url: str,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    token_store: EncryptedTokenStore,
    scopes: Iterable[str],
    timeout: float = 30,
) -> None:
    """Code flow without a browser: works where the authorize endpoint consents by redirecting (the sandbox)."""
    url, state = authorization_url(login_url, client_id, redirect_uri, scopes)
    redirected = consent_by_redirect(url, timeout)
    exchange_redirected_url(
        identity_url, client_id, client_secret, redirect_uri, redirected, state, token_store, timeout
    )


class TokenManager:
    """Hands out a valid access token, refreshing it with exactly one refresher per token set.

    The store's file lock serialises refreshers across processes; after taking it the store is
    re-read because another process may already have rotated the refresh token (xero.md §1.4).
    """

    def __init__(
        self,
        identity_url: str,
        client_id: str,
        client_secret: str,
        token_store: EncryptedTokenStore,
        grant: str = "authorization_code",
        timeout: float = 30,
        max_attempts: int = 4,
    ) -> None:
        if grant not in GRANTS:
            raise ValueError(f"grant must be one of {GRANTS}, not {grant!r}")
        self._token_url = identity_url.rstrip("/") + settings.TOKEN_PATH
        self._client_id = client_id
        self._client_secret = client_secret
        self._store = token_store
        self._grant = grant
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._token: dict | None = None
        self._lock = threading.Lock()

    def access_token(self) -> str:
        token = self._token
        if token is not None and not _expiring(token):
            return token["access_token"]
        return self._renew(rejected=None)

    def renew_rejected(self, rejected_access_token: str) -> str:
        """Called once after a 401 (xero.md §1.9); adopts a token another process stored, else refreshes."""
        return self._renew(rejected=rejected_access_token)

    def _renew(self, rejected: str | None) -> str:
        with self._lock, self._store.lock:
            stored = self._store.load()
            for candidate in (self._token, stored):
                if candidate and not _expiring(candidate) and candidate["access_token"] != rejected:
                    self._token = candidate
                    return candidate["access_token"]
            token = self._client_credentials() if self._grant == "client_credentials" else self._refresh(stored)
            # xero.md §1.4: persist the rotated token before anything uses it.
            self._store.save(token)
            self._token = token
            log.info("Obtained a new Xero access token (expires in %ss)", token.get("expires_in"))
            return token["access_token"]

    def _refresh(self, stored: dict | None) -> dict:
        if not stored or not stored.get("refresh_token"):
            raise XeroAuthError("no stored Xero refresh token; connect the app first")
        session = OAuth2Session(self._client_id, token=stored)
        with _oauthlib_transport(self._token_url):
            return _token_call(
                session,
                lambda: session.refresh_token(
                    self._token_url,
                    refresh_token=stored["refresh_token"],
                    auth=HTTPBasicAuth(self._client_id, self._client_secret),
                    timeout=self._timeout,
                ),
                self._max_attempts,
            )

    def _client_credentials(self) -> dict:
        session = OAuth2Session(client=BackendApplicationClient(client_id=self._client_id))
        with _oauthlib_transport(self._token_url):
            return _token_call(
                session,
                lambda: session.fetch_token(
                    self._token_url, auth=HTTPBasicAuth(self._client_id, self._client_secret), timeout=self._timeout
                ),
                self._max_attempts,
            )


def _expiring(token: dict) -> bool:
    # xero.md §1.4: refresh shortly before expiry rather than after a 401.
    return float(token.get("expires_at", 0)) - settings.REFRESH_BUFFER_SECONDS <= time.time()
