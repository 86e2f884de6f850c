"""Segment Public API client, read side: the workspace's sources, so the source a message came from (its
`projectId` is the source's id) can be named, e.g. "Point of Sale" (segment.md §8).

Docs: https://docs.segmentapis.com/tag/Getting-Started (hosts, Bearer token), .../tag/Pagination (count and
cursor), .../tag/Error-Handling (status codes, the `errors` envelope), .../tag/Rate-Limits (429 hints).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import requests

from sync_pipelines.lib import json_codec
from sync_pipelines.vendors.retrying import retry_after_seconds
from sync_pipelines.vendors.segment import settings
from sync_pipelines.vendors.segment.read_api import ReadApi


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


class SegmentPublicApi(ReadApi):
    """One workspace, through a Public API token; `base_url` selects the region (settings.PUBLIC_API_URL, or
    PUBLIC_API_EU_URL for an EU workspace) or the sandbox ("{sandbox}/segmentapis")."""

    api = "Segment Public API"

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
        headers = {"Authorization": f"Bearer {token}", "Accept": settings.PUBLIC_API_ACCEPT}
        super().__init__(base_url, headers, session, timeout, max_attempts)
        self._page_size = page_size

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
        """The answer's `data`."""
        return self._get_json(path, params)["data"]

    def _refused(self, response: requests.Response, description: str) -> Exception:
        return SegmentPublicApiError.from_response(response, description)

    def _failed(self, description: str) -> Exception:
        return SegmentPublicApiError(description)

    def _rate_limit_wait(self, response: requests.Response) -> float | None:
        return _rate_limit_wait(response)


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
        body = json_codec.response_json(response)
    except ValueError:
        return [{"type": None, "message": response.text[:500]}] if response.text else []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [error for error in errors if isinstance(error, dict)] if isinstance(errors, list) else []


def _segment(value: str) -> str:
    return quote(str(value), safe="")
