"""Segment as a target: which staged changes become which calls, with which message ids."""

import pandas as pd

from sync_pipelines.defs import xero_to_segment
from sync_pipelines.lib.staging import row_versions
from sync_pipelines.lib.targets.segment import latest_traits, notify_messages, track_messages

MAPPINGS = {d.entity.name: d.target.mapping for d in xero_to_segment.FLOW.deliveries()}
INVOICE = MAPPINGS["invoices"]


def _tracks(mapping, changed: list[dict], previous: list[dict] | None = None, key: str = "invoice_id"):
    rows = pd.DataFrame(changed)
    before = pd.DataFrame(previous) if previous else pd.DataFrame()
    return track_messages(
        mapping.track, rows.assign(content_hash=row_versions(rows)), before, key=key, source="xero", user_ids={}
    )


def _invoice(**changes) -> dict:
    row = {
        "invoice_id": "0f5c7f2e-4d4e-4c1a-9a59-2a8c1d2b3e4f",
        "invoice_number": "INV-0001",
        "type": "ACCREC",
        "status": "AUTHORISED",
        "contact_id": "7d1a4a7e-3f77-4a2c-8f0b-5e2a9c6d1b20",
        "contact_name": "Acme Ltd",
        "contact_email": "ap@acme.test",
        "currency_code": "GBP",
        "date": pd.Timestamp("2024-05-01", tz="UTC"),
        "due_date": pd.Timestamp("2024-05-31", tz="UTC"),
        "sub_total": 100.0,
        "total_tax": 20.0,
        "total": 120.0,
        "amount_due": 120.0,
        "amount_paid": 0.0,
        "line_item_count": 1,
        "updated_at": pd.Timestamp("2024-05-01T09:30:00.123", tz="UTC"),
    }
    return {**row, **changes}


def _events(changed: dict, previous: dict | None = None) -> list[tuple[str, str]]:
    return [(m.event, m.message_id) for m in _tracks(INVOICE, [changed], [previous] if previous else None)]


def test_first_sight_of_a_paid_invoice_is_created_then_paid_with_revenue():
    paid = _invoice(status="PAID", amount_due=0.0, amount_paid=120.0)
    messages = _tracks(INVOICE, [paid])
    assert [m.event for m in messages] == ["Invoice Created", "Invoice Paid"]
    created, paid_event = (m.payload for m in messages)
    assert created["messageId"] == "xero:invoice:0f5c7f2e-4d4e-4c1a-9a59-2a8c1d2b3e4f:created"
    assert created["timestamp"] == "2024-05-01T09:30:00.123Z"
    assert created["properties"]["due_date"] == "2024-05-31T00:00:00.000Z"
    assert "revenue" not in created["properties"]
    assert (paid_event["properties"]["revenue"], paid_event["properties"]["currency"]) == (120.0, "GBP")
    assert paid_event["userId"] == "7d1a4a7e-3f77-4a2c-8f0b-5e2a9c6d1b20"


def test_updated_only_when_a_tracked_property_changes():
    before = _invoice()
    assert _events(_invoice(contact_name="Acme Limited", updated_at=pd.Timestamp.now(tz="UTC")), before) == []
    ((event, message_id),) = _events(_invoice(due_date=pd.Timestamp("2024-06-30", tz="UTC")), before)
    assert event == "Invoice Updated"
    assert message_id.startswith("xero:invoice:0f5c7f2e-4d4e-4c1a-9a59-2a8c1d2b3e4f:updated:")
    assert len(message_id) <= 100


def test_message_ids_are_deterministic_so_a_replay_cannot_double_an_event():
    before, after = _invoice(), _invoice(status="VOIDED", amount_due=0.0)
    assert _events(after, before) == _events(after, before)
    assert [event for event, _ in _events(after, before)] == ["Invoice Voided"]


def test_identities_carry_the_latest_traits_per_contact():
    older = _invoice(contact_name="Acme", updated_at=pd.Timestamp("2024-01-01", tz="UTC"))
    newer = _invoice(invoice_id="1f5c7f2e-4d4e-4c1a-9a59-2a8c1d2b3e4f", contact_email=None)
    identities = latest_traits(pd.DataFrame([newer, older]), "contact_id", INVOICE.identify.traits, "updated_at")
    assert identities == {
        "7d1a4a7e-3f77-4a2c-8f0b-5e2a9c6d1b20": {
            "name": "Acme Ltd",
            "xero_contact_id": "7d1a4a7e-3f77-4a2c-8f0b-5e2a9c6d1b20",
        }
    }


def test_a_change_back_to_earlier_values_is_a_new_message():
    first, changed = (
        _invoice(),
        _invoice(due_date=pd.Timestamp("2024-06-30", tz="UTC"), updated_at=pd.Timestamp("2024-05-02", tz="UTC")),
    )
    back = _invoice(updated_at=pd.Timestamp("2024-05-03", tz="UTC"))
    ((_, there),) = _events(changed, first)
    ((event, back_again),) = _events(back, changed)
    assert event == "Invoice Updated" and back_again != there
    assert _events(back, changed) == [(event, back_again)]


def test_the_first_sight_action_can_depend_on_a_column():
    payment = {
        "payment_id": "5f0c7f2e-4d4e-4c1a-9a59-2a8c1d2b3e4f", "payment_type": "ACCPAYPAYMENT", "status": "AUTHORISED",
        "amount": 50.0, "date": pd.Timestamp("2024-05-02", tz="UTC"),
        "invoice_id": "0f5c7f2e-4d4e-4c1a-9a59-2a8c1d2b3e4f",
        "invoice_number": "BILL-1", "invoice_type": "ACCPAY", "bank_account_code": "090", "reference": None,
        "currency_code": "USD", "contact_id": "7d1a4a7e-3f77-4a2c-8f0b-5e2a9c6d1b20",
        "updated_at": pd.Timestamp("2024-05-02T10:00:00", tz="UTC"),
    }  # fmt: skip
    made, received = (
        _tracks(MAPPINGS["payments"], [{**payment, "payment_type": kind}], key="payment_id")[0]
        for kind in ("ACCPAYPAYMENT", "ACCRECPAYMENT")
    )
    assert (made.event, received.event) == ("Payment Made", "Payment Received")
    assert made.payload["properties"]["amount"] == 50.0 and made.payload["properties"]["currency"] == "USD"


def test_a_record_without_a_person_is_sent_anonymously_under_its_bank_account():
    spend = {
        "bank_transaction_id": "6f0c7f2e-4d4e-4c1a-9a59-2a8c1d2b3e4f", "type": "SPEND", "status": "AUTHORISED",
        "contact_id": None, "total": 12.5, "date": pd.Timestamp("2024-05-02", tz="UTC"), "bank_account_code": "090",
        "bank_account_id": "5690f1e8-1d02-4893-90c2-ee1a69eff942", "reference": "Bank fee", "account_codes": "404",
        "currency_code": "USD", "updated_at": pd.Timestamp("2024-05-02T10:00:00", tz="UTC"),
    }  # fmt: skip
    (recorded,) = _tracks(MAPPINGS["expenses"], [spend], key="bank_transaction_id")
    assert recorded.event == "Expense Recorded"
    assert "userId" not in recorded.payload
    assert recorded.payload["anonymousId"] == "5690f1e8-1d02-4893-90c2-ee1a69eff942"


def test_a_new_bill_notifies_the_team_once_with_readable_values():
    bill = _invoice(type="ACCPAY", invoice_number="SUP-77", status="AUTHORISED", contact_name="Paper Co")
    messages = _tracks(MAPPINGS["bills"], [bill])
    assert [m.event for m in messages] == ["Bill Created", "Bill Approved"]
    (notification,) = notify_messages(
        MAPPINGS["bills"].notify, MAPPINGS["bills"].track, messages, pd.DataFrame([bill]), "invoice_id"
    )
    assert notification.payload["text"] == "New bill SUP-77 from Paper Co: GBP 120.0, due 2024-05-31"
    assert notification.message_id == messages[0].message_id + ":notify"


def test_only_a_bill_changed_after_its_entity_was_first_synced_is_news():
    first_sync = pd.Timestamp("2024-06-01T00:00:00", tz="UTC")
    old = _invoice(type="ACCPAY", invoice_number="SUP-1", updated_at=pd.Timestamp("2024-05-31T23:59:00", tz="UTC"))
    new = _invoice(type="ACCPAY", invoice_number="SUP-2", invoice_id="2b4f8a1c-0d6e-4f3a-9c7b-5e1d2a3f4b6c",
                   updated_at=pd.Timestamp("2024-06-01T00:01:00", tz="UTC"))  # fmt: skip
    messages = _tracks(MAPPINGS["bills"], [old, new])
    mapping = MAPPINGS["bills"]

    notified = notify_messages(mapping.notify, mapping.track, messages, pd.DataFrame([old, new]), "invoice_id",
                               after=first_sync.to_pydatetime())  # fmt: skip

    assert [n.record_id for n in notified] == [new["invoice_id"]]
