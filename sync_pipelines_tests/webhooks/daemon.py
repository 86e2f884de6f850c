"""A real `dagster-daemon` over the code location, for the test and the benchmark that time webhooks end to end."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import requests

from sync_pipelines.cli import DAGSTER_YAML
from sync_pipelines.defs.schedules import xero_to_segment_schedule

WORKSPACE = Path(__file__).resolve().parents[2] / "workspace.yaml"
POLLING_SCHEDULE = xero_to_segment_schedule.name
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@contextmanager
def dagster_daemon(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """`dagster-daemon run` with the CLI's instance settings in env's DAGSTER_HOME; stopped, with its children."""
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    env = {**os.environ, **env}
    bin_dir = Path(sys.executable).parent
    # The 15-minute poll would take the Xero pool from webhook runs at each quarter hour: time webhooks alone.
    stop = [str(bin_dir / "dagster"), "schedule", "stop", POLLING_SCHEDULE, "-w", str(WORKSPACE)]
    subprocess.run(stop, env=env, cwd=home, check=True, capture_output=True)
    with log_path.open("wb") as log:
        # Its own session: the code server and the runs it launches stop with it.
        daemon = subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-w", str(WORKSPACE)],
            env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            yield daemon
        finally:
            _let_runs_finish(home, seconds=60)
            os.killpg(daemon.pid, signal.SIGTERM)  # the daemon, its code server and any run still going
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()


def _let_runs_finish(home: Path, seconds: float) -> None:
    """A run may still be finishing its last steps after its event arrived: stop the daemon after it, not during."""
    deadline = time.monotonic() + seconds
    with dg.DagsterInstance.from_config(str(home)) as instance:
        unfinished = dg.RunsFilter(statuses=[s for s in dg.DagsterRunStatus if s not in FINISHED])
        while instance.get_runs(unfinished, limit=1) and time.monotonic() < deadline:
            time.sleep(0.2)


def wait_for_message(sandbox_url: str, matches: Callable[[dict], bool], seconds: float) -> dict:
    """Poll the sandbox's Segment until a message matches, or fail at the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        messages = requests.get(f"{sandbox_url}/_admin/segment/messages", timeout=10).json()
        found = next((m for m in messages if matches(m)), None)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"no matching Segment message within {seconds} s")
        time.sleep(0.1)


def invoice_paid(invoice_id: str) -> Callable[[dict], bool]:
    return lambda m: m.get("event") == "Invoice Paid" and m["properties"].get("invoice_id") == invoice_id
