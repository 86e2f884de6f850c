"""Full sync of 100,000 sandbox invoices, then an incremental sync after 1% of them change.

Prints API calls against the minimum possible, rows per second through extract + validate + stage, peak
memory, and the incremental run's cost as a fraction of the full run's. Every figure is a ratio against a
baseline measured in this same command, so it means the same on any machine.

    python benchmarks/sync_100k.py [--invoices 100000] [--changed 0.01]
"""

import argparse
import atexit
import math
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg
import requests
from sandbox_process import connect, sandbox_process

from sync_pipelines.definitions import defs
from sync_pipelines.defs import xero_to_segment
from sync_pipelines.vendors.xero.resource import XeroResource
from sync_pipelines.vendors.xero.settings import MAX_PAGE_SIZE

# The sandbox enforces Xero's real 60 calls a minute by default; a benchmark of our code, not of the
# limit, scales both sides up together.
SCALED_MINUTE_LIMIT = 100_000
DELIVERY = next(d for d in xero_to_segment.FLOW.deliveries() if d.entity.name == "invoices")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _invoice_pages(url: str) -> int:
    """Invoice list calls the sandbox served since its stats were last reset: the extract's own API cost."""
    stats = requests.get(f"{url}/_admin/stats", timeout=10).json()["xero"]
    requests.post(f"{url}/_admin/stats/reset", timeout=10).raise_for_status()
    return stats.get("GET /api.xro/2.0/Invoices", 0)


def _run(
    definitions: dg.Definitions,
    selection: list[dg.AssetKey],
    instance: dg.DagsterInstance,
    memory_limit: str | None = None,
) -> tuple[float, dict]:
    """Materialise the selection of the code location's `definitions` against the sandbox; `memory_limit` overrides
    DuckDB's limit for landing and staging (`StagingResource.stage_memory_limit`)."""
    staging_db = definitions.resources["staging_db"]
    resources = {
        **definitions.resources,
        "xero": XeroResource(
            api_url=os.environ["XERO_API_URL"],
            identity_url=os.environ["XERO_IDENTITY_URL"],
            client_id=os.environ["XERO_CLIENT_ID"],
            client_secret=os.environ["XERO_CLIENT_SECRET"],
            token_path=os.environ["XERO_TOKEN_PATH"],
            token_key=os.environ["SYNC_PIPELINES_TOKEN_KEY"],
            calls_per_minute=SCALED_MINUTE_LIMIT,
        ),
        **({"staging_db": staging_db.model_copy(update={"stage_memory_limit": memory_limit})} if memory_limit else {}),
    }
    started = time.perf_counter()
    result = dg.materialize(definitions.assets, selection=selection, resources=resources, instance=instance)
    elapsed = time.perf_counter() - started
    metadata = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        metadata[materialization.asset_key.to_user_string()] = {k: v.value for k, v in materialization.metadata.items()}
    return elapsed, metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sync_bench_"))

    atexit.register(shutil.rmtree, work, ignore_errors=True)  # a 1M-invoice run leaves several GB
    options = ("--invoices", str(args.invoices), "--contacts", str(max(40, args.invoices // 50)))
    with sandbox_process(work, *options, ready_seconds=600) as url:
        requests.put(f"{url}/_admin/limits", json={"minute_limit": SCALED_MINUTE_LIMIT}, timeout=10).raise_for_status()
        connect(url, work)
        instance = dg.DagsterInstance.ephemeral()
        definitions = defs()  # the code location, loaded before any run as a run worker has it
        baseline_rss = _peak_rss_mib()

        stage = [DELIVERY.entity.raw_key, DELIVERY.entity.staged_key]
        _invoice_pages(url)
        full_seconds, full = _run(definitions, stage, instance)
        full_pages = _invoice_pages(url)
        full_rss = _peak_rss_mib()
        deliver_seconds, delivered = _run(definitions, [DELIVERY.key], instance)

        changed = math.ceil(args.invoices * args.changed)
        requests.post(f"{url}/_admin/xero/touch", json={"count": changed}, timeout=600).raise_for_status()
        _invoice_pages(url)
        incremental_seconds, incremental = _run(definitions, stage, instance)
        incremental_pages = _invoice_pages(url)
        incremental_deliver_seconds, _ = _run(definitions, [DELIVERY.key], instance)

    raw = DELIVERY.entity.raw_key.to_user_string()
    staged = DELIVERY.entity.staged_key.to_user_string()
    sales = full[raw]["rows_fetched"]
    minimum = math.ceil(sales / MAX_PAGE_SIZE)
    rows = [
        ("sales invoices in source", sales),
        ("full: invoice page calls / minimum ceil(rows / 1000)",
         f"{full_pages} / {minimum} = {full_pages / minimum:.2f} (all API calls: {full[raw]['api_calls']})"),
        ("full: rows/s through extract + validate + stage", f"{sales / full_seconds:,.0f} ({full_seconds:.1f} s: "
                                                            f"extract {full[raw]['seconds']:.1f} s, "
                                                            f"validate + stage {full[staged]['seconds']:.1f} s)"),
        ("full: delivery to Segment", f"{delivered[DELIVERY.key.to_user_string()]['dagster/row_count']:,} "
                                      f"messages in {deliver_seconds:.1f} s"),
        ("peak RSS / RSS before the sync",
         f"{full_rss:.0f} MiB / {baseline_rss:.0f} MiB = {full_rss / baseline_rss:.2f}"),
        ("incremental: invoices changed", changed),
        ("incremental: rows fetched (landed: new versions only)",
         f"{incremental[raw]['rows_fetched']} ({incremental[raw]['dagster/row_count']})"),
        ("incremental: invoice page calls (fraction of full)",
         f"{incremental_pages} ({incremental_pages / full_pages:.3f})"),
        ("incremental: seconds (fraction of full)",
         f"{incremental_seconds:.2f} ({incremental_seconds / full_seconds:.3f})"),
        ("incremental: delivery seconds (fraction of full)",
         f"{incremental_deliver_seconds:.2f} ({incremental_deliver_seconds / deliver_seconds:.3f})"),
    ]  # fmt: skip
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
