"""Shared fixtures for the whole test suite: a real sandbox per test, and its admin API."""

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import requests
from cryptography.fernet import Fernet
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

from sync_pipelines.cli import connect_sandbox, sandbox_environment
from sync_pipelines.definitions import defs
from sync_pipelines.lib import json_codec
from sync_pipelines.lib.flows import synced
from sync_pipelines.lib.tenants import registry_path
from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines.vendors.xero.resource import XeroResource


class SandboxAdmin:
    """The sandbox's /_admin API: how tests change the world and look at what the vendors received."""

    def __init__(self, base_url: str) -> None:
        self.url = f"{base_url}/_admin"

    def call(self, method: str, path: str, body: dict | None = None, **params) -> object:
        response = requests.request(method, self.url + path, json=body, params=params or None, timeout=60)
        assert response.status_code == 200, response.text
        return json_codec.response_json(response) if response.content else None

    def get(self, path: str, **params) -> object:
        return self.call("GET", path, **params)

    def post(self, path: str, body: dict | None = None, method: str = "POST") -> object:
        return self.call(method, path, body or {})

    def reset(self, **body) -> None:
        self.call("POST", "/reset", body)

    def limits(self, **body) -> None:
        self.call("PUT", "/limits", body)

    def faults(self, **body) -> None:
        self.call("PUT", "/faults", body)

    def stats(self) -> dict:
        return self.call("GET", "/stats")

    def reset_stats(self) -> None:
        self.call("POST", "/stats/reset")

    def count(self, vendor: str, route: str) -> int:
        """Requests the sandbox saw for one "<METHOD> <path>" route."""
        return self.stats()[vendor].get(route, 0)

    def segment_messages(self) -> list[dict]:
        return self.call("GET", "/segment/messages")

    def segment_sources(self) -> list[dict]:
        """The workspace's sources: [{id, slug, name, enabled, metadata, library, channel}]."""
        return self.call("GET", "/segment/sources")

    def segment_emit(self, source: str, *messages: dict) -> list[dict]:
        """Messages sent from a source (slug "web", "ios", "server", "point-of-sale", or its id), returned as the
        Webhooks destination delivers them (messageId, timestamps, context.library... filled in)."""
        return self.call("POST", "/segment/emit", {"source": source, "messages": list(messages)})["messages"]

    def segment_destination(self, **options) -> dict:
        """The Webhooks destination; options (url, secret, batch_size, attempts, backoff_seconds) are PUT first."""
        return (
            self.call("PUT", "/segment/destination", options) if options else self.call("GET", "/segment/destination")
        )

    def segment_flush_webhooks(self, timeout: float = 30) -> None:
        """Return once every emitted message has been delivered to the destination (or its delivery given up)."""
        self.call("POST", "/segment/webhooks/flush", {"timeout": timeout})

    def segment_webhook_deliveries(self) -> list[dict]:
        """[{seq, message_ids, attempts, delivered}] in the order they were sent."""
        return self.call("GET", "/segment/webhook-deliveries")

    def segment_seed(self, **body) -> dict:
        """The sources emit a seeded history (seed, people); returns {seed, people, messages, counts: {types, events,
        sources}, message_ids}."""
        return self.call("POST", "/segment/seed", body)

    def segment_archive(self, path: Path, **body) -> dict:
        """The seeded history (seed, people; messages: only the first n) written under `path` as Segment's AWS S3
        destination lays it out; returns {path, files (keys under path), messages}."""
        return self.call("POST", "/segment/archive", {"path": str(path), **body})

    def segment_settings(self, **body) -> dict:
        """{forward_tracking_api}: whether Tracking API messages reach the destination; given ones are PUT first."""
        return self.call("PUT", "/segment/settings", body) if body else self.call("GET", "/segment/settings")

    def webhooks(self, **options) -> dict:
        """The Xero webhook subscription; options (url, key, attempts, backoff_seconds) are PUT first."""
        return self.call("PUT", "/xero/webhooks", options) if options else self.call("GET", "/xero/webhooks")

    def flush_webhooks(self, timeout: float = 30) -> None:
        """Return once every queued webhook event has been delivered (or its delivery given up)."""
        self.call("POST", "/xero/webhooks/flush", {"timeout": timeout})

    def webhook_deliveries(self) -> list[dict]:
        return self.call("GET", "/xero/webhooks/deliveries")

    def notifications(self) -> list[dict]:
        """What the Slack lookalike and the generic webhook receiver captured, in arrival order."""
        return self.call("GET", "/notifications")

    # -- Salesforce (/_admin/salesforce) -------------------------------------------------------

    def salesforce_reset(self, **sizes: int) -> dict:
        """Reseed the org: seed, accounts, contacts_per_account, leads, opportunities; returns sizes and counts."""
        return self.call("POST", "/salesforce/reset", sizes)

    def salesforce_records(self, sobject: str, deleted: bool = True) -> list[dict]:
        """Every row of an object as the API renders it (soft-deleted ones too unless deleted=False)."""
        return self.call("GET", f"/salesforce/records/{sobject}", deleted=str(deleted).lower())

    def salesforce_create(self, sobject: str, **fields) -> dict:
        return self.call("POST", f"/salesforce/records/{sobject}", fields)

    def salesforce_update(self, sobject: str, record_id: str, **fields) -> dict:
        """A user edit: LastModifiedDate and SystemModstamp move to now unless SystemModstamp is given."""
        return self.call("POST", f"/salesforce/records/{sobject}/{record_id}", fields)

    def salesforce_delete(self, sobject: str, record_id: str) -> dict:
        return self.call("POST", f"/salesforce/records/{sobject}/{record_id}/delete")

    def salesforce_limits(self, **body: int) -> dict:
        """The daily API allocation {daily_api_limit, used, remaining}; daily_api_limit / used are PUT first."""
        return self.call("PUT", "/salesforce/limits", body) if body else self.call("GET", "/salesforce/limits")

    def salesforce_settings(self, **body) -> dict:
        """access_token_ttl, refresh_token_rotation, bulk_job_seconds; given ones are PUT first."""
        return self.call("PUT", "/salesforce/settings", body) if body else self.call("GET", "/salesforce/settings")

    def salesforce_expire_tokens(self) -> int:
        """Expire every Salesforce access token issued so far; returns how many."""
        return self.call("POST", "/salesforce/tokens/expire")["expired"]

    def salesforce_fail_bulk(self, jobs: int = 1, message: str | None = None) -> None:
        """The next `jobs` Bulk query jobs end Failed."""
        self.call("POST", "/salesforce/bulk/fail", {"jobs": jobs, **({"message": message} if message else {})})

    def salesforce_outbound(self, **options) -> dict:
        """The Outbound Message actions; options (url, objects, backoff_seconds, max_backoff_seconds,
        max_age_seconds, newest_first) are PUT first."""
        return (
            self.call("PUT", "/salesforce/outbound", options) if options else self.call("GET", "/salesforce/outbound")
        )

    def salesforce_flush_outbound(self, timeout: float = 30) -> None:
        self.call("POST", "/salesforce/outbound/flush", {"timeout": timeout})

    def salesforce_outbound_deliveries(self) -> list[dict]:
        """[{seq, object, notifications, attempts, delivered}], oldest first."""
        return self.call("GET", "/salesforce/outbound/deliveries")

    # -- Intercom (/_admin/intercom) -----------------------------------------------------------

    def intercom_reset(self, **sizes: int) -> dict:
        """Reseed the workspace: seed, contacts, companies, conversations; returns sizes and record counts."""
        return self.call("POST", "/intercom/reset", sizes)

    def intercom_records(self, kind: str) -> list[dict]:
        """contacts (archived ones flagged "_archived"), companies, tags, segments (with members), admins or
        conversations (with parts), as the API renders them."""
        return self.call("GET", f"/intercom/{kind}")

    def intercom_create(self, kind: str, **fields) -> dict:
        """A new contact, company (create-or-update by company_id) or conversation ({contact_id, body})."""
        return self.call("POST", f"/intercom/{kind}", fields)

    def intercom_update(self, kind: str, record_id: str, **fields) -> dict:
        """A teammate edit of a contact or company: updated_at moves to now unless updated_at is given."""
        return self.call("POST", f"/intercom/{kind}/{record_id}", fields)

    def intercom_delete(self, kind: str, record_id: str) -> dict:
        return self.call("POST", f"/intercom/{kind}/{record_id}/delete")

    def intercom_archive(self, contact_id: str, archived: bool = True) -> dict:
        return self.call("POST", f"/intercom/contacts/{contact_id}/{'archive' if archived else 'unarchive'}")

    def intercom_tag(self, kind: str, record_id: str, name: str | None = None, tag_id: str | None = None) -> dict:
        """Tag a contact, company or conversation by tag name (created when new) or id."""
        return self.call("POST", f"/intercom/{kind}/{record_id}/tags", {"name": name} if name else {"id": tag_id})

    def intercom_untag(self, kind: str, record_id: str, tag_id: str) -> dict:
        return self.call("POST", f"/intercom/{kind}/{record_id}/tags/{tag_id}/delete")

    def intercom_attach(self, contact_id: str, company_id: str) -> dict:
        return self.call("POST", f"/intercom/contacts/{contact_id}/companies", {"id": company_id})

    def intercom_detach(self, contact_id: str, company_id: str) -> dict:
        return self.call("POST", f"/intercom/contacts/{contact_id}/companies/{company_id}/delete")

    def intercom_members(
        self, segment_id: str, contacts: list[str] | None = None, companies: list[str] | None = None
    ) -> dict:
        """Replace a segment's contact and/or company members."""
        body = {k: v for k, v in (("contacts", contacts), ("companies", companies)) if v is not None}
        return self.call("PUT", f"/intercom/segments/{segment_id}/members", body)

    def intercom_conversation(self, conversation_id: str, action: str, **body) -> dict:
        """action reply {author, admin_id|contact_id, body, part_type}, state {state, ...} or assign {admin_id}."""
        return self.call("POST", f"/intercom/conversations/{conversation_id}/{action}", body)

    def intercom_touch(self, count: int) -> list[str]:
        """A teammate edit on the `count` least recently updated contacts; returns their ids."""
        return self.call("POST", "/intercom/touch", {"count": count})["ids"]

    def intercom_settings(self, **body) -> dict:
        """window_limit (requests per 10 s), scroll_ttl (s), timezone; given ones are PUT first."""
        return self.call("PUT", "/intercom/settings", body) if body else self.call("GET", "/intercom/settings")

    def intercom_scroll(self) -> dict | None:
        """The open companies scroll {scroll_param, served, remaining, idle_seconds, broken}, or None."""
        return self.call("GET", "/intercom/scroll")

    def intercom_fail_scroll(self, calls: int = 1, after: int = 0) -> None:
        """After `after` more pages, the next `calls` scroll requests fail with the network-error 500 and break
        the open scroll."""
        self.call("POST", "/intercom/scroll/fail", {"calls": calls, "after": after})

    def intercom_expire_scroll(self) -> bool:
        """Expire the open scroll now (as after its idle TTL); True if one was open."""
        return self.call("POST", "/intercom/scroll/expire")["expired"]

    def intercom_webhooks(self, **options) -> dict:
        """The subscription; options (url, topics, client_secret, attempts, backoff_seconds) are PUT first."""
        return self.call("PUT", "/intercom/webhooks", options) if options else self.call("GET", "/intercom/webhooks")

    def intercom_flush_webhooks(self, timeout: float = 30) -> None:
        self.call("POST", "/intercom/webhooks/flush", {"timeout": timeout})

    def intercom_webhook_deliveries(self) -> list[dict]:
        """[{seq, id, topic, attempts, delivered}] in queue order."""
        return self.call("GET", "/intercom/webhooks/deliveries")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    """A real sandbox on a free 127.0.0.1 port with its state in this test's tmp_path."""
    with SandboxServer(SandboxSettings(state_path=tmp_path / "sandbox.db")) as server:
        yield server


@pytest.fixture
def admin(sandbox: SandboxServer) -> SandboxAdmin:
    return SandboxAdmin(sandbox.url)


@pytest.fixture
def sync_env(sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing every resource at the sandbox, with a consented Xero connection."""
    env = sandbox_environment(sandbox.url, tmp_path / "data")
    env["SYNC_PIPELINES_TOKEN_KEY"] = Fernet.generate_key().decode()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    connect_sandbox(env)
    return env


# An instance whose runs start at once, each in its own process (the backfills' and the UI's, without a queue).
INSTANCE_YAML = """telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
"""


@pytest.fixture
def workspace(sync_env) -> Iterator[WorkspaceProcessContext]:
    """The code location as the webserver and daemon load it, over an instance in the sandbox's DAGSTER_HOME."""
    from sync_pipelines_tests.webhooks.daemon import WORKSPACE  # which reads this module's helpers

    home = Path(sync_env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    with (
        dg.DagsterInstance.from_config(str(home)) as instance,
        WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(WORKSPACE)])) as context,
    ):
        yield context


def code_location() -> dg.Definitions:
    """The code location's definitions, as `defs()` builds them for this environment and tenant registry, built
    once for each: building them takes about 1.7 s of CPU, and a test that runs its flows again and again (as a
    code server does, over one load) would otherwise pay it per run."""
    registry = registry_path()
    return _definitions(
        tuple(sorted(os.environ.items())), registry.read_text() if registry and registry.exists() else None
    )


@functools.lru_cache(maxsize=1)
def _definitions(environment: tuple[tuple[str, str], ...], registry: str | None) -> dg.Definitions:
    return defs()


@pytest.fixture
def run_sync(sync_env):
    """Materialise assets of the code location once, in process, like the demo does."""
    instance = dg.DagsterInstance.ephemeral()

    def run(selection: list[dg.AssetKey] | None = None) -> dg.ExecuteInProcessResult:
        """The given assets, or by default the Xero -> Segment flow's (other flows write to Xero)."""
        definitions = code_location()
        if selection is None:
            flow = synced("xero_to_segment")
            selection = list(flow.resolve(definitions.resolve_asset_graph()))
        job = definitions.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(instance=instance, raise_on_error=False, asset_selection=selection)

    return run


def xero_resource(env: dict[str, str], **overrides) -> XeroResource:
    """The Xero resource the code location binds, built from a sandbox environment, with test overrides."""
    return XeroResource(
        api_url=env["XERO_API_URL"],
        identity_url=env["XERO_IDENTITY_URL"],
        client_id=env["XERO_CLIENT_ID"],
        client_secret=env["XERO_CLIENT_SECRET"],
        token_path=env["XERO_TOKEN_PATH"],
        token_key=env["SYNC_PIPELINES_TOKEN_KEY"],
        **overrides,
    )


# Segment -> Xero: an order's products must be Xero items. One tracked item, stocked by a bill.
ITEM = {
    "Code": "MUG", "Name": "Mug", "Description": "Mug", "PurchaseDescription": "Mug, bought in",
    "SalesDetails": {"UnitPrice": 12.5, "AccountCode": "200"},
    "PurchaseDetails": {"UnitPrice": 4, "COGSAccountCode": "310"}, "InventoryAssetAccountCode": "630",
}  # fmt: skip


def stock_item(env: dict[str, str], quantity: float) -> None:
    """ITEM in Xero, and a bill that brings `quantity` of it into stock (Xero sells no more than is on hand)."""
    client = xero_resource(env).get_client()
    client.write("PUT", "Items", [ITEM], "test:item:mug")
    supplier = next(c for c in client.read("Contacts") if c["ContactStatus"] == "ACTIVE")
    bill = {
        "Type": "ACCPAY",
        "Contact": {"ContactID": supplier["ContactID"]},
        "Status": "AUTHORISED",
        "Date": "2026-02-01",
        "DueDate": "2026-03-01",
        "LineItems": [{"ItemCode": ITEM["Code"], "Quantity": quantity}],
    }
    if client.write("PUT", "Invoices", [bill], "test:bill:mugs")[0]["StatusAttributeString"] != "OK":
        raise RuntimeError(f"could not stock {quantity} of {ITEM['Code']}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests given a longer timeout than the suite's (the demo, the daemon tests) start first: started last,
    one of them would run alone at the end while the other workers sit idle."""

    def allowance(item: pytest.Item) -> float:
        marker = item.get_closest_marker("timeout")
        return float(marker.args[0]) if marker and marker.args else 0.0

    items.sort(key=allowance, reverse=True)
