"""Backfill of 50,000 Salesforce accounts through the extract asset: Bulk API 2.0 against REST only.

Runs the real `salesforce/raw/accounts` asset twice on the same sandbox org, each time into an empty staging
file: once as configured (one REST page sizes the read, a Bulk job reads the rest, salesforce.md §6) and once
with the Bulk threshold above the row count, so every row comes through REST query pages of 2,000 (§3.1).
Prints the calls of each kind the org counted, rows per second, and REST-only's cost as a multiple of Bulk's,
so the figures mean the same on any machine. It also prints how long the sandbox took to seed the org (the
admin reset, over HTTP to the sandbox's own process): the speed the tests no longer assert.

    python benchmarks/salesforce_backfill.py [--accounts 50000]
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

from sync_pipelines.definitions import defs
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.vendors.salesforce.entities import ACCOUNTS
from sync_pipelines.vendors.salesforce.resource import SalesforceResource
from sync_pipelines.vendors.salesforce.settings import BULK_THRESHOLD_ROWS, MAX_BATCH_SIZE


def _kind(method: str, path: str) -> str | None:
    """What a data API call was for (salesforce.md §3.1, §6); None for OAuth calls."""
    if "/jobs/query" in path:
        if method == "POST":
            return "bulk jobs"
        return "bulk result pages" if path.endswith("/results") else "bulk job status"
    if "/services/data/" not in path:
        return None
    return "REST query pages" if "/query" in path else "other REST"


def _org_calls(url: str) -> Counter:
    """The org's data API calls since the last look, by kind; resets the count."""
    stats = requests.get(f"{url}/_admin/stats", timeout=10).json()["salesforce"]
    requests.post(f"{url}/_admin/stats/reset", timeout=10).raise_for_status()
    kinds = Counter()
    for call, n in stats.items():
        kind = _kind(*call.split(" ", 1))
        if kind:
            kinds[kind] += n
    return kinds


def _extract(data_dir: Path, bulk_threshold: int) -> tuple[float, dict]:
    """One backfill of the accounts into a new staging file: (wall seconds, the extract's metadata)."""
    definitions = defs()
    resources = {
        **definitions.resources,
        "staging_db": StagingResource(database=str(data_dir / "warehouse.duckdb")),
        "salesforce": SalesforceResource(
            login_url=os.environ["SALESFORCE_LOGIN_URL"],
            client_id=os.environ["SALESFORCE_CLIENT_ID"],
            client_secret=os.environ["SALESFORCE_CLIENT_SECRET"],
            token_path=os.environ["SALESFORCE_TOKEN_PATH"],
            token_key=os.environ["SYNC_PIPELINES_TOKEN_KEY"],
            bulk_threshold=bulk_threshold,
        ),
    }
    started = time.perf_counter()
    result = dg.materialize(
        definitions.assets, selection=[ACCOUNTS.raw_key], resources=resources, instance=dg.DagsterInstance.ephemeral()
    )
    elapsed = time.perf_counter() - started
    (event,) = result.get_asset_materialization_events()
    return elapsed, {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="salesforce_bench_"))

    atexit.register(shutil.rmtree, work, ignore_errors=True)  # a 1M-invoice run leaves several GB
    with sandbox_process(work) as url:
        sizes = {"accounts": args.accounts, "contacts_per_account": 0, "leads": 0, "opportunities": 0}
        started = time.perf_counter()
        seeded = requests.post(f"{url}/_admin/salesforce/reset", json=sizes, timeout=600)
        seeded.raise_for_status()
        seed_seconds = time.perf_counter() - started
        connect(url, work)
        in_org = sum(seeded.json()[kind]["Account"] for kind in ("records", "deleted"))

        runs = {}
        for name, threshold in (("Bulk", BULK_THRESHOLD_ROWS), ("REST only", in_org + 1)):
            _org_calls(url)
            seconds, figures = _extract(work / name.replace(" ", "_"), threshold)
            runs[name] = (seconds, figures, _org_calls(url))

    rows = [
        ("accounts in the org (queryAll: deleted ones too)", f"{in_org:,}"),
        ("seeding the org (POST /_admin/salesforce/reset)", f"{seed_seconds:.1f} s ({in_org / seed_seconds:,.0f} "
                                                            f"accounts/s)"),
    ]  # fmt: skip
    speed = {}
    for name, (seconds, figures, calls) in runs.items():
        if figures["rows_fetched"] != in_org or calls["bulk jobs"] != (name == "Bulk"):
            raise RuntimeError(f"{name} did not read the org as intended: {figures}, {dict(calls)}")
        speed[name] = in_org / figures["seconds"]
        rows += [
            (f"{name}: calls the org counted", ", ".join(f"{kind} {n}" for kind, n in sorted(calls.items()))),
            (f"{name}: client figures", f"rest_calls {figures['rest_calls']}, bulk_calls {figures['bulk_calls']}, "
                                        f"bulk_fallbacks {figures['bulk_fallbacks']}, "
                                        f"{figures['bytes_received'] / 2**20:.1f} MiB received"),
            (f"{name}: rows/s through the extract step", f"{speed[name]:,.0f} (step {figures['seconds']:.1f} s, "
                                                         f"whole run {seconds:.1f} s)"),
        ]  # fmt: skip
    bulk, rest = runs["Bulk"][1], runs["REST only"][1]
    rows += [
        ("REST only / Bulk: API calls",
         f"{rest['api_calls']} / {bulk['api_calls']} = {rest['api_calls'] / bulk['api_calls']:.1f} "
         f"(REST minimum ceil(rows / {MAX_BATCH_SIZE}) = {math.ceil(in_org / MAX_BATCH_SIZE)})"),
        ("Bulk / REST only: rows/s", f"{speed['Bulk'] / speed['REST only']:.2f}"),
    ]  # fmt: skip
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
