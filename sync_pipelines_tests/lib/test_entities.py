"""Staging a batch on a real DuckDB file: an older version of a record never overwrites a newer one, and whatever
a record holds it ends staged or quarantined with a reason."""

import json
from dataclasses import dataclass, field

import pandas as pd

from sync_pipelines.lib import staging
from sync_pipelines.lib.deliveries import Delivery, derive
from sync_pipelines.lib.entities import Entity, stage_batch
from sync_pipelines.lib.reconcile import reconcile_delivery
from sync_pipelines.lib.staging import OutboxMessage, StagingResource
from sync_pipelines.vendors.intercom.contracts import RESOLVED, IntercomSegment, flatten_segment
from sync_pipelines.vendors.intercom.entities import IntercomSegments
from sync_pipelines.vendors.xero.contracts.invoice import XeroInvoice, flatten_invoice
from sync_pipelines_tests.lib.records import invoice

SEGMENTS = Entity("intercom", "segments", "segments", IntercomSegments(), IntercomSegment, "id", flatten_segment)


A, B, C = (f"{n}46d8a6d-1ae1-4b4d-9340-5601bdf41b87" for n in range(3))
CUSTOMER, OTHER_CUSTOMER = "a3675fc4-f8dd-4f03-ba5b-f1870566bcd7", "b3675fc4-f8dd-4f03-ba5b-f1870566bcd7"


def _landed(seq: int, members: list[str], updated_at: int) -> pd.DataFrame:
    record = {"id": "7", "name": "Trial", "updated_at": updated_at, RESOLVED: {"member_ids": members}}
    return pd.DataFrame({"seq": [seq], "record_id": ["7"], "payload": [json.dumps(record)]})


def test_a_version_older_than_the_staged_one_is_kept_out_and_audited(tmp_path):
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        assert stage_batch(conn, SEGMENTS, _landed(1, ["a", "b"], 2_000), "run-1").changed == 1
        # A late delivery of an earlier state (e.g. a webhook retried after a newer one was read).
        assert stage_batch(conn, SEGMENTS, _landed(2, ["a"], 1_000), "run-2").changed == 0
        assert stage_batch(conn, SEGMENTS, _landed(3, ["b"], 3_000), "run-3").changed == 1

        assert conn.execute(f'SELECT member_ids FROM "{SEGMENTS.table}"').fetchall() == [('["b"]',)]
        (outcome, detail), *others = conn.execute(
            "SELECT outcome, detail FROM audit_log WHERE action = 'stale'"
        ).fetchall()
    assert not others and outcome == "kept staged"
    assert json.loads(detail)["arrived_updated_at"] == "1970-01-01 00:16:40+00:00"


@dataclass(frozen=True)
class _Invoices:
    """Landed Xero invoices, as the extract would have them (the staged step reads no vendor)."""

    id_field: str = "InvoiceID"
    webhook_category: None = None


@dataclass(frozen=True)
class Target:
    """A track per changed invoice and an identify of its customer, with the limits a target may declare."""

    max_message_bytes: int | None = None
    field_lengths: dict | None = None
    system: str = "fake"
    totals: None = None
    resources: dict = field(default_factory=dict)

    def messages_for(self, conn, changes) -> list[OutboxMessage]:
        rows, key = changes.changed.to_dict("records"), changes.entity.key
        return [
            *(OutboxMessage(f"track:{r[key]}", r[key], "track", "Invoice", {"Invoice": r["invoice_number"]})
              for r in rows),
            *(OutboxMessage(f"identify:{c}", c, "identify", None, {"Name": n}) for c, n in
              {r["contact_id"]: r["contact_name"] for r in rows}.items()),
        ]  # fmt: skip


INVOICES = Entity("xero", "invoices", "invoices", _Invoices(), XeroInvoice, "invoice_id", flatten_invoice)


def land(conn, records: list[dict]) -> pd.DataFrame:
    """The records landed as Xero invoices, as the staged step reads them."""
    page = staging.landing_frame(records, id_field="InvoiceID", updated_at=[None] * len(records))
    staging.land(conn, source="xero", entity="invoices", page=page, run_id="run-1")
    return staging.unprocessed_landing(conn, source="xero", entity="invoices", after_seq=0, limit=100)


def quarantined(conn) -> list[tuple]:
    return conn.execute("SELECT record_id, reasons FROM quarantine ORDER BY landing_seq").fetchall()


def staged(conn) -> list[tuple]:
    return conn.execute(f'SELECT invoice_id, status FROM "{INVOICES.table}" ORDER BY invoice_id').fetchall()


def test_a_record_its_flatten_cannot_read_is_quarantined_and_the_others_are_staged(tmp_path):
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        landed = land(conn, [invoice(A, CUSTOMER), invoice(B, CUSTOMER, Contact=[{"ContactID": CUSTOMER}])])
        outcome = stage_batch(conn, INVOICES, landed, "run-1")
        assert (outcome.processed, outcome.changed, outcome.quarantined) == (2, 1, 1)
        assert staged(conn) == [(A, "AUTHORISED")]
        assert quarantined(conn) == [(B, "record: ValueError: Contact is list, not an object")]
        assert outcome.failing_fields == {"record": 1}


def test_what_cannot_land_as_it_came_lands_as_a_stand_in_and_is_quarantined_with_why(tmp_path):
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        lone = invoice(B, CUSTOMER, Reference="Ana \ud800")
        landed = land(conn, [invoice(A, CUSTOMER, Reference="Ana \U0001f600"), lone, ["not", "a", "record"]])
        outcome = stage_batch(conn, INVOICES, landed, "run-1")
        assert (outcome.processed, outcome.changed, outcome.quarantined) == (3, 1, 2)
        assert staged(conn) == [(A, "AUTHORISED")]  # an emoji is text like any other
        assert quarantined(conn) == [
            (B, "record: a lone surrogate U+D800 in its text, which no target can take"),
            (None, 'record: not a JSON object: ["not", "a", "record"]'),
        ]


def test_a_batch_no_record_of_which_can_be_read_is_quarantined_whole(tmp_path):
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        landed = land(conn, [invoice(A, CUSTOMER, LineItems="lots"), invoice(B, CUSTOMER, Contact="x")])
        outcome = stage_batch(conn, INVOICES, landed, "run-1")
        assert (outcome.changed, outcome.quarantined) == (0, 2)
        assert [record_id for record_id, _ in quarantined(conn)] == [A, B]


def test_the_latest_valid_version_is_staged_and_every_broken_one_quarantined(tmp_path):
    versions = [
        invoice(A, CUSTOMER),
        invoice(A, CUSTOMER, Status="PAID"),
        invoice(A, CUSTOMER, Status="PAID", Total=float("nan")),  # a broken later version hides no good one
        invoice(B, CUSTOMER, Total="x"),
        invoice(B, CUSTOMER, Status="VOIDED"),  # nor does a broken earlier one
    ]
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        stage_batch(conn, INVOICES, land(conn, versions), "run-1")
        assert staged(conn) == [(A, "PAID"), (B, "VOIDED")]
        assert quarantined(conn) == [(A, "total: nan is not a finite number"), (B, "total: 'x' is not a valid number")]


def test_records_with_bad_missing_or_shared_ids_end_staged_or_quarantined_and_reconcile(tmp_path):
    records = [
        invoice(A, CUSTOMER),
        invoice(A, CUSTOMER, Status="PAID"),  # the same record again
        invoice(A, CUSTOMER, InvoiceNumber=7),  # and a broken version of it
        invoice("not-a-uuid", CUSTOMER),
        invoice(A, CUSTOMER, InvoiceID=12345),
        invoice(A, CUSTOMER, InvoiceID=[A]),
        {k: v for k, v in invoice(B, CUSTOMER).items() if k != "InvoiceID"},
        {k: v for k, v in invoice(B, CUSTOMER, Status="PAID").items() if k != "InvoiceID"},
    ]
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        outcome = stage_batch(conn, INVOICES, land(conn, records), "run-1")
        delivery = Delivery("test", INVOICES, Target())
        derive(conn, delivery, "run-1")
        result = reconcile_delivery(conn, delivery=delivery, run_id="run-1")
        ids = [record_id for record_id, _ in quarantined(conn)]
    assert (outcome.processed, outcome.changed, outcome.quarantined) == (8, 1, 6)
    assert ids == [A, "not-a-uuid", "12345", f"['{A}']", None, None]
    # A (staged), not-a-uuid, 12345, the list and the two id-less records: in the source, and all accounted for.
    assert (result.in_source, result.staged, result.quarantined) == (6, 1, 5)
    assert result.in_source == result.staged + result.quarantined
