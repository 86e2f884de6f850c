"""Run overhead: how long a flow's run takes against the work its steps do, launched as the UI launches it.

Starts the sandbox (Xero's limits lifted: the figure is about the run's own overhead, and time a step waits on a
vendor's limit counts as that step's work anyway) and a real `dagster-daemon` with the CLI's `dagster.yaml`, and
for each flow in running order submits its sync job through the instance's run coordinator (`dagster job launch`,
what the UI's Materialize does), waits for the run, and prints the run's wall time (from its submission to its
end), the sum of its steps' durations and their ratio. Then each flow once more, with nothing new to move.

    python benchmarks/run_overhead.py
"""

import os
import tempfile
from pathlib import Path

import dagster as dg

from sync_pipelines.cli import running_sandbox
from sync_pipelines.defs.flows import registered_flows
from sync_pipelines_tests.conftest import SandboxAdmin
from sync_pipelines_tests.webhooks.daemon import FINISHED, dagster_daemon, launch_job, wait_for

UNLIMITED = 1_000_000
RUN_SECONDS = 1800


def _timed(instance: dg.DagsterInstance, job: str, env: dict[str, str]) -> tuple[float, float, bool]:
    """Launch the job's run and wait for it: (wall seconds from submission to end, sum of step seconds, success)."""
    run_id = launch_job(job, env)

    def ended() -> dg.DagsterRun | None:
        run = instance.get_run_by_id(run_id)
        return run if run.status in FINISHED else None

    run = wait_for(ended, RUN_SECONDS, f"the {job} run")
    record = instance.get_run_record_by_id(run.run_id)
    steps = instance.get_run_step_stats(run.run_id)
    work = sum(step.end_time - step.start_time for step in steps if step.start_time and step.end_time)
    return record.end_time - record.create_timestamp.timestamp(), work, run.status == dg.DagsterRunStatus.SUCCESS


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
                dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
            ):
                print(f"{'flow':<22}{'pass':<8}{'run s':>9}{'steps s':>9}{'ratio':>7}  ok")
                for label in ("first", "again"):
                    for flow in registered_flows():
                        wall, work, ok = _timed(instance, flow.job_name, env)
                        print(f"{flow.name:<22}{label:<8}{wall:9.1f}{work:9.1f}{wall / work:7.2f}  {ok}", flush=True)


if __name__ == "__main__":
    main()
