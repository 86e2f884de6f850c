"""Settings and the live, in-memory state every sandbox app shares (limits, faults, stats, in-flight counts).

Records, tokens, Segment messages and queued webhook events persist in the Store; counters, fault knobs and
run-time webhook settings are per process, so a restarted sandbox starts with fresh rate-limit windows, no
faults and its configured webhook subscription, like a new day at the vendor.
"""

import random
import tempfile
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_pipelines.sandbox.intercom.workspace import IntercomWorkspace
from sync_pipelines.sandbox.salesforce.org import SalesforceOrg
from sync_pipelines.sandbox.segment.workspace import SegmentWorkspace
from sync_pipelines.sandbox.store import Store
from sync_pipelines.sandbox.webhooks import DeliveryLoop
from sync_pipelines.sandbox.xero import seed
from sync_pipelines.sandbox.xero.accounting import Ledger
from sync_pipelines.sandbox.xero.webhooks import WebhookEmitter

LIMIT_NAMES = ("minute_limit", "day_limit", "concurrent_limit", "app_minute_limit")
FAULT_DEFAULTS: dict[str, float] = {
    "error_rate": 0.0,
    "rate_limit_rate": 0.0,
    "drop_rate": 0.0,
    "latency_ms": 0.0,
    "retry_after_seconds": 1.0,
}
VENDORS = ("xero", "segment", "salesforce", "intercom")


@dataclass
class SandboxSettings:
    """Everything a sandbox run needs; defaults mirror the vendors' documented limits (xero.md §1.4, §4.3, §5).

    webhook_url None means no webhook subscription (xero.md §6); webhook_attempts and webhook_backoff_seconds
    (first retry delay, doubling up to 30 s) bound how long one failing delivery is retried.

    salesforce_* configure the Salesforce org (sandbox/salesforce): its connected app's credentials, the seed
    sizes (contacts_per_account is an average), the daily API request allocation (salesforce.md §5; 15,000 as
    in a Developer Edition), the access-token lifetime (§1.5: the session timeout, commonly 2 h), refresh-token
    rotation (§1.2, off by default), how long a Bulk query job stays InProgress (§6) and the first retry delay of an
    Outbound Message that was not acknowledged (§9; doubling up to 2 h).

    intercom_* configure the Intercom workspace (sandbox/intercom): the access token, the app's client secret
    (which signs webhooks) and app id, the seed sizes, the requests allowed per 10-second window (intercom.md §3:
    167 = 1,000/min), how long an idle companies scroll lives (§6.1), the workspace time zone that search's
    calendar-day matching uses (§5.1) and the webhook URL (None: no subscription; §9). Webhook retries use
    webhook_attempts and webhook_backoff_seconds, as Xero's do.

    segment_webhook_secret is the shared secret the CLI gives the Webhooks destination and the receiver;
    segment_webhook_attempts and segment_webhook_backoff_seconds bound the retries of the Segment workspace's
    Webhooks destination (sandbox/segment/destination.py), whose URL, secret and batch size the admin API sets;
    segment_public_api_token is the workspace token the Public API sandbox (sandbox/segment/public_api.py) accepts.
    segment_space_id and segment_profile_token are the Engage space the Profile API sandbox (sandbox/segment/
    profiles.py) serves and the access token it accepts (HTTP Basic user name); segment_profile_requests_per_second
    is that space's rate limit (segment.md §7: 100 requests/s) over a sliding window of
    segment_profile_rate_window_seconds (a test lengthens it, so that what passes never depends on the machine's speed).

    xero_organisations is how many Xero organisations the app is connected to (xero.md §1.6): each has its own
    tenant, records (seeded alike, from its own random stream), limits, idempotency keys and webhook events.
    salesforce_orgs is how many Salesforce orgs the sandbox serves, each at its own My Domain (the first at
    /salesforce, the n-th at /salesforce/orgs/n: login host and instance in one, salesforce.md §1.4) with its own
    OrganizationId, record ids, records (seeded alike, from its own random stream), tokens, daily allocation and
    Outbound Messages; the connected app (salesforce_client_id) is the same in all of them.
    """

    state_path: Path
    seed: int = 42
    xero_organisations: int = 1
    invoices: int = 200
    contacts: int = 40
    malformed: int = 0
    minute_limit: int = 60
    day_limit: int = 5000
    concurrent_limit: int = 5
    app_minute_limit: int = 10000
    access_token_ttl: int = 1800
    refresh_grace_seconds: int = 1800
    idempotency_ttl: int = 360
    client_id: str = "sandbox-client-id"
    client_secret: str = "sandbox-client-secret"
    write_key: str = "sandbox-write-key"
    webhook_url: str | None = None
    webhook_key: str = "sandbox-webhook-key"
    webhook_attempts: int = 8
    webhook_backoff_seconds: float = 0.5
    salesforce_orgs: int = 1
    salesforce_client_id: str = "sandbox-sf-client-id"
    salesforce_client_secret: str = "sandbox-sf-client-secret"
    salesforce_accounts: int = 300
    salesforce_contacts_per_account: int = 2
    salesforce_leads: int = 200
    salesforce_opportunities: int = 300
    salesforce_daily_api_limit: int = 15000
    salesforce_access_token_ttl: int = 7200
    salesforce_refresh_token_rotation: bool = False
    salesforce_bulk_job_seconds: float = 0.5
    salesforce_outbound_backoff_seconds: float = 0.5
    intercom_access_token: str = "sandbox-intercom-token"
    intercom_client_secret: str = "sandbox-intercom-client-secret"
    intercom_app_id: str = "sandboxapp"
    intercom_contacts: int = 150
    intercom_companies: int = 30
    intercom_conversations: int = 60
    intercom_window_limit: int = 167
    intercom_scroll_ttl: float = 60.0
    intercom_timezone: str = "UTC"
    intercom_webhook_url: str | None = None
    segment_webhook_secret: str = "sandbox-segment-webhook-secret"
    segment_webhook_attempts: int = 8
    segment_webhook_backoff_seconds: float = 0.5
    segment_public_api_token: str = "sandbox-segment-public-api-token"
    segment_space_id: str = "spa_sandbox8Qw3Rt5Yu7Io9P"
    segment_profile_token: str = "sandbox-segment-profile-token"
    segment_profile_requests_per_second: int = 100
    segment_profile_rate_window_seconds: float = 1.0


@dataclass
class XeroOrganisation:
    """One Xero organisation (tenant): its records and ledger in a store of its own, and its webhook events."""

    number: int  # 1 for the first, whose records share the sandbox's state file
    store: Store
    webhooks: WebhookEmitter
    ledger: Ledger

    @classmethod
    def open(cls, number: int, store: Store, settings: SandboxSettings) -> "XeroOrganisation":
        webhooks = WebhookEmitter(
            store,
            settings.webhook_url,
            settings.webhook_key,
            settings.webhook_attempts,
            settings.webhook_backoff_seconds,
        )
        return cls(number, store, webhooks, Ledger(store, before_save=webhooks.observe))

    @property
    def tenant_id(self) -> str:
        return self.store.meta_get("tenant_id")


# The organisation a Xero request is served for: set by the request's Xero-tenant-id (or the admin API's `tenant`).
_SERVING: ContextVar[XeroOrganisation | None] = ContextVar("xero_organisation", default=None)


@dataclass
class Runtime:
    settings: SandboxSettings
    store: Store
    organisations: list[XeroOrganisation] = field(init=False)  # the Xero organisations, the first first
    salesforce_orgs: list[SalesforceOrg] = field(init=False)  # the Salesforce orgs, the first first
    intercom: IntercomWorkspace = field(init=False)
    segment: SegmentWorkspace = field(init=False)
    limits: dict[str, int] = field(init=False)
    faults: dict[str, dict[str, float]] = field(init=False)
    stats: dict[str, Counter] = field(default_factory=lambda: {vendor: Counter() for vendor in VENDORS})
    # Accounting API calls per Xero tenant, by answer: {"calls": n, "429": n, ...}.
    tenant_stats: defaultdict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    faults_injected: int = 0
    inflight: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.intercom = IntercomWorkspace(self.settings, self.store)
        self.segment = SegmentWorkspace(
            self.store, self.settings.segment_webhook_attempts, self.settings.segment_webhook_backoff_seconds
        )
        self.organisations = [
            XeroOrganisation.open(number, self._store_of("xero", number), self.settings)
            for number in range(1, max(1, self.settings.xero_organisations) + 1)
        ]
        self.salesforce_orgs = [
            SalesforceOrg(self.settings, self._store_of("salesforce", number), number)
            for number in range(1, max(1, self.settings.salesforce_orgs) + 1)
        ]
        self.limits = {name: getattr(self.settings, name) for name in LIMIT_NAMES}
        self.faults = {vendor: dict(FAULT_DEFAULTS) for vendor in VENDORS}
        self._fault_rng = random.Random(f"faults:{self.settings.seed}")
        if self.store.meta_get("seed") is None:
            self.reset()
        for organisation in self.organisations[1:]:
            if organisation.store.meta_get("seed") is None:  # a state file made with fewer organisations
                self._seed(organisation, self._seed_options({}))

    def _store_of(self, vendor: str, number: int) -> Store:
        """The store of a vendor's number-th organisation: the sandbox's for the first, a file beside it for others."""
        if number == 1:
            return self.store
        path = self.settings.state_path
        return Store(path.with_name(f"{path.stem}.{vendor}{number}{path.suffix}"))

    @property
    def salesforce(self) -> SalesforceOrg:
        """The first Salesforce org (at /salesforce)."""
        return self.salesforce_orgs[0]

    @property
    def xero(self) -> XeroOrganisation:
        """The organisation the current request is served for; the first outside one."""
        return _SERVING.get() or self.organisations[0]

    def organisation(self, tenant_id: str) -> XeroOrganisation | None:
        return next((o for o in self.organisations if o.tenant_id == tenant_id), None)

    @contextmanager
    def serving(self, organisation: XeroOrganisation) -> Iterator[None]:
        """Serve what runs inside for this organisation."""
        token = _SERVING.set(organisation)
        try:
            yield
        finally:
            _SERVING.reset(token)

    def close(self) -> None:
        """Close the stores of the organisations and orgs beyond the first (the first's is the server's)."""
        for organisation in self.organisations[1:]:
            organisation.store.close()
        for org in self.salesforce_orgs[1:]:
            org.state.close()

    def start_webhooks(self) -> None:
        """Every vendor's webhook delivery thread (Xero's, Intercom's, Segment's destination, Salesforce's Outbound
        Messages), with the server."""
        for loop in self._delivery_loops():
            loop.start()

    def stop_webhooks(self) -> None:
        for loop in self._delivery_loops():
            loop.stop()

    def _delivery_loops(self) -> tuple[DeliveryLoop, ...]:
        xero = tuple(organisation.webhooks for organisation in self.organisations)
        salesforce = tuple(org.outbound for org in self.salesforce_orgs)
        return (*xero, self.intercom.webhooks, self.segment.destination, *salesforce)

    def reset(self, **overrides: Any) -> dict[str, Any]:
        """Regenerate every record deterministically, and forget what Segment's sources emitted; OAuth tokens
        survive so connected clients stay connected."""
        options = self._seed_options(overrides)
        for organisation in self.organisations:
            self._seed(organisation, options)
        self.segment.store.clear()
        return {**options, "tenant_id": self.tenant_id}

    def _seed_options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return {
            name: overrides.get(name, getattr(self.settings, name))
            for name in ("seed", "invoices", "contacts", "malformed")
        }

    def _seed(self, organisation: XeroOrganisation, options: dict[str, Any]) -> None:
        # The staged records sit beside the state file: a million take as much room as they will there.
        with tempfile.TemporaryDirectory(prefix="seeding-", dir=self.settings.state_path.parent) as staging:
            staged, meta = seed.stage(**options, organisation=organisation.number, directory=Path(staging))
            organisation.store.replace_records(staged, meta)

    @property
    def tenant_id(self) -> str:
        """The first organisation's tenant."""
        return self.organisations[0].tenant_id

    def set_faults(self, config: dict[str, Any]) -> None:
        """Merge fault knobs and restart the fault RNG so a given configuration replays the same faults."""
        for vendor in VENDORS:
            for name, value in (config.get(vendor) or {}).items():
                if name not in FAULT_DEFAULTS:
                    raise ValueError(f"unknown fault {vendor}.{name}")
                number = float(value)
                if name.endswith("_rate") and not 0 <= number <= 1:
                    raise ValueError(f"{vendor}.{name} must be between 0 and 1")
                if number < 0:
                    raise ValueError(f"{vendor}.{name} must not be negative")
                self.faults[vendor][name] = number
        with self.lock:
            self._fault_rng = random.Random(f"faults:{self.settings.seed}")

    def draw(self) -> float:
        with self.lock:
            return self._fault_rng.random()

    def count(self, vendor: str, key: str) -> None:
        with self.lock:
            self.stats[vendor][key] += 1

    def count_tenant_call(self, tenant: str, status: int) -> None:
        with self.lock:
            self.tenant_stats[tenant].update(("calls", str(status)))

    def note_fault(self) -> None:
        with self.lock:
            self.faults_injected += 1

    def stats_snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                **{vendor: dict(counter) for vendor, counter in self.stats.items()},
                "xero_tenants": {tenant: dict(counter) for tenant, counter in self.tenant_stats.items()},
                "faults_injected": self.faults_injected,
            }

    def reset_stats(self) -> None:
        with self.lock:
            for counter in self.stats.values():
                counter.clear()
            self.tenant_stats.clear()
            self.faults_injected = 0
