"""A real `dagster-daemon` over the code location: for the tests that show a webhook's change arriving end to end,
and for the benchmark (benchmarks/webhook_latency.py) that times it; with what those tests and the benchmark make
and look for: a paid invoice's Segment message, a Segment person's order and its Xero invoice."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from unittest.mock import patch

import dagster as dg
import requests
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

from sync_pipelines.cli import DAGSTER_YAML
from sync_pipelines_tests.conftest import ITEM

WORKSPACE = Path(__file__).resolve().parents[2] / "workspace.yaml"


# How long a test waits for something the daemon does before failing. Only a bound that keeps a broken run from
# hanging CI: ample on a loaded machine, never a claim about speed (benchmarks/webhook_latency.py measures that).
HANG_GUARD_SECONDS = 300
T = TypeVar("T")
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@contextmanager
def dagster_daemon(
    env: dict[str, str], log_path: Path, workspace: Path = WORKSPACE, instance_yaml: str = DAGSTER_YAML
) -> Iterator[subprocess.Popen]:
    """`dagster-daemon run` over `workspace` (the project's, its schedules stopped) with the instance settings given
    (by default the CLI's) in env's DAGSTER_HOME; stopped, with its children."""
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(instance_yaml)
    env = {**os.environ, **env}
    bin_dir = Path(sys.executable).parent
    with dg.DagsterInstance.from_config(str(home)):
        pass  # the instance's storage is made once here, not raced by the processes below
    if workspace == WORKSPACE:
        _stop_schedules(home, env)
    with log_path.open("wb") as log:
        # Its own session: its code server, its warm run process and the runs stop with it.
        daemon = subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
            env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            yield daemon
        finally:
            try:
                _let_runs_finish(home, seconds=60)
            finally:
                stop_group(daemon)


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process started in a session of its own, and its group: a daemon's code server, warm run process and
    any run still going; a worker's runs."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def dagster_webserver(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`dagster-webserver` on a free 127.0.0.1 port over env's DAGSTER_HOME (a daemon's): its base URL, once it
    answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "dagster-webserver"), "-w", str(WORKSPACE), "-h", "127.0.0.1",
               "-p", str(port)]  # fmt: skip
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, env={**os.environ, **env}, cwd=env["DAGSTER_HOME"], stdout=log,
                                  stderr=subprocess.STDOUT)  # fmt: skip
        try:
            wait_for(lambda: _answers(f"{url}/server_info") or None, HANG_GUARD_SECONDS, "the Dagster webserver")
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).ok
    except requests.ConnectionError:
        return False


def launch_job(job: str, env: dict[str, str], workspace: Path = WORKSPACE, tags: dict[str, str] | None = None) -> str:
    """Submit a run of `job` to the instance's run queue, as the UI's Launch (or a schedule's tick) does; its id."""
    home = env["DAGSTER_HOME"]
    with dg.DagsterInstance.from_config(home) as instance:
        before = {run.run_id for run in instance.get_runs(dg.RunsFilter(job_name=job))}
    dagster = Path(sys.executable).parent / "dagster"
    tagged = ["--tags", json.dumps(tags)] if tags else []
    subprocess.run(
        [str(dagster), "job", "launch", "-j", job, "-w", str(workspace), *tagged],
        env={**os.environ, **env}, cwd=home, check=True, capture_output=True,
    )  # fmt: skip
    with dg.DagsterInstance.from_config(home) as instance:
        return next(run.run_id for run in instance.get_runs(dg.RunsFilter(job_name=job)) if run.run_id not in before)


def _stop_schedules(home: Path, env: dict[str, str]) -> None:
    """Stop every schedule, so whatever arrives came by the webhook path alone: the 15-minute polls would otherwise
    sync the same change at a quarter hour (and take the vendors' pools and DuckDB from webhook runs), and the daily
    enrichment would add a run at 06:00 UTC. The code location is loaded once, as the daemon loads it (`dagster
    schedule stop` would load it once per schedule, each time in two processes)."""
    with (
        patch.dict(os.environ, env),
        dg.DagsterInstance.from_config(str(home)) as instance,
        WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(WORKSPACE)])) as workspace,
    ):
        for location in workspace.create_request_context().code_locations:
            for repository in location.get_repositories().values():
                for schedule in repository.get_schedules():
                    instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)


def _let_runs_finish(home: Path, seconds: float) -> None:
    """A run may still be finishing its last steps after its event arrived: stop the daemon after it, not during."""
    deadline = time.monotonic() + seconds
    with dg.DagsterInstance.from_config(str(home)) as instance:
        unfinished = dg.RunsFilter(statuses=[s for s in dg.DagsterRunStatus if s not in FINISHED])
        while instance.get_runs(unfinished, limit=1) and time.monotonic() < deadline:
            time.sleep(0.2)


def wait_for(found: Callable[[], T | None], seconds: float, what: str) -> T:
    """Poll until `found` returns something, or fail at the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        result = found()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {seconds} s")
        time.sleep(0.1)


# How long one look at the sandbox's admin API may take: a hang guard. 10 s ran out once on a loaded CI machine.
ADMIN_READ_SECONDS = 60


def wait_for_message(sandbox_url: str, matches: Callable[[dict], bool], seconds: float = HANG_GUARD_SECONDS) -> dict:
    """Poll the sandbox's Segment until a message matches, or fail at the deadline."""

    def match() -> dict | None:
        messages = requests.get(f"{sandbox_url}/_admin/segment/messages", timeout=ADMIN_READ_SECONDS).json()
        return next((m for m in messages if matches(m)), None)

    return wait_for(match, seconds, "a matching Segment message")


def invoice_paid(invoice_id: str) -> Callable[[dict], bool]:
    return lambda m: m.get("event") == "Invoice Paid" and m["properties"].get("invoice_id") == invoice_id


def person_and_order(user_id: str, order_id: str) -> tuple[dict, dict]:
    """A new person's identify call and their Order Completed of one ITEM, as a site sends them."""
    person = {
        "type": "identify", "userId": user_id, "timestamp": "2026-03-01T09:00:00Z",
        "traits": {"email": f"{user_id}@example.test", "name": f"Person {user_id}"},
    }  # fmt: skip
    products = [{"sku": ITEM["Code"], "name": ITEM["Name"], "quantity": 1, "price": 12.5}]
    order = {
        "type": "track", "userId": user_id, "event": "Order Completed", "timestamp": "2026-03-01T10:00:00Z",
        "properties": {"order_id": order_id, "currency": "USD", "products": products, "total": 12.5},
    }  # fmt: skip
    return person, order


def invoices_referencing(sandbox_url: str, reference: str) -> list[dict]:
    """The sandbox's Xero sales invoices with this Reference (a Segment order's order_id, a won deal's Id)."""
    invoices = requests.get(f"{sandbox_url}/_admin/xero/invoices", timeout=ADMIN_READ_SECONDS).json()
    return [i for i in invoices if i["Type"] == "ACCREC" and i.get("Reference") == reference]


def wait_for_invoice(sandbox_url: str, reference: str, seconds: float = HANG_GUARD_SECONDS) -> dict:
    """Poll the sandbox's Xero until the invoice with this Reference is there, or fail at the deadline."""
    return wait_for(
        lambda: next(iter(invoices_referencing(sandbox_url, reference)), None), seconds, f"{reference}'s invoice"
    )
