"""The warm run launcher under a real `dagster-daemon`, over a code location of the test's own (a job whose one op
says which process ran it and holds while a file exists), so the code can be changed and a run's process killed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psutil
import pytest
from dagster._core.launcher import WorkerStatus

from sync_pipelines.run_launcher import RUN_WORKER_TAG, WarmRunLauncher
from sync_pipelines_tests.webhooks.daemon import FINISHED, HANG_GUARD_SECONDS, dagster_daemon, launch_job, wait_for

CODE = """
import json
import os
import time
from pathlib import Path

import dagster as dg

HERE = Path(__file__).parent
with (HERE / "loads.log").open("a") as log:  # every process that loads this code
    log.write(f"{{os.getpid()}}\\n")


@dg.op
def report(context):
    record = {{"pid": os.getpid(), "parent": os.getppid(), "version": {version}}}
    written = HERE / f"{{context.run_id}}.part"
    written.write_text(json.dumps(record))
    written.rename(HERE / f"{{context.run_id}}.json")  # whole, or not there yet, for the test that waits for it
    while (HERE / "hold").exists():
        time.sleep(0.05)


@dg.job(executor_def=dg.in_process_executor)  # the op runs in the run's own process
def probe():
    report()


defs = dg.Definitions(jobs=[probe])
"""


@pytest.fixture
def location(tmp_path) -> Path:
    """The code location's folder, with its module and a workspace.yaml that loads it."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "warm_probe.py").write_text(CODE.format(version=1))
    (tmp_path / "workspace.yaml").write_text(
        f"load_from:\n  - python_module:\n      module_name: warm_probe\n      working_directory: {code}\n"
    )
    return code


@pytest.fixture
def daemon(location, tmp_path):
    """The instance under a running daemon (the CLI's dagster.yaml: the warm launcher)."""
    env = {"DAGSTER_HOME": str(tmp_path / "home")}
    with (
        dagster_daemon(env, tmp_path / "daemon.log", workspace=tmp_path / "workspace.yaml"),
        dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
    ):
        yield instance


def _launch(instance: dg.DagsterInstance, location: Path) -> str:
    """Submit a run of the probe to the run queue, as the UI's Launch does; its id."""
    return launch_job("probe", {"DAGSTER_HOME": instance.root_directory}, workspace=location.parent / "workspace.yaml")


def _ended(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    return wait_for(
        lambda: run if (run := instance.get_run_by_id(run_id)).status in FINISHED else None,
        HANG_GUARD_SECONDS,
        f"run {run_id} to end",
    )


def _report(location: Path, run_id: str) -> dict:
    """What the run's op said of the process it ran in, once it has."""
    path = location / f"{run_id}.json"
    return wait_for(lambda: json.loads(path.read_text()) if path.exists() else None, HANG_GUARD_SECONDS, "the op")


def _loaders(location: Path) -> set[int]:
    return {int(line) for line in (location / "loads.log").read_text().split()}


def test_runs_are_forked_from_one_process_that_loaded_the_code_and_a_code_change_is_loaded_anew(daemon, location):
    first, second = _launch(daemon, location), _launch(daemon, location)
    reports = [_report(location, run_id) for run_id in (first, second)]
    assert [_ended(daemon, run_id).status for run_id in (first, second)] == [dg.DagsterRunStatus.SUCCESS] * 2

    # Each run had a process of its own, a child of one process that had loaded the code; neither loaded it itself.
    assert reports[0]["pid"] != reports[1]["pid"]
    assert reports[0]["parent"] == reports[1]["parent"]
    assert reports[0]["parent"] in _loaders(location)
    assert not {report["pid"] for report in reports} & _loaders(location)
    for run_id, report in zip((first, second), reports, strict=True):
        assert daemon.get_run_by_id(run_id).tags[RUN_WORKER_TAG].startswith(f"{report['pid']}@")

    (location / "warm_probe.py").write_text(CODE.format(version=2))
    changed = _launch(daemon, location)
    report = _report(location, changed)
    assert _ended(daemon, changed).status == dg.DagsterRunStatus.SUCCESS
    assert report["version"] == 2
    assert report["parent"] != reports[0]["parent"]


def test_a_killed_run_process_fails_its_run_and_a_terminated_run_is_canceled(daemon, location):
    (location / "hold").touch()
    killed = _launch(daemon, location)
    psutil.Process(_report(location, killed)["pid"]).kill()
    run = _ended(daemon, killed)
    assert run.status == dg.DagsterRunStatus.FAILURE
    messages = [record.dagster_event.message or "" for record in daemon.all_logs(killed) if record.dagster_event]
    assert any("was terminated by signal 9" in message for message in messages)

    canceled = _launch(daemon, location)
    worker = psutil.Process(_report(location, canceled)["pid"])
    assert daemon.run_launcher.terminate(canceled)  # what the UI's Terminate asks of the instance's launcher
    assert _ended(daemon, canceled).status == dg.DagsterRunStatus.CANCELED
    worker.wait(HANG_GUARD_SECONDS)

    (location / "hold").unlink()
    assert _ended(daemon, _launch(daemon, location)).status == dg.DagsterRunStatus.SUCCESS


def test_run_monitoring_sees_a_run_process_alive_while_it_is_and_gone_once_it_is_not():
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    worker = psutil.Process(process.pid)
    run = dg.DagsterRun(job_name="probe", tags={RUN_WORKER_TAG: f"{process.pid}@{worker.create_time()}"})
    launcher = WarmRunLauncher()
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    process.stdin.close()
    process.wait()
    assert launcher.check_run_worker_health(run).status == WorkerStatus.FAILED
    reused = dg.DagsterRun(job_name="probe", tags={RUN_WORKER_TAG: f"{os.getpid()}@1.0"})  # a pid now someone else's
    assert launcher.check_run_worker_health(reused).status == WorkerStatus.FAILED
