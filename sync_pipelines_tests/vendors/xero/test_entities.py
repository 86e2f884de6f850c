"""A Xero collection as a source: timestamps, checkpoints, the day limit as a clean stop, and a resync's re-read."""

import math

import dagster as dg
import pytest
from cryptography.fernet import Fernet

from sync_pipelines.cli import connect_sandbox, sandbox_environment
from sync_pipelines.lib.entities import QuotaExhausted, vendor_assets
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.vendors.xero import entities
from sync_pipelines.vendors.xero.entities import XeroCollection
from sync_pipelines.vendors.xero.resource import XeroResource
from sync_pipelines_tests.conftest import xero_resource

INVOICES = XeroCollection("Invoices", id_field="InvoiceID", where='Type=="ACCREC"')


def test_updated_at_reads_xero_dates_and_ignores_broken_ones():
    assert INVOICES.updated_at({"UpdatedDateUTC": "/Date(1711837374190+0000)/"}).isoformat() == (
        "2024-03-30T22:22:54.190000+00:00"
    )
    assert INVOICES.updated_at({"UpdatedDateUTC": "/Date(notanumber)/"}) is None
    assert INVOICES.updated_at({}) is None


def _checkpoint(cursor: dict | None, page: list[dict]) -> dict | None:
    """The cursor after `page` lands, its stamps read as the extract reads them."""
    return INVOICES.checkpoint(cursor, page, [INVOICES.updated_at(record) for record in page])


def test_checkpoint_moves_only_forward():
    page = [{"UpdatedDateUTC": "/Date(1711837374190+0000)/"}, {"UpdatedDateUTC": "/Date(1700000000000+0000)/"}]
    cursor = _checkpoint(None, page)
    assert cursor == {"updated_at": "2024-03-30T22:22:54.190000+00:00"}
    assert _checkpoint(cursor, page) is None
    assert _checkpoint(cursor, [{"UpdatedDateUTC": "/Date(1600000000000+0000)/"}]) is None
    assert _checkpoint(None, [{"InvoiceID": "no timestamp"}]) is None


@pytest.fixture
def xero(sandbox, tmp_path) -> XeroResource:
    env = sandbox_environment(sandbox.url, tmp_path)
    env["SYNC_PIPELINES_TOKEN_KEY"] = Fernet.generate_key().decode()
    connect_sandbox(env)
    return xero_resource(env, page_size=50)


def test_read_resumes_from_the_cursor_with_an_overlap(admin, xero):
    everything = [record for page in INVOICES.read(xero, None) for record in page]
    assert everything and all(record["Type"] == "ACCREC" for record in everything)
    cursor = _checkpoint(None, everything)
    admin.post(f"/xero/invoices/{everything[0]['InvoiceID']}", {"DueDate": "2031-01-31"})

    since_cursor = [record for page in INVOICES.read(xero, cursor) for record in page]
    assert everything[0]["InvoiceID"] in {record["InvoiceID"] for record in since_cursor}
    assert len(since_cursor) < len(everything)


def test_the_day_limit_surfaces_as_quota_exhausted(admin, xero):
    admin.limits(day_limit=1)
    pages = INVOICES.read(xero, None)
    assert len(next(pages)) == 50
    with pytest.raises(QuotaExhausted):
        next(pages)


def test_a_resync_asks_for_the_pages_it_knows_of_together_and_no_more(admin, xero, tmp_path):
    definitions = vendor_assets([entities.INVOICES], XeroResource)
    resources = {"xero": xero, "staging_db": StagingResource(database=str(tmp_path / "staging.duckdb"))}
    extract, staged = entities.INVOICES.raw_key, entities.INVOICES.staged_key
    # The first read, and staged state for the resync to forget.
    assert dg.materialize(definitions.assets, selection=[extract, staged], resources=resources).success
    # Each call stays in flight for a second: the calls asked for together are in flight together.
    admin.faults(xero={"latency_ms": 1000})
    admin.reset_stats()

    resync = {"ops": {"xero__landed_xero_invoices": {"config": {"full_resync": True}}}}
    result = dg.materialize(definitions.assets, selection=[extract], resources=resources, run_config=resync)

    assert result.success
    (landed,) = result.get_asset_materialization_events()
    pages = math.ceil(landed.materialization.metadata["dagster/row_count"].value / 50)
    (tenant,) = admin.stats()["xero_tenants"].values()
    assert pages > 2 and tenant["calls"] == pages  # the minimum: a page past the end would be one more
    assert tenant["peak_in_flight"] == min(pages, 5)  # the first page alone, then the rest: one fewer
