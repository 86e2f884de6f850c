"""Segment Public API client, read side: the workspace's sources, so the source a message came from (its
`projectId` is the source's id) can be named, e.g. "Point of Sale" (segment.md §8).

Docs: https://docs.segmentapis.com/tag/Getting-Started (hosts, Bearer token), .../tag/Pagination (count and
cursor), .../tag/Error-Handling (status codes, the `errors` envelope), .../tag/Rate-Limits (429 hints).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import requests

from sync_pipelines.vendors.retrying import RetryableResponse, retry_after_seconds, retrying
from sync_pipelines.vendors.segment import settings

log = logging.getLogger(__name__)


class SegmentPublicApiError(Exception):
    """A request the Public API refused (401 bad token, 404 unknown id, 422 invalid input...) or that kept failing.

    `errors` holds the answer's `errors` entries ({"type", "message", "field"?, "data"?}, Error-Handling); `status`
    is None when no answer came.
    """

    def __init__(self, description: str, status: int | None = None, errors: list[dict] | None = None):
        self.status = status
        self.errors = errors or []
        detail = "; ".join(
            f"{error.get('type')}: {error.get('message')}" + (f" ({error['field']})" if error.get("field") else "")
            for error in self.errors
        )
        super().__init__(f"{description}: {detail}" if detail else description)

    @classmethod
    def from_response(cls, response: requests.Response, description: str) -> SegmentPublicApiError:
        return cls(description, response.status_code, _error_entries(response))


@dataclasses.dataclass
class PublicApiStats:
    """Requests this client has made, for run metadata."""

    calls: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429 answers seen, each retried after the wait it named


class SegmentPublicApi:
    """One workspace, through a Public API token; `base_url` selects the region (settings.PUBLIC_API_URL, or
    PUBLIC_API_EU_URL for an EU workspace) or the sandbox ("{sandbox}/segmentapis")."""

    def __init__(
        self,
        base_url: str,
        token: str,
        session: requests.Session | None = None,
        page_size: int = settings.PUBLIC_API_MAX_PAGE_SIZE,
        timeout: float = 30,
        max_attempts: int = 8,
    ) -> None:
        if not 1 <= page_size <= settings.PUBLIC_API_MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{settings.PUBLIC_API_MAX_PAGE_SIZE} (segment.md §8)")
        self._base_url = base_url.rstrip("/")
        self._session = session or requests.Session()
        # Per request rather than on the session, which may be the caller's.
        self._headers = {"Authorization": f"Bearer {token}", "Accept": settings.PUBLIC_API_ACCEPT}
        self._page_size = page_size
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._stats = PublicApiStats()

    @property
    def stats(self) -> PublicApiStats:
        return dataclasses.replace(self._stats)

    def sources(self) -> list[dict]:
        """Every source of the workspace (id, slug, name, metadata, enabled, ...), all pages."""
        return list(self._pages("/sources", "sources"))

    def source(self, source_id: str) -> dict:
        """One source by id; an unknown id raises SegmentPublicApiError with status 404."""
        return self._get(f"/sources/{_segment(source_id)}")["source"]

    def source_names(self) -> dict[str, str]:
        """{source id: name}, to name a message's projectId. `name` is optional in the API: a source without one
        goes by its slug."""
        return {source["id"]: source.get("name") or source["slug"] for source in self.sources()}

    def connected_destinations(self, source_id: str) -> list[dict]:
        """The destinations a source sends to (id, name, enabled, metadata, sourceId, settings), all pages."""
        return list(self._pages(f"/sources/{_segment(source_id)}/connected-destinations", "destinations"))

    def _pages(self, path: str, key: str) -> Iterator[dict]:
        """A list call followed page by page: `pagination.next` is the next cursor, absent on the last page."""
        params = {"pagination.count": self._page_size}
        while True:
            data = self._get(path, params)
            yield from data.get(key) or []
            following = (data.get("pagination") or {}).get("next")
            if not following:
                return
            params = {"pagination.count": self._page_size, "pagination.cursor": following}

    def _get(self, path: str, params: dict | None = None) -> dict:
        """One GET with retries on 429, 5xx and dropped connections; the answer's `data`."""
        attempts = 0

        def attempt() -> requests.Response:
            nonlocal attempts
            attempts += 1
            self._stats.calls += 1
            if attempts > 1:
                self._stats.retries += 1
            response = self._session.get(
                self._base_url + path, params=params, headers=self._headers, timeout=self._timeout
            )
            return self._check(response)

        policy = retrying(
            self._max_attempts,
            before_sleep=lambda state: log.warning(
                "Segment Public API GET %s failed (%s); retrying", path, state.outcome.exception()
            ),
        )
        try:
            return policy(attempt).json()["data"]
        except RetryableResponse as exc:
            raise SegmentPublicApiError.from_response(
                exc.response, f"Segment Public API GET {path} kept failing"
            ) from None
        except requests.RequestException as exc:
            raise SegmentPublicApiError(f"Segment Public API GET {path} kept failing: {exc}") from exc

    def _check(self, response: requests.Response) -> requests.Response:
        status = response.status_code
        if status < 400:
            return response
        if status == 429:
            self._stats.rate_limited += 1
            raise RetryableResponse(response, _rate_limit_wait(response))
        if status >= 500:
            raise RetryableResponse(response)
        raise SegmentPublicApiError.from_response(
            response, f"Segment Public API GET {response.request.path_url} answered {status}"
        )


def _rate_limit_wait(response: requests.Response) -> float | None:
    """Seconds to wait after a 429: Retry-After if a proxy gives one, else the documented hints (Rate-Limits):
    the body's data.msBeforeNext, then X-RateLimit-Reset (an RFC 5322 date); None leaves it to the backoff."""
    seconds = retry_after_seconds(response)
    if seconds is not None:
        return seconds
    for error in _error_entries(response):
        data = error.get("data")
        wait = data.get("msBeforeNext") if isinstance(data, dict) else None
        if isinstance(wait, int | float) and not isinstance(wait, bool):
            return max(0.0, wait / 1000)
    try:
        reset = parsedate_to_datetime(response.headers["X-RateLimit-Reset"])
    except (KeyError, TypeError, ValueError):
        return None
    if reset.tzinfo is None:
        reset = reset.replace(tzinfo=dt.UTC)
    return max(0.0, (reset - dt.datetime.now(dt.UTC)).total_seconds())


def _error_entries(response: requests.Response) -> list[dict]:
    """The `errors` entries of an error answer; a body that is not the envelope (a proxy's page) becomes one entry
    holding its text."""
    try:
        body = response.json()
    except ValueError:
        return [{"type": None, "message": response.text[:500]}] if response.text else []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [error for error in errors if isinstance(error, dict)] if isinstance(errors, list) else []


def _segment(value: str) -> str:
    return quote(str(value), safe="")
