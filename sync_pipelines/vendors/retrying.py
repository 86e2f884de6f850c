"""The retry policy every vendor client shares: backoff with jitter, the vendor's Retry-After when it gives one."""

from collections.abc import Callable

import requests
import tenacity

# A request that never got a whole answer: safe to repeat when the write carries an idempotency key.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)

_backoff = tenacity.wait_random_exponential(multiplier=0.5, max=30)


class RetryableResponse(Exception):
    """A 429 or 5xx: the same request may succeed later, after `retry_after` seconds if the vendor said so."""

    def __init__(self, response: requests.Response, retry_after: float | None = None):
        self.response = response
        self.retry_after = retry_after
        super().__init__(f"{response.status_code} {response.reason}: {response.text[:200]}")


def retry_after_seconds(response: requests.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _wait(retry_state: tenacity.RetryCallState) -> float:
    error = retry_state.outcome.exception() if retry_state.outcome else None
    if isinstance(error, RetryableResponse) and error.retry_after is not None:
        return error.retry_after
    return _backoff(retry_state)


def retrying(
    max_attempts: int,
    retry_on: tuple[type[Exception], ...] = (RetryableResponse, *TRANSIENT_ERRORS),
    before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
) -> tenacity.Retrying:
    """Up to `max_attempts` tries of a call; the last error is re-raised as it was."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(retry_on),
        wait=_wait,
        stop=tenacity.stop_after_attempt(max_attempts),
        before_sleep=before_sleep,
        reraise=True,
    )
