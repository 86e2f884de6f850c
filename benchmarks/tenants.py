"""Many connections at once: N connections synced together over `deploy/`, against N times one alone.

Starts the sandbox in its own process with N + 1 Xero organisations (each with Xero's own limits: 60 calls a minute,
5 in flight, 5,000 a day) and, for Salesforce -> Xero, N + 1 Salesforce orgs; a connection registry pairing them;
and `deploy/` on this machine: Postgres (pgserver) as the instance's storage and the Celery broker, the daemon, and
W Celery workers taking C runs each. Then:

1. one connection's first sync of the flow alone (the extra one), from its submission to its end;
2. the N others' first syncs submitted at once (as the fanned-out schedule requests them), to the last one's end.

Prints both, the ratio of (2) to N x (1), each organisation's Accounting API calls and 429s (from the sandbox), and
checks each connection got exactly its own records: for Xero -> Segment, it staged exactly its organisation's sales
invoices and Segment holds every message once; for Salesforce -> Xero, its organisation holds a contact for each of
its org's accounts and none for another org's.

    python benchmarks/tenants.py [--flow xero_to_segment|salesforce_to_xero] [--tenants 20] [--workers 2]
                                 [--concurrency 10] [--invoices 1000] [--accounts 20] [--xero-latency-ms 0]
"""

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import duckdb
import psutil
import requests
from dagster_graphql import DagsterGraphQLClient
from sandbox_process import connect, sandbox_process
from tabulate import tabulate

from sync_pipelines.lib.tenants import REGISTRY_ENV, TENANTS, Connection, Registry, save_registry, shard
from sync_pipelines.sandbox.salesforce.org import org_path
from sync_pipelines.sandbox.salesforce.seed import org_id
from sync_pipelines.vendors.xero import entities as xero
from sync_pipelines_tests.conftest import SandboxAdmin, xero_resource
from sync_pipelines_tests.defs.conftest import expected_flow_tracks, track_counts
from sync_pipelines_tests.test_deploy import (
    DEPLOY,
    INSTANCE_YAML,
    celery_worker,
    deployment_environment,
    postgres_server,
)
from sync_pipelines_tests.webhooks.daemon import FINISHED, dagster_daemon, dagster_webserver, wait_for

RUN_SECONDS = 3600


def _names(count: int) -> list[str]:
    return [f"client-{n:02d}" for n in range(count)]


def _busy() -> float:
    """CPU seconds this machine has spent working (every process: ours, the sandbox's, Postgres's) since boot."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + getattr(times, "irq", 0) + getattr(times, "softirq", 0)


# Who spends the machine's CPU, by a process's command line (the first part that matches).
PARTS = {
    "sandbox": "sync_pipelines.cli sandbox",
    "postgres": "postgres",
    "runs (celery workers)": "celery",
    "daemon": "dagster-daemon",
    "code servers": "api grpc",
    "webserver": "dagster-webserver",
}


def _cpu_by_part() -> Counter:
    """CPU seconds spent so far by the processes alive now, by part."""
    spent = Counter()
    for process in psutil.process_iter(["cmdline", "cpu_times"]):
        command, times = " ".join(process.info["cmdline"] or ()), process.info["cpu_times"]
        if times is None:
            continue
        part = next((name for name, marker in PARTS.items() if marker in command), "other")
        spent[part] += times.user + times.system + times.children_user + times.children_system
    return spent


def _synced(
    instance: dg.DagsterInstance, client: DagsterGraphQLClient, job: str, names: list[str]
) -> tuple[float, float]:
    """Submit a sync of each connection at once: seconds from the first submission to the last run's end, and the
    CPU seconds the machine spent meanwhile (printing them by part)."""
    started, busy, parts = time.time(), _busy(), _cpu_by_part()
    run_ids = [client.submit_job_execution(job, tags={"dagster/partition": name}) for name in names]

    def ended() -> list[dg.RunRecord] | None:
        records = [instance.get_run_record_by_id(run_id) for run_id in run_ids]
        return records if all(r.dagster_run.status in FINISHED for r in records) else None

    records = wait_for(ended, RUN_SECONDS, "the runs")
    failed = [r.dagster_run.run_id for r in records if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS]
    if failed:
        errors = [
            str(entry.dagster_event.event_specific_data.error)
            for entry in instance.all_logs(failed[0])
            if entry.dagster_event and entry.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE
        ]
        raise RuntimeError(f"runs failed: {failed}; the first's errors: {errors or 'none of its steps'}")
    spent = _cpu_by_part()
    spent.subtract(parts)
    print(f"CPU seconds of {len(names)} connection(s) by part: " + ", ".join(f"{k} {v:.0f}" for k, v in spent.items()))
    return max(r.end_time for r in records) - started, _busy() - busy


def _staged_invoices(database: str) -> set[str]:
    conn = duckdb.connect(database, read_only=True)
    try:
        return {value for (value,) in conn.execute(f'SELECT invoice_id FROM "{xero.INVOICES.table}"').fetchall()}
    finally:
        conn.close()


def _salesforce_orgs(url: str, count: int, work: Path, sizes: dict[str, int]) -> list[tuple[str, dict]]:
    """Each Salesforce org's OrganizationId and the settings a connection to it takes (its My Domain, the
    client-credentials grant, a token file of its own), after seeding it with `sizes`."""
    orgs = []
    for number in range(1, count + 1):
        path = org_path(number)
        requests.post(f"{url}/_admin/{path}/reset", json=sizes, timeout=120).raise_for_status()
        tokens = work / "tokens" / f"salesforce{number}"
        settings = {"login_url": f"{url}/{path}", "grant": "client_credentials", "token_path": str(tokens)}
        orgs.append((org_id(number), settings))
    return orgs


def _own_contacts(admin: SandboxAdmin, url: str, tenant: str, org: int, orgs: int) -> bool:
    """Whether the organisation holds a contact for each live account of its org and none for another org's."""
    accounts = {}
    for number in range(1, orgs + 1):
        listed = requests.get(f"{url}/_admin/{org_path(number)}/records/Account", timeout=60).json()
        accounts[number] = {a["Id"] for a in listed if not a["IsDeleted"]}
    numbers = {c.get("ContactNumber") for c in admin.call("GET", "/xero/contacts", tenant=tenant)}
    others = set().union(*(ids for number, ids in accounts.items() if number != org))
    return bool(accounts[org]) and accounts[org] <= numbers and not others & numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flow", choices=["xero_to_segment", "salesforce_to_xero"], default="xero_to_segment")
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=10, help="runs each worker takes at once")
    parser.add_argument("--invoices", type=int, default=1000, help="invoices per organisation")
    parser.add_argument("--accounts", type=int, default=20, help="accounts per Salesforce org (salesforce_to_xero)")
    parser.add_argument(
        "--xero-latency-ms",
        type=int,
        default=0,
        help="how long Xero takes to answer a call (real: ~1 s a page)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tenants_bench_") as scratch, postgres_server() as postgres:
        work = Path(scratch)
        crm = args.flow == "salesforce_to_xero"
        options = ["--xero-organisations", str(args.tenants + 1), "--invoices", str(args.invoices)]
        options += ["--salesforce-orgs", str(args.tenants + 1)] if crm else []
        with sandbox_process(work / "sandbox", *options, ready_seconds=1800) as url:
            connect(url, work / "data")
            admin = SandboxAdmin(url)
            tenants = list(xero_resource(dict(os.environ)).get_client().connections())
            names = _names(len(tenants))
            sizes = {"accounts": args.accounts, "contacts_per_account": 1, "leads": 0, "opportunities": args.accounts}
            orgs = _salesforce_orgs(url, len(tenants), work, sizes) if crm else [None] * len(tenants)
            registry = Registry(
                connections=tuple(
                    Connection(name=n, ids={"xero": t})
                    if org is None
                    else Connection(name=n, ids={"xero": t, "salesforce": org[0]}, settings={"salesforce": org[1]})
                    for n, t, org in zip(names, tenants, orgs, strict=True)
                )
            )
            save_registry(work / "connections.yaml", registry)
            home = work / "dagster_home"
            home.mkdir()
            (home / "dagster.yaml").write_text(INSTANCE_YAML)
            env = {**os.environ, **deployment_environment(postgres, home), REGISTRY_ENV: str(work / "connections.yaml")}
            os.environ.update(env)
            sys.path.insert(0, str(DEPLOY))  # this process reads the instance too, whose storage is deploy/'s
            workers = [
                celery_worker("dagster", env, work / f"worker{n}.log", concurrency=args.concurrency)
                for n in range(args.workers)
            ]
            with (
                dagster_daemon(env, work / "daemon.log", instance_yaml=INSTANCE_YAML),
                dagster_webserver(env, work / "webserver.log") as ui,
                dg.DagsterInstance.from_config(str(home)) as instance,
            ):
                for worker in workers:
                    worker.__enter__()
                try:
                    instance.add_dynamic_partitions(TENANTS.name, names)
                    address = urlparse(ui)
                    client = DagsterGraphQLClient(address.hostname, port_number=address.port)
                    admin.faults(xero={"latency_ms": args.xero_latency_ms})
                    admin.reset_stats()
                    job = f"{args.flow}_sync"
                    alone, alone_cpu = _synced(instance, client, job, names[-1:])
                    together, together_cpu = _synced(instance, client, job, names[:-1])
                finally:
                    for worker in reversed(workers):
                        worker.__exit__(None, None, None)

            stats = admin.stats()["xero_tenants"]
            rows, expected = [], Counter()
            for number, (name, tenant) in enumerate(zip(names, tenants, strict=True), start=1):
                if crm:
                    own = _own_contacts(admin, url, tenant, number, len(tenants))
                else:
                    listed = admin.call("GET", "/xero/invoices", tenant=tenant)
                    sales = {i["InvoiceID"] for i in listed if i["Type"] == "ACCREC"}
                    own = _staged_invoices(shard(env["SYNC_PIPELINES_DUCKDB"], name)) == sales
                    expected += expected_flow_tracks(admin, tenant)
                calls = stats.get(tenant, {})
                rows.append((name, calls.get("calls", 0), calls.get("429", 0), "yes" if own else "NO"))
            once = crm or track_counts(admin, prefix="") == expected

    print(tabulate(rows, headers=["connection", "Xero calls", "429s", "got its own"], tablefmt="github"))
    n = args.tenants
    source = f"{args.accounts} accounts a Salesforce org" if crm else f"{args.invoices} invoices an organisation"
    print(f"\n{args.flow}: {source}, Xero answering in {args.xero_latency_ms} ms")
    print(f"one connection alone: {alone:.1f} s; {n} at once ({args.workers} workers x {args.concurrency}): "
          f"{together:.1f} s = {together / (n * alone):.3f} of {n} x one alone")  # fmt: skip
    cores = psutil.cpu_count()
    print(f"cores busy ({cores}): {alone_cpu / alone:.2f} alone, {together_cpu / together:.2f} at once; "
          f"CPU seconds a connection: {alone_cpu:.0f} alone, {together_cpu / n:.0f} at once. Bound by the cores, "
          f"{n} at once take at least {together_cpu / cores:.0f} s = {together_cpu / cores / (n * alone):.3f} "
          f"of {n} x one alone")  # fmt: skip
    print(
        f"Segment holds every message of every organisation once: {'n/a' if crm else once}; "
        f"429s: {sum(r[2] for r in rows)}; every connection got its own: {all(r[3] == 'yes' for r in rows)}"
    )


if __name__ == "__main__":
    main()
