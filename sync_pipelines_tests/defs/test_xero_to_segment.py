"""Xero invoices -> Segment, end to end against the sandbox: the acceptance of the first flow."""

import json

import dagster as dg
import duckdb
import pandas as pd
from click.testing import CliRunner

from sync_pipelines.cli import main
from sync_pipelines.defs import xero_to_segment
from sync_pipelines.lib.flows import synced
from sync_pipelines_tests.conftest import code_location, xero_resource
from sync_pipelines_tests.defs.conftest import expected_flow_tracks, expected_track_counts, invoice_calls, track_counts


def _staged(sync_env, sql: str) -> list[tuple]:
    conn = duckdb.connect(sync_env["SYNC_PIPELINES_DUCKDB"], read_only=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


INVOICES = next(d for d in xero_to_segment.FLOW.deliveries() if d.entity.name == "invoices")
INVOICE_ASSETS = [INVOICES.entity.raw_key, INVOICES.entity.staged_key, INVOICES.key]


def _invoice_check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    return next(
        c for c in result.get_asset_check_evaluations()
        if c.check_name == name and c.asset_key == INVOICES.entity.staged_key
    )  # fmt: skip


def _ids(messages: list[dict], kind: str, namespace: str, field: str = "userId") -> list[str]:
    return sorted(m[field] for m in messages if m["type"] == kind and m["messageId"].startswith(namespace + ":"))


def test_every_seeded_record_arrives_once_per_state_change_and_rerun_is_silent(admin, run_sync, sync_env):
    result = run_sync()
    assert result.success

    assert track_counts(admin, prefix="") == expected_flow_tracks(admin)
    invoices = admin.get("/xero/invoices")
    valid = [i for i in invoices if not i.get("_malformed")]
    messages = admin.segment_messages()
    customers = {i["Contact"]["ContactID"] for i in valid if i["Type"] == "ACCREC"}
    suppliers = {i["Contact"]["ContactID"] for i in valid if i["Type"] == "ACCPAY"}
    assert _ids(messages, "identify", "xero_invoices") == sorted(customers)
    assert _ids(messages, "identify", "xero_bills") == sorted(suppliers)
    contacts = admin.get("/xero/contacts")
    assert _ids(messages, "identify", "xero_contacts") == sorted(c["ContactID"] for c in contacts)
    organisations = [c for c in contacts if c["Name"] != f"{c['FirstName']} {c['LastName']}"]
    assert 0 < len(organisations) < len(contacts)
    assert _ids(messages, "group", "xero_contacts", "groupId") == sorted(c["ContactID"] for c in organisations)
    archived = [c["ContactID"] for c in contacts if c["ContactStatus"] == "ARCHIVED"]
    assert archived and all(
        m["traits"]["status"] == "ARCHIVED" for m in messages if m["type"] == "identify" and m["userId"] in archived
        and m["messageId"].startswith("xero_contacts:")
    )  # fmt: skip
    assert any(i["Type"] == "ACCPAY" for i in valid)
    assert admin.get("/notifications") == []  # the bills a first sync brings are history, not news
    assert _staged(sync_env, "SELECT count(DISTINCT source_id) FROM xrefs WHERE source_system = 'xero'") == [
        (len(customers | suppliers | {c["ContactID"] for c in contacts}),)
    ]

    delivered_before = len(admin.segment_messages())
    admin.post("/stats/reset")
    assert run_sync().success
    assert len(admin.segment_messages()) == delivered_before
    assert admin.get("/notifications") == []
    assert invoice_calls(admin) == 3  # invoices, bills and expense bills: one incremental list call each
    assert admin.get("/stats")["segment"] == {}


def test_a_bill_entered_after_the_first_sync_notifies_the_team_once(admin, sync_env, run_sync):
    assert run_sync().success
    supplier = next(i["Contact"]["ContactID"] for i in admin.get("/xero/invoices") if i["Type"] == "ACCPAY")
    bill = admin.post(
        "/xero/invoices",
        {
            "Type": "ACCPAY",
            "Status": "AUTHORISED",
            "ContactID": supplier,
            "LineItems": [{"Description": "Paper", "Quantity": 1, "UnitAmount": 80.0, "AccountCode": "400"}],
        },
    )

    assert run_sync().success
    assert run_sync().success

    (notification,) = admin.get("/notifications")
    assert notification["channel"] == "slack" and notification["body"]["text"].startswith("New bill ")
    notified = "SELECT record_id FROM audit_log WHERE target = 'notifier' AND outcome = 'delivered'"
    assert _staged(sync_env, notified) == [(bill["InvoiceID"],)]


def test_created_paid_voided_and_updated_invoices_deliver_exactly_those_changes(admin, run_sync):
    assert run_sync().success
    before = track_counts(admin)
    invoices = [i for i in admin.get("/xero/invoices") if i["Type"] == "ACCREC" and not i.get("_malformed")]
    authorised = [i for i in invoices if i["Status"] == "AUTHORISED"]
    to_pay, to_void, to_update = authorised[0], authorised[1], authorised[2]
    created = admin.post(
        "/xero/invoices",
        {
            "Type": "ACCREC",
            "Status": "AUTHORISED",
            "ContactID": to_pay["Contact"]["ContactID"],
            "LineItems": [{"Description": "Consulting", "Quantity": 2, "UnitAmount": 150.0, "AccountCode": "200"}],
        },
    )
    admin.post(f"/xero/invoices/{to_pay['InvoiceID']}/pay")
    admin.post(f"/xero/invoices/{to_void['InvoiceID']}/void")
    admin.post(f"/xero/invoices/{to_update['InvoiceID']}", {"DueDate": "2031-01-31"})

    assert run_sync().success
    new = track_counts(admin) - before
    assert new == {
        (created["InvoiceID"], "Invoice Created"): 1,
        (to_pay["InvoiceID"], "Invoice Paid"): 1,
        (to_void["InvoiceID"], "Invoice Voided"): 1,
        (to_update["InvoiceID"], "Invoice Updated"): 1,
    }
    paid = next(
        m for m in admin.segment_messages() if m.get("event") == "Invoice Paid"
        and m["properties"]["invoice_id"] == to_pay["InvoiceID"]
    )  # fmt: skip
    assert paid["properties"]["revenue"] == to_pay["Total"]
    assert paid["userId"] == to_pay["Contact"]["ContactID"]


def test_faults_and_an_expired_token_still_deliver_everything_exactly_once(admin, run_sync, sync_env):
    faults = {"error_rate": 0.2, "rate_limit_rate": 0.1, "drop_rate": 0.05, "retry_after_seconds": 1}
    admin.post("/faults", {"xero": faults, "segment": faults, "expire_access_tokens": True}, method="PUT")

    assert run_sync().success

    assert admin.get("/stats")["faults_injected"] > 0
    assert track_counts(admin) == expected_track_counts(admin.get("/xero/invoices"))
    twice = _staged(
        sync_env,
        "SELECT idempotency_key FROM audit_log WHERE outcome = 'delivered' GROUP BY ALL HAVING count(*) > 1",
    )
    assert twice == []
    assert _staged(sync_env, "SELECT count(*) FROM outbox WHERE status <> 'delivered'") == [(0,)]


def test_malformed_invoices_are_quarantined_with_reasons_and_the_rest_delivered(admin, run_sync, sync_env):
    admin.post("/reset", {"seed": 7, "invoices": 60, "malformed": 9})
    result = run_sync()
    assert result.success

    invoices = admin.get("/xero/invoices")
    malformed = {i["InvoiceNumber"]: i["_malformed"] for i in invoices if i.get("_malformed") and i["Type"] == "ACCREC"}
    assert set(malformed.values()) == {"missing InvoiceID", "bad Date", "non-numeric Total"}
    expected_reason = {
        "missing InvoiceID": "invoice_id: missing",
        "bad Date": "date: '",
        "non-numeric Total": "total: '12,34.x' is not a valid",
    }
    quarantined = _staged(
        sync_env, "SELECT reasons, row FROM quarantine WHERE entity = 'invoices' ORDER BY landing_seq"
    )
    by_number = {json.loads(row)["invoice_number"]: reasons for reasons, row in quarantined}
    assert by_number.keys() == malformed.keys()
    for number, kind in malformed.items():
        assert expected_reason[kind] in by_number[number]
    assert track_counts(admin) == expected_track_counts(invoices)

    check = _invoice_check(result, "quarantine_rate")
    assert check.passed
    assert check.metadata["quarantined"].value == len(malformed)
    # The check says why, how often, and which records, for the UI's check panel.
    top = [row.data for row in check.metadata["top_reasons"].records]
    assert all(any(expected_reason[kind] in row["reason"] for row in top) for kind in malformed.values())
    assert all(row["records"] >= 1 and row["sample_record_ids"] for row in top)


def test_a_mostly_broken_batch_is_blocked_and_held_until_a_person_releases_it(admin, run_sync, sync_env):
    admin.post("/reset", {"seed": 11, "invoices": 8, "malformed": 12})
    result = run_sync()

    check = _invoice_check(result, "quarantine_rate")
    assert not check.passed
    assert check.metadata["rate"].value > 0.2
    assert not result.success
    assert track_counts(admin) == {}
    quarantined = _staged(sync_env, "SELECT count(*) FROM quarantine WHERE entity = 'invoices'")
    assert quarantined == [(check.metadata["quarantined"].value,)]

    assert run_sync().success  # nothing new landed: the check passes, but the held batch stays held
    assert track_counts(admin) == {}
    (held,) = _staged(sync_env, "SELECT count(*) FROM outbox WHERE status = 'held'")[0]
    assert held > 0

    released = CliRunner().invoke(main, ["release"])
    assert released.exit_code == 0, released.output
    assert f"released {held} held messages" in released.output
    assert run_sync().success
    assert track_counts(admin) == expected_track_counts(admin.get("/xero/invoices"))


def test_every_materialisation_reports_the_figures_the_ui_plots(run_sync):
    result = run_sync()
    figures = {
        event.asset_key.to_user_string(): event.metadata for event in result.get_asset_materialization_events()
        for event in [event.step_materialization_data.materialization]
    }  # fmt: skip
    extract = figures["xero/landed_xero_invoices"]
    for name in ("dagster/row_count", "api_calls", "bytes_received", "seconds", "min_limit_remaining",
                 "day_limit_remaining"):  # fmt: skip
        assert isinstance(extract[name].value, int | float), name
    assert extract["api_calls"].value >= 1 and extract["day_limit_remaining"].value < 5000
    assert figures["xero/staged_xero_invoices"]["rows_processed"].value == extract["dagster/row_count"].value
    assert figures["segment/xero_invoices_to_segment"]["dagster/row_count"].value > 0


def test_the_day_limit_stops_a_run_cleanly_and_the_next_run_resumes_from_its_checkpoint(admin, run_sync, sync_env):
    admin.reset(seed=5, invoices=2600)
    admin.limits(day_limit=2)  # two pages of 1,000 today, then Xero says "day"

    stopped = run_sync(INVOICE_ASSETS)
    assert stopped.success
    extract = next(
        e.step_materialization_data.materialization.metadata
        for e in stopped.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "xero/landed_xero_invoices"
    )
    assert extract["quota_exhausted"].value is True
    assert extract["rows_fetched"].value == 2000
    first_cursor = _staged(sync_env, "SELECT value FROM sync_cursors WHERE name = 'xero_invoices.extract'")
    assert first_cursor != []

    admin.limits(day_limit=5000)  # the next day
    assert run_sync(INVOICE_ASSETS).success
    assert track_counts(admin) == expected_track_counts(admin.get("/xero/invoices"))


def test_invoices_sharing_a_timestamp_across_the_page_where_a_run_stopped_are_all_synced(admin, sync_env):
    """The cursor lands inside a group of invoices with one UpdatedDateUTC; the next run must not skip the rest."""
    sales = sorted(
        (int(i["UpdatedDateUTC"][6:-7]), i["InvoiceID"])
        for i in admin.get("/xero/invoices")
        if i["Type"] == "ACCREC" and not i.get("_malformed")
    )
    stamps = [stamp for stamp, _ in sales]
    # The first position whose invoice shares its timestamp with the one before it: a page ending just before it
    # splits the group.
    split = next(n for n in range(1, len(stamps)) if stamps[n] == stamps[n - 1])
    definitions = code_location()
    resources = {**definitions.resources, "xero": xero_resource(sync_env, page_size=split)}
    instance = dg.DagsterInstance.ephemeral()

    admin.limits(day_limit=1)
    first = dg.materialize(definitions.assets, resources=resources, instance=instance, selection=INVOICE_ASSETS)
    assert first.success
    assert len(admin.segment_messages()) > 0
    cursor = _staged(sync_env, "SELECT value->>'updated_at' FROM sync_cursors WHERE name = 'xero_invoices.extract'")
    assert cursor == [(pd.Timestamp(stamps[split], unit="ms", tz="UTC").isoformat(),)]

    admin.limits(day_limit=5000)
    flow = synced("xero_to_segment")  # the other flows write invoices to Xero too
    assert dg.materialize(definitions.assets, resources=resources, instance=instance, selection=flow).success
    assert track_counts(admin) == expected_track_counts(admin.get("/xero/invoices"))


def test_bills_payments_contacts_and_bank_records_deliver_their_changes_and_removals(admin, run_sync):
    assert run_sync().success
    before, notified = track_counts(admin, prefix=""), len(admin.get("/notifications"))
    supplier = admin.post("/xero/contacts", {"Name": "Paper Supplies", "EmailAddress": "ap@paper.test"})
    line = {"Description": "Paper", "Quantity": 1, "UnitAmount": 45.0, "AccountCode": "453", "TaxType": "NONE"}
    draft = {"Type": "ACCPAY", "Status": "DRAFT", "ContactID": supplier["ContactID"], "LineItems": [line]}
    bill, to_delete, to_void = (admin.post("/xero/invoices", draft) for _ in range(3))
    for record in (bill, to_void):
        admin.post(f"/xero/invoices/{record['InvoiceID']}", {"Status": "AUTHORISED"})
    admin.post(f"/xero/invoices/{to_delete['InvoiceID']}/void")  # a draft is deleted, not voided (xero.md §7)
    admin.post(f"/xero/invoices/{to_void['InvoiceID']}/void")
    paid_bill = admin.post(f"/xero/invoices/{bill['InvoiceID']}/pay")
    (payment,) = [p for p in admin.get("/xero/payments") if p["Invoice"]["InvoiceID"] == bill["InvoiceID"]]
    spend = admin.post("/xero/bank-transactions", {"Type": "SPEND", "ContactID": supplier["ContactID"]})
    admin.post(f"/xero/bank-transactions/{spend['BankTransactionID']}/delete")
    admin.post(f"/xero/contacts/{supplier['ContactID']}/archive")

    assert run_sync().success
    assert paid_bill["Status"] == "PAID"
    new = track_counts(admin, prefix="") - before
    assert new == {
        **{(r["InvoiceID"], "Bill Created"): 1 for r in (bill, to_delete, to_void)},
        **{(r["InvoiceID"], "Expense Recorded"): 1 for r in (bill, to_delete, to_void)},
        (bill["InvoiceID"], "Bill Paid"): 1,
        (to_void["InvoiceID"], "Bill Voided"): 1,
        (to_void["InvoiceID"], "Expense Voided"): 1,
        (to_delete["InvoiceID"], "Bill Deleted"): 1,
        (to_delete["InvoiceID"], "Expense Deleted"): 1,
        (payment["PaymentID"], "Payment Made"): 1,
        (spend["BankTransactionID"], "Expense Recorded"): 1,
        (spend["BankTransactionID"], "Expense Deleted"): 1,
    }
    notifications = admin.get("/notifications")[notified:]
    assert len(notifications) == 3 and all("from Paper Supplies" in n["body"]["text"] for n in notifications)
    supplier_identities = [m for m in admin.segment_messages() if m.get("userId") == supplier["ContactID"]]
    assert {m["traits"]["status"] for m in supplier_identities if m["messageId"].startswith("xero_contacts:")} == {
        "ARCHIVED"
    }

    admin.post(f"/xero/payments/{payment['PaymentID']}/delete")  # reverses the payment: the bill is due again
    assert run_sync().success
    assert track_counts(admin, prefix="") - before - new == {
        (payment["PaymentID"], "Payment Deleted"): 1,
        (bill["InvoiceID"], "Bill Approved"): 1,
        (bill["InvoiceID"], "Expense Updated"): 1,  # its status is tracked, but only voids and deletes are events
    }
