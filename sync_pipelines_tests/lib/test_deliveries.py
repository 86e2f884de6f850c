"""Deliveries read the change feed on a real DuckDB file: each delivery sees every change once, on its own cursor,
and quarantines what its own target would refuse."""

from dataclasses import replace

import pytest

from sync_pipelines.lib.deliveries import Delivery, derive
from sync_pipelines.lib.entities import stage_batch
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines_tests.lib.records import invoice
from sync_pipelines_tests.lib.test_entities import (
    CUSTOMER,
    INVOICES,
    OTHER_CUSTOMER,
    A,
    B,
    C,
    Target,
    land,
    quarantined,
    staged,
)


def _queued(conn, flow: str) -> list[tuple]:
    return conn.execute("SELECT message_id FROM outbox WHERE flow = ? ORDER BY message_id", [flow]).fetchall()


def test_two_deliveries_of_one_staged_entity_each_queue_every_change_once(tmp_path):
    first, second = Delivery("first", INVOICES, Target()), Delivery("second", INVOICES, Target(), namespace="other")
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        stage_batch(conn, INVOICES, land(conn, [invoice(A, CUSTOMER)]), "run-1")
        assert derive(conn, first, "run-1").enqueued == 2
        # A change staged while only the first delivery ran, then another: the second catches up on both.
        stage_batch(conn, INVOICES, land(conn, [invoice(A, CUSTOMER, Status="PAID")]), "run-2")
        assert derive(conn, first, "run-2").changes == 1
        assert derive(conn, second, "run-2").changes == 2
        assert (derive(conn, first, "run-3").changes, derive(conn, second, "run-3").changes) == (0, 0)
        # The same message ids, each queued once per delivery.
        assert _queued(conn, "first") == _queued(conn, "second") == [(f"identify:{CUSTOMER}",), (f"track:{A}",)]


def test_a_delivery_added_later_starts_from_the_beginning_or_from_now(tmp_path):
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        stage_batch(conn, INVOICES, land(conn, [invoice(A, CUSTOMER)]), "run-1")
        beginning = Delivery("beginning", INVOICES, Target())
        now = Delivery("now", INVOICES, Target(), start="now")
        assert (derive(conn, beginning, "run-2").changes, derive(conn, now, "run-2").changes) == (1, 0)
        stage_batch(conn, INVOICES, land(conn, [invoice(B, CUSTOMER)]), "run-3")
        assert derive(conn, now, "run-4").changes == 1
        assert _queued(conn, "now") == [(f"identify:{CUSTOMER}",), (f"track:{B}",)]


def test_a_delivery_whose_target_fails_leaves_staging_and_the_other_delivery_alone(tmp_path):
    class Broken(Target):
        def messages_for(self, conn, changes):
            raise RuntimeError("a mapping bug")

    working, broken = Delivery("working", INVOICES, Target()), Delivery("broken", INVOICES, Broken())
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        stage_batch(conn, INVOICES, land(conn, [invoice(A, CUSTOMER)]), "run-1")
        with pytest.raises(RuntimeError, match="a mapping bug"):
            derive(conn, broken, "run-1")
        conn.execute("ROLLBACK")  # as closing the failed step's connection would
        assert derive(conn, working, "run-1").changes == 1
        stage_batch(conn, INVOICES, land(conn, [invoice(B, CUSTOMER)]), "run-2")
        assert staged(conn) == [(A, "AUTHORISED"), (B, "AUTHORISED")]
        assert derive(conn, working, "run-2").changes == 1
        # Fixed, the broken delivery picks up every change it missed, once.
        fixed = replace(broken, target=Target())
        assert derive(conn, fixed, "run-3").changes == 2
        assert _queued(conn, "broken") == [(f"identify:{CUSTOMER}",), (f"track:{A}",), (f"track:{B}",)]


def test_a_record_whose_message_the_target_would_refuse_is_quarantined_for_that_delivery(tmp_path):
    strict = Delivery("strict", INVOICES, Target(max_message_bytes=1_000, field_lengths={"Name": 20}))
    lenient = Delivery("lenient", INVOICES, Target())
    records = [
        invoice(A, CUSTOMER),
        invoice(B, CUSTOMER, InvoiceNumber="x" * 2_000),  # fits the contract, not one message
        invoice(C, OTHER_CUSTOMER, Contact={"ContactID": OTHER_CUSTOMER, "Name": "A name over twenty chars"}),
    ]
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        outcome = stage_batch(conn, INVOICES, land(conn, records), "run-1")
        derived = derive(conn, strict, "run-1")
        assert len(_queued(conn, "lenient")) == 0 and derive(conn, lenient, "run-1").enqueued == 5
        queued = _queued(conn, "strict")
        refusals = conn.execute("SELECT delivery FROM quarantine").fetchall()
        assert (outcome.changed, outcome.quarantined, derived.refused) == (3, 0, 2)
        assert staged(conn) == [(A, "AUTHORISED"), (B, "AUTHORISED"), (C, "AUTHORISED")]
        assert queued == [(f"identify:{CUSTOMER}",), (f"track:{A}",)]
        assert quarantined(conn) == [
            (B, f"message: 2014 bytes, over the target's 1000 (track track:{B})"),
            # The customer's identify names another record: the invoice naming that customer is the one refused.
            (C, f"message: Name has 24 characters, over the target's 20 (identify identify:{OTHER_CUSTOMER})"),
        ]
        assert refusals == [("strict/invoices",), ("strict/invoices",)]
