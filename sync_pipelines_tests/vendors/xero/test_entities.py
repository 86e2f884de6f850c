"""A Xero collection as a source: timestamps, checkpoints, and the day limit as a clean stop."""

import pytest
from cryptography.fernet import Fernet

from sync_pipelines.cli import connect_sandbox, sandbox_environment
from sync_pipelines.lib.entities import QuotaExhausted
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
