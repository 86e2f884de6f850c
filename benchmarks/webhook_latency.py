"""Webhook latency: from a change in one system to its sync in another, through receiver, inbox, sensor and a
daemon run.

Starts the sandbox, the webhook receiver and a real `dagster-daemon` (what `sync-pipelines dev` runs, without the
UI), with every schedule stopped, for one flow:

- xero_to_segment (the default): syncs everything once, warms up with one change, then pays invoices one at a time
  and times each from the payment until its "Invoice Paid" reaches the sandbox's Segment. Then pays a burst of
  invoices at once. With --during-sweep, each invoice is paid while a run of the flow's sync job (submitted as
  its schedule would) is running: real time must not wait behind the sweep. A change starts every --spacing
  seconds (15 by default: a sweep and a webhook run make about 12 Xero calls, so sweeps one after another stay
  within Xero's 60 calls a minute, as 15-minute schedules do by far; closer, every run waits for the minute).
- segment_to_xero: lands the flow's Xero side once, stocks a Xero item, points the sandbox's Segment Webhooks
  destination at the receiver and warms up with one identify; then, one at a time, a new person is identified and
  completes an order of that item from the "web" source, timed from the emit until the order's invoice is in the
  sandbox's Xero. Then a burst of such orders, emitted at once.
- salesforce_to_xero: syncs the flow once (its accounts become Xero contacts), points the org's Outbound Messages at
  the receiver and warms up with one won deal; then, one at a time, a user moves an open deal to Closed Won, timed
  from the save until the deal's invoice is in the sandbox's Xero. Then a burst of deals won at once.

Either way prints the latencies' p50 and p95 (nearest rank), then how long the burst's last change took and how
many runs of the flow's webhook job carried the burst (runs coalesce).

    python benchmarks/webhook_latency.py [--flow {xero_to_segment,segment_to_xero,salesforce_to_xero}]
                                         [--changes 10] [--burst 10]
                                         [--during-sweep [--spacing 15]]
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
from sync_pipelines.defs import salesforce_to_xero, segment_to_xero
from sync_pipelines.lib.entities import BACKFILLS
from sync_pipelines.lib.flows import synced
from sync_pipelines.vendors.xero import settings as xero_settings
from sync_pipelines.webhooks.receiver import WebhookReceiver
from sync_pipelines_tests.conftest import stock_item
from sync_pipelines_tests.webhooks.daemon import (
    FINISHED,
    dagster_daemon,
    invoice_paid,
    launch_job,
    person_and_order,
    wait_for,
    wait_for_invoice,
    wait_for_message,
)

WARM_UP_SECONDS = 180  # the daemon's first load of the code location and its first run
CHANGE_SECONDS = 60


def _percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _print_latencies(latencies: list[float]) -> None:
    print("latencies (s): " + " ".join(f"{seconds:.1f}" for seconds in latencies))
    print(f"latency p50: {_percentile(latencies, 0.5):.1f} s")
    print(f"latency p95: {_percentile(latencies, 0.95):.1f} s")


def _pay(sandbox_url: str, invoice_id: str) -> None:
    requests.post(f"{sandbox_url}/_admin/xero/invoices/{invoice_id}/pay", json={}, timeout=30).raise_for_status()


def _emit(sandbox_url: str, *messages: dict) -> None:
    """Messages from the sandbox's "web" source: its Webhooks destination then delivers them, one per POST."""
    body = {"source": "web", "messages": list(messages)}
    requests.post(f"{sandbox_url}/_admin/segment/emit", json=body, timeout=30).raise_for_status()


def _contact(sandbox_url: str, user_id: str) -> dict | None:
    """The Xero contact of a Segment person (its ContactNumber is the userId), if there is one yet."""
    contacts = requests.get(f"{sandbox_url}/_admin/xero/contacts", timeout=10).json()
    return next((c for c in contacts if c.get("ContactNumber") == user_id), None)


def _sweep_running(env: dict[str, str]) -> str:
    """A sweep of Xero -> Segment submitted as its schedule would, once its run has started; its id."""
    run_id = launch_job("xero_to_segment_sync", env)
    started = {dg.DagsterRunStatus.STARTED, *FINISHED}
    wait_for(lambda: dg.DagsterInstance.get().get_run_by_id(run_id).status in started or None, 120, "the sweep")
    return run_id


def _xero_to_segment(args: argparse.Namespace, tmp: str, env: dict[str, str]) -> None:
    sandbox_url = env["XERO_API_URL"].removesuffix("/xero/api")
    definitions = defs()
    synced_all = (dg.AssetSelection.all() - BACKFILLS).resolve(definitions.resolve_asset_graph())
    baseline = definitions.resolve_implicit_global_asset_job_def()
    assert baseline.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), run_config=QUIET_LOGS, asset_selection=list(synced_all)
    ).success
    # The baseline's writes (every flow's) spent Xero's minute: the measured changes start with a fresh window.
    time.sleep(xero_settings.RATE_WINDOW_SECONDS)
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
        latencies, overlapped = [], 0
        for invoice_id in payable[1 : args.changes + 1]:
            began = time.monotonic()
            sweep = _sweep_running(env) if args.during_sweep else None
            started = time.monotonic()
            _pay(sandbox_url, invoice_id)
            wait_for_message(sandbox_url, invoice_paid(invoice_id), CHANGE_SECONDS)
            latencies.append(time.monotonic() - started)
            print(f"change {len(latencies)}: {latencies[-1]:.1f} s", flush=True)
            if sweep is not None:
                overlapped += dg.DagsterInstance.get().get_run_by_id(sweep).status not in FINISHED
                time.sleep(max(0.0, began + args.spacing - time.monotonic()))
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
    if args.during_sweep:
        print(f"each paid while a scheduled xero_to_segment sweep ran; {overlapped} arrived before their sweep ended")
    _print_latencies(latencies)
    print(f"burst: {len(burst)} changes at once, all in Segment after {burst_seconds:.1f} s, in {burst_runs} runs")


def _segment_to_xero(args: argparse.Namespace, tmp: str, env: dict[str, str]) -> None:
    sandbox_url = env["XERO_API_URL"].removesuffix("/xero/api")
    # The flow's deliveries read Xero's landed contacts and invoices, which a webhook run does not extract.
    flow = synced(segment_to_xero.NAME).resolve(defs().resolve_asset_graph())
    baseline = defs().resolve_implicit_global_asset_job_def()
    assert baseline.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), run_config=QUIET_LOGS, asset_selection=list(flow)
    ).success
    stock_item(env, args.changes + args.burst)  # one of the item per order
    job = "segment_webhook_sync"
    secret = env["SEGMENT_WEBHOOK_SECRET"]
    with (
        WebhookReceiver(env["SYNC_PIPELINES_WEBHOOK_INBOX"], {"segment": secret}) as receiver,
        dagster_daemon(env, Path(tmp) / "daemon.log"),
    ):
        destination = {"url": receiver.url_for("segment"), "secret": secret}
        requests.put(f"{sandbox_url}/_admin/segment/destination", json=destination, timeout=10).raise_for_status()
        warm_up, _ = person_and_order("bench-warm-up", "ord-bench-warm-up")
        _emit(sandbox_url, warm_up)
        wait_for(lambda: _contact(sandbox_url, "bench-warm-up"), WARM_UP_SECONDS, "the warm-up person's contact")
        latencies = []
        for n in range(args.changes):
            person, order = person_and_order(f"bench-{n}", f"ord-bench-{n}")
            started = time.monotonic()
            _emit(sandbox_url, person, order)
            wait_for_invoice(sandbox_url, f"ord-bench-{n}", CHANGE_SECONDS)
            latencies.append(time.monotonic() - started)
        runs_before = len(dg.DagsterInstance.get().get_runs(dg.RunsFilter(job_name=job)))
        burst = [person_and_order(f"bench-burst-{n}", f"ord-bench-burst-{n}") for n in range(args.burst)]
        started = time.monotonic()
        _emit(sandbox_url, *(message for person_order in burst for message in person_order))
        for _, order in burst:
            wait_for_invoice(sandbox_url, order["properties"]["order_id"], CHANGE_SECONDS)
        burst_seconds = time.monotonic() - started
        burst_runs = len(dg.DagsterInstance.get().get_runs(dg.RunsFilter(job_name=job))) - runs_before
    runs = Counter(run.job_name for run in dg.DagsterInstance.get().get_runs())

    print(f"changes: {len(latencies)} orders after one warm-up identify; runs by job: {dict(runs)}")
    _print_latencies(latencies)
    print(
        f"burst: {len(burst)} orders emitted at once, all invoiced in Xero after {burst_seconds:.1f} s, "
        f"in {burst_runs} {job} runs"
    )


def _win(sandbox_url: str, deal_id: str) -> None:
    """A user moves the deal to Closed Won in the org: its Outbound Message goes to the receiver."""
    url = f"{sandbox_url}/_admin/salesforce/records/Opportunity/{deal_id}"
    requests.post(url, json={"StageName": "Closed Won"}, timeout=30).raise_for_status()


def _salesforce_to_xero(args: argparse.Namespace, tmp: str, env: dict[str, str]) -> None:
    sandbox_url = env["XERO_API_URL"].removesuffix("/xero/api")
    admin = f"{sandbox_url}/_admin"
    requests.post(f"{admin}/reset", json={"invoices": 0, "contacts": 0}, timeout=60).raise_for_status()
    sizes = {
        "accounts": 30,
        "contacts_per_account": 0,
        "leads": 0,
        "opportunities": 4 * (1 + args.changes + args.burst),
    }
    requests.post(f"{admin}/salesforce/reset", json=sizes, timeout=60).raise_for_status()
    flow = synced(salesforce_to_xero.NAME).resolve(defs().resolve_asset_graph())
    baseline = defs().resolve_implicit_global_asset_job_def()
    assert baseline.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), run_config=QUIET_LOGS, asset_selection=list(flow)
    ).success
    time.sleep(xero_settings.RATE_WINDOW_SECONDS)  # as in _xero_to_segment: a fresh minute for the measured changes
    deals = requests.get(f"{admin}/salesforce/records/Opportunity", params={"deleted": "false"}, timeout=30).json()
    open_deals = [d["Id"] for d in deals if not d["IsClosed"] and d["AccountId"]]
    if len(open_deals) < 1 + args.changes + args.burst:
        raise SystemExit(f"only {len(open_deals)} open deals with an account in the sandbox")
    job = "salesforce_webhook_sync"
    with (
        WebhookReceiver(env["SYNC_PIPELINES_WEBHOOK_INBOX"], {"salesforce": env["SALESFORCE_ORGANIZATION_ID"]}) as rx,
        dagster_daemon(env, Path(tmp) / "daemon.log"),
    ):
        requests.put(
            f"{admin}/salesforce/outbound", json={"url": rx.url_for("salesforce")}, timeout=10
        ).raise_for_status()
        _win(sandbox_url, open_deals[0])
        wait_for_invoice(sandbox_url, open_deals[0], WARM_UP_SECONDS)
        latencies = []
        for deal_id in open_deals[1 : args.changes + 1]:
            started = time.monotonic()
            _win(sandbox_url, deal_id)
            wait_for_invoice(sandbox_url, deal_id, CHANGE_SECONDS)
            latencies.append(time.monotonic() - started)
            print(f"change {len(latencies)}: {latencies[-1]:.1f} s", flush=True)
        runs_before = len(dg.DagsterInstance.get().get_runs(dg.RunsFilter(job_name=job)))
        burst = open_deals[1 + args.changes : 1 + args.changes + args.burst]
        started = time.monotonic()
        for deal_id in burst:
            _win(sandbox_url, deal_id)
        for deal_id in burst:
            wait_for_invoice(sandbox_url, deal_id, CHANGE_SECONDS)
        burst_seconds = time.monotonic() - started
        burst_runs = len(dg.DagsterInstance.get().get_runs(dg.RunsFilter(job_name=job))) - runs_before
    runs = Counter(run.job_name for run in dg.DagsterInstance.get().get_runs())

    print(f"changes: {len(latencies)} deals won after one warm-up; runs by job: {dict(runs)}")
    _print_latencies(latencies)
    print(f"burst: {len(burst)} deals won at once, all invoiced in Xero after {burst_seconds:.1f} s, ", end="")
    print(f"in {burst_runs} {job} runs")


FLOWS = {
    "xero_to_segment": _xero_to_segment,
    "segment_to_xero": _segment_to_xero,
    "salesforce_to_xero": _salesforce_to_xero,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flow", choices=list(FLOWS), default="xero_to_segment")
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument(
        "--during-sweep", action="store_true", help="pay each invoice while a scheduled sweep of the flow is running"
    )
    parser.add_argument("--spacing", type=float, default=15.0, help="seconds from one change to the next, in a sweep")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, running_sandbox(Path(tmp) / "data", port=0) as env:
        FLOWS[args.flow](args, tmp, env)


if __name__ == "__main__":
    main()
