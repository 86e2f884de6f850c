"""A sandbox-backed environment for running the real code location end to end."""

from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
from cryptography.fernet import Fernet

from sync_pipelines.cli import connect_sandbox_xero, sandbox_environment
from sync_pipelines.definitions import defs
from sync_pipelines_tests.conftest import SandboxAdmin


def track_counts(admin: SandboxAdmin) -> Counter:
    """(invoice id, event) -> how many such track calls Segment holds."""
    return Counter(
        (m["properties"]["invoice_id"], m["event"]) for m in admin.segment_messages() if m["type"] == "track"
    )


def invoice_calls(admin: SandboxAdmin) -> int:
    """List calls the sandbox's Xero saw on /Invoices."""
    return sum(n for call, n in admin.stats()["xero"].items() if call.startswith("GET") and call.endswith("/Invoices"))


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
