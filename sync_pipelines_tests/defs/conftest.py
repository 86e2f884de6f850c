"""A sandbox-backed environment for running the real code location end to end."""

from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
import requests
from cryptography.fernet import Fernet

from sync_pipelines.cli import connect_sandbox_xero, sandbox_environment
from sync_pipelines.definitions import defs


class Admin:
    """The sandbox's admin API: what tests use to change the world and to look at what the target got."""

    def __init__(self, base_url: str) -> None:
        self.url = f"{base_url}/_admin"

    def get(self, path: str, **params) -> object:
        response = requests.get(f"{self.url}{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict | None = None, method: str = "POST") -> object:
        response = requests.request(method, f"{self.url}{path}", json=body or {}, timeout=60)
        response.raise_for_status()
        return response.json()

    def segment_messages(self) -> list[dict]:
        return self.get("/segment/messages")

    def track_counts(self) -> Counter:
        return Counter(
            (m["properties"]["invoice_id"], m["event"]) for m in self.segment_messages() if m["type"] == "track"
        )

    def invoice_calls(self) -> int:
        stats = self.get("/stats")["xero"]
        return sum(count for call, count in stats.items() if call.startswith("GET") and call.endswith("/Invoices"))


@pytest.fixture
def admin(sandbox) -> Admin:
    return Admin(sandbox.url)


@pytest.fixture
def sync_env(sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing every resource at the sandbox, with a consented Xero connection."""
    env = sandbox_environment(sandbox.url, tmp_path / "data")
    env["SYNC_PIPELINES_TOKEN_KEY"] = Fernet.generate_key().decode()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    connect_sandbox_xero(env)
    return env


@pytest.fixture
def run_sync(sync_env):
    """Materialise every asset of the code location once, in process, like the demo does."""
    instance = dg.DagsterInstance.ephemeral()

    def run() -> dg.ExecuteInProcessResult:
        job = defs().resolve_implicit_global_asset_job_def()
        return job.execute_in_process(instance=instance, raise_on_error=False)

    return run


def expected_track_counts(invoices: list[dict]) -> Counter:
    """What Segment should hold for the sandbox's valid sales invoices, computed from the source's side."""
    lifecycle = {"PAID": "Invoice Paid", "VOIDED": "Invoice Voided", "DELETED": "Invoice Deleted"}
    expected = Counter()
    for invoice in invoices:
        if invoice.get("_malformed") or invoice.get("Type") != "ACCREC":
            continue
        expected[(invoice["InvoiceID"], "Invoice Created")] += 1
        if invoice["Status"] in lifecycle:
            expected[(invoice["InvoiceID"], lifecycle[invoice["Status"]])] += 1
    return expected
