"""Kill -9 at random moments, rerun past Xero's Idempotency-Key window, and count what was lost or doubled.

Salesforce -> Xero: runs are killed with SIGKILL while they raise invoices and pay them (after 1-3 money writes
each), then one run is left to finish. The sandbox keeps no Idempotency-Key answers (a 0 s window), so every write
sent again is past the window, as after the next 15-minute tick. Counts invoices per won deal, payments per paid
deal and Xero contacts per account: a count above one is a duplicate, a missing one is lost.

Xero -> Segment: runs are killed during delivery (after 1-3 batch calls each). Counts messages owed, received,
lost, and sent again (Segment drops a repeated messageId; the sandbox counts each drop), against one batch per kill.

    python benchmarks/kill_and_rerun.py [--kills 14] [--opportunities 200] [--seed 1]
"""

import argparse
import json
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

import duckdb
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox_process import connect  # noqa: E402

from sync_pipelines.sandbox import SandboxServer, SandboxSettings  # noqa: E402
from sync_pipelines_tests.conftest import SandboxAdmin  # noqa: E402
from sync_pipelines_tests.crashes import KillLoop, kill_and_rerun  # noqa: E402

SEGMENT_BATCH_BYTES = 20_000


def _writes(admin: SandboxAdmin, vendor: str, *endings: str) -> int:
    stats = admin.stats()[vendor]
    return sum(n for call, n in stats.items() if call.startswith(("POST", "PUT")) and call.endswith(endings))


def salesforce_to_xero(admin: SandboxAdmin, kills: int, opportunities: int, rng: random.Random) -> dict:
    admin.reset(invoices=0, contacts=0)
    admin.limits(minute_limit=600)
    admin.salesforce_reset(accounts=opportunities // 2, contacts_per_account=0, leads=0, opportunities=opportunities)
    deals = admin.salesforce_records("Opportunity")
    won = [o for o in deals if o["IsWon"] and not o["IsDeleted"] and o["AccountId"]]
    paid = {deal["Id"] for deal in won[::2]}
    for deal_id in paid:
        admin.salesforce_update("Opportunity", deal_id, StageName="Paid")
    # Two invoices or payments a call (50 in production): a few dozen deals still make dozens of writes to kill in.
    loop = kill_and_rerun("salesforce_to_xero", lambda: _writes(admin, "xero", "/Invoices", "/Payments"),
                          kills=kills, rng=rng, xero_write_batch=2)  # fmt: skip
    invoices = Counter(i["Reference"] for i in admin.get("/xero/invoices") if i["Type"] == "ACCREC")
    invoice_of = {i["Reference"]: i["InvoiceID"] for i in admin.get("/xero/invoices")}
    payments = Counter(p["Invoice"]["InvoiceID"] for p in admin.get("/xero/payments"))
    accounts = [a["Id"] for a in admin.salesforce_records("Account") if not a["IsDeleted"]]
    contacts = Counter(c.get("ContactNumber") for c in admin.get("/xero/contacts"))
    return _row(
        "salesforce_to_xero",
        loop,
        owed=f"{len(won)} invoices, {len(paid)} payments, {len(accounts)} contacts",
        lost=sum(invoices[d["Id"]] == 0 for d in won)
        + sum(payments[invoice_of.get(d, "")] == 0 for d in paid)
        + sum(contacts[a] == 0 for a in accounts),
        duplicated=sum(n - 1 for n in invoices.values() if n > 1)
        + sum(n - 1 for n in payments.values() if n > 1)
        + sum(contacts[a] - 1 for a in accounts if contacts[a] > 1),
        sent_again="-",
    )


def xero_to_segment(admin: SandboxAdmin, database: str, kills: int, rng: random.Random) -> dict:
    loop = kill_and_rerun("xero_to_segment", lambda: _writes(admin, "segment", "/batch"), kills=kills, rng=rng,
                          segment_batch_bytes=SEGMENT_BATCH_BYTES)  # fmt: skip
    with duckdb.connect(database, read_only=True) as conn:
        owed = {m for (m,) in conn.execute("SELECT message_id FROM outbox WHERE kind <> 'notify'").fetchall()}
    received = admin.segment_messages()
    resent = sum(d["reason"] == "duplicate_message_id" for d in admin.get("/segment/dropped"))
    one_batch = SEGMENT_BATCH_BYTES // min(len(json.dumps(m, separators=(",", ":"))) for m in received)
    # Segment keeps one message per messageId, so nothing shows twice there; what a resend costs is `sent again`.
    return _row(
        "xero_to_segment",
        loop,
        owed=f"{len(owed)} messages",
        lost=len(owed - {m["messageId"] for m in received}),
        duplicated=0,
        sent_again=f"{resent} (bound: {len(loop.kill_points)} kills x {one_batch} per batch)",
    )


def _row(flow: str, loop: KillLoop, **counts: object) -> dict:
    """One line of the table: where the runs were killed, how the last one ended, and what was lost or doubled."""
    last = "ok" if loop.final_returncode == 0 else f"exit {loop.final_returncode}"
    return {"flow": flow, "kills": len(loop.kill_points), "kill points": " ".join(map(str, loop.kill_points)),
            "last run": last, **{name.replace("_", " "): value for name, value in counts.items()}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=14)
    parser.add_argument("--opportunities", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for flow in ("salesforce_to_xero", "xero_to_segment"):
        with tempfile.TemporaryDirectory() as work:
            settings = SandboxSettings(state_path=Path(work) / "sandbox.db", idempotency_ttl=0)
            with SandboxServer(settings) as server:
                connect(server.url, Path(work))
                admin = SandboxAdmin(server.url)
                rng = random.Random(args.seed)
                if flow == "salesforce_to_xero":
                    rows.append(salesforce_to_xero(admin, args.kills, args.opportunities, rng))
                else:
                    rows.append(xero_to_segment(admin, str(Path(work) / "warehouse.duckdb"), args.kills, rng))
    print(tabulate(rows, headers="keys"))
    print("kill points count Xero invoice and payment writes, or Segment batch calls, when each run was killed")


if __name__ == "__main__":
    main()
