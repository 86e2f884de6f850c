"""Intercom REST API client: cursor and scroll paging, day-granular incremental search, rate-limit windows, retries."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, quote, urlsplit

import requests
import tenacity

from sync_pipelines.lib import json_codec
from sync_pipelines.vendors.intercom import settings
from sync_pipelines.vendors.retrying import RetryableResponse, retrying

log = logging.getLogger(__name__)


class IntercomApiError(Exception):
    """A request Intercom refused or that kept failing, from its `error.list` body (intercom.md §2).

    `code` and `message` are the first error's; `errors` holds them all. `status` is None when no answer came.
    """

    def __init__(
        self,
        description: str,
        status: int | None = None,
        errors: list[dict] | None = None,
        request_id: str | None = None,
    ):
        self.status = status
        self.errors = errors or []
        self.request_id = request_id
        self.code: str | None = self.errors[0].get("code") if self.errors else None
        self.message: str | None = self.errors[0].get("message") if self.errors else None
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in self.errors)
        super().__init__(f"{description}: {detail}" if detail else description)

    @classmethod
    def from_response(cls, response: requests.Response, description: str) -> IntercomApiError:
        errors, request_id = _error_list(response)
        return cls(description, response.status_code, errors, request_id)


@dataclasses.dataclass
class IntercomStats:
    """What this client has spent and met, for run metadata."""

    calls: int = 0
    bytes_received: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429 answers seen (each was retried after X-RateLimit-Reset)
    throttled_waits: int = 0  # calls held back because the window's budget was spent
    throttled_seconds: float = 0.0
    scroll_restarts: int = 0
    scroll_exists_waits: int = 0  # polls that found another scroll still open
    rate_limit: int | None = None  # X-RateLimit-Limit and -Remaining of the last answer
    rate_limit_remaining: int | None = None


class RateLimitWindow:
    """The app's share of Intercom's 10-second windows, tracked from the X-RateLimit-* headers (intercom.md §3).

    Calls pass while the window has more than `reserve` calls left; then every caller waits for the window's
    X-RateLimit-Reset, so a steady read never meets a 429. Calls in flight are counted before their answer comes.
    """

    def __init__(self, reserve: int = 0, margin: float = settings.RESET_MARGIN_SECONDS):
        self._reserve = reserve
        self._margin = margin
        self._remaining: int | None = None  # None: unknown, until an answer of the current window arrives
        self._reset_at = 0.0
        self._condition = threading.Condition()

    def acquire(self) -> float:
        """Wait until a call may start and count it; returns the seconds waited (0.0 when it went straight on)."""
        started, waited = time.monotonic(), False
        with self._condition:
            while True:
                now = time.time()
                if now >= self._reset_at:
                    self._remaining = None
                if self._remaining is None or self._remaining > self._reserve:
                    if self._remaining is not None:
                        self._remaining -= 1
                    return time.monotonic() - started if waited else 0.0
                waited = True
                self._condition.wait(self._reset_at - now)

    def observe(self, remaining: int, reset: int) -> None:
        """Take the server's count; an answer from an older window (out of order) changes nothing."""
        reset_at = reset + self._margin
        with self._condition:
            if reset_at > self._reset_at:
                self._reset_at, self._remaining = reset_at, remaining
            elif reset_at == self._reset_at:
                self._remaining = remaining if self._remaining is None else min(self._remaining, remaining)
            self._condition.notify_all()

    def seconds_to_reset(self) -> float:
        with self._condition:
            return max(0.0, self._reset_at - time.time())


class _ScrollLost(Exception):
    """A scroll page failed: the scroll cannot be resumed, only restarted (intercom.md §6.1)."""

    def __init__(self, error: IntercomApiError):
        self.error = error
        super().__init__(str(error))


class IntercomClient:
    """One Intercom workspace, through an access token; safe to share between threads (the limits are per app)."""

    def __init__(
        self,
        base_url: str,
        access_token: str,
        api_version: str = settings.API_VERSION,
        per_page: int = settings.MAX_PER_PAGE,
        rate_limit_reserve: int = 0,
        scroll_ttl: float = settings.SCROLL_TTL_SECONDS,
        max_scroll_restarts: int = settings.MAX_SCROLL_RESTARTS,
        timeout: float = 30,
        max_attempts: int = 8,
    ) -> None:
        if not 1 <= per_page <= settings.MAX_PER_PAGE:
            raise ValueError(f"per_page must be within 1..{settings.MAX_PER_PAGE} (intercom.md §4)")
        self._base_url = base_url.rstrip("/")
        self._per_page = per_page
        self._window = RateLimitWindow(rate_limit_reserve)
        self._scroll_ttl = scroll_ttl
        self._max_scroll_restarts = max_scroll_restarts
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._session = requests.Session()
        # intercom.md §1: bearer token, a pinned version, JSON both ways.
        self._session.headers.update(
            {
                "Authorization": f"Bearer {access_token}",
                "Intercom-Version": api_version,
                "Accept": "application/json",
            }
        )
        self._stats = IntercomStats()
        self._stats_lock = threading.Lock()

    @property
    def stats(self) -> IntercomStats:
        with self._stats_lock:
            return dataclasses.replace(self._stats)

    # ---- contacts ----------------------------------------------------------------------------------------

    def search_contacts_since(self, updated_since: int | None) -> Iterator[list[dict]]:
        """Contacts with updated_at >= `updated_since` (epoch s; None: all), in pages, oldest first.

        intercom.md §5.1: searches `updated_at > since − 2 days` (date filters match by calendar day), sorted
        updated_at ascending, then drops older contacts here. A contact met twice in one read (its position
        moved while paging) is delivered again only if it changed since.
        """
        return self._search_since("/contacts/search", "data", updated_since)

    def search_contacts(self, query: dict, sort: dict | None = None) -> Iterator[list[dict]]:
        """Contacts matching a search `query` (intercom.md §5.1), in pages of up to per_page."""
        return self._search_pages("/contacts/search", "data", query, sort)

    def get_contact(self, contact_id: str) -> dict:
        """One contact; a merged one raises IntercomApiError 404 or 410 `contact_merged` (intercom.md §5)."""
        return self._request("GET", f"/contacts/{_segment(contact_id)}")

    def contact_tags(self, contact_id: str) -> list[dict]:
        """All tags of a contact; the contact's embedded `tags` shows only 10 (intercom.md §5, §10)."""
        return self._request("GET", f"/contacts/{_segment(contact_id)}/tags").get("data", [])

    def contact_segments(self, contact_id: str) -> list[dict]:
        return self._request("GET", f"/contacts/{_segment(contact_id)}/segments").get("data", [])

    def contact_companies(self, contact_id: str) -> list[dict]:
        """All companies of a contact, beyond the 10 embedded in it (intercom.md §5)."""
        return self._list(f"/contacts/{_segment(contact_id)}/companies", "companies")

    # ---- companies ---------------------------------------------------------------------------------------

    def scroll_companies(self) -> Iterator[list[dict]]:
        """Every company once, in pages, through the scroll API (intercom.md §6.1).

        A scroll left open elsewhere (scroll_exists) is waited out, up to 1.5 scroll TTLs. A scroll lost midway
        (expired because pages were consumed slowly, or a server/network error) is restarted from scratch, up to
        max_scroll_restarts times, and companies already delivered are skipped. Consume pages promptly: the
        scroll expires after a TTL unused.
        """
        delivered: set[str] = set()
        restarts = 0
        while True:
            try:
                for page in self._scroll():
                    fresh = [company for company in page if company["id"] not in delivered]
                    delivered.update(company["id"] for company in fresh)
                    if fresh:
                        yield fresh
                return
            except _ScrollLost as lost:
                restarts += 1
                if restarts > self._max_scroll_restarts:
                    raise lost.error from None
                log.warning("Intercom company scroll lost (%s); restarting it", lost.error)
                self._count(scroll_restarts=1)

    def get_company(self, company_id: str) -> dict:
        """One company by its Intercom id (intercom.md §6)."""
        return self._request("GET", f"/companies/{_segment(company_id)}")

    def company_contacts(self, company_id: str) -> list[dict]:
        """All contacts attached to a company (intercom.md §6)."""
        return self._list(f"/companies/{_segment(company_id)}/contacts", "data")

    # ---- workspace lists ---------------------------------------------------------------------------------

    def tags(self) -> list[dict]:
        """Every tag of the workspace; not paged (intercom.md §7)."""
        return self._request("GET", "/tags").get("data", [])

    def segments(self) -> list[dict]:
        """Every segment, with its member count (intercom.md §7)."""
        return self._request("GET", "/segments", params={"include_count": "true"}).get("segments", [])

    def admins(self) -> list[dict]:
        """The workspace's teammates, whom contacts' owner_id refers to (intercom.md §7)."""
        return self._request("GET", "/admins").get("admins", [])

    # ---- conversations -----------------------------------------------------------------------------------

    def search_conversations_since(self, updated_since: int | None) -> Iterator[list[dict]]:
        """Conversations with updated_at >= `updated_since`, oldest first, as search_contacts_since (§8, §5.1)."""
        return self._search_since("/conversations/search", "conversations", updated_since)

    def get_conversation(self, conversation_id: str) -> dict:
        """One conversation with its conversation_parts, which list and search leave out (intercom.md §8)."""
        return self._request("GET", f"/conversations/{_segment(conversation_id)}")

    # ---- plumbing ----------------------------------------------------------------------------------------

    def _search_since(self, path: str, key: str, updated_since: int | None) -> Iterator[list[dict]]:
        since = 0 if updated_since is None else max(0, updated_since - settings.SEARCH_OVERLAP_SECONDS)
        query = {"field": settings.CURSOR_FIELD, "operator": ">", "value": since}
        sort = {"field": settings.CURSOR_FIELD, "order": "ascending"}
        delivered: dict[str, int] = {}
        for page in self._search_pages(path, key, query, sort):
            fresh = []
            for record in page:
                stamp = record[settings.CURSOR_FIELD]
                if updated_since is not None and stamp < updated_since:
                    continue
                if delivered.get(record["id"], -1) >= stamp:
                    continue
                delivered[record["id"]] = stamp
                fresh.append(record)
            if fresh:
                yield fresh

    def _search_pages(self, path: str, key: str, query: dict, sort: dict | None) -> Iterator[list[dict]]:
        """intercom.md §4: the cursor goes in the JSON body; a query-string starting_after restarts at page 1."""
        pagination: dict = {"per_page": self._per_page}
        while True:
            body = {"query": query, "pagination": pagination, **({"sort": sort} if sort else {})}
            answer = self._request("POST", path, json=body)
            records = answer.get(key) or []
            if records:
                yield records
            cursor = _next_cursor(answer)
            if cursor is None:
                return
            pagination = {"per_page": self._per_page, "starting_after": cursor}

    def _list(self, path: str, key: str) -> list[dict]:
        """A whole GET list, following a `pages.next` cursor (cursor_pages) or link (pages_link) (intercom.md §4)."""
        records: list[dict] = []
        params: dict = {"per_page": self._per_page}
        while True:
            answer = self._request("GET", path, params=params)
            # The spec names contact companies `companies` and its recorded example `data` (intercom.md §5).
            records.extend(answer.get(key) or answer.get("data") or [])
            cursor = _next_cursor(answer)
            link = (answer.get("pages") or {}).get("next")
            if cursor is not None:
                params = {"per_page": self._per_page, "starting_after": cursor}
            elif isinstance(link, str) and link:
                params = dict(parse_qsl(urlsplit(link).query))
            else:
                return records

    def _scroll(self) -> Iterator[list[dict]]:
        """One scroll from its start; an empty page ends it (intercom.md §6.1)."""
        answer = self._open_scroll()
        while answer.get("data"):
            yield answer["data"]
            try:
                answer = self._request(
                    "GET",
                    "/companies/scroll",
                    params={"scroll_param": answer["scroll_param"]},
                    attempts=settings.SCROLL_PAGE_ATTEMPTS,
                )
            except IntercomApiError as error:
                if error.status in (401, 403, 429):
                    raise
                raise _ScrollLost(error) from error

    def _open_scroll(self) -> dict:
        """Start a scroll, waiting for one left open (by a crashed run or a lost scroll) to expire (§6.1, §11)."""

        def other_scroll_open(error: BaseException) -> bool:
            return isinstance(error, IntercomApiError) and error.code == settings.SCROLL_EXISTS

        poll = tenacity.Retrying(
            retry=tenacity.retry_if_exception(other_scroll_open),
            wait=tenacity.wait_fixed(self._scroll_ttl / settings.SCROLL_POLLS_PER_TTL),
            stop=tenacity.stop_after_delay(self._scroll_ttl * settings.SCROLL_WAIT_FACTOR),
            before_sleep=lambda _: self._count(scroll_exists_waits=1),
            reraise=True,
        )
        return poll(self._request, "GET", "/companies/scroll")

    def _request(
        self, method: str, path: str, params: dict | None = None, json: dict | None = None, attempts: int | None = None
    ) -> dict:
        """One API call with retries on 429, 5xx and dropped connections; the answer's JSON body."""
        url = self._base_url + path
        state = {"attempt": 0}

        def attempt() -> requests.Response:
            state["attempt"] += 1
            if state["attempt"] > 1:
                self._count(retries=1)
            return self._check(self._send(method, url, params, json))

        policy = retrying(
            attempts or self._max_attempts,
            before_sleep=lambda rs: log.warning(
                "Intercom %s %s failed (%s); retrying", method, path, rs.outcome.exception()
            ),
        )
        try:
            return json_codec.response_json(policy(attempt))
        except RetryableResponse as exc:
            raise IntercomApiError.from_response(exc.response, f"Intercom {method} {path} kept failing") from None
        except requests.RequestException as exc:
            raise IntercomApiError(f"Intercom {method} {path} kept failing: {exc}") from exc

    def _send(self, method: str, url: str, params: dict | None, json: dict | None) -> requests.Response:
        waited = self._window.acquire()
        if waited > 0:
            self._count(throttled_waits=1, throttled_seconds=waited)
        self._count(calls=1)
        response = self._session.request(method, url, params=params, json=json, timeout=self._timeout)
        self._count(bytes_received=len(response.content))
        limit = _int_header(response, "X-RateLimit-Limit")
        remaining = _int_header(response, "X-RateLimit-Remaining")
        reset = _int_header(response, "X-RateLimit-Reset")
        if remaining is not None and reset is not None:
            self._window.observe(remaining, reset)
        with self._stats_lock:
            if limit is not None:
                self._stats.rate_limit = limit
            if remaining is not None:
                self._stats.rate_limit_remaining = remaining
        return response

    def _check(self, response: requests.Response) -> requests.Response:
        status = response.status_code
        if status < 400:
            return response
        if status == 429:
            # intercom.md §3: back off until the window resets; without the headers, the shared backoff.
            self._count(rate_limited=1)
            # A reset already past by our clock (skew, or a header-less 429) falls back to the backoff.
            raise RetryableResponse(response, self._window.seconds_to_reset() or None)
        if status >= 500:
            raise RetryableResponse(response)
        raise IntercomApiError.from_response(
            response, f"Intercom {response.request.method} {urlsplit(response.url).path} answered {status}"
        )

    def _count(self, **amounts: float) -> None:
        with self._stats_lock:
            for name, amount in amounts.items():
                setattr(self._stats, name, getattr(self._stats, name) + amount)


def _next_cursor(answer: dict) -> str | None:
    """intercom.md §4: `pages.next.starting_after`, absent on the last page."""
    following = (answer.get("pages") or {}).get("next")
    if not isinstance(following, dict):
        return None
    return following.get("starting_after") or None


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _int_header(response: requests.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


def _error_list(response: requests.Response) -> tuple[list[dict], str | None]:
    """intercom.md §2: `{"type": "error.list", "request_id", "errors": [{code, message, field}]}`; a few endpoints
    answer `{"type": "error", "message"}` and proxies plain text."""
    try:
        body = json_codec.response_json(response)
    except ValueError:
        return ([{"code": None, "message": response.text[:500]}] if response.text else []), None
    if not isinstance(body, dict):
        return [], None
    errors = [error for error in body.get("errors") or [] if isinstance(error, dict)]
    if not errors and body.get("message"):
        errors = [{"code": body.get("code"), "message": body["message"]}]
    return errors, body.get("request_id")
