"""What Segment's two read APIs (the Public API and the Profile API) share: GETs retried on 429, 5xx and dropped
connections with the shared backoff, counted for run metadata."""

from __future__ import annotations

import dataclasses
import logging

import requests

from sync_pipelines.lib import json_codec
from sync_pipelines.vendors.retrying import RetryableResponse, retry_after_seconds, retrying

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ReadStats:
    """Requests a client has made, for run metadata."""

    calls: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429 answers seen, each retried after the wait it named


class ReadApi:
    """GETs against one base URL with fixed headers; a subclass names the API, turns a refusal into its own error
    and may read the wait a 429 names."""

    api = "Segment API"

    def __init__(self, base_url: str, headers: dict[str, str], session, timeout: float, max_attempts: int) -> None:
        self._base_url = base_url.rstrip("/")
        self._session = session or requests.Session()
        # Per request rather than on the session, which may be the caller's.
        self._headers = headers
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._stats = ReadStats()

    @property
    def stats(self) -> ReadStats:
        return dataclasses.replace(self._stats)

    def _get_json(self, path: str, params: dict | None = None) -> dict:
        """One GET, retried on 429, 5xx and dropped connections; the answer's JSON."""
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
                "%s GET %s failed (%s); retrying", self.api, path, state.outcome.exception()
            ),
        )
        try:
            return json_codec.response_json(policy(attempt))
        except RetryableResponse as exc:
            raise self._refused(exc.response, f"{self.api} GET {path} kept failing") from None
        except requests.RequestException as exc:
            raise self._failed(f"{self.api} GET {path} kept failing: {exc}") from exc

    def _check(self, response: requests.Response) -> requests.Response:
        status = response.status_code
        if status < 400:
            return response
        if status == 429:
            self._stats.rate_limited += 1
            raise RetryableResponse(response, self._rate_limit_wait(response))
        if status >= 500:
            raise RetryableResponse(response)
        raise self._refused(response, f"{self.api} GET {response.request.path_url} answered {status}")

    def _rate_limit_wait(self, response: requests.Response) -> float | None:
        """Seconds to wait after a 429; None leaves it to the backoff."""
        return retry_after_seconds(response)

    def _refused(self, response: requests.Response, description: str) -> Exception:
        raise NotImplementedError

    def _failed(self, description: str) -> Exception:
        raise NotImplementedError
