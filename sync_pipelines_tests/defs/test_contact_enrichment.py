"""Daily contact enrichment against the sandbox: hand-computed traits, sent only when they change."""

import dagster as dg

from sync_pipelines.lib.enrichment import ENRICHMENT_KEY
from sync_pipelines.lib.flows import synced
from sync_pipelines_tests.conftest import code_location

AS_OF = "2026-03-01"


def _sync_assets() -> list[dg.AssetKey]:
    """The Xero -> Segment flow the enrichment reads from, without the enrichment itself (which the tests run with
    a fixed as_of)."""
    flow = synced("xero_to_segment").resolve(code_location().resolve_asset_graph())
    return [key for key in flow if key != ENRICHMENT_KEY]


def _enrich(sync_env, as_of: str = AS_OF) -> dg.ExecuteInProcessResult:
    job = code_location().resolve_implicit_global_asset_job_def()
    config = {"ops": {"segment__xero_contact_enrichment": {"config": {"as_of": as_of}}}}
    return job.execute_in_process(asset_selection=[ENRICHMENT_KEY], run_config=config)


def _enrichment_identifies(admin) -> list[dict]:
    return [m for m in admin.segment_messages() if m["messageId"].startswith("xero_contact_enrichment:")]


def _invoice(
    admin, contact_id: str, amount: float, date: str, due: str, currency: str = "USD", account: str = "200", **extra
) -> dict:
    line = {"Description": "Work", "Quantity": 1, "UnitAmount": amount, "AccountCode": account, "TaxType": "NONE"}
    body = {"ContactID": contact_id, "CurrencyCode": currency, "Date": date, "DueDate": due, "LineItems": [line]}
    return admin.post("/xero/invoices", {**body, **extra})


def test_traits_match_hand_computed_figures_and_only_changes_are_resent(admin, run_sync, sync_env):
    admin.reset(invoices=0, contacts=2)
    customer = admin.post("/xero/contacts", {"Name": "Fixture Trading", "EmailAddress": "ap@fixture.test"})
    cid = customer["ContactID"]
    part_paid = _invoice(admin, cid, 100, "2026-01-01", "2026-01-31")  # due before AS_OF: overdue
    admin.post(f"/xero/invoices/{part_paid['InvoiceID']}/pay", {"Amount": 40, "Date": "2026-02-10"})
    paid = _invoice(admin, cid, 250, "2026-02-01", "2026-03-15")
    admin.post(f"/xero/invoices/{paid['InvoiceID']}/pay", {"Date": "2026-02-21"})  # 20 days to pay
    _invoice(admin, cid, 80, "2026-02-05", "2026-02-20", currency="EUR")  # overdue, in euros
    voided = _invoice(admin, cid, 999, "2026-02-25", "2026-03-25")
    admin.post(f"/xero/invoices/{voided['InvoiceID']}/void")
    _invoice(admin, cid, 500, "2026-02-27", "2026-03-27", Status="DRAFT")
    _invoice(admin, cid, 30, "2026-02-03", "2026-03-03", Type="ACCPAY", account="300")

    assert run_sync(_sync_assets()).success
    assert _enrich(sync_env).success

    (identify,) = [m for m in _enrichment_identifies(admin) if m["userId"] == cid]
    assert identify["type"] == "identify"
    assert identify["traits"] == {
        "lifetime_revenue_usd": 350.0,  # 100 + 250; the voided 999 and the draft 500 never count
        "outstanding_balance_usd": 60.0,  # 100 - 40 still due
        "overdue_balance_usd": 60.0,  # due 2026-01-31 < 2026-03-01
        "lifetime_revenue_eur": 80.0,
        "outstanding_balance_eur": 80.0,
        "overdue_balance_eur": 80.0,  # due 2026-02-20
        "overdue_invoice_count": 2,  # the part-paid USD one and the EUR one
        "lifetime_spend_usd": 30.0,
        "outstanding_payable_usd": 30.0,
        "last_invoice_date": "2026-02-05",  # the EUR invoice; voided and draft ones are not invoices sent
        "last_payment_date": "2026-02-21",
        "average_days_to_pay": 20.0,  # only the fully paid invoice: 2026-02-01 -> 2026-02-21
    }

    sent = len(admin.segment_messages())
    assert _enrich(sync_env).success
    assert len(admin.segment_messages()) == sent  # nothing changed, nothing resent

    admin.post(f"/xero/invoices/{part_paid['InvoiceID']}/pay", {"Date": "2026-02-28"})
    assert run_sync(_sync_assets()).success
    assert _enrich(sync_env).success
    first, again = [m for m in _enrichment_identifies(admin) if m["userId"] == cid]
    assert again["messageId"] != first["messageId"]
    assert again["traits"] == {
        **first["traits"],
        "outstanding_balance_usd": 0.0,
        "overdue_balance_usd": 0.0,  # sent as zero, not left at 60 in Segment
        "overdue_invoice_count": 1,
        "last_payment_date": "2026-02-28",
        "average_days_to_pay": 39.0,  # (20 + 58) / 2: 2026-01-01 -> 2026-02-28 is 58 days
    }
