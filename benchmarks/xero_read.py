"""A full read of Xero invoices against the bound Xero's limits allow, with a slow API.

Seeds the sandbox (in its own process), makes every Xero call take --latency seconds and keeps Xero's real limits
(60 calls a minute, 5 in flight per tenant: xero.md §5), then reads every invoice page through the product's client
three times: one page at a time (the baseline), then as it reads by default, then as a resync re-reads, told
about how many records there are (the ones it forgot). Prints each read's wall time against the bound: the
shortest time any client could take for those page calls under those limits, knowing the page count in advance
(an earliest-start schedule of the calls).

    python benchmarks/xero_read.py [--invoices 30000] [--latency 1.5]
"""

import argparse
import atexit
import os
import shutil
import tempfile
import time
from collections import deque
from pathlib import Path

import requests
from sandbox_process import connect, sandbox_process

from sync_pipelines.vendors.xero import settings
from sync_pipelines.vendors.xero.resource import XeroResource


def bound_seconds(calls: int, latency: float, in_flight: int, per_window: int, window: float) -> float:
    """When the last of `calls` calls of `latency` s ends if each starts as early as the limits let it."""
    ends: list[float] = []
    starts: deque[float] = deque()
    for n in range(calls):
        start = ends[n - in_flight] if n >= in_flight else 0.0
        if len(starts) == per_window:
            start = max(start, starts.popleft() + window)
        starts.append(start)
        ends.append(start + latency)
        ends.sort()
    return max(ends)


def _read(max_concurrent: int, expected_rows: int = 0) -> tuple[float, int, int, int]:
    """A full read of the Invoices collection: (wall seconds, pages, rows, calls retried)."""
    client = XeroResource(
        api_url=os.environ["XERO_API_URL"], identity_url=os.environ["XERO_IDENTITY_URL"],
        client_id=os.environ["XERO_CLIENT_ID"], client_secret=os.environ["XERO_CLIENT_SECRET"],
        token_path=os.environ["XERO_TOKEN_PATH"], token_key=os.environ["SYNC_PIPELINES_TOKEN_KEY"],
        max_concurrent=max_concurrent,
    ).get_client()  # fmt: skip
    assert client.tenant_id  # /connections does not count against the tenant's limits
    started = time.perf_counter()
    sizes = [len(page) for page in client.iter_pages("Invoices", expected_rows=expected_rows)]
    return time.perf_counter() - started, len(sizes), sum(sizes), client.stats.retries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=30_000)
    parser.add_argument("--latency", type=float, default=1.5, help="seconds each Xero call takes")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="xero_read_"))

    atexit.register(shutil.rmtree, work, ignore_errors=True)  # a 1M-invoice run leaves several GB
    with sandbox_process(work, "--invoices", str(args.invoices), ready_seconds=900) as url:
        connect(url, work)
        faults = {"xero": {"latency_ms": args.latency * 1000}}
        requests.put(f"{url}/_admin/faults", json=faults, timeout=10).raise_for_status()
        figures = []
        rows = 0
        reads = (
            ("one page at a time", 1, False),
            ("first read (pages fetched together)", settings.MAX_CONCURRENT, False),
            ("re-read told its size (a resync)", settings.MAX_CONCURRENT, True),
        )
        for label, concurrent, told in reads:
            time.sleep(settings.RATE_WINDOW_SECONDS)  # each read starts with the minute's allowance whole
            seconds, pages, rows, retries = _read(concurrent, expected_rows=rows if told else 0)
            figures.append((label, seconds, pages, retries))

    limits = (settings.MAX_CONCURRENT, settings.CALLS_PER_MINUTE, settings.RATE_WINDOW_SECONDS)
    print(f"{args.invoices:,} invoices, {args.latency} s a call, limits: {limits[0]} in flight, {limits[1]} a minute")
    for label, seconds, pages, retries in figures:
        bound = bound_seconds(pages, args.latency, *limits)
        print(
            f"{label:<36} {pages} pages in {seconds:6.1f} s ({retries} retried); bound {bound:6.1f} s; "
            f"ratio {seconds / bound:.2f}"
        )
    print(f"speed-up over one page at a time: {figures[0][1] / figures[1][1]:.1f}x (first read)")


if __name__ == "__main__":
    main()
