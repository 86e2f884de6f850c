"""The code location's resources as bound from the environment: which Xero organisation it syncs."""

from collections.abc import Iterator

import duckdb
import pytest

from sync_pipelines.defs import xero_to_segment
from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines.vendors.xero.client import XeroApiError
from sync_pipelines_tests.conftest import SandboxAdmin, xero_resource

INVOICES = next(d for d in xero_to_segment.FLOW.deliveries() if d.entity.name == "invoices").entity


@pytest.fixture
def sandbox(tmp_path) -> Iterator[SandboxServer]:
    """An app connected to two Xero organisations (`sync_env` consents to both)."""
    with SandboxServer(SandboxSettings(state_path=tmp_path / "sandbox.db", xero_organisations=2)) as server:
        yield server


def test_xero_tenant_id_chooses_the_organisation_that_is_synced(sandbox, sync_env, run_sync, monkeypatch):
    second = sandbox.tenant_ids[1]
    monkeypatch.setenv("XERO_TENANT_ID", second)
    result = run_sync([INVOICES.raw_key, INVOICES.staged_key])
    assert result.success

    listed = SandboxAdmin(sandbox.url).call("GET", "/xero/invoices", tenant=second)
    sales = {invoice["InvoiceID"] for invoice in listed if invoice["Type"] == "ACCREC"}
    conn = duckdb.connect(sync_env["SYNC_PIPELINES_DUCKDB"], read_only=True)
    try:
        staged = {invoice_id for (invoice_id,) in conn.execute(f'SELECT invoice_id FROM "{INVOICES.table}"').fetchall()}
    finally:
        conn.close()
    assert sales and staged == sales


def test_without_a_tenant_id_a_client_of_several_organisations_names_them(sandbox, sync_env):
    with pytest.raises(XeroApiError, match="connected to 2 Xero organisations") as refused:
        next(xero_resource(sync_env).get_client().iter_pages("Invoices"))
    assert all(tenant in str(refused.value) for tenant in sandbox.tenant_ids)
    assert "XERO_TENANT_ID" in str(refused.value)
