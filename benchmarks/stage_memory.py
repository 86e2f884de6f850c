"""Peak memory of the local stage as the history grows: 100,000 invoices against 1,000,000.

For each --invoices count, seeds a sandbox (its own process) with that many invoices and lifts its minute limit,
then lands, validates and stages the sales invoices --rounds times, each in a fresh process of its own
(`stage_vs_dlt.py`'s runner), into a new DuckDB file; prints each run's rows, wall seconds and peak RSS, then each
count's median peak against the first count's.

    python benchmarks/stage_memory.py [--invoices 100000 1000000] [--rounds 2] [--memory-limit 80MB]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import requests
from sandbox_process import connect, sandbox_process
from stage_vs_dlt import SCALED_MINUTE_LIMIT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--memory-limit", help="DuckDB's limit in landing and staging (default: stage_memory_limit)")
    args = parser.parse_args()
    peaks: dict[int, float] = {}
    print(f"{'invoices':>10}{'round':>6}{'rows':>9}{'wall s':>8}{'peak RSS MiB':>14}")
    for invoices in args.invoices:
        work = Path(tempfile.mkdtemp(prefix="stage_memory_"))
        try:
            options = ("--invoices", str(invoices), "--contacts", str(max(40, invoices // 50)))
            with sandbox_process(work, *options, ready_seconds=600) as url:
                limits = {"minute_limit": SCALED_MINUTE_LIMIT}
                requests.put(f"{url}/_admin/limits", json=limits, timeout=10).raise_for_status()
                connect(url, work)
                runs = []
                for round_ in range(1, args.rounds + 1):
                    database = work / f"ours-{round_}" / "staging.duckdb"
                    database.parent.mkdir()
                    command = [sys.executable, "stage_vs_dlt.py", "--one", "ours", "--database", str(database)]
                    command += ["--memory-limit", args.memory_limit] if args.memory_limit else []
                    output = subprocess.run(
                        command, check=True, capture_output=True, text=True, cwd=Path(__file__).parent
                    )
                    run = json.loads(output.stdout.strip().splitlines()[-1])
                    runs.append(run)
                    shutil.rmtree(database.parent)  # a 1M-invoice store is about 1 GB
                    print(f"{invoices:>10,}{round_:>6}{run['rows']:>9,}{run['wall']:>8.1f}{run['peak_rss_mib']:>14.0f}",
                          flush=True)  # fmt: skip
                peaks[invoices] = statistics.median(run["peak_rss_mib"] for run in runs)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    first = args.invoices[0]
    for invoices in args.invoices:
        growth = peaks[invoices] / peaks[first] - 1
        print(f"{invoices:,} invoices: median peak {peaks[invoices]:.0f} MiB, {growth:+.1%} against {first:,}")


if __name__ == "__main__":
    main()
