"""The Segment Profile API sandbox (Unify/Engage, read profiles), mounted under /profiles: it mirrors
https://profiles.segment.com, so a client differs only by base URL, "{base}/profiles" (segment.md §7).

Served: GET /v1/spaces/{space_id}/collections/{users|accounts}/profiles/{id_type}:{id_value}/{resource} for the
resources traits, external_ids, events, metadata and links, over one space (SandboxSettings.segment_space_id).
Profiles are not stored: each request resolves them from every message the workspace received, what its sources
emitted (segment_emitted) and what our product sent to the Tracking API (segment_messages, completed as its source
passes it on, sources.complete). What the docs say, and what the sandbox does with it:

- Docs: https://segment.com/docs/unify/profile-api/ (routes, parameters, examples, errors, pagination) and
  https://segment.com/docs/unify/profile-api-limits/ (100 requests/s per space, 14 days of events).
- Auth: HTTP Basic with the space's access token as user name and the password blank (SandboxSettings.
  segment_profile_token). Missing, wrong, a Bearer token or a password: 401 authentication_error (the docs only say
  "keep the password blank"; the sandbox takes the strict reading).
- Errors are {"error": {"code", "message"}} with the documented codes: authentication_error (401),
  invalid_request_error (400: a query parameter out of range), validation_error (400: a malformed collection or
  identifier, as the docs' example for `collection`), not_found (404: "Profile was not found.", as documented; also
  an unknown space, resource or path) and rate_limit_error (429). The docs name no code for 5xx; the fault knobs'
  5xx say "server_error". Every answer carries a Request-Id header (docs: "Request IDs").
- Rate limit: at most SandboxSettings.segment_profile_requests_per_second (default 100, the documented figure)
  authenticated requests to the space in any one second (a sliding window), else 429. The docs name no Retry-After
  and recommend exponential backoff, so none is sent. Segment's fault knobs (/_admin/faults "segment", shared with
  the Tracking and Public APIs) inject 429s and 5xx in the same shapes.
- Identity resolution (the limits page: "a common external_id joins two existing profiles"): a user profile is a
  userId's messages plus those sent with only an anonymousId that a message carrying both tied to it. An
  anonymousId seen with several userIds belongs to the one it was first seen with (in the order Segment received
  the messages), and one never seen with a userId is an anonymous profile of its own. `email:` finds the profile
  whose merged traits' email equals it, case-insensitively (several: the one that took the email last). Accounts
  are the group calls of a groupId; their events are the track calls with that context.groupId. The users
  collection takes user_id, anonymous_id and email, accounts take group_id; other types (Segment allows custom
  ones) find nothing, a 404.
- traits: identify traits (group traits for accounts) merged oldest first by message timestamp, a later value
  winning ("last updated precedence" in the docs), top-level keys only; users also carry the space's computed
  traits and audiences below (an audience is a boolean trait named after it: https://segment.com/docs/engage/faqs/
  and https://segment.com/docs/engage/using-engage-data/). `class`, `include`, `limit` (1-200, default 10) and
  `verbose` as documented: verbose values are {"value", "source_id", "updated_at"}, the source and timestamp of the
  message that last changed the value (Engage's own traits name ENGAGE_SOURCE_ID). Traits come sorted by name, and
  `next` is the name of the first trait of the next page, as the docs' example ("next": "browser") suggests.
- events: track calls of the last 14 days by their `timestamp` against the real clock, newest first unless
  `sort=asc`; `start` (inclusive) and `end` (exclusive; the docs say only "after" and "before") take ISO 8601
  dates or times, naive ones in UTC; `include`/`exclude` take event names; `limit` 1-100, default 10. Items have
  the docs' fields: the message's own external ids, context, type, message_id, source_id (the message's source),
  timestamp, properties, event and related {"users": the profile's Segment id} ({"accounts": ...} on accounts:
  the docs show users only). `next` is the base64 of "<timestamp in ns>::<message_id>" of the last item, as the
  docs' example cursor decodes.
- external_ids: one item per user_id, anonymous_id (those resolved to this profile) and email trait (group_id on
  accounts), in the order first seen, with source_id, created_at and first_message_id from that first message
  (created_at: when Segment received it); `include` names id types; `limit` 1-100, default 10; `next` is an opaque
  offset. `verbose` is accepted and changes nothing (the docs do not say what it adds).
- metadata: the docs' fields: created_at/updated_at (when Segment received the profile's first and latest
  message), expires_at null, first_/last_message_id and first_/last_source_id.
- links: {"data": [{"to_collection", "external_ids"}]} as the docs show (not "type"): a user's accounts (its group
  calls' groupIds) or an account's users, in the order linked, their external ids without first_message_id as in
  the docs' example. `limit` is 1-20 (the documented maximum), default 10; the docs' example has no cursor, the
  sandbox adds the common one so more than 20 can be paged.
- Every list answer's cursor is {"url": the request's path and query, "has_more", "next" ("" at the end),
  "limit"}, as in the docs' first traits example.

Efficiency: an identity graph (userId, anonymousId, groupId and email -> the rows that carry them) is kept in memory
and brought up to date on each request from the rows added since (a reset, which empties the tables, rebuilds it);
a request then reads only its profile's rows, by primary key.
"""

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
import uuid
from bisect import bisect_left
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync_pipelines.sandbox.faults import FaultInjector, route_path
from sync_pipelines.sandbox.runtime import Runtime
from sync_pipelines.sandbox.segment.sources import TRACKING_API_SOURCE, Dropped, complete
from sync_pipelines.sandbox.store import Store, dumps

VENDOR = "segment"
ENGAGE_SOURCE_ID = "EngZ4qT7wX2cV9bN5mK8hJ"  # the space's own source: what Engage computes is set by it
LOOKBACK = timedelta(days=14)  # the events resource's history (profile-api-limits)
CENT = Decimal("0.01")
COLLECTIONS = {"users": ("user_id", "anonymous_id", "email"), "accounts": ("group_id",)}
RESOURCES = ("traits", "external_ids", "events", "metadata", "links")
TRAIT_CLASSES = ("audience", "computed_trait")
# (default, maximum) of `limit` per resource.
TRAITS_LIMIT, LIST_LIMIT, LINKS_LIMIT = (10, 200), (10, 100), (10, 20)
_TABLES = ("segment_emitted", "segment_messages")  # what the sources emitted, what the Tracking API accepted
_CHUNK = 500  # rows read per query
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- the space's computed traits and audiences ---------------------------------------------------------------


@dataclass
class Tally:
    """What a user's messages add up to at one point of their replay (oldest first), which computed traits and
    audiences read."""

    traits: dict[str, Any] = field(default_factory=dict)  # identify traits merged so far
    orders: int = 0
    revenue: Decimal = Decimal(0)
    last_order_at: str | None = None
    unrefunded: dict[str, Decimal] = field(default_factory=dict)  # order_id -> its revenue not yet refunded

    def add(self, message: dict[str, Any]) -> None:
        if message.get("type") != "track":
            return
        properties = message.get("properties") if isinstance(message.get("properties"), dict) else {}
        order_id = properties.get("order_id")
        order_id = None if order_id is None else str(order_id)
        if message.get("event") == "Order Completed":
            value = _amount(properties.get("revenue"))
            value = _amount(properties.get("total")) if value is None else value
            value = value or Decimal(0)
            self.orders += 1
            self.revenue += value
            self.last_order_at = message["timestamp"]
            if order_id is not None:
                self.unrefunded[order_id] = self.unrefunded.get(order_id, Decimal(0)) + value
        elif message.get("event") == "Order Refunded":
            left = self.unrefunded.get(order_id, Decimal(0)) if order_id is not None else Decimal(0)
            value = _amount(properties.get("total"))
            # A refund naming the order alone refunds it whole (the e-commerce spec; seed.py sends both kinds).
            value = left if value is None else value
            self.revenue -= value
            if order_id is not None:
                self.unrefunded[order_id] = max(Decimal(0), left - value)


@dataclass(frozen=True)
class ComputedTrait:
    name: str
    description: str
    value: Callable[[Tally], Any]  # None: the profile has no value yet and the trait is left out


@dataclass(frozen=True)
class Audience:
    name: str
    description: str
    member: Callable[[dict[str, Any], dict[str, Any]], bool]  # (computed trait values, merged traits) -> inside


COMPUTED_TRAITS = (
    ComputedTrait("orders_completed", "How many Order Completed track events the user sent.", lambda t: t.orders),
    ComputedTrait(
        "lifetime_revenue",
        "Order Completed properties.revenue (else total) summed, less each Order Refunded's properties.total (one "
        "naming only its order_id: what that order had left), rounded to cents, as a number.",
        lambda t: float(t.revenue.quantize(CENT)),
    ),
    ComputedTrait(
        "last_order_at",
        "The timestamp of the latest Order Completed; absent before the first.",
        lambda t: t.last_order_at,
    ),
)
AUDIENCES = (
    Audience("repeat_buyers", "Users with orders_completed of 2 or more.", lambda v, t: v["orders_completed"] >= 2),
    Audience(
        "high_value_customers", "Users with lifetime_revenue of 250 or more.", lambda v, t: v["lifetime_revenue"] >= 250
    ),
    Audience(
        "newsletter_subscribers",
        "Users whose merged trait newsletter_opt_in is true.",
        lambda v, t: t.get("newsletter_opt_in") is True,
    ),
)


@dataclass(frozen=True)
class Trait:
    """A trait's value on a profile, where it came from, and its class: "trait" (sent), "computed_trait" or
    "audience"."""

    value: Any
    source_id: str
    updated_at: str
    kind: str

    def as_json(self, verbose: bool) -> Any:
        return (
            {"value": self.value, "source_id": self.source_id, "updated_at": self.updated_at} if verbose else self.value
        )


def profile_traits(collection: str, messages: Iterable[dict[str, Any]]) -> dict[str, Trait]:
    """A profile's traits from its messages in timestamp order: sent traits merged (identify for users, group for
    accounts), and for users the computed traits and audiences as Engage keeps them. Every message is replayed, so
    an audience a user ever entered stays on the profile: true while inside, false once out."""
    call = "identify" if collection == "users" else "group"
    sent: dict[str, Trait] = {}
    engage: dict[str, Trait] = {}
    tally = Tally()
    for message in messages:
        if message.get("type") == call and isinstance(message.get("traits"), dict):
            for name, value in message["traits"].items():
                if name not in sent or not _same(sent[name].value, value):
                    sent[name] = Trait(value, message["projectId"], message["timestamp"], "trait")
                tally.traits[name] = value
        if collection != "users":
            continue
        tally.add(message)
        values = {}
        for trait in COMPUTED_TRAITS:
            values[trait.name] = value = trait.value(tally)
            if value is not None and (trait.name not in engage or not _same(engage[trait.name].value, value)):
                engage[trait.name] = Trait(value, ENGAGE_SOURCE_ID, message["timestamp"], "computed_trait")
        for audience in AUDIENCES:
            inside = audience.member(values, tally.traits)
            if (audience.name in engage and engage[audience.name].value != inside) or (
                audience.name not in engage and inside
            ):
                engage[audience.name] = Trait(inside, ENGAGE_SOURCE_ID, message["timestamp"], "audience")
    return {**sent, **engage}


def _amount(value: Any) -> Decimal | None:
    """A money property as a number: JSON numbers and numeric strings; anything else counts as missing."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _same(left: Any, right: Any) -> bool:
    """Equal as JSON (so true and 1 differ)."""
    return dumps(left) == dumps(right)


# -- errors, auth, limits, faults ------------------------------------------------------------------------------


class ProfileApiError(Exception):
    """An error answer: {"error": {"code", "message"}} with its status."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> JSONResponse:
        return JSONResponse(_error_body(self.code, self.message), self.status)


def _error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# The documented messages (https://segment.com/docs/unify/profile-api/#errors).
NOT_FOUND_MESSAGE = "Profile was not found."
UNAUTHENTICATED_MESSAGE = "Failure to properly authenticate yourself in the request."
RATE_LIMITED_MESSAGE = "Too many requests hit the API too quickly."


class SlidingWindow:
    """At most `limit` requests per key in any `seconds`; a refused request does not count. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str, limit: int, seconds: float) -> bool:
        now = time.monotonic()
        with self._lock:
            window = self._times[key]
            while window and now - window[0] >= seconds:
                window.popleft()
            if len(window) >= limit:
                return False
            window.append(now)
            return True


class _BasicAuth:
    """Every request needs `Authorization: Basic base64(<token>:)`; anything else is a 401."""

    def __init__(self, app: ASGIApp, runtime: Runtime):
        self.app, self.runtime = app, runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(Request(scope)):
            await ProfileApiError(401, "authentication_error", UNAUTHENTICATED_MESSAGE).response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, ValueError):
            return False
        token, colon, password = decoded.partition(":")
        expected = self.runtime.settings.segment_profile_token
        return bool(colon) and not password and hmac.compare_digest(token.encode(), expected.encode())


class _RequestId:
    """A fresh Request-Id header on every answer, errors and injected faults included."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4()).encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"request-id", request_id)]}
            await send(message)

        await self.app(scope, receive, send_with_id)


class ProfileApiFaults(FaultInjector):
    """Segment's fault injector with the Profile API's error bodies; stats are keyed by the path as
    https://profiles.segment.com sees it, e.g. "GET /v1/spaces/.../traits"."""

    def __init__(self, app: ASGIApp, runtime: Runtime):
        super().__init__(app, VENDOR, runtime)

    def _error(self, server_error: bool, retry_after: int) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        headers = [(b"content-type", b"application/json")]
        if server_error:
            body = _error_body("server_error", "Something went wrong on Segment's side.")
            return 500, headers, json.dumps(body).encode()
        return 429, headers, json.dumps(_error_body("rate_limit_error", RATE_LIMITED_MESSAGE)).encode()


# -- the identity graph ------------------------------------------------------------------------------------------

Ref = tuple[int, int]  # (index in _TABLES, seq)
Key = tuple[str, str]  # a profile's canonical id: ("user_id" | "anonymous_id" | "group_id", value)
Arrival = tuple[str, int, int]  # (receivedAt, table index, seq): the order Segment received messages in


def _id(value: Any) -> str | None:
    """An id as Segment keys it (numbers as strings, segment.md §3); empty or not scalar: none."""
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        return None
    return str(value)


def _message(index: int, body: str) -> dict[str, Any] | None:
    """A stored row as the workspace received it; a Tracking API message is completed as its source passes it on,
    and one Segment could not read the timestamps of is left out, as forwarding leaves it (workspace.forward)."""
    try:
        message = json.loads(body)
        if index == 1:
            message = complete(TRACKING_API_SOURCE, message, datetime.fromisoformat(message["receivedAt"]))
    except (Dropped, KeyError, TypeError, ValueError):
        return None
    return message if isinstance(message, dict) else None


class IdentityGraph:
    """Which stored messages make up which profile, built from the rows added since the last request."""

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._first: list[int | None] = [None] * len(_TABLES)
        self._last = [0] * len(_TABLES)
        self._users: dict[str, list[Ref]] = defaultdict(list)  # userId -> its messages
        self._anonymous: dict[str, list[Ref]] = defaultdict(list)  # anonymousId -> messages with no userId
        self._groups: dict[str, list[Ref]] = defaultdict(list)  # groupId -> its group calls
        self._account_tracks: dict[str, list[Ref]] = defaultdict(list)  # context.groupId -> track calls
        self._links: dict[str, tuple[Arrival, str]] = {}  # anonymousId -> (first seen with, userId)
        self._anonymous_of: dict[str, set[str]] = defaultdict(set)  # userId -> anonymousIds linked to it
        self._emails: dict[str, set[Key]] = defaultdict(set)  # casefolded email -> ids of identifies carrying it

    def refresh(self) -> None:
        """Add the rows stored since the last call; start over if a reset emptied the tables (seqs never repeat,
        so the first row seen is gone only then)."""
        with self._lock:
            with self.store.connection() as conn:
                gone = any(
                    first is not None
                    and conn.execute(f"SELECT 1 FROM {table} WHERE seq = ?", (first,)).fetchone() is None
                    for table, first in zip(_TABLES, self._first, strict=True)
                )
                if gone:
                    self._clear()
                fresh = [
                    conn.execute(f"SELECT seq, body FROM {table} WHERE seq > ? ORDER BY seq", (last,)).fetchall()
                    for table, last in zip(_TABLES, self._last, strict=True)
                ]
            for index, rows in enumerate(fresh):
                for seq, body in rows:
                    message = _message(index, body)
                    if message is not None:
                        self._add((index, seq), message)
                if rows:
                    self._first[index] = rows[0][0] if self._first[index] is None else self._first[index]
                    self._last[index] = rows[-1][0]

    def _add(self, ref: Ref, message: dict[str, Any]) -> None:
        kind = message.get("type")
        user, anonymous = _id(message.get("userId")), _id(message.get("anonymousId"))
        if user:
            self._users[user].append(ref)
            if anonymous:
                arrival = (str(message.get("receivedAt", "")), *ref)
                link = self._links.get(anonymous)
                if link is None or arrival < link[0]:
                    if link is not None:
                        self._anonymous_of[link[1]].discard(anonymous)
                    self._links[anonymous] = (arrival, user)
                    self._anonymous_of[user].add(anonymous)
        elif anonymous:
            self._anonymous[anonymous].append(ref)
        if kind == "group" and (group := _id(message.get("groupId"))):
            self._groups[group].append(ref)
        context = message.get("context") if isinstance(message.get("context"), dict) else {}
        if kind == "track" and (group := _id(context.get("groupId"))):
            self._account_tracks[group].append(ref)
        traits = message.get("traits") if isinstance(message.get("traits"), dict) else {}
        if kind == "identify" and isinstance(traits.get("email"), str):
            self._emails[traits["email"].casefold()].add(("user_id", user) if user else ("anonymous_id", anonymous))

    # Readers: each takes the lock and returns copies.

    def _resolve(self, key: Key) -> Key | None:
        id_type, value = key
        if id_type == "user_id":
            return key if value in self._users else None
        if id_type == "anonymous_id":
            if value in self._links:
                return ("user_id", self._links[value][1])
            return key if value in self._anonymous else None
        if id_type == "group_id":
            return key if value in self._groups else None
        return None

    def candidates(self, collection: str, id_type: str, value: str) -> list[Key]:
        """The profiles an identifier may name: one or none, or for an email those whose identify calls ever
        carried it (the caller checks their merged traits)."""
        with self._lock:
            if id_type not in COLLECTIONS[collection]:
                return []
            if id_type == "email":
                keys = {self._resolve(key) for key in self._emails.get(value.casefold(), ())}
                return sorted(key for key in keys if key is not None)
            resolved = self._resolve((id_type, value))
            return [resolved] if resolved else []

    def refs(self, key: Key) -> list[Ref]:
        """A profile's messages."""
        id_type, value = key
        with self._lock:
            if id_type == "group_id":
                return list(self._groups.get(value, ()))
            if id_type == "anonymous_id":
                return list(self._anonymous.get(value, ()))
            refs = list(self._users.get(value, ()))
            for anonymous in sorted(self._anonymous_of.get(value, ())):
                refs.extend(self._anonymous.get(anonymous, ()))
            return refs

    def account_tracks(self, group: str) -> list[Ref]:
        with self._lock:
            return list(self._account_tracks.get(group, ()))

    def owners(self, anonymous_ids: Iterable[str]) -> dict[str, Key | None]:
        """The profile each anonymousId belongs to."""
        with self._lock:
            return {anonymous: self._resolve(("anonymous_id", anonymous)) for anonymous in anonymous_ids}

    def load(self, refs: Iterable[Ref]) -> list[tuple[Arrival, dict[str, Any]]]:
        """Messages by reference, in the order Segment received them."""
        by_table: dict[int, list[int]] = defaultdict(list)
        for index, seq in refs:
            by_table[index].append(seq)
        rows = []
        with self.store.connection() as conn:
            for index, seqs in by_table.items():
                for start in range(0, len(seqs), _CHUNK):
                    chunk = seqs[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    sql = f"SELECT seq, body FROM {_TABLES[index]} WHERE seq IN ({marks})"
                    rows.extend((index, seq, body) for seq, body in conn.execute(sql, chunk).fetchall())
        loaded = []
        for index, seq, body in rows:
            message = _message(index, body)
            if message is not None:
                loaded.append(((str(message.get("receivedAt", "")), index, seq), message))
        loaded.sort(key=lambda item: item[0])
        return loaded


# -- profiles --------------------------------------------------------------------------------------------------


@dataclass
class Profile:
    collection: str
    key: Key
    received: list[tuple[Arrival, dict[str, Any]]]  # its messages in the order Segment received them
    _traits: dict[str, Trait] | None = None

    @property
    def segment_id(self) -> str:
        """A Segment id like "use_RkjG0kW53igMijEISMH0vKBF4sL" (the docs' example), the same for the same profile;
        accounts' "acc_" prefix is the sandbox's own."""
        prefix = "use_" if self.collection == "users" else "acc_"
        return prefix + _base62(f"{self.collection}:{self.key[0]}:{self.key[1]}", 27)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """In timestamp order, the order traits are merged in."""
        messages = [message for _, message in self.received]
        return sorted(messages, key=lambda m: (m["timestamp"], str(m.get("receivedAt")), str(m.get("messageId"))))

    @property
    def traits(self) -> dict[str, Trait]:
        if self._traits is None:
            self._traits = profile_traits(self.collection, self.messages)
        return self._traits


def _base62(seed: str, length: int) -> str:
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest())
    digits = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    return "".join(digits)


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _nanoseconds(text: str) -> int:
    return (_instant(text) - _EPOCH) // timedelta(microseconds=1) * 1000


# -- query parameters ------------------------------------------------------------------------------------------


def _invalid(message: str) -> ProfileApiError:
    return ProfileApiError(400, "invalid_request_error", message)


def _limit(query: dict[str, str], bounds: tuple[int, int]) -> int:
    default, high = bounds
    value = query.get("limit")
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= high:
        raise _invalid(f"The parameter `limit` must be an integer between 1 and {high}.")
    return int(value)


def _flag(query: dict[str, str], name: str) -> bool:
    value = query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise _invalid(f"The parameter `{name}` must be true or false.")
    return value == "true"


def _names(query: dict[str, str], name: str) -> set[str] | None:
    """A comma-separated list; None when the parameter is absent."""
    if name not in query:
        return None
    return {part.strip() for part in query[name].split(",") if part.strip()}


def _moment(query: dict[str, str], name: str) -> datetime | None:
    if name not in query:
        return None
    try:
        return _instant(query[name])
    except ValueError:
        raise _invalid(f"The parameter `{name}` must be an ISO 8601 date or time.") from None


def _offset(query: dict[str, str]) -> int:
    """An offset cursor of external_ids and links."""
    cursor = query.get("next") or ""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode("ascii")
    except (binascii.Error, ValueError):
        text = ""
    if not text.startswith("o:") or not text[2:].isdigit():
        raise _invalid("The parameter `next` must be a cursor from a previous page.")
    return int(text[2:])


def _offset_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _event_cursor(item: tuple[int, str]) -> str:
    return base64.b64encode(f"{item[0]}::{item[1]}".encode()).decode()


def _event_position(cursor: str) -> tuple[int, str]:
    try:
        nanoseconds, separator, message_id = base64.b64decode(cursor, validate=True).decode().partition("::")
        if separator and nanoseconds.isdigit():
            return int(nanoseconds), message_id
    except (binascii.Error, ValueError):
        pass
    raise _invalid("The parameter `next` must be a cursor from a previous page.")


def _cursor(url: str, has_more: bool, next_cursor: str, limit: int) -> dict[str, Any]:
    return {"url": url, "has_more": has_more, "next": next_cursor if has_more else "", "limit": limit}


def _page(url: str, query: dict[str, str], items: list[Any], limit: int) -> tuple[list[Any], dict[str, Any]]:
    offset = _offset(query)
    more = offset + limit < len(items)
    return items[offset : offset + limit], _cursor(url, more, _offset_cursor(offset + limit), limit)


# -- the app ---------------------------------------------------------------------------------------------------

PROFILE_PATH = "/v1/spaces/{space_id}/collections/{collection}/profiles/{identifier}/{resource}"


class ProfileApiSandbox:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.graph = IdentityGraph(runtime.store)
        self.window = SlidingWindow()

    def app(self) -> ASGIApp:
        """The route behind auth, Segment's fault injector and a Request-Id on every answer."""
        app = Starlette(
            routes=[Route(PROFILE_PATH, self.profile, methods=["GET"])],
            exception_handlers={ProfileApiError: _error_response, 404: _http_error, 405: _http_error},
        )
        return _RequestId(ProfileApiFaults(_BasicAuth(app, self.runtime), self.runtime))

    async def profile(self, request: Request) -> Response:
        settings = self.runtime.settings
        params = request.path_params
        if not hmac.compare_digest(params["space_id"].encode(), settings.segment_space_id.encode()):
            raise ProfileApiError(404, "not_found", "Space was not found.")
        limit, seconds = settings.segment_profile_requests_per_second, settings.segment_profile_rate_window_seconds
        if not self.window.allow(params["space_id"], limit, seconds):
            raise ProfileApiError(429, "rate_limit_error", RATE_LIMITED_MESSAGE)
        query = dict(request.query_params)
        url = route_path(request.scope) + (f"?{request.url.query}" if request.url.query else "")
        answer = await run_in_threadpool(
            self.answer, params["collection"], params["identifier"], params["resource"], query, url
        )
        return JSONResponse(answer)

    def answer(self, collection: str, identifier: str, resource: str, query: dict[str, str], url: str) -> dict:
        if collection not in COLLECTIONS:
            raise ProfileApiError(400, "validation_error", "The parameter `collection` must be users or accounts.")
        id_type, colon, value = identifier.partition(":")
        if not (colon and id_type and value):
            raise ProfileApiError(400, "validation_error", "The identifier must be <id_type>:<id_value>.")
        if resource not in RESOURCES:
            raise ProfileApiError(404, "not_found", "Resource not found.")
        return getattr(self, f"_{resource}")(collection, id_type, value, query, url)

    def _find(self, collection: str, id_type: str, value: str) -> Profile:
        self.graph.refresh()
        candidates = [self._load(collection, key) for key in self.graph.candidates(collection, id_type, value)]
        if id_type == "email":
            # The profile whose merged email is this one now; of several, the one that took it last.
            wanted = value.casefold()
            owners = [
                p
                for p in candidates
                if isinstance(email := p.traits.get("email"), Trait)
                and isinstance(email.value, str)
                and email.value.casefold() == wanted
            ]
            candidates = sorted(owners, key=lambda p: p.traits["email"].updated_at, reverse=True)
        if not candidates or not candidates[0].received:
            raise ProfileApiError(404, "not_found", NOT_FOUND_MESSAGE)
        return candidates[0]

    def _load(self, collection: str, key: Key) -> Profile:
        return Profile(collection, key, self.graph.load(self.graph.refs(key)))

    # -- resources ---------------------------------------------------------------------------------------------

    def _traits(self, collection: str, id_type: str, value: str, query: dict[str, str], url: str) -> dict:
        trait_class = query.get("class")
        if trait_class is not None and trait_class not in TRAIT_CLASSES:
            raise _invalid("The parameter `class` must be audience or computed_trait.")
        include, limit, verbose = _names(query, "include"), _limit(query, TRAITS_LIMIT), _flag(query, "verbose")
        traits = self._find(collection, id_type, value).traits
        names = sorted(
            name
            for name, trait in traits.items()
            if (trait_class is None or trait.kind == trait_class) and (include is None or name in include)
        )
        start = bisect_left(names, query.get("next") or "")
        page, rest = names[start : start + limit], names[start + limit :]
        return {
            "traits": {name: traits[name].as_json(verbose) for name in page},
            "cursor": _cursor(url, bool(rest), rest[0] if rest else "", limit),
        }

    def _external_ids(self, collection: str, id_type: str, value: str, query: dict[str, str], url: str) -> dict:
        include, limit = _names(query, "include"), _limit(query, LIST_LIMIT)
        _flag(query, "verbose")
        items = self._ids(self._find(collection, id_type, value))
        items = [item for item in items if include is None or item["type"] in include]
        data, cursor = _page(url, query, items, limit)
        return {"data": data, "cursor": cursor}

    def _ids(self, profile: Profile) -> list[dict[str, Any]]:
        """The profile's external ids, in the order first seen."""
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        owners = self.graph.owners({a for _, m in profile.received if (a := _id(m.get("anonymousId")))})
        for (received, _, _), message in profile.received:
            for id_type, id_value in _message_ids(profile.collection, message):
                if id_type == "anonymous_id" and owners.get(id_value) != profile.key:
                    continue  # tied to another profile first
                if id_type in ("user_id", "group_id") and (id_type, id_value) != profile.key:
                    continue
                key = (id_type, id_value.casefold() if id_type == "email" else id_value)
                seen.setdefault(
                    key,
                    {
                        "source_id": message["projectId"],
                        "collection": profile.collection,
                        "id": id_value,
                        "type": id_type,
                        "created_at": received,
                        "encoding": "none",
                        "first_message_id": message["messageId"],
                    },
                )
        return list(seen.values())

    def _events(self, collection: str, id_type: str, value: str, query: dict[str, str], url: str) -> dict:
        start, end = _moment(query, "start"), _moment(query, "end")
        include, exclude = _names(query, "include"), _names(query, "exclude") or set()
        limit, order = _limit(query, LIST_LIMIT), query.get("sort", "desc")
        if order not in ("asc", "desc"):
            raise _invalid("The parameter `sort` must be asc or desc.")
        position = _event_position(query["next"]) if query.get("next") else None
        profile = self._find(collection, id_type, value)
        if collection == "users":
            tracks = [message for _, message in profile.received if message.get("type") == "track"]
        else:
            tracks = [message for _, message in self.graph.load(self.graph.account_tracks(value))]
        since = datetime.now(UTC) - LOOKBACK
        chosen = []
        for message in tracks:
            moment = _instant(message["timestamp"])
            event = str(message.get("event"))
            if moment < since or (start and moment < start) or (end and moment >= end):
                continue
            if (include is not None and event not in include) or event in exclude:
                continue
            chosen.append(((_nanoseconds(message["timestamp"]), str(message["messageId"])), message))
        chosen.sort(key=lambda item: item[0], reverse=order == "desc")
        if position is not None:
            chosen = [item for item in chosen if (item[0] < position if order == "desc" else item[0] > position)]
        page = chosen[:limit]
        related = {profile.collection: profile.segment_id}
        data = [_event_json(message, related) for _, message in page]
        more = len(chosen) > limit
        return {"data": data, "cursor": _cursor(url, more, _event_cursor(page[-1][0]) if page else "", limit)}

    def _metadata(self, collection: str, id_type: str, value: str, query: dict[str, str], url: str) -> dict:
        _flag(query, "verbose")
        profile = self._find(collection, id_type, value)
        (first_at, _, _), first = profile.received[0]
        (last_at, _, _), last = profile.received[-1]
        return {
            "metadata": {
                "created_at": first_at,
                "updated_at": last_at,
                "expires_at": None,
                "first_message_id": first["messageId"],
                "first_source_id": first["projectId"],
                "last_message_id": last["messageId"],
                "last_source_id": last["projectId"],
            }
        }

    def _links(self, collection: str, id_type: str, value: str, query: dict[str, str], url: str) -> dict:
        limit = _limit(query, LINKS_LIMIT)
        _offset(query)
        profile = self._find(collection, id_type, value)
        groups = [m for _, m in profile.received if m.get("type") == "group"]
        if collection == "users":
            target = "accounts"
            linked = [("group_id", group) for m in groups if (group := _id(m.get("groupId")))]
        else:
            target = "users"
            owners = self.graph.owners({a for m in groups if (a := _id(m.get("anonymousId")))})
            linked = []
            for message in groups:
                user, anonymous = _id(message.get("userId")), _id(message.get("anonymousId"))
                owner = ("user_id", user) if user else owners.get(anonymous) if anonymous else None
                if owner is not None:
                    linked.append(owner)
        keys, cursor = _page(url, query, list(dict.fromkeys(linked)), limit)
        data = []
        for key in keys:
            ids = [
                {name: item[name] for name in ("id", "type", "source_id", "collection", "created_at", "encoding")}
                for item in self._ids(self._load(target, key))
            ]
            data.append({"to_collection": target, "external_ids": ids})
        return {"data": data, "cursor": cursor}


def _message_ids(collection: str, message: dict[str, Any]) -> list[tuple[str, str]]:
    """The external ids a message carries for a profile of the collection."""
    if collection == "accounts":
        group = _id(message.get("groupId")) if message.get("type") == "group" else None
        return [("group_id", group)] if group else []
    ids = [(name, value) for name, field_ in (("user_id", "userId"), ("anonymous_id", "anonymousId"))
           if (value := _id(message.get(field_)))]  # fmt: skip
    traits = message.get("traits") if isinstance(message.get("traits"), dict) else {}
    if message.get("type") == "identify" and isinstance(traits.get("email"), str) and traits["email"]:
        ids.append(("email", traits["email"]))
    return ids


def _event_json(message: dict[str, Any], related: dict[str, str]) -> dict[str, Any]:
    """A track call as the events resource lists it."""
    return {
        "external_ids": [
            {"collection": "users", "type": id_type, "id": id_value, "encoding": "none"}
            for id_type, id_value in _message_ids("users", message)
            if id_type != "email"
        ],
        "context": message.get("context") or {},
        "type": "track",
        "message_id": message["messageId"],
        "source_id": message["projectId"],
        "timestamp": message["timestamp"],
        "properties": message.get("properties") or {},
        "event": message.get("event"),
        "related": related,
    }


async def _error_response(request: Request, exc: ProfileApiError) -> Response:
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in the error envelope, not Starlette's plain text."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return ProfileApiError(405, "invalid_request_error", f"{request.method} is not allowed here.").response()
    return ProfileApiError(404, "not_found", "Resource not found.").response()
