"""What the sandbox's OAuth servers (Xero, Salesforce) share: form bodies, client credentials, code redirects."""

import base64
import hashlib
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse


async def form_body(request: Request) -> dict[str, str]:
    """Token and revocation bodies are application/x-www-form-urlencoded (xero.md §1.3, salesforce.md §1)."""
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))


def client_credentials(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    """HTTP Basic or form fields; both vendors accept both (xero.md §1.3, salesforce.md §1.4)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, None
        return client_id, secret
    return form.get("client_id"), form.get("client_secret")


def refused_authorization(query: QueryParams, client_id: str) -> PlainTextResponse | None:
    """Why an authorize request cannot be consented to, or None; redirects go to loopback only.

    The vendors show an error page (Xero its dashboard, xero.md §1.2); the sandbox says what was wrong.
    """
    target = urlsplit(query.get("redirect_uri", ""))
    if (
        query.get("response_type") != "code"
        or query.get("client_id") != client_id
        or target.scheme not in ("http", "https")
        or target.hostname not in ("127.0.0.1", "localhost")
    ):
        return PlainTextResponse("Invalid authorization request: check response_type, client_id and redirect_uri", 400)
    return None


def redirect_with(redirect_uri: str, params: dict[str, str], state: str | None) -> RedirectResponse:
    """The consent's 302 back to the client, the code (and the state it sent) added to its query."""
    if state is not None:
        params = {**params, "state": state}
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return RedirectResponse(redirect_uri + separator + urlencode(params), 302)


def verifier_matches(verifier: str, challenge: str) -> bool:
    """PKCE S256 (RFC 7636 §4.6): base64url(SHA-256(verifier)) without padding equals the challenge."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge
