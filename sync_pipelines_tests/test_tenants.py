"""Several connections on one install: each a partition, synced with its own settings into its own store."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.execution.backfill import BulkActionStatus

from sync_pipelines.definitions import defs
from sync_pipelines.lib.tenants import REGISTRY_ENV, TENANTS, Connection, Registry, save_registry, shard
from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines.vendors.xero import entities as xero
from sync_pipelines.vendors.xero.contracts.common import parse_xero_date
from sync_pipelines_tests.conftest import SandboxAdmin
from sync_pipelines_tests.defs.test_backfills import END, MONTHS, START, backfill, workspace  # noqa: F401

NAMES = ("north", "south")


@pytest.fixture
def sandbox(tmp_path) -> Iterator[SandboxServer]:
    """An app connected to two Xero organisations (`sync_env` consents to both)."""
    with SandboxServer(SandboxSettings(state_path=tmp_path / "sandbox.db", xero_organisations=2)) as server:
        yield server


@pytest.fixture
def registry(sandbox, sync_env, tmp_path, monkeypatch) -> Registry:
    """A registry naming both organisations, as `sync-pipelines xero-connect` writes it."""
    registry = Registry(
        connections=tuple(Connection(name=n, ids={"xero": t}) for n, t in zip(NAMES, sandbox.tenant_ids, strict=True))
    )
    path = tmp_path / "data" / "connections.yaml"
    save_registry(path, registry)
    monkeypatch.setenv(REGISTRY_ENV, str(path))
    return registry


def _staged(database: str, table: str, column: str) -> set[str]:
    conn = duckdb.connect(database, read_only=True)
    try:
        return {value for (value,) in conn.execute(f'SELECT "{column}" FROM "{table}"').fetchall()}
    finally:
        conn.close()


def test_each_connection_syncs_its_own_organisation_into_its_own_store(sandbox, sync_env, registry):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANTS.name, list(NAMES))
    job = defs().resolve_job_def("xero_to_segment_sync")
    for name in NAMES:
        assert job.execute_in_process(instance=instance, partition_key=name).success

    admin = SandboxAdmin(sandbox.url)
    for name, tenant in zip(NAMES, sandbox.tenant_ids, strict=True):
        sales = {i["InvoiceID"] for i in admin.call("GET", "/xero/invoices", tenant=tenant) if i["Type"] == "ACCREC"}
        staged = _staged(shard(sync_env["SYNC_PIPELINES_DUCKDB"], name), xero.INVOICES.table, "invoice_id")
        assert sales and staged == sales
    assert not Path(sync_env["SYNC_PIPELINES_DUCKDB"]).exists()


def test_a_backfill_of_one_connection_and_some_months_reads_only_its_organisation(
    admin, sandbox, sync_env, registry, workspace
):
    workspace.instance.add_dynamic_partitions(TENANTS.name, list(NAMES))
    chosen, other = NAMES[1], NAMES[0]
    assets = [xero.INVOICES.backfill_key, xero.INVOICES.staged_key]
    admin.reset_stats()

    status = backfill(workspace, assets, [f"{month}|{chosen}" for month in MONTHS])

    assert status[1] == BulkActionStatus.COMPLETED_SUCCESS
    tenant = sandbox.tenant_ids[1]
    listed = admin.call("GET", "/xero/invoices", tenant=tenant)
    in_window = {
        i["InvoiceID"]
        for i in listed
        if i["Type"] == "ACCREC" and START <= parse_xero_date(i["UpdatedDateUTC"]) < END
    }
    staged = _staged(shard(sync_env["SYNC_PIPELINES_DUCKDB"], chosen), xero.INVOICES.table, "invoice_id")
    assert in_window and staged == in_window
    assert not Path(shard(sync_env["SYNC_PIPELINES_DUCKDB"], other)).exists()
    assert set(admin.stats()["xero_tenants"]) == {tenant}
