"""Webhook latency: from a change in Xero to its Segment event, through receiver, inbox, sensor and a daemon run.

Starts the sandbox, the webhook receiver and a real `dagster-daemon` (what `sync-pipelines dev` runs, without the
UI), syncs everything once, warms up with one change, then pays invoices one at a time and times each from the
payment until its "Invoice Paid" reaches the sandbox's Segment. Prints p50 and p95. Then pays a burst of
invoices at once and prints how long the last took and how many runs carried them (runs coalesce).

    python benchmarks/webhook_latency.py [--changes 10] [--burst 10]
"""

import argparse
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import requests

from sync_pipelines.cli import QUIET_LOGS, running_sandbox
from sync_pipelines.definitions import defs
from sync_pipelines.webhooks.receiver import WebhookReceiver
from sync_pipelines_tests.webhooks.daemon import dagster_daemon, invoice_paid, wait_for_message

WARM_UP_SECONDS = 180  # the daemon's first load of the code location and its first run
CHANGE_SECONDS = 60


def _percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _pay(sandbox_url: str, invoice_id: str) -> None:
    requests.post(f"{sandbox_url}/_admin/xero/invoices/{invoice_id}/pay", json={}, timeout=30).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--burst", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, running_sandbox(Path(tmp) / "data", port=0) as env:
        sandbox_url = env["XERO_API_URL"].removesuffix("/xero/api")
        baseline = defs().resolve_implicit_global_asset_job_def()
        assert baseline.execute_in_process(instance=dg.DagsterInstance.ephemeral(), run_config=QUIET_LOGS).success
        invoices = requests.get(f"{sandbox_url}/_admin/xero/invoices", timeout=30).json()
        payable = [i["InvoiceID"] for i in invoices if i["Type"] == "ACCREC" and i["Status"] == "AUTHORISED"]
        if len(payable) < 1 + args.changes + args.burst:
            raise SystemExit(f"only {len(payable)} payable invoices in the sandbox")
        key = env["XERO_WEBHOOK_KEY"]
        with (
            WebhookReceiver(env["SYNC_PIPELINES_WEBHOOK_INBOX"], {"xero": key}) as receiver,
            dagster_daemon(env, Path(tmp) / "daemon.log"),
        ):
            hooks = {"url": receiver.url_for("xero"), "key": key}
            requests.put(f"{sandbox_url}/_admin/xero/webhooks", json=hooks, timeout=10).raise_for_status()
            _pay(sandbox_url, payable[0])
            wait_for_message(sandbox_url, invoice_paid(payable[0]), WARM_UP_SECONDS)
            latencies = []
            for invoice_id in payable[1 : args.changes + 1]:
                started = time.monotonic()
                _pay(sandbox_url, invoice_id)
                wait_for_message(sandbox_url, invoice_paid(invoice_id), CHANGE_SECONDS)
                latencies.append(time.monotonic() - started)
            runs_before = len(dg.DagsterInstance.get().get_runs())
            burst = payable[1 + args.changes : 1 + args.changes + args.burst]
            started = time.monotonic()
            for invoice_id in burst:
                _pay(sandbox_url, invoice_id)
            for invoice_id in burst:
                wait_for_message(sandbox_url, invoice_paid(invoice_id), CHANGE_SECONDS)
            burst_seconds = time.monotonic() - started
            burst_runs = len(dg.DagsterInstance.get().get_runs()) - runs_before
        runs = Counter(run.job_name for run in dg.DagsterInstance.get().get_runs())

    print(f"changes: {len(latencies)} after one warm-up; runs by job: {dict(runs)}")
    print("latencies (s): " + " ".join(f"{seconds:.1f}" for seconds in latencies))
    print(f"latency p50: {_percentile(latencies, 0.5):.1f} s")
    print(f"latency p95: {_percentile(latencies, 0.95):.1f} s")
    print(f"burst: {len(burst)} changes at once, all in Segment after {burst_seconds:.1f} s, in {burst_runs} runs")


if __name__ == "__main__":
    main()
