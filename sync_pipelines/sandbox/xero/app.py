"""The Xero sandbox: login/identity hosts (OAuth 2.0) and the api host (connections + Accounting API).

Routes are mounted under /xero; production differs only by base URL (see DESIGN.md). Behaviour mirrors
the fact sheet /work/shared/api/xero.md, cited by section.
"""

import base64
import hashlib
import hmac
import json
import math
import secrets
import string
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
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
from sync_pipelines.sandbox.runtime import Runtime
from sync_pipelines.sandbox.store import COLLECTIONS, Store, dumps
from sync_pipelines.sandbox.xero import tracking
from sync_pipelines.sandbox.xero.accounting import (
    BASE_CURRENCY,
    HISTORY_COLLECTIONS,
    Invalid,
    PostDataInvalid,
    group_summary,
)
from sync_pipelines.sandbox.xero.credit_notes import CreditNotes
from sync_pipelines.sandbox.xero.dates import (
    connection_string,
    expiry_string,
    net,
    now_ms,
    parse_http_timestamp,
)
from sync_pipelines.sandbox.xero.where import QueryError, order_sql, where_sql

PROVIDER_NAME = "Sync Pipelines Sandbox"
NOT_FOUND = "The resource you're looking for cannot be found"  # xero.md §2.2
CODE_TTL_MS = 5 * 60 * 1000  # xero.md §1.2: the longer of the reported code lifetimes
REFRESH_IDLE_MS = 60 * 86_400_000  # xero.md §1.4
HIGH_VOLUME_THRESHOLD = 100_000  # xero.md §3.3
MAX_IDEMPOTENCY_KEY = 128  # xero.md §4.3
DEFAULT_CC_SCOPE = "accounting.transactions accounting.contacts accounting.settings"
GROUPS = "ContactGroups"
TRACKING = "TrackingCategories"
_COLLECTION_NAMES = {name.lower(): name for name in (*COLLECTIONS, GROUPS, TRACKING)}
_SUMMARY_DROPS = {
    "Invoices": ("LineItems", "Payments", "CreditNotes", "Prepayments", "Overpayments"),
    "Contacts": ("Addresses", "Phones", "Balances", "ContactGroups", "ContactPersons", "IsCustomer", "IsSupplier"),
    # Credit notes show their line items only when paged (spec getCreditNotes, `page`).
    "CreditNotes": ("LineItems",),
    # Only invoices, contacts and credit notes have a summary form (xero.md §3.1); a bank transaction always
    # carries the LineItems the spec requires of it, and items are never paged.
    "BankTransactions": (),
    "Payments": (),
    "Items": (),
}
# The query parameters each list GET accepts: the spec's for that operation that the sandbox applies (xero.md §3.3;
# unitdp is not). Xero ignores a parameter it does not know; the sandbox refuses any other with Xero's
# QueryParseException, so a client relying on a filter that is not applied fails here rather than in production.
_PAGED = ("where", "order", "page", "pageSize")
LIST_PARAMETERS = {
    # includeArchived changes nothing on invoices: none is ever ARCHIVED (the spec's status enum has no such value).
    "Invoices": frozenset(
        _PAGED
        + ("IDs", "InvoiceNumbers", "ContactIDs", "Statuses", "includeArchived", "createdByMyApp", "summaryOnly")
        + ("searchTerm",)
    ),
    "Contacts": frozenset(_PAGED + ("IDs", "includeArchived", "summaryOnly", "searchTerm")),
    "BankTransactions": frozenset(_PAGED),
    "Payments": frozenset(_PAGED),
    "CreditNotes": frozenset(_PAGED),
    "Items": frozenset(("where", "order")),  # not paged (xero.md §2.10)
    GROUPS: frozenset(),
    # Archiving a category is not served, so every category is ACTIVE and includeArchived changes nothing.
    TRACKING: frozenset(("includeArchived",)),
}
WRITE_PARAMETERS = frozenset(("summarizeErrors",))  # every write honours it (xero.md §4.2)
CONTACT_SEARCH_FIELDS = ("FirstName", "LastName", "ContactNumber", "EmailAddress")
# searchTerm is a case-insensitive substring search over these fields (spec getInvoices, getContacts).
SEARCH_COLUMNS = {
    "Invoices": ("label", "json_extract(body, '$.Reference')"),
    "Contacts": ("label", *(f"json_extract(body, '$.{field}')" for field in CONTACT_SEARCH_FIELDS)),
}
_ENTITY_FLAG = {
    "Invoices": "HasErrors",
    "Contacts": "HasValidationErrors",
    "BankTransactions": "HasErrors",
    "Payments": "HasValidationErrors",
    GROUPS: "HasValidationErrors",
    "CreditNotes": "HasErrors",
    "Options": "HasValidationErrors",
}
WriteOne = Callable[[Any, dict, int], dict]


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The problem-JSON shape Xero uses for 401/403 (xero.md §1.7, §1.9)."""
    body = {
        "Type": None,
        "Title": title,
        "Status": status,
        "Detail": detail,
        "Instance": str(uuid.uuid4()),
        "Extensions": {},
    }
    return JSONResponse(body, status, headers=headers)


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status)


def api_error(number: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    """ErrorNumber/Type/Message bodies (xero.md §4.4)."""
    return JSONResponse({"ErrorNumber": number, "Type": kind, "Message": message, **extra}, 400)


def short_code(tenant_id: str) -> str:
    """An organisation's ShortCode: "!" and five letters or digits, stable for the tenant (e.g. "!mBdtL")."""
    alphabet = string.ascii_letters + string.digits
    number = uuid.UUID(tenant_id).int
    return "!" + "".join(alphabet[(number >> (6 * n)) % len(alphabet)] for n in range(5))


def envelope(**fields: Any) -> dict[str, Any]:
    """Collection responses share one envelope; DateTimeUTC carries no offset (xero.md §2.2)."""
    return {
        "Id": str(uuid.uuid4()),
        "Status": "OK",
        "ProviderName": PROVIDER_NAME,
        "DateTimeUTC": net(now_ms(), offset=False),
        **fields,
    }


class RateLimiter:
    """Fixed windows per tenant (minute, day), an app-wide minute and concurrent in-flight calls (xero.md §5).

    Windows start at a tenant's first call, so they reset at different times per tenant like Xero's
    current limits; rejected calls do not consume quota.
    """

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._windows: dict[tuple[str, ...], list[float]] = {}

    def _window(self, key: tuple[str, ...], length: float, now: float) -> list[float]:
        window = self._windows.get(key)
        if window is None or now - window[0] >= length:
            window = self._windows[key] = [now, 0]
        return window

    def take(self, tenant: str | None) -> tuple[str | None, int, dict[str, str]]:
        """(problem, retry_after, headers) for one call; tenant None counts only the app minute (xero.md §1.6)."""
        limits, now = self.runtime.limits, time.monotonic()
        with self.runtime.lock:
            app = self._window(("app",), 60, now)
            if tenant is None:
                if app[1] >= limits["app_minute_limit"]:
                    return "appminute", _until(app, 60, now), {"X-AppMinLimit-Remaining": "0"}
                app[1] += 1
                return None, 0, {"X-AppMinLimit-Remaining": str(limits["app_minute_limit"] - int(app[1]))}
            minute = self._window(("minute", tenant), 60, now)
            day = self._window(("day", tenant), 86_400, now)
            problem_name, retry = None, 0
            if app[1] >= limits["app_minute_limit"]:
                problem_name, retry = "appminute", _until(app, 60, now)
            elif day[1] >= limits["day_limit"]:
                problem_name, retry = "day", _until(day, 86_400, now)
            elif minute[1] >= limits["minute_limit"]:
                problem_name, retry = "minute", _until(minute, 60, now)
            elif self.runtime.inflight[tenant] > limits["concurrent_limit"]:
                problem_name, retry = "concurrent", 1
            else:
                for window in (app, minute, day):
                    window[1] += 1
            headers = {
                "X-DayLimit-Remaining": str(max(0, limits["day_limit"] - int(day[1]))),
                "X-MinLimit-Remaining": str(max(0, limits["minute_limit"] - int(minute[1]))),
                "X-AppMinLimit-Remaining": str(max(0, limits["app_minute_limit"] - int(app[1]))),
            }
            return problem_name, retry, headers


def _until(window: list[float], length: float, now: float) -> int:
    return max(1, math.ceil(window[0] + length - now))


class XeroSandbox:
    """Request handlers; one instance per server, sharing the runtime with the admin API."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.tokens = runtime.store  # the app's tokens and codes, whichever organisations they reach
        self.settings = runtime.settings
        self.limiter = RateLimiter(runtime)

    @property
    def store(self) -> Store:
        """The records of the organisation the request is for (its Xero-tenant-id)."""
        return self.runtime.xero.store

    @property
    def credit_notes(self) -> CreditNotes:
        return CreditNotes(self.runtime.xero.ledger)

    def app(self) -> Starlette:
        api = "/api/api.xro/2.0"
        return Starlette(
            routes=[
                Route("/login/identity/connect/authorize", self.authorize, methods=["GET"]),
                Route("/identity/connect/token", self.token, methods=["POST"]),
                Route("/identity/connect/revocation", self.revoke, methods=["POST"]),
                Route("/api/connections", self.connections, methods=["GET"]),
                Route("/api/Connections", self.connections, methods=["GET"]),
                Route("/api/connections/{connection_id}", self.delete_connection, methods=["DELETE"]),
                Route("/api/Connections/{connection_id}", self.delete_connection, methods=["DELETE"]),
                Route(api + "/Organisation", self.organisation, methods=["GET"]),
                Route(api + "/{collection}", self.collection, methods=["GET", "PUT", "POST"]),
                Route(api + "/{collection}/{record_id}", self.record, methods=["GET", "POST"]),
                Route(api + "/{collection}/{record_id}/History", self.history, methods=["GET", "PUT", "POST"]),
                Route(api + "/{collection}/{record_id}/Contacts", self.group_contacts, methods=["PUT", "DELETE"]),
                Route(api + "/{collection}/{record_id}/Contacts/{contact_id}", self.group_contact, methods=["DELETE"]),
                Route(api + "/{collection}/{record_id}/Options", self.tracking_options, methods=["PUT"]),
                Route(api + "/{collection}/{record_id}/Allocations", self.allocations, methods=["PUT"]),
            ]
        )

    # -- OAuth 2.0 (xero.md §1.2-§1.5) --------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        """Auto-consent: validate the request, connect the tenant and redirect with a single-use code."""
        query = request.query_params
        redirect_uri = query.get("redirect_uri", "")
        refused = refused_authorization(query, self.settings.client_id)
        if refused is not None:
            return refused
        now = now_ms()
        auth_event_id = str(uuid.uuid4())
        code = secrets.token_urlsafe(24)
        data = {
            "redirect_uri": redirect_uri,
            "scope": query.get("scope", ""),
            "auth_event_id": auth_event_id,
            "code_challenge": query.get("code_challenge"),
        }
        with self.tokens.transaction() as conn:
            self.tokens.add_token(conn, code, "code", self.settings.client_id, now + CODE_TTL_MS, data)
        # The user consents for every organisation they are offered (xero.md §1.6: one auth event, its tenants).
        for organisation in self.runtime.organisations:
            connection = organisation.store.meta_get("connection")
            if not connection["connected"]:
                connection.update(connected=True, updated_ms=now)
            connection["auth_event_id"] = auth_event_id
            organisation.store.meta_set("connection", connection)
        params = {"code": code, "scope": data["scope"]}
        return redirect_with(redirect_uri, params, query.get("state"))

    async def token(self, request: Request) -> Response:
        form = await form_body(request)
        client_id, secret = client_credentials(request, form)
        grant = form.get("grant_type")
        pkce = grant == "authorization_code" and form.get("code_verifier")
        if client_id != self.settings.client_id or (
            secret != self.settings.client_secret and not (pkce and not secret)
        ):
            return oauth_error("invalid_client", "Unknown client or wrong client secret")
        if grant == "authorization_code":
            return self._exchange_code(form)
        if grant == "refresh_token":
            return self._refresh(form.get("refresh_token", ""))
        if grant == "client_credentials":
            with self.tokens.transaction() as conn:
                return JSONResponse(
                    self._issue(conn, form.get("scope") or DEFAULT_CC_SCOPE, "client_credentials", None, None)
                )
        return oauth_error("unsupported_grant_type", f"grant_type {grant!r} is not supported")

    def _exchange_code(self, form: dict[str, str]) -> Response:
        """Codes are single-use, short-lived and bound to the redirect_uri (xero.md §1.2)."""
        now = now_ms()
        with self.tokens.transaction() as conn:
            record = self.tokens.token(form.get("code", ""))
            if record is None or record["kind"] != "code" or record["revoked"] or record["expires_ms"] <= now:
                return oauth_error("invalid_grant", "The authorization code is invalid, used or expired")
            self.tokens.update_token(conn, record["token"], revoked=1)
            data = record["data"]
            if form.get("redirect_uri") != data["redirect_uri"]:
                return oauth_error("invalid_grant", "redirect_uri does not match the authorization request")
            if data["code_challenge"]:
                if not verifier_matches(form.get("code_verifier", ""), data["code_challenge"]):
                    return oauth_error("invalid_grant", "code_verifier does not match the code_challenge")
            return JSONResponse(self._issue(conn, data["scope"], "authorization_code", None, data["auth_event_id"]))

    def _refresh(self, presented: str) -> Response:
        """Rotation: each refresh returns a new refresh token (xero.md §1.4).

        A superseded token still works within refresh_grace_seconds, but only while its successor (the
        newer refresh token, or an access token issued with it) has never been used; once the client has
        demonstrably moved on, the old token is dead and gets invalid_grant. A retry within the grace
        replaces the unused successor.
        """
        now = now_ms()
        with self.tokens.transaction() as conn:
            record = self.tokens.token(presented)
            if record is None or record["kind"] != "refresh" or record["revoked"] or record["expires_ms"] <= now:
                return oauth_error("invalid_grant", "The refresh token is invalid, revoked or expired")
            if record["successor"]:
                successor = self.tokens.token(record["successor"])
                within_grace = now - record["superseded_ms"] <= self.settings.refresh_grace_seconds * 1000
                if not within_grace or successor["used"]:
                    return oauth_error("invalid_grant", "The refresh token has been superseded")
                self.tokens.revoke_token_family(conn, successor["token"])
            issued = self._issue(
                conn, record["data"]["scope"], "refresh_token", presented, record["data"]["auth_event_id"]
            )
            self.tokens.update_token(
                conn,
                presented,
                used=1,
                successor=issued["refresh_token"],
                superseded_ms=record["superseded_ms"] or now,
            )
            return JSONResponse(issued)

    def _issue(
        self, conn: Any, scope: str, grant: str, previous: str | None, auth_event_id: str | None
    ) -> dict[str, Any]:
        """Access token (a signed JWT) plus a refresh token when offline_access was granted (xero.md §1.3)."""
        now = now_ms()
        ttl = self.settings.access_token_ttl
        scopes = scope.split()
        refresh = secrets.token_urlsafe(32) if "offline_access" in scopes and grant != "client_credentials" else None
        claims = {
            "nbf": now // 1000,
            "exp": now // 1000 + ttl,
            "iss": "https://identity.xero.com",
            "aud": "https://identity.xero.com/resources",
            "client_id": self.settings.client_id,
            "sub": "sandbox-user",
            "xero_userid": "sandbox-user",
            "authentication_event_id": auth_event_id,
            "jti": secrets.token_hex(16),
            "scope": scopes,
        }
        access = self._jwt(claims)
        data = {"scope": scope, "grant": grant, "auth_event_id": auth_event_id}
        self.tokens.add_token(conn, access, "access", self.settings.client_id, now + ttl * 1000, data, parent=refresh)
        body: dict[str, Any] = {"access_token": access, "expires_in": ttl, "token_type": "Bearer", "scope": scope}
        if refresh:
            self.tokens.add_token(
                conn, refresh, "refresh", self.settings.client_id, now + REFRESH_IDLE_MS, data, parent=previous
            )
            body["refresh_token"] = refresh
        if "openid" in scopes:
            body["id_token"] = self._jwt({**claims, "exp": now // 1000 + 300, "email": "sandbox@example.com"})
        return body

    def _jwt(self, claims: dict[str, Any]) -> str:
        def part(value: dict[str, Any]) -> bytes:
            return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).rstrip(b"=")

        signing_input = part({"alg": "HS256", "typ": "JWT"}) + b"." + part(claims)
        signature = hmac.new(self.settings.client_secret.encode(), signing_input, hashlib.sha256).digest()
        return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()

    async def revoke(self, request: Request) -> Response:
        """Revoking a refresh token also removes the user's connection (xero.md §1.5)."""
        form = await form_body(request)
        client_id, secret = client_credentials(request, form)
        if client_id != self.settings.client_id or secret != self.settings.client_secret:
            return oauth_error("invalid_client", "Unknown client or wrong client secret")
        record = self.tokens.token(form.get("token", ""))
        if record is not None and record["kind"] == "refresh":
            with self.tokens.transaction() as conn:
                self.tokens.revoke_token_family(conn, record["token"])
            for organisation in self.runtime.organisations:
                connection = organisation.store.meta_get("connection")
                connection["connected"] = False
                organisation.store.meta_set("connection", connection)
        return Response(status_code=200)

    # -- tenancy ------------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> dict | Response:
        """401 problem JSON for a missing, unknown, revoked or expired access token (xero.md §1.9)."""
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return problem(401, "Unauthorized", "AuthenticationUnsuccessful")
        record = self.tokens.token(header[7:].strip())
        if record is None or record["kind"] != "access" or record["revoked"]:
            return problem(401, "Unauthorized", "AuthenticationUnsuccessful")
        if record["expires_ms"] <= now_ms():
            return problem(401, "Unauthorized", f"TokenExpired: token expired at {expiry_string(record['expires_ms'])}")
        if record["parent"]:
            # Using an access token proves its refresh token's predecessor is obsolete (xero.md §1.4).
            self.tokens.mark_token_used(record["parent"])
        return record

    async def connections(self, request: Request) -> Response:
        """The app's tenants as a bare array; only the app-minute header applies (xero.md §1.6)."""
        token = self._authenticate(request)
        if isinstance(token, Response):
            return token
        problem_name, retry, headers = self.limiter.take(None)
        if problem_name:
            return Response(
                status_code=429, headers={**headers, "Retry-After": str(retry), "X-Rate-Limit-Problem": problem_name}
            )
        wanted = request.query_params.get("authEventId")
        tenants = []
        for organisation in self.runtime.organisations:
            connection = organisation.store.meta_get("connection")
            if connection["connected"] and wanted in (None, connection["auth_event_id"]):
                tenants.append(
                    {
                        "id": connection["id"],
                        "authEventId": connection["auth_event_id"],
                        "tenantId": organisation.tenant_id,
                        "tenantType": "ORGANISATION",
                        "tenantName": organisation.store.meta_get("tenant_name"),
                        "createdDateUtc": connection_string(connection["created_ms"]),
                        "updatedDateUtc": connection_string(connection["updated_ms"]),
                    }
                )
        return JSONResponse(tenants, headers=headers)

    async def delete_connection(self, request: Request) -> Response:
        token = self._authenticate(request)
        if isinstance(token, Response):
            return token
        for organisation in self.runtime.organisations:
            connection = organisation.store.meta_get("connection")
            if request.path_params["connection_id"] == connection["id"] and connection["connected"]:
                connection["connected"] = False
                organisation.store.meta_set("connection", connection)
                return Response(status_code=204)
        return PlainTextResponse(NOT_FOUND, 404)

    # -- Accounting API gate ------------------------------------------------------------------

    async def _gate(
        self, request: Request, handler: Callable[[dict], Response], accepted: frozenset[str] | None = None
    ) -> Response:
        """Accept, auth, tenant, rate limits, query parameters, then idempotency (xero.md §2.1, §1.9, §1.7, §5, §4.3).

        `accepted` names the query parameters the call may carry; by default writes take summarizeErrors, reads none.
        """
        if "application/json" not in request.headers.get("accept", ""):
            # Xero would answer in XML, its default (xero.md §2.1); the sandbox speaks only JSON, so a
            # client that forgets the header fails loudly with 406 instead of parsing XML by accident.
            return PlainTextResponse("Not Acceptable: send Accept: application/json", 406)
        token = self._authenticate(request)
        if isinstance(token, Response):
            return token
        tenant = request.headers.get("xero-tenant-id", "")
        # Custom connections may omit the header (xero.md §1.7): they reach one organisation, the first here.
        custom_connection = token["data"]["grant"] == "client_credentials"
        organisation = self.runtime.organisation(tenant) if tenant else None
        if organisation is None and not tenant and custom_connection:
            organisation = self.runtime.organisations[0]
        if organisation is None or not organisation.store.meta_get("connection")["connected"]:
            return problem(403, "Forbidden", "AuthenticationUnsuccessful")
        with self.runtime.serving(organisation):
            return await self._served(request, handler, accepted, token, tenant)

    async def _served(
        self,
        request: Request,
        handler: Callable[[dict], Response],
        accepted: frozenset[str] | None,
        token: dict,
        tenant: str,
    ) -> Response:
        """The gate past the tenant: the organisation's limits, the query parameters, then idempotency."""
        problem_name, retry, headers = self.limiter.take(tenant)
        if problem_name:
            return PlainTextResponse(
                "Rate limit exceeded",
                429,
                headers={**headers, "Retry-After": str(retry), "X-Rate-Limit-Problem": problem_name},
            )
        if accepted is None:
            accepted = WRITE_PARAMETERS if request.method in ("PUT", "POST") else frozenset()
        unsupported = sorted(set(request.query_params) - accepted)
        key = request.headers.get("idempotency-key")
        if unsupported:
            response = api_error(
                16,
                "QueryParseException",
                f"The sandbox does not apply the query parameter(s) {', '.join(unsupported)} here",
            )
        elif key is not None and request.method in ("POST", "PUT"):
            response = await self._idempotent(request, key, token["client_id"], lambda: handler(token))
        else:
            response = handler(token)
        response.headers.update(headers)
        return response

    async def _idempotent(self, request: Request, key: str, client: str, run: Callable[[], Response]) -> Response:
        """Replay the cached response for a key; a key reused with a different request is a 400 (xero.md §4.3)."""
        if not key or len(key) > MAX_IDEMPOTENCY_KEY:
            return api_error(
                14, "PostDataInvalidException", f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
            )
        body = await request.body()
        fingerprint = hashlib.sha256(
            f"{request.method} {request.url.path}?{request.url.query}\n".encode() + body
        ).hexdigest()
        now = now_ms()
        cached = self.store.idempotent_response(client, key, now - self.settings.idempotency_ttl * 1000)
        if cached is not None:
            if cached[0] != fingerprint:
                return problem(400, "Bad Request", f"Idempotency Key: {key} is used with a different request.")
            return Response(cached[3], cached[1], media_type=cached[2])
        response = run()
        self.store.remember_response(
            client,
            key,
            fingerprint,
            now,
            response.status_code,
            response.media_type or "text/plain",
            bytes(response.body),
        )
        return response

    def _collection_name(self, request: Request) -> str | None:
        return _COLLECTION_NAMES.get(request.path_params["collection"].lower())

    # -- Accounting API endpoints -------------------------------------------------------------

    async def organisation(self, request: Request) -> Response:
        """The tenant's organisation (https://developer.xero.com/documentation/api/accounting/organisation): its
        name, base currency and the ShortCode that deep links into the Xero app use."""

        def read(token: dict) -> Response:
            tenant_id, name = self.runtime.xero.tenant_id, self.store.meta_get("tenant_name")
            organisation = {
                "Name": name, "LegalName": name, "PaysTax": True, "Version": "GLOBAL", "OrganisationType": "COMPANY",
                "BaseCurrency": BASE_CURRENCY, "CountryCode": "US", "IsDemoCompany": False,
                "OrganisationStatus": "ACTIVE", "FinancialYearEndDay": 31, "FinancialYearEndMonth": 12,
                "Timezone": "UTC", "OrganisationEntityType": "COMPANY", "ShortCode": short_code(tenant_id),
                "OrganisationID": tenant_id, "Edition": "BUSINESS", "Class": "STANDARD", "Addresses": [], "Phones": [],
                "ExternalLinks": [], "PaymentTerms": {},
            }  # fmt: skip
            return JSONResponse(envelope(Organisations=[organisation]))

        return await self._gate(request, read)

    async def collection(self, request: Request) -> Response:
        name = self._collection_name(request)
        # xero.md §2.3: groups are created by PUT on the collection and changed only at /ContactGroups/{id}; tracking
        # categories are created by PUT (spec createTrackingCategory) and have no POST on the collection.
        if name is None or (name in (GROUPS, TRACKING) and request.method == "POST"):
            return PlainTextResponse(NOT_FOUND, 404)
        if request.method == "GET":
            readers = {GROUPS: self._list_groups, TRACKING: self._list_tracking}
            read = readers.get(name, lambda: self._list(request, name))
            return await self._gate(request, lambda token: read(), LIST_PARAMETERS[name])
        body, write = await request.body(), self._writer(request, name, None)
        return await self._gate(request, lambda token: self._write(request, name, body, write))

    async def record(self, request: Request) -> Response:
        name = self._collection_name(request)
        # Tracking categories are read here; renaming, archiving and deleting them are not served.
        if name is None or (name == TRACKING and request.method == "POST"):
            return PlainTextResponse(NOT_FOUND, 404)
        record_id = request.path_params["record_id"]
        if request.method == "GET":
            return await self._gate(request, lambda token: self._get(name, record_id))
        body = await request.body()

        def update(token: dict) -> Response:
            target_id = self._item_id(name, record_id)
            write = self._writer(request, name, target_id)
            return self._if_found(name, target_id, lambda: self._write(request, name, body, write))

        return await self._gate(request, update)

    async def history(self, request: Request) -> Response:
        """GET a record's history, PUT (or POST, which the docs say behaves the same) notes (xero.md §2.7)."""
        name = self._collection_name(request)
        if name not in HISTORY_COLLECTIONS:
            return PlainTextResponse(NOT_FOUND, 404)
        record_id = request.path_params["record_id"]
        if request.method == "GET":
            return await self._gate(
                request,
                lambda token: self._if_found(
                    name,
                    record_id,
                    lambda: _json_response(envelope(HistoryRecords=self.store.history(name, record_id))),
                ),
            )
        body = await request.body()

        def add_note(conn: Any, element: dict, now: int) -> dict:
            return self.runtime.xero.ledger.add_note(conn, name, record_id, element, now)

        return await self._gate(
            request,
            lambda token: self._if_found(
                name, record_id, lambda: self._write(request, "HistoryRecords", body, add_note)
            ),
        )

    async def group_contacts(self, request: Request) -> Response:
        """PUT adds members, DELETE removes every member (xero.md §2.6)."""
        if self._collection_name(request) != GROUPS:
            return PlainTextResponse(NOT_FOUND, 404)
        group_id = request.path_params["record_id"]
        if request.method == "DELETE":
            return await self._gate(request, lambda token: self._remove_members(group_id, None))
        body = await request.body()

        def add_member(conn: Any, element: dict, now: int) -> dict:
            return self.runtime.xero.ledger.add_group_member(conn, group_id, element)

        return await self._gate(
            request,
            lambda token: self._if_found(GROUPS, group_id, lambda: self._write(request, "Contacts", body, add_member)),
        )

    async def group_contact(self, request: Request) -> Response:
        if self._collection_name(request) != GROUPS:
            return PlainTextResponse(NOT_FOUND, 404)
        group_id, contact_id = request.path_params["record_id"], request.path_params["contact_id"]
        return await self._gate(request, lambda token: self._remove_members(group_id, contact_id))

    async def tracking_options(self, request: Request) -> Response:
        """PUT adds options to a tracking category (spec createTrackingOptions)."""
        if self._collection_name(request) != TRACKING:
            return PlainTextResponse(NOT_FOUND, 404)
        category_id = request.path_params["record_id"]
        body = await request.body()

        def add_option(conn: Any, element: dict, now: int) -> dict:
            return tracking.add_option(self.store, conn, category_id, element)

        return await self._gate(
            request,
            lambda token: self._if_found(
                TRACKING, category_id, lambda: self._write(request, "Options", body, add_option)
            ),
        )

    async def allocations(self, request: Request) -> Response:
        """PUT allocates a credit note to invoices (spec createCreditNoteAllocation)."""
        if self._collection_name(request) != "CreditNotes":
            return PlainTextResponse(NOT_FOUND, 404)
        credit_note_id = request.path_params["record_id"]
        body = await request.body()

        def allocate(conn: Any, element: dict, now: int) -> dict:
            return self.credit_notes.allocate(conn, credit_note_id, element, now)

        return await self._gate(
            request,
            lambda token: self._if_found(
                "CreditNotes", credit_note_id, lambda: self._write(request, "Allocations", body, allocate)
            ),
        )

    def _item_id(self, name: str, record_id: str) -> str:
        """Items are also addressed by Code (the spec's updateItem example posts Code); everything else by its ID."""
        if name == "Items" and self.store.get("Items", record_id) is None:
            rows = self.store.find("Items", "label = ? AND malformed IS NULL", (record_id,), limit=1)
            if rows:
                return json.loads(rows[0][0])["ItemID"]
        return record_id

    def _if_found(self, name: str, record_id: str, handle: Callable[[], Response]) -> Response:
        """The plain-text 404 (xero.md §2.2) unless the record exists; a group exists only while it is ACTIVE
        (spec ContactGroup.Status: only ACTIVE groups are returned on GETs)."""
        if name == GROUPS:
            group = self.store.contact_group(record_id)
            found = group is not None and group["Status"] == "ACTIVE"
        elif name == TRACKING:
            found = self.store.tracking_category(record_id) is not None
        else:
            found = self.store.get(name, record_id) is not None
        return handle() if found else PlainTextResponse(NOT_FOUND, 404)

    def _remove_members(self, group_id: str, contact_id: str | None) -> Response:
        """204 with no body; an unknown ContactID is a 400 ValidationException (the spec's one error response for
        removing a member). A contact that is not a member is already removed, so a retried DELETE succeeds."""

        def remove() -> Response:
            try:
                with self.store.transaction() as conn:
                    self.runtime.xero.ledger.remove_group_members(conn, group_id, contact_id)
            except Invalid as exc:
                failed = _failed("Contacts", {"ContactID": contact_id}, exc.messages)
                return api_error(10, "ValidationException", "A validation exception occurred", Elements=[failed])
            return Response(status_code=204)

        return self._if_found(GROUPS, group_id, remove)

    def _list(self, request: Request, name: str) -> Response:
        """Paging, If-Modified-Since, where/order and the explicit filters (xero.md §3.1-§3.3)."""
        query = request.query_params
        conditions: list[str] = []
        params: list[Any] = []
        try:
            since = request.headers.get("if-modified-since")
            if since:
                try:
                    params.append(parse_http_timestamp(since))
                except (ValueError, TypeError) as exc:
                    raise QueryError(f"If-Modified-Since {since!r} is not a valid timestamp") from exc
                # Inclusive boundary (xero.md §3.2 leaves it open): a client re-reading its watermark sees
                # records that share it, never misses them.
                conditions.append("updated_ms >= ?")
            if query.get("where"):
                sql, values = where_sql(name, query["where"])
                conditions.append(sql)
                params.extend(values)
            search = query.get("searchTerm", "").strip()
            if search:
                columns = SEARCH_COLUMNS[name]
                conditions.append(" OR ".join(f"instr(casefold({column}), ?) > 0" for column in columns))
                params.extend([search.casefold()] * len(columns))
            if _bool_param(query, "createdByMyApp"):
                conditions.append("id IN (SELECT record_id FROM created_by_app WHERE collection = ?)")
                params.append(name)
            order = order_sql(name, query.get("order"))
            page = _int_param(query, "page")
            page_size = min(1000, max(1, _int_param(query, "pageSize") or 100))
        except QueryError as exc:
            return api_error(16, "QueryParseException", str(exc))
        for param, column in (
            ("IDs", "id"),
            ("Statuses", "status"),
            ("ContactIDs", "ref_id"),
            ("InvoiceNumbers", "label"),
        ):
            values = [v.strip() for v in query.get(param, "").split(",") if v.strip()]
            if values and (param in ("IDs", "Statuses") or name == "Invoices"):
                conditions.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        if name == "Contacts" and query.get("includeArchived", "").lower() != "true":
            conditions.append("status != 'ARCHIVED'")  # archived contacts are hidden by default (xero.md §7)
        where = " AND ".join(f"({c})" for c in conditions) or "1"
        summary = query.get("summaryOnly", "").lower() == "true"
        if page is None:
            # Unpaged GETs return everything in summary form; over 100k documents Xero refuses (xero.md §3.1, §3.3).
            if self.runtime.store.count(name, where, params) > HIGH_VOLUME_THRESHOLD:
                return api_error(
                    51, "HighVolumeException", "The request would process too many documents; use paging and filters"
                )
            rows = self.store.find(name, where, params, order)
            return self._collection_response(name, [body for body, _ in rows], None, summary=True)
        page = max(1, page)
        rows, total = self.store.page(name, where, params, order, limit=page_size, offset=(page - 1) * page_size)
        pagination = {
            "page": page,
            "pageSize": page_size,
            "pageCount": math.ceil(total / page_size),
            "itemCount": total,
        }
        return self._collection_response(name, [body for body, _ in rows], pagination, summary=summary)

    def _list_tracking(self) -> Response:
        """Every category with its options, by name (spec getTrackingCategories); not paged, no If-Modified-Since,
        and the gate refuses where and order rather than ignoring them."""
        categories = [tracking.render_category(self.store, c) for c in self.store.tracking_categories()]
        return _json_response(envelope(TrackingCategories=categories))

    def _list_groups(self) -> Response:
        """ACTIVE groups, not paged, in creation order; no If-Modified-Since, where or order (xero.md §2.6, §3.1,
        §3.2): the gate refuses those parameters rather than ignoring them."""
        return _json_response(envelope(ContactGroups=[group_summary(group) for group in self.store.contact_groups()]))

    def _collection_response(self, name: str, bodies: list[str], pagination: dict | None, summary: bool) -> Response:
        """Splice stored JSON into the envelope without re-serialising each record."""
        if summary and _SUMMARY_DROPS[name]:
            bodies = [dumps({k: v for k, v in json.loads(b).items() if k not in _SUMMARY_DROPS[name]}) for b in bodies]
        head = envelope(pagination=pagination) if pagination else envelope()
        text = dumps(head)[:-1] + f',"{name}":[' + ",".join(bodies) + "]}"
        return Response(text, media_type="application/json")

    def _get(self, name: str, record_id: str) -> Response:
        """Single-record GETs return a 1-element array; invoices also resolve by number, contacts by ContactNumber
        (xero.md §2.1) and items by Code."""
        if name == GROUPS:
            return self._if_found(name, record_id, lambda: self._get_group(record_id))
        if name == TRACKING:
            return self._if_found(name, record_id, lambda: self._get_tracking_category(record_id))
        rows = self.store.find(name, "id = ?", (record_id,), limit=1)
        if not rows and name == "Invoices":
            rows = self.store.find(name, "label = ?", (record_id,), limit=1)
        if not rows and name == "Contacts":
            rows = self.store.find(name, "json_extract(body, '$.ContactNumber') = ?", (record_id,), limit=1)
        if not rows and name == "Items":
            rows = self.store.find(name, "label = ? AND malformed IS NULL", (record_id,), limit=1)
        if not rows:
            return PlainTextResponse(NOT_FOUND, 404)
        return self._collection_response(name, [rows[0][0]], None, summary=False)

    def _get_tracking_category(self, category_id: str) -> Response:
        category = tracking.render_category(self.store, self.store.tracking_category(category_id))
        return _json_response(envelope(TrackingCategories=[category]))

    def _get_group(self, group_id: str) -> Response:
        """One group with its members in the order they were added, shaped as the spec's getContactGroup example."""
        group = self.store.contact_group(group_id)
        members = []
        for contact_id in self.store.group_members(group_id):
            contact = self.store.get("Contacts", contact_id)
            members.append(
                {
                    "ContactID": contact_id,
                    "Name": contact["Name"],
                    "Addresses": [],
                    "Phones": [],
                    "ContactGroups": [],
                    "ContactPersons": [],
                    "HasValidationErrors": False,
                }
            )
        return _json_response(envelope(ContactGroups=[group_summary(group, members)]))

    def _writer(self, request: Request, name: str, record_id: str | None) -> WriteOne:
        """How one element of a PUT (create only) or POST (create or update) is written (xero.md §4.1)."""
        create_only = request.method == "PUT"
        if name == GROUPS:
            ledger = self.runtime.xero.ledger
            return lambda conn, element, now: ledger.write_contact_group(conn, element, create_only, record_id)
        if name == TRACKING:
            return lambda conn, element, now: tracking.create_category(self.store, conn, element)
        return lambda conn, element, now: self._write_one(conn, name, element, create_only, record_id, now)

    def _write(self, request: Request, name: str, raw: bytes, write_one: WriteOne) -> Response:
        """Elements under the `name` key, each written in its own savepoint; summarizeErrors picks 400 or
        per-element status (xero.md §4.2)."""
        try:
            elements = _elements(raw, name)
        except PostDataInvalid as exc:
            return api_error(14, "PostDataInvalidException", str(exc))
        summarize = request.query_params.get("summarizeErrors", "true").lower() != "false"
        now = now_ms()
        results: list[tuple[dict, list[str]]] = []
        try:
            with self.store.transaction() as conn:
                for element in elements:
                    conn.execute("SAVEPOINT element")
                    try:
                        saved = write_one(conn, element, now)
                    except Invalid as exc:
                        conn.execute("ROLLBACK TO element")
                        results.append((element, exc.messages))
                    else:
                        results.append((saved, []))
                    conn.execute("RELEASE element")
        except PostDataInvalid as exc:
            return api_error(14, "PostDataInvalidException", str(exc))
        failed = [_failed(name, element, messages) for element, messages in results if messages]
        if summarize and failed:
            # Elements without errors were saved anyway and their IDs are not returned (xero.md §4.2).
            return api_error(10, "ValidationException", "A validation exception occurred", Elements=failed)
        rendered = [
            {**record, "StatusAttributeString": "OK"} if not messages else _failed(name, record, messages)
            for record, messages in results
        ]
        return _json_response({**envelope(), name: rendered})

    def _write_one(
        self, conn: Any, name: str, element: dict, create_only: bool, record_id: str | None, now: int
    ) -> dict:
        ledger = self.runtime.xero.ledger
        if name == "Payments":
            if record_id is None and element.get("PaymentID") is None:
                return ledger.create_payment(conn, element, now)[0]
            payment = self.store.get("Payments", record_id or element["PaymentID"], conn)
            if payment is None:
                raise Invalid("Payment could not be found")
            if element.get("Status") != "DELETED":
                raise Invalid('Payments cannot be edited; the only allowed update is {"Status": "DELETED"}')
            return ledger.delete_payment(conn, payment, now)
        write = {
            "Invoices": ledger.write_invoice,
            "Contacts": ledger.write_contact,
            "BankTransactions": ledger.write_bank_transaction,
            "Items": ledger.write_item,
            "CreditNotes": self.credit_notes.write,
        }[name]
        saved = write(conn, element, now, create_only=create_only, target_id=record_id)
        if name == "Invoices" and not (record_id or element.get("InvoiceID")):
            # What createdByMyApp=true lists: invoices created through this API, not seeded or made by a user.
            self.store.mark_created_by_app(conn, name, saved["InvoiceID"])
        return saved


def _int_param(query: Any, name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise QueryError(f"{name} must be an integer") from exc


def _bool_param(query: Any, name: str) -> bool:
    """A true/false parameter (any case); absent is false, anything else a QueryParseException."""
    value = query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise QueryError(f"{name} must be true or false")
    return value == "true"


def _elements(raw: bytes, name: str) -> list[dict]:
    """Bodies are {"Invoices": [...]} or a bare object (xero.md §2.3)."""
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise PostDataInvalid(f"The request body is not valid JSON: {exc}") from exc
    if isinstance(body, dict) and isinstance(body.get(name), list):
        elements = body[name]
    elif isinstance(body, dict) and name not in body:
        elements = [body]
    else:
        raise PostDataInvalid(f'Expected {{"{name}": [...]}} or a single object')
    if not elements or not all(isinstance(e, dict) for e in elements):
        raise PostDataInvalid(f"{name} must be a non-empty array of objects")
    return elements


def _json_response(body: dict) -> Response:
    return Response(dumps(body), media_type="application/json")


def _failed(name: str, element: dict, messages: list[str]) -> dict:
    """A failed element echoed back with its errors (xero.md §4.2, §4.4); history notes carry no error flag."""
    flag = {_ENTITY_FLAG[name]: True} if name in _ENTITY_FLAG else {}
    return {
        **element,
        **flag,
        "StatusAttributeString": "ERROR",
        "ValidationErrors": [{"Message": message} for message in messages],
    }
