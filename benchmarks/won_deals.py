"""Won deals to Xero invoices: write calls against the fewest Xero's batch size allows.

Seeds the sandbox's Salesforce org (in its own process) with enough deals that about --won of them are won with an
account, syncs Salesforce -> Xero once in process (Xero's limits lifted: this counts calls, not the minute), and
prints the invoices raised, the `PUT /Invoices` calls that raised them against ceil(won / 50) (Xero takes up to 50
elements a call, summarizeErrors=false), every other Xero write call, and the share of a 5,000-call day they took.

    python benchmarks/won_deals.py [--won 10000]
"""

import argparse
import atexit
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import requests
from sandbox_process import connect, sandbox_process

from sync_pipelines.cli import QUIET_LOGS
from sync_pipelines.definitions import defs
from sync_pipelines.defs import salesforce_to_xero
from sync_pipelines.lib.flows import synced
from sync_pipelines.vendors.xero.settings import WRITE_BATCH

UNLIMITED = 1_000_000
WON_SHARE = 0.28  # of seeded deals, won and with an account (sandbox/salesforce/seed.py's stage weights)
DAY_LIMIT = 5000  # xero.md §5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--won", type=int, default=10_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="won_deals_"))

    atexit.register(shutil.rmtree, work, ignore_errors=True)  # a 1M-invoice run leaves several GB
    os.environ["XERO_CALLS_PER_MINUTE"] = str(UNLIMITED)
    with sandbox_process(work, "--invoices", "0", "--contacts", "0", ready_seconds=600) as url:
        limits = {"minute_limit": UNLIMITED, "day_limit": UNLIMITED, "app_minute_limit": UNLIMITED}
        requests.put(f"{url}/_admin/limits", json=limits, timeout=10).raise_for_status()
        sizes = {
            "accounts": 500,
            "contacts_per_account": 0,
            "leads": 0,
            "opportunities": math.ceil(args.won / WON_SHARE),
        }
        requests.post(f"{url}/_admin/salesforce/reset", json=sizes, timeout=600).raise_for_status()
        connect(url, work)
        deals = requests.get(f"{url}/_admin/salesforce/records/Opportunity", params={"deleted": "false"}, timeout=600)
        won = sum(1 for deal in deals.json() if deal["IsWon"] and deal["AccountId"])
        requests.post(f"{url}/_admin/stats/reset", timeout=10).raise_for_status()
        flow = synced(salesforce_to_xero.NAME).resolve(defs().resolve_asset_graph())
        started = time.perf_counter()
        result = (
            defs()
            .resolve_implicit_global_asset_job_def()
            .execute_in_process(
                instance=dg.DagsterInstance.ephemeral(), run_config=QUIET_LOGS, asset_selection=list(flow)
            )
        )
        seconds = time.perf_counter() - started
        calls = Counter(requests.get(f"{url}/_admin/stats", timeout=10).json()["xero"])
        invoices = requests.get(f"{url}/_admin/xero/invoices", timeout=600).json()
    assert result.success
    raised = Counter(i["Reference"] for i in invoices if i["Type"] == "ACCREC" and i.get("Reference"))
    puts = calls["PUT /api.xro/2.0/Invoices"]
    fewest = math.ceil(won / WRITE_BATCH)
    writes = sum(n for call, n in calls.items() if call.startswith(("PUT", "POST")))
    print(
        f"won deals with an account: {won:,}; invoices raised: {len(raised):,}, none twice: {max(raised.values()) == 1}"
    )
    print(f"PUT /Invoices calls: {puts} against ceil(won / {WRITE_BATCH}) = {fewest}: ratio {puts / fewest:.3f}")
    print(
        f"every Xero write call: {writes} ({writes / DAY_LIMIT:.1%} of a {DAY_LIMIT:,}-call day); sync {seconds:.0f} s"
    )


if __name__ == "__main__":
    main()
