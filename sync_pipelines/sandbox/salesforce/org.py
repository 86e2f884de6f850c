"""The org's shared state: its tables, the write rules, the daily API allocation and run-time settings.

Records, tokens, cursors and Bulk jobs persist in the store; the API usage counter, pending Bulk failures
and run-time settings live in the process, like the Xero rate-limit windows (a restart is a new day).
The org is seeded on first use rather than at start-up, so sandboxes that never touch Salesforce (most
tests) do not pay for it; a state file that was seeded before keeps its data.
"""

import threading
import time
from typing import Any

from sync_pipelines.sandbox.salesforce import ids, seed
from sync_pipelines.sandbox.salesforce.outbound import OutboundMessages
from sync_pipelines.sandbox.salesforce.records import Writer
from sync_pipelines.sandbox.salesforce.schema import OBJECTS, datetime_text
from sync_pipelines.sandbox.salesforce.store import SalesforceStore
from sync_pipelines.sandbox.store import Store

SIZE_NAMES = ("accounts", "contacts_per_account", "leads", "opportunities")
SETTING_NAMES = ("access_token_ttl", "refresh_token_rotation", "bulk_job_seconds")
_DAY_S = 86_400


def now_ms() -> int:
    return int(time.time() * 1000)


def now_stamp() -> str:
    """Now as a stored datetime, whole seconds (schema.py)."""
    return datetime_text(now_ms())


def org_path(number: int) -> str:
    """Where the sandbox serves its number-th org, that org's My Domain: the first at salesforce, the n-th at
    salesforce/orgs/n (its admin API under /_admin/ at the same path)."""
    return "salesforce" if number == 1 else f"salesforce/orgs/{number}"


class SalesforceOrg:
    def __init__(self, settings: Any, store: Store, number: int = 1):
        """`settings` is the sandbox's SandboxSettings; its salesforce_* fields configure the org. `number` says
        which of the sandbox's orgs it is: each has its own ids, records (from a random stream of its own), tokens,
        allocation and Outbound Messages."""
        self.settings = settings
        self.number = number
        self.state = store
        self.store = SalesforceStore(store, ids.pod(number))
        self.org_id, self.user_id = seed.org_id(number), seed.api_user_id(number)
        self.outbound = OutboundMessages(self.store, self.org_id, settings.salesforce_outbound_backoff_seconds)
        self.writer = Writer(self.store, self.user_id, on_save=self.outbound.observe)
        self.daily_api_limit: int = settings.salesforce_daily_api_limit
        self.access_token_ttl: int = settings.salesforce_access_token_ttl
        self.refresh_token_rotation: bool = settings.salesforce_refresh_token_rotation
        self.bulk_job_seconds: float = settings.salesforce_bulk_job_seconds
        self.pending_bulk_failures: list[str] = []
        self._lock = threading.Lock()
        self._seed_lock = threading.Lock()
        self._seeded = False
        self._window_start = time.monotonic()
        self._used = 0

    @property
    def path(self) -> str:
        return org_path(self.number)

    # -- seeding ------------------------------------------------------------------------------

    def ensure_seeded(self) -> None:
        if self._seeded:
            return
        with self._seed_lock:
            if not self._seeded and self.state.meta_get("salesforce") is None:
                self.reset()
            self._seeded = True

    def reset(self, **overrides: int) -> dict[str, Any]:
        """Regenerate every record deterministically; tokens survive so connected clients stay connected."""
        unknown = set(overrides) - {"seed", *SIZE_NAMES}
        if unknown:
            raise ValueError(f"unknown reset options: {sorted(unknown)}")
        options = {"seed": overrides.get("seed", self.settings.seed)}
        for name in SIZE_NAMES:
            value = int(overrides.get(name, getattr(self.settings, f"salesforce_{name}")))
            if value < 0:
                raise ValueError(f"{name} must not be negative")
            options[name] = value
        rows = seed.generate(**options, org=self.number)
        self.store.replace_records(rows)
        self.state.meta_set("salesforce", options)
        self._seeded = True
        counts = {name: sum(not row["IsDeleted"] for row in rows.get(name, ())) for name in OBJECTS}
        deleted = {name: sum(row["IsDeleted"] for row in rows.get(name, ())) for name in OBJECTS}
        return {**options, "org_id": self.org_id, "records": counts, "deleted": deleted}

    # -- the daily API request allocation (salesforce.md §5) ----------------------------------

    def take_call(self) -> tuple[bool, int, int]:
        """(allowed, used, max) for one API call; a refused call uses nothing. The 24 h window starts at the
        first call and restarts a day later (Salesforce's is rolling; a fixed window is close enough here)."""
        with self._lock:
            self._roll()
            if self._used >= self.daily_api_limit:
                return False, self._used, self.daily_api_limit
            self._used += 1
            return True, self._used, self.daily_api_limit

    def usage(self) -> tuple[int, int]:
        with self._lock:
            self._roll()
            return self._used, self.daily_api_limit

    def set_usage(self, used: int | None = None, daily_api_limit: int | None = None) -> None:
        with self._lock:
            if daily_api_limit is not None:
                self.daily_api_limit = daily_api_limit
            if used is not None:
                self._used = used

    def _roll(self) -> None:
        if time.monotonic() - self._window_start >= _DAY_S:
            self._window_start, self._used = time.monotonic(), 0

    # -- Bulk failures ------------------------------------------------------------------------

    def fail_next_bulk_jobs(self, count: int, message: str) -> int:
        with self._lock:
            self.pending_bulk_failures.extend([message] * count)
            return len(self.pending_bulk_failures)

    def take_bulk_failure(self) -> str | None:
        with self._lock:
            return self.pending_bulk_failures.pop(0) if self.pending_bulk_failures else None
