"""This project against dlt on the same sandbox invoices: rows/s, CPU seconds and peak memory, side by side.

Seeds a sandbox (its own process) with --invoices invoices and lifts its minute limit, then alternates, --rounds
times, three runs each in a fresh process of its own, reading the sales invoices (Type=="ACCREC", 1,000 a page)
into a new DuckDB file:

- ours: the product's `xero/landed_xero_invoices` and `xero/staged_xero_invoices` (land, validate, stage);
- dlt-default and dlt-jsonl: dlt's `rest_api` source merging on InvoiceID into DuckDB, with dlt's default loader
  file format and with jsonl.

Prints each run's rows, wall seconds, rows/s, CPU seconds of the runner's process (the sandbox's serving is not
counted: it is another process) and its peak RSS, each runner timed once its code is loaded, then the medians'
ratios of ours to each dlt configuration.
dlt is a benchmark-only extra: `pip install -e ".[benchmarks]"`.

    python benchmarks/stage_vs_dlt.py [--invoices 100000] [--rounds 3]
"""

import argparse
import atexit
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
from sandbox_process import connect, sandbox_process

SCALED_MINUTE_LIMIT = 100_000
RUNNERS = ("ours", "dlt-default", "dlt-jsonl")


def _ours(database: Path, memory_limit: str | None = None) -> Callable[[], int]:
    import dagster as dg
    from sync_100k import DELIVERY, _run

    from sync_pipelines.definitions import defs

    os.environ["SYNC_PIPELINES_DUCKDB"] = str(database)
    instance = dg.DagsterInstance.ephemeral()
    definitions = defs()

    def run() -> int:
        stage = [DELIVERY.entity.raw_key, DELIVERY.entity.staged_key]
        _, metadata = _run(definitions, stage, instance, memory_limit)
        return metadata[DELIVERY.entity.raw_key.to_user_string()]["rows_fetched"]

    return run


def _dlt(database: Path, file_format: str | None) -> Callable[[], int]:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    from sync_pipelines.vendors.xero.resource import XeroResource

    client = XeroResource(
        api_url=os.environ["XERO_API_URL"], identity_url=os.environ["XERO_IDENTITY_URL"],
        client_id=os.environ["XERO_CLIENT_ID"], client_secret=os.environ["XERO_CLIENT_SECRET"],
        token_path=os.environ["XERO_TOKEN_PATH"], token_key=os.environ["SYNC_PIPELINES_TOKEN_KEY"],
    ).get_client()  # fmt: skip
    token, tenant_id = client._auth.access_token(), client.tenant_id

    def run() -> int:
        source = rest_api_source(
            {
                "client": {
                    "base_url": f"{os.environ['XERO_API_URL']}/api.xro/2.0/",
                    "auth": {"type": "bearer", "token": token},
                    "headers": {"Xero-tenant-id": tenant_id, "Accept": "application/json"},
                    "paginator": {"type": "page_number", "base_page": 1, "total_path": "pagination.pageCount"},
                },
                "resources": [
                    {
                        "name": "invoices",
                        "primary_key": "InvoiceID",
                        "write_disposition": "merge",
                        "endpoint": {
                            "path": "Invoices",
                            "params": {"where": 'Type=="ACCREC"', "pageSize": 1000},
                            "data_selector": "Invoices",
                        },
                    }
                ],
            }
        )
        pipeline = dlt.pipeline(
            pipeline_name="xero_invoices",
            destination=dlt.destinations.duckdb(str(database)),
            dataset_name="xero",
            pipelines_dir=str(database.parent / "dlt"),
        )
        pipeline.run(source, **({"loader_file_format": file_format} if file_format else {}))
        return pipeline.last_trace.last_normalize_info.row_counts["invoices"]

    return run


def _one(runner: str, database: Path, memory_limit: str | None = None) -> None:
    """In the runner's own process: run it once and print its figures as JSON. The runner's code is loaded (and
    the benchmark's own modules, the code location's definitions, Dagster's instance and dlt's token) before the
    clock starts, as a Dagster run worker has its instance and code location before its first step: both sides are
    timed from the stage's start to its end."""
    if runner == "ours":
        run = _ours(database, memory_limit)
    else:
        run = _dlt(database, "jsonl" if runner == "dlt-jsonl" else None)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    rows = run()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(json.dumps({"rows": rows, "wall": wall, "cpu": cpu, "peak_rss_mib": after.ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", choices=RUNNERS, help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--memory-limit", help="DuckDB's limit for ours in landing and staging (default: stage_memory_limit)"
    )
    args = parser.parse_args()
    if args.one:
        _one(args.one, args.database, args.memory_limit)
        return

    work = Path(tempfile.mkdtemp(prefix="stage_vs_dlt_"))

    atexit.register(shutil.rmtree, work, ignore_errors=True)  # a 1M-invoice run leaves several GB
    options = ("--invoices", str(args.invoices), "--contacts", str(max(40, args.invoices // 50)))
    with sandbox_process(work, *options, ready_seconds=600) as url:
        requests.put(f"{url}/_admin/limits", json={"minute_limit": SCALED_MINUTE_LIMIT}, timeout=10).raise_for_status()
        connect(url, work)
        figures: dict[str, list[dict]] = {runner: [] for runner in RUNNERS}
        print(f"{'runner':<12}{'round':>6}{'rows':>9}{'wall s':>8}{'rows/s':>9}{'CPU s':>8}{'peak RSS MiB':>14}")
        for round_ in range(1, args.rounds + 1):
            for runner in RUNNERS:
                database = work / f"{runner}-{round_}" / "staging.duckdb"
                database.parent.mkdir()
                command = [sys.executable, __file__, "--one", runner, "--database", str(database)]
                command += ["--memory-limit", args.memory_limit] if args.memory_limit and runner == "ours" else []
                output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=Path(__file__).parent)
                run = json.loads(output.stdout.strip().splitlines()[-1])
                figures[runner].append(run)
                print(f"{runner:<12}{round_:>6}{run['rows']:>9,}{run['wall']:>8.1f}{run['rows'] / run['wall']:>9,.0f}"
                      f"{run['cpu']:>8.1f}{run['peak_rss_mib']:>14.0f}", flush=True)  # fmt: skip

    def median(runner: str, figure: str) -> float:
        return statistics.median(run[figure] / (run["wall"] if figure == "rows" else 1) for run in figures[runner])

    for baseline in RUNNERS[1:]:
        print(
            f"ours / {baseline}: rows/s {median('ours', 'rows') / median(baseline, 'rows'):.2f}, "
            f"CPU s {median('ours', 'cpu') / median(baseline, 'cpu'):.2f}, "
            f"peak RSS {median('ours', 'peak_rss_mib') / median(baseline, 'peak_rss_mib'):.2f}"
        )


if __name__ == "__main__":
    main()
