"""Segment as a target: which staged changes become which calls, with which message ids."""

import pandas as pd

from sync_pipelines.defs.xero_to_segment import INVOICES

MAPPING = INVOICES.target.mapping


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
    before = pd.DataFrame([previous]) if previous else pd.DataFrame()
    return [
        (m.event, m.message_id)
        for m in MAPPING.track_messages(pd.DataFrame([changed]), before, key="invoice_id", source="xero")
    ]


def test_first_sight_of_a_paid_invoice_is_created_then_paid_with_revenue():
    paid = _invoice(status="PAID", amount_due=0.0, amount_paid=120.0)
    messages = MAPPING.track_messages(pd.DataFrame([paid]), pd.DataFrame(), key="invoice_id", source="xero")
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
    identities = MAPPING.identities(pd.DataFrame([newer, older]))
    assert identities == {
        "7d1a4a7e-3f77-4a2c-8f0b-5e2a9c6d1b20": {
            "name": "Acme Ltd",
            "xero_contact_id": "7d1a4a7e-3f77-4a2c-8f0b-5e2a9c6d1b20",
        }
    }
