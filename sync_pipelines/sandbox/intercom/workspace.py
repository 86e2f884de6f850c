"""The workspace's shared state: its tables, the write rules, the rate-limit window, the companies scroll.

Records persist in the store; the rate-limit window, the open scroll and run-time settings live in the process
(a restarted sandbox starts a fresh window with no scroll open). Like the Salesforce org, the workspace is
seeded on first use, so sandboxes that never touch Intercom do not pay for it.
"""

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sync_pipelines.sandbox.intercom import seed
from sync_pipelines.sandbox.intercom.errors import IntercomError, not_found
from sync_pipelines.sandbox.intercom.records import Writer
from sync_pipelines.sandbox.intercom.render import Renderer
from sync_pipelines.sandbox.intercom.store import IntercomStore
from sync_pipelines.sandbox.intercom.webhooks import IntercomWebhooks
from sync_pipelines.sandbox.store import Store

SIZE_NAMES = ("contacts", "companies", "conversations")
SETTING_NAMES = ("window_limit", "scroll_ttl", "timezone")
WINDOW_SECONDS = 10  # intercom.md §3: limits are enforced per 10-second window
SCROLL_PAGE = 50  # companies per scroll page (unconfirmed: the spec does not say)
SCROLL_NETWORK_ERROR = "Request failed due to an internal network error. Please restart the scroll operation."


def now_s() -> int:
    return int(time.time())


def zone(name: Any) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


class WindowLimiter:
    """The app's request budget per fixed 10-second window (intercom.md §3); refused calls use nothing."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._window = 0
        self._used = 0

    def take(self) -> tuple[bool, dict[str, str]]:
        """(allowed, the X-RateLimit-* headers to send with the answer)."""
        window = int(time.time()) // WINDOW_SECONDS * WINDOW_SECONDS
        with self._lock:
            if window != self._window:
                self._window, self._used = window, 0
            allowed = self._used < self.limit
            if allowed:
                self._used += 1
            remaining = max(0, self.limit - self._used)
            limit = self.limit
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(window + WINDOW_SECONDS),
        }
        return allowed, headers


@dataclass
class Scroll:
    param: str
    ids: list[str]
    position: int
    last_used: float
    broken: bool = False


class Scrolls:
    """The app's one companies scroll (intercom.md §6.1): a second one is refused while the first lives, and a
    scroll unused for `ttl` seconds expires. A broken scroll (network error) keeps the lock until it expires."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self.current: Scroll | None = None
        self.pending_failures = 0
        self.pages_before_failure = 0
        self._lock = threading.Lock()

    def _live(self) -> Scroll | None:
        if self.current is not None and time.monotonic() - self.current.last_used > self.ttl:
            self.current = None
        return self.current

    def open(self, ids: list[str]) -> tuple[Scroll, list[str]]:
        with self._lock:
            if self._live() is not None:
                raise IntercomError(400, "scroll_exists", "scroll already exists for this app")
            self.current = Scroll(str(uuid.uuid4()), ids, 0, time.monotonic())
            return self._page(self.current)

    def advance(self, param: str) -> tuple[Scroll, list[str]]:
        with self._lock:
            scroll = self._live()
            if scroll is None or scroll.param != param or scroll.broken:
                # An expired or unknown scroll_param: 404 not_found (code seen in connectors; text unconfirmed).
                raise not_found("scroll parameter not found")
            return self._page(scroll)

    def _page(self, scroll: Scroll) -> tuple[Scroll, list[str]]:
        """The next page; a failure set by the admin breaks the scroll instead (a 500, no resume)."""
        if self.pending_failures and self.pages_before_failure:
            self.pages_before_failure -= 1
        elif self.pending_failures:
            self.pending_failures -= 1
            scroll.broken = True
            raise IntercomError(500, "server_error", SCROLL_NETWORK_ERROR)
        chunk = scroll.ids[scroll.position : scroll.position + SCROLL_PAGE]
        scroll.position += len(chunk)
        scroll.last_used = time.monotonic()
        if not chunk:
            self.current = None  # the end: the parameter expires with the empty page
        return scroll, chunk

    def fail_next(self, calls: int, after: int = 0) -> int:
        """The next `calls` page requests fail, once `after` more pages have been served (a failure midway)."""
        with self._lock:
            self.pending_failures += calls
            self.pages_before_failure = after
            return self.pending_failures

    def expire(self) -> bool:
        with self._lock:
            existed = self._live() is not None
            self.current = None
            return existed

    def state(self) -> dict[str, Any] | None:
        with self._lock:
            scroll = self._live()
            if scroll is None:
                return None
            return {
                "scroll_param": scroll.param,
                "served": scroll.position,
                "remaining": len(scroll.ids) - scroll.position,
                "idle_seconds": round(time.monotonic() - scroll.last_used, 3),
                "broken": scroll.broken,
            }


class IntercomWorkspace:
    def __init__(self, settings: Any, store: Store):
        """`settings` is the sandbox's SandboxSettings; its intercom_* fields configure the workspace."""
        self.settings = settings
        self.store = IntercomStore(store)
        self.app_id: str = settings.intercom_app_id
        self.access_token: str = settings.intercom_access_token
        self.timezone = zone(settings.intercom_timezone)
        self.limiter = WindowLimiter(settings.intercom_window_limit)
        self.scrolls = Scrolls(settings.intercom_scroll_ttl)
        self.webhooks = IntercomWebhooks(
            self.store,
            settings.intercom_webhook_url,
            settings.intercom_client_secret,
            self.app_id,
            settings.webhook_attempts,
            settings.webhook_backoff_seconds,
        )
        self.renderer = Renderer(self.store, self.app_id)
        self.writer = Writer(self.store, self.renderer, self.webhooks)
        self._seed_lock = threading.Lock()
        self._seeded = False

    @property
    def me(self) -> str:
        """The admin the access token belongs to (GET /me)."""
        return str(seed.FIRST_ADMIN_ID)

    # -- seeding ------------------------------------------------------------------------------

    def ensure_seeded(self) -> None:
        if self._seeded:
            return
        with self._seed_lock:
            if not self._seeded and self.store.meta_get("intercom") is None:
                self.reset()
            self._seeded = True

    def reset(self, **overrides: int) -> dict[str, Any]:
        """Regenerate every record deterministically; the webhook queue and log, and any scroll, go too."""
        unknown = set(overrides) - {"seed", *SIZE_NAMES}
        if unknown:
            raise ValueError(f"unknown reset options: {sorted(unknown)}")
        options = {"seed": int(overrides.get("seed", self.settings.seed))}
        for name in SIZE_NAMES:
            value = int(overrides.get(name, getattr(self.settings, f"intercom_{name}")))
            if value < 0:
                raise ValueError(f"{name} must not be negative")
            options[name] = value
        rows, counters = seed.generate(**options)
        self.store.replace_all(rows, counters)
        self.store.meta_set("intercom", options)
        self.scrolls.expire()
        self._seeded = True
        counts = {table.removeprefix("ic_"): len(rows[table]) for table in rows}
        return {**options, "app_id": self.app_id, "records": counts}

    # -- run-time settings --------------------------------------------------------------------

    def settings_snapshot(self) -> dict[str, Any]:
        return {"window_limit": self.limiter.limit, "scroll_ttl": self.scrolls.ttl, "timezone": self.timezone.key}

    def configure(self, window_limit: Any = None, scroll_ttl: Any = None, timezone: Any = None) -> None:
        """Change any of the run-time settings; all are checked before any changes."""
        limit = self.limiter.limit if window_limit is None else int(window_limit)
        ttl = self.scrolls.ttl if scroll_ttl is None else float(scroll_ttl)
        tz = self.timezone if timezone is None else zone(timezone)
        if limit < 1 or ttl <= 0:
            raise ValueError("window_limit must be at least 1 and scroll_ttl positive")
        self.limiter.limit, self.scrolls.ttl, self.timezone = limit, ttl, tz
