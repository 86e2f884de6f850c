"""Run overhead: how long a flow's run takes against the work its steps do, launched as the UI launches it.

Starts the sandbox (Xero's limits lifted: the figure is about the run's own overhead, and time a step waits on a
vendor's limit counts as that step's work anyway), a real `dagster-daemon` and `dagster-webserver` with the CLI's
`dagster.yaml`, and for each flow in running order launches its sync job through the webserver's GraphQL API (the
request the UI's Materialize sends; the run goes through the instance's run queue and launcher), waits for the run,
and prints the sum of its steps' durations, the run's time as the UI shows it (from its start to its end) and from
the click (its submission), each as a ratio to the steps' work, and where the time before the first step went.
Then each flow once more, with nothing new to move.

    python benchmarks/run_overhead.py
"""

import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
from dagster_graphql import DagsterGraphQLClient

from sync_pipelines.cli import running_sandbox
from sync_pipelines.defs.flows import registered_flows
from sync_pipelines_tests.conftest import SandboxAdmin
from sync_pipelines_tests.webhooks.daemon import FINISHED, dagster_daemon, dagster_webserver, wait_for

UNLIMITED = 1_000_000
RUN_SECONDS = 1800
MILESTONES = ("RUN_DEQUEUED", "RUN_STARTING", "RUN_START", "STEP_START")


def _milestones(instance: dg.DagsterInstance, run_id: str, submitted: float) -> str:
    """Seconds from submission to the first of each milestone in the run's event log."""
    first: dict[str, float] = {}
    for record in instance.all_logs(run_id):
        if record.dagster_event:
            first.setdefault(record.dagster_event.event_type.name, record.timestamp)
    return " ".join(f"{mark.lower()} {first[mark] - submitted:.1f}" for mark in MILESTONES if mark in first)


def _timed(instance: dg.DagsterInstance, client: DagsterGraphQLClient, job: str) -> tuple[float, float, float, str]:
    """Launch the job's run as the UI does and wait for it: (steps' work, seconds from its start to its end,
    seconds from its submission to its end, milestones); raises unless it succeeded."""
    run_id = client.submit_job_execution(job)

    def ended() -> dg.DagsterRun | None:
        run = instance.get_run_by_id(run_id)
        return run if run.status in FINISHED else None

    run = wait_for(ended, RUN_SECONDS, f"the {job} run")
    assert run.status == dg.DagsterRunStatus.SUCCESS, f"the {job} run ended {run.status}"
    record = instance.get_run_record_by_id(run_id)
    steps = instance.get_run_step_stats(run_id)
    work = sum(step.end_time - step.start_time for step in steps if step.start_time and step.end_time)
    submitted = record.create_timestamp.timestamp()
    return (
        work,
        record.end_time - record.start_time,
        record.end_time - submitted,
        _milestones(instance, run_id, submitted),
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        os.environ["XERO_CALLS_PER_MINUTE"] = str(UNLIMITED)
        with running_sandbox(data, port=0) as env:
            SandboxAdmin(env["XERO_API_URL"].removesuffix("/xero/api")).limits(
                minute_limit=UNLIMITED, day_limit=UNLIMITED, app_minute_limit=UNLIMITED
            )
            env = {**env, "XERO_CALLS_PER_MINUTE": str(UNLIMITED)}
            with (
                dagster_daemon(env, Path(scratch) / "daemon.log"),
                dagster_webserver(env, Path(scratch) / "webserver.log") as url,
                dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
            ):
                address = urlparse(url)
                client = DagsterGraphQLClient(address.hostname, port_number=address.port)
                print(f"{'flow':<20}{'pass':<7}{'steps s':>8}{'run s':>7}{'ratio':>7}{'click s':>9}{'ratio':>7}"
                      "  seconds from the click to")  # fmt: skip
                for label in ("first", "again"):
                    for flow in registered_flows():
                        work, run, click, milestones = _timed(instance, client, flow.job_name)
                        print(f"{flow.name:<20}{label:<7}{work:8.1f}{run:7.1f}{run / work:7.2f}{click:9.1f}"
                              f"{click / work:7.2f}  {milestones}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
