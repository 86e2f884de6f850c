"""Xero Accounting API client: paging, incremental reads, idempotent writes, retries and rate limits."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import requests

from sync_pipelines.lib import json_codec
from sync_pipelines.vendors.retrying import RetryableResponse, retrying
from sync_pipelines.vendors.token_store import EncryptedTokenStore
from sync_pipelines.vendors.xero import settings
from sync_pipelines.vendors.xero.auth import TokenManager

log = logging.getLogger(__name__)


class XeroApiError(Exception):
    """A request Xero refused or that kept failing; `validation_errors` carries Xero's messages (xero.md §4.4)."""

    def __init__(self, message: str, status: int | None = None, validation_errors: list[str] | None = None):
        self.status = status
        self.validation_errors = validation_errors or []
        detail = f": {'; '.join(self.validation_errors)}" if self.validation_errors else ""
        super().__init__(f"{message}{detail}")


class XeroDailyLimitReached(Exception):
    """The tenant's daily allowance is spent (xero.md §5): checkpoint and stop instead of retrying."""

    def __init__(self, retry_after: int | None):
        self.retry_after = retry_after
        super().__init__(f"Xero daily call limit reached; retry after {retry_after} s")


@dataclasses.dataclass
class CallStats:
    """What this client has spent, for run metadata and for deciding whether to defer work."""

    calls: int = 0
    bytes_received: int = 0
    retries: int = 0
    min_limit_remaining: int | None = None
    day_limit_remaining: int | None = None


class CallLimiter:
    """Client-side share of the per-tenant limits (xero.md §5) so a steady run never meets a 429.

    A sliding window of call start times bounds calls per window, a semaphore bounds calls in
    flight, and the server's own count (X-MinLimit-Remaining) can only make the window fuller.
    """

    def __init__(
        self, calls_per_window: int, max_concurrent: int, window_seconds: float = settings.RATE_WINDOW_SECONDS
    ):
        if calls_per_window < 1 or max_concurrent < 1:
            raise ValueError("calls_per_window and max_concurrent must be at least 1")
        self._calls = calls_per_window
        self._window = window_seconds
        self._starts: deque[float] = deque()
        self._paused_until = 0.0
        self._condition = threading.Condition()
        self._in_flight = threading.BoundedSemaphore(max_concurrent)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        with self._in_flight:
            self._await_window()
            yield

    def observe_remaining(self, remaining: int) -> None:
        """Count calls others made against the same tenant: pad the window to the server's count."""
        with self._condition:
            now = time.monotonic()
            self._expire(now)
            while len(self._starts) < self._calls - remaining:
                self._starts.append(now)

    def pause(self, seconds: float) -> None:
        """Hold every caller back after a 429 (xero.md §5: stop the tenant until Retry-After)."""
        with self._condition:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def _await_window(self) -> None:
        told = False
        with self._condition:
            while True:
                now = time.monotonic()
                self._expire(now)
                wait = self._paused_until - now
                if len(self._starts) >= self._calls:
                    wait = max(wait, self._starts[0] + self._window - now)
                if wait <= 0:
                    self._starts.append(now)
                    return
                if not told and wait >= 1:
                    log.info("Xero rate limit: waiting %.0f s for the tenant's allowance", wait)
                    told = True
                self._condition.wait(wait)

    def _expire(self, now: float) -> None:
        while self._starts and self._starts[0] <= now - self._window:
            self._starts.popleft()


class XeroClient:
    """One tenant's Accounting API; safe to share between threads (limits are per tenant, xero.md §5)."""

    def __init__(
        self,
        api_url: str,
        identity_url: str,
        client_id: str,
        client_secret: str,
        token_store: EncryptedTokenStore,
        tenant_id: str | None = None,
        grant: str = "authorization_code",
        page_size: int = settings.MAX_PAGE_SIZE,
        calls_per_minute: int = settings.CALLS_PER_MINUTE,
        max_concurrent: int = settings.MAX_CONCURRENT,
        write_batch: int = settings.WRITE_BATCH,
        timeout: float = 30,
        max_attempts: int = 8,
    ) -> None:
        if not 1 <= page_size <= settings.MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{settings.MAX_PAGE_SIZE} (xero.md §3.1)")
        self._api_url = api_url.rstrip("/")
        self._auth = TokenManager(identity_url, client_id, client_secret, token_store, grant, timeout)
        self._tenant_id = tenant_id
        self._tenant_lock = threading.Lock()
        self._page_size = page_size
        self._limiter = CallLimiter(calls_per_minute, max_concurrent)
        self._max_concurrent = max_concurrent
        self.write_batch = write_batch  # elements per batch write (writes.py)
        self._day_spent_until = 0.0  # monotonic: once Xero says the day is spent, no call is made before this
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._session = requests.Session()
        # xero.md §2.1: without this header the Accounting API answers in XML.
        self._session.headers["Accept"] = "application/json"
        self._stats = CallStats()
        self._stats_lock = threading.Lock()

    @property
    def stats(self) -> CallStats:
        with self._stats_lock:
            return dataclasses.replace(self._stats)

    def connections(self) -> dict[str, str | None]:
        """The organisations the app is connected to, tenantId to name (xero.md §1.6; no tenant's limits count it)."""
        answer = self._request("GET", self._api_url + settings.CONNECTIONS_PATH, tenant=False)
        return {c["tenantId"]: c.get("tenantName") for c in json_codec.response_json(answer)}

    @property
    def tenant_id(self) -> str:
        """The configured tenant, or the only connected one (xero.md §1.6)."""
        with self._tenant_lock:
            if self._tenant_id is None:
                tenants = self.connections()
                if len(tenants) != 1:
                    listed = ", ".join(f"{name} ({tenant})" for tenant, name in sorted(tenants.items())) or "none"
                    raise XeroApiError(
                        f"the app is connected to {len(tenants)} Xero organisations, not one: {listed}; "
                        "set XERO_TENANT_ID to the one to sync"
                    )
                (self._tenant_id,) = tenants
            return self._tenant_id

    def iter_pages(
        self,
        collection: str,
        modified_since: dt.datetime | None = None,
        where: str | None = None,
        params: dict | None = None,
        expected_rows: int = 0,
    ) -> Iterator[list[dict]]:
        """Yield non-empty pages at the largest page size, in order, stopping without an extra empty call (xero.md
        §3.1).

        The first page says how many there are (`pagination.pageCount`); the rest are then fetched as many at a time
        as the tenant allows in flight (5, xero.md §5), at most a few pages ahead of the one the caller is on, so
        fetching overlaps with what the caller does with each page and memory stays bounded. A caller that knows
        about how many records there are (a re-read of a collection it has read before) says so, and the pages they
        fill are asked for with the first, up to the allowance: a page past the end would come back empty.
        """
        headers = {}
        if modified_since is not None:
            # xero.md §3.2: a header, UTC, no offset; naive datetimes are taken as UTC.
            if modified_since.tzinfo is not None:
                modified_since = modified_since.astimezone(dt.UTC).replace(tzinfo=None)
            headers["If-Modified-Since"] = modified_since.strftime(settings.IF_MODIFIED_SINCE_FORMAT)
        query = dict(params or {})
        if where:
            query["where"] = where
        url = self._url(collection)

        def fetch(page: int) -> requests.Response:
            return self._request(
                "GET", url, params={**query, "page": page, "pageSize": self._page_size}, headers=headers
            )

        ahead = 2 * self._max_concurrent
        with ThreadPoolExecutor(self._max_concurrent, thread_name_prefix="xero-pages") as pool:
            with_first = range(2, min(math.ceil(expected_rows / self._page_size), self._max_concurrent) + 1)
            pending: deque[Future[requests.Response]] = deque(pool.submit(fetch, page) for page in with_first)
            try:
                first = fetch(1)
                if first.status_code == 304:
                    return  # xero.md §3.2: undocumented for lists; treat as "no changes".
                body = json_codec.response_json(first)
                page_count = (body.get("pagination") or {}).get("pageCount")
                if page_count is None:
                    yield from self._serial_pages(collection, fetch, body)
                    return
                if body.get(collection):
                    yield body[collection]
                if page_count <= 1 or len(body.get(collection, [])) < self._page_size:
                    return
                next_page = 2 + len(pending)
                while pending or next_page <= page_count:
                    while next_page <= page_count and len(pending) < min(ahead, self._day_room()):
                        pending.append(pool.submit(fetch, next_page))
                        next_page += 1
                    items = json_codec.response_json(pending.popleft().result()).get(collection, [])
                    if items:
                        yield items
            finally:
                for future in pending:
                    future.cancel()

    def _day_room(self) -> float:
        """Calls worth having in flight at once as the day's allowance ends (X-DayLimit-Remaining, xero.md §5): the
        last ones go to the next pages in order, not to later pages that could only be thrown away. At least one,
        which finds out whether the allowance has come back; no bound before the first answer says."""
        remaining = self.stats.day_limit_remaining
        return math.inf if remaining is None else max(1, remaining)

    def _serial_pages(
        self, collection: str, fetch: Callable[[int], requests.Response], body: dict
    ) -> Iterator[list[dict]]:
        """Pages one after another, for a response without `pageCount`: until a short page (xero.md §3.1)."""
        page = 1
        while True:
            items = body.get(collection, [])
            if items:
                yield items
            if len(items) < self._page_size:
                return
            page += 1
            body = json_codec.response_json(fetch(page))

    def write(
        self,
        method: str,
        path: str,
        records: list[dict],
        idempotency_key: str,
        summarize_errors: bool = False,
        key: str | None = None,
    ) -> list[dict]:
        """Create or update records; retried safely under one Idempotency-Key (xero.md §4.1-§4.3).

        `path` is a collection ("Contacts"), one record ("ContactGroups/{id}": rename or delete a group) or a
        sub-resource ("ContactGroups/{id}/Contacts", "Contacts/{id}/History"); `key` names the element array
        the body and response carry, and is required for sub-resources ("Contacts", "HistoryRecords").
        With summarize_errors=False every element comes back with StatusAttributeString and its
        ValidationErrors (xero.md §4.2); with True a single invalid element fails the whole call.
        """
        if method.upper() not in ("PUT", "POST"):
            raise ValueError("write() sends PUT (create) or POST (create or update), xero.md §4.1")
        if not 0 < len(idempotency_key) <= settings.MAX_IDEMPOTENCY_KEY_CHARS:
            raise ValueError(f"idempotency_key must be 1..{settings.MAX_IDEMPOTENCY_KEY_CHARS} chars (xero.md §4.3)")
        element_key = _element_key(path, key)
        response = self._request(
            method.upper(),
            self._url(path),
            params={} if summarize_errors else {"summarizeErrors": "false"},
            headers={"Idempotency-Key": idempotency_key},
            json={element_key: records},
        )
        return json_codec.response_json(response).get(element_key, [])

    def read(self, path: str, key: str | None = None, params: dict | None = None) -> list[dict]:
        """One unpaged GET: a collection Xero does not page ("ContactGroups", xero.md §3.1), one record
        ("ContactGroups/{id}" lists its members) or a sub-resource ("Contacts/{id}/History" with key
        "HistoryRecords"). Returns the element array; an unknown ID raises XeroApiError with status 404."""
        element_key = _element_key(path, key)
        return json_codec.response_json(self._request("GET", self._url(path), params=params or {})).get(element_key, [])

    def delete(self, path: str) -> None:
        """DELETE, e.g. "ContactGroups/{id}/Contacts/{ContactID}" or every member at "ContactGroups/{id}/Contacts"
        (204, xero.md §2.6). Retried like any call, without an Idempotency-Key (Xero ignores it on DELETE, §4.3):
        removing a member twice leaves the same group, though Xero's answer to the repeat is not documented."""
        self._request("DELETE", self._url(path))

    def _url(self, path: str) -> str:
        return f"{self._api_url}{settings.ACCOUNTING_PATH}/{path.strip('/')}"

    def _request(self, method: str, url: str, tenant: bool = True, **kwargs) -> requests.Response:
        tenant_header = {"xero-tenant-id": self.tenant_id} if tenant else {}
        headers = {**kwargs.pop("headers", {}), **tenant_header}
        state = {"attempt": 0, "renewed": False}

        def attempt() -> requests.Response:
            state["attempt"] += 1
            if state["attempt"] > 1:
                self._count(retries=1)
            response = self._send(method, url, headers, kwargs, tenant)
            if response.status_code == 401 and not state["renewed"]:
                # xero.md §1.9: refresh once and retry once; a second 401 is final.
                state["renewed"] = True
                self._auth.renew_rejected(response.request.headers["Authorization"].removeprefix("Bearer "))
                self._count(retries=1)
                response = self._send(method, url, headers, kwargs, tenant)
            return self._check(response)

        policy = retrying(
            self._max_attempts,
            before_sleep=lambda rs: log.warning(
                "Xero %s %s failed (%s); retrying", method, url, rs.outcome.exception()
            ),
        )
        try:
            return policy(attempt)
        except RetryableResponse as exc:
            raise XeroApiError(f"Xero {method} {url} kept failing: {exc}", exc.response.status_code) from None
        except requests.RequestException as exc:
            raise XeroApiError(f"Xero {method} {url} kept failing: {exc}") from exc

    def _send(self, method: str, url: str, headers: dict, kwargs: dict, tenant: bool) -> requests.Response:
        spent_for = self._day_spent_until - time.monotonic()
        if tenant and spent_for > 0:
            raise XeroDailyLimitReached(math.ceil(spent_for))  # pages still queued behind a refused one stop here
        headers = {**headers, "Authorization": f"Bearer {self._auth.access_token()}"}
        # xero.md §1.6: tenant-less calls (/connections) do not count against the tenant's limits.
        with self._limiter.slot() if tenant else contextlib.nullcontext():
            self._count(calls=1)
            response = self._session.request(method, url, headers=headers, timeout=self._timeout, stream=True, **kwargs)
            try:
                # In one piece: requests reads a body 10 KB at a time, each read taking the GIL back from the
                # thread turning pages into landing frames, 160 times for a page of invoices. Read errors are still
                # requests' own (a cut-off body is retried).
                response._content = b"".join(response.iter_content(chunk_size=None))
            except requests.RequestException:
                response.close()
                raise
            self._count(bytes_received=len(response.content))
        self._observe_limits(response)
        return response

    def _observe_limits(self, response: requests.Response) -> None:
        minute = _int_header(response, "X-MinLimit-Remaining")
        day = _int_header(response, "X-DayLimit-Remaining")
        with self._stats_lock:
            if minute is not None:
                self._stats.min_limit_remaining = minute
            if day is not None:
                self._stats.day_limit_remaining = day
        # A 429 carries Retry-After, which is authoritative (xero.md §5); it pauses the limiter in _check.
        if minute is not None and response.status_code != 429:
            self._limiter.observe_remaining(minute)

    def _check(self, response: requests.Response) -> requests.Response:
        status = response.status_code
        if status < 400:
            return response
        retry_after = _int_header(response, "Retry-After")
        if status == 429:
            problem = response.headers.get("X-Rate-Limit-Problem", "").lower()
            # xero.md §5: "day" (older docs "Daily") means defer the run, not retry soon.
            if problem.startswith("day"):
                self._day_spent_until = time.monotonic() + (retry_after or 0)
                raise XeroDailyLimitReached(retry_after)
            if retry_after:
                self._limiter.pause(retry_after)
            raise RetryableResponse(response, retry_after)
        if status >= 500:
            raise RetryableResponse(response, retry_after)
        raise XeroApiError(
            f"Xero {response.request.method} {response.url} answered {status}", status, _validation_messages(response)
        )

    def _count(self, calls: int = 0, bytes_received: int = 0, retries: int = 0) -> None:
        with self._stats_lock:
            self._stats.calls += calls
            self._stats.bytes_received += bytes_received
            self._stats.retries += retries


def _element_key(path: str, key: str | None) -> str:
    """The array a body or response carries: the collection for "X" and "X/{id}"; a sub-resource must name it."""
    if key:
        return key
    parts = path.strip("/").split("/")
    if len(parts) > 2:
        raise ValueError(f"name the element array of {path!r} with key=, e.g. 'Contacts' or 'HistoryRecords'")
    return parts[0]


def _int_header(response: requests.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _validation_messages(response: requests.Response) -> list[str]:
    """Collect ValidationErrors from a 400 body (xero.md §4.4); 404s and auth errors are plain text or problem JSON."""
    try:
        body = json_codec.response_json(response)
    except ValueError:
        return [response.text[:500]] if response.text else []
    if not isinstance(body, dict):
        return []
    messages = [
        error["Message"]
        for element in body.get("Elements", [])
        for error in element.get("ValidationErrors", [])
        if error.get("Message")
    ]
    return messages or [str(body.get("Message") or body.get("Detail") or body.get("Title") or "")]
