"""Write-ahead delivery against real processes: runs killed with SIGKILL mid-write, and two runs of one flow at once.

The sandbox's Xero keeps no Idempotency-Key answers here (a 0 s window), so every write sent again is as if the
next run came after Xero's 6 minutes: only the outbox's own bookkeeping can keep it from being made twice.
"""

import json
import random
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import duckdb
import pytest

from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines.vendors.xero.settings import WRITE_BATCH
from sync_pipelines_tests.conftest import SandboxAdmin
from sync_pipelines_tests.crashes import kill_and_rerun, start_run
from sync_pipelines_tests.defs.conftest import expected_flow_tracks, track_counts

KILLS = 10
# Small batches, so a flow of a few hundred messages takes dozens of calls: room for every kill, whatever the speed.
SEGMENT_BATCH_BYTES = 10_000
SMALL_XERO_BATCH = 2


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    """The suite's sandbox, but with Xero's Idempotency-Key window shut."""
    with SandboxServer(SandboxSettings(state_path=tmp_path / "sandbox.db", idempotency_ttl=0)) as server:
        yield server


def _calls(admin: SandboxAdmin, vendor: str, *endings: str) -> int:
    """Writes (POST/PUT) the sandbox's `vendor` saw on paths ending with one of `endings`."""
    return sum(
        n for call, n in admin.stats()[vendor].items() if call.startswith(("POST", "PUT")) and call.endswith(endings)
    )


# Bounds a hung run only, several times what it takes on a loaded 2-core machine (it is no speed claim).
@pytest.mark.timeout(900)
def test_salesforce_runs_killed_mid_write_raise_no_invoice_payment_or_contact_twice_and_lose_none(admin, sync_env):
    admin.reset(invoices=0, contacts=0)
    admin.limits(minute_limit=600)
    admin.salesforce_reset(accounts=40, contacts_per_account=0, leads=0, opportunities=120)
    won = [o for o in admin.salesforce_records("Opportunity") if o["IsWon"] and not o["IsDeleted"] and o["AccountId"]]
    paid = {deal["Id"] for deal in won[::2]}
    for deal_id in paid:
        admin.salesforce_update("Opportunity", deal_id, StageName="Paid")

    money_writes = partial(_calls, admin, "xero", "/Invoices", "/Payments")
    # Invoices and payments go two to a call here (50 in production), so there are dozens of writes to kill in.
    loop = kill_and_rerun(
        "salesforce_to_xero", money_writes, kills=KILLS, rng=random.Random(4), xero_write_batch=SMALL_XERO_BATCH
    )

    assert len(loop.kill_points) >= KILLS and loop.final_returncode == 0, loop
    invoices = [i for i in admin.get("/xero/invoices") if i["Type"] == "ACCREC"]
    assert Counter(i["Reference"] for i in invoices) == Counter(deal["Id"] for deal in won)  # one each, none lost
    invoice_of = {i["Reference"]: i["InvoiceID"] for i in invoices}
    payments = Counter(p["Invoice"]["InvoiceID"] for p in admin.get("/xero/payments"))
    assert payments == Counter(invoice_of[deal_id] for deal_id in paid)
    accounts = [a["Id"] for a in admin.salesforce_records("Account") if not a["IsDeleted"]]
    contacts = Counter(c.get("ContactNumber") for c in admin.get("/xero/contacts"))
    assert all(contacts[account] == 1 for account in accounts)
    announced = Counter(n["body"]["text"].split(":")[0] for n in admin.notifications())
    assert announced["Deal won"] >= len(won) and announced["Deal paid"] >= len(paid)  # none lost


# Bounds a hung run only, several times what it takes on a loaded 2-core machine (it is no speed claim).
@pytest.mark.timeout(900)
def test_segment_deliveries_killed_mid_batch_lose_nothing_and_resend_at_most_one_batch_per_kill(admin, sync_env):
    batches = partial(_calls, admin, "segment", "/batch")
    loop = kill_and_rerun(
        "xero_to_segment", batches, kills=KILLS, rng=random.Random(7), segment_batch_bytes=SEGMENT_BATCH_BYTES
    )

    assert len(loop.kill_points) >= KILLS and loop.final_returncode == 0, loop
    assert track_counts(admin, prefix="") == expected_flow_tracks(admin)  # every change once, none lost
    with duckdb.connect(sync_env["SYNC_PIPELINES_DUCKDB"], read_only=True) as conn:
        owed = {m for (m,) in conn.execute("SELECT message_id FROM outbox WHERE kind <> 'notify'").fetchall()}
        assert conn.execute("SELECT DISTINCT status FROM outbox").fetchall() == [("delivered",)]
    received = admin.segment_messages()
    assert {m["messageId"] for m in received} == owed
    resent = [d for d in admin.get("/segment/dropped") if d["reason"] == "duplicate_message_id"]
    one_batch = SEGMENT_BATCH_BYTES // min(len(json.dumps(m, separators=(",", ":"))) for m in received)
    assert len(resent) <= len(loop.kill_points) * one_batch


def test_two_runs_of_one_flow_at_once_deliver_every_message_and_notification_exactly_once(admin, sync_env):
    first = start_run("xero_to_segment", SEGMENT_BATCH_BYTES, 600, WRITE_BATCH)
    first.join()
    assert first.exitcode == 0
    supplier = next(i["Contact"]["ContactID"] for i in admin.get("/xero/invoices") if i["Type"] == "ACCPAY")
    for number in range(3):  # news after the first sync, which the team is told of
        line = {"Description": "Paper", "Quantity": 1, "UnitAmount": 10.0 + number, "AccountCode": "400"}
        admin.post("/xero/invoices", {"Type": "ACCPAY", "Status": "AUTHORISED", "ContactID": supplier,
                                      "LineItems": [line]})  # fmt: skip
    runs = [start_run("xero_to_segment", SEGMENT_BATCH_BYTES, 600, WRITE_BATCH) for _ in range(2)]
    for run in runs:
        run.join()

    assert [run.exitcode for run in runs] == [0, 0]
    assert admin.get("/segment/dropped") == []  # nothing was sent twice
    assert track_counts(admin, prefix="") == expected_flow_tracks(admin)
    with duckdb.connect(sync_env["SYNC_PIPELINES_DUCKDB"], read_only=True) as conn:
        notified = [
            json.loads(p)["text"]
            for (p,) in conn.execute("SELECT payload FROM outbox WHERE kind = 'notify'").fetchall()
        ]
        checks = conn.execute("SELECT count(DISTINCT run_id), bool_and(ok) FROM reconciliation").fetchone()
    assert len(notified) == 3 and Counter(n["body"]["text"] for n in admin.notifications()) == Counter(notified)
    assert checks == (3, True)  # every run reconciled, and every reconciliation passed
