"""deploy/ on one machine: the instance in a real Postgres (pgserver), runs launched by the daemon onto two Celery
workers, each a process of its own, the vendors' pools held by Postgres across them, and a killed worker's run
failed with its slot freed (deploy/celery_workers.py)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import dagster as dg
import pgserver
import pytest

from sync_pipelines.lib.tenants import REGISTRY_ENV, TENANTS, Connection, Registry, save_registry
from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines_tests.conftest import code_location
from sync_pipelines_tests.defs.conftest import expected_flow_tracks, track_counts
from sync_pipelines_tests.webhooks.daemon import (
    FINISHED,
    HANG_GUARD_SECONDS,
    dagster_daemon,
    launch_job,
    stop_group,
    wait_for,
)

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
INSTANCE_YAML = (DEPLOY / "dagster.yaml").read_text()
NAMES = ("north", "south")
QUEUE_TAG = "dagster-celery/queue"  # dagster_celery.tags: the queue a run's task is sent to
TASK_TAG = "dagster-celery/task_id"


@pytest.fixture
def sandbox(tmp_path) -> Iterator[SandboxServer]:
    """An app connected to two Xero organisations: one connection each where a test has a registry."""
    with SandboxServer(SandboxSettings(state_path=tmp_path / "sandbox.db", xero_organisations=2)) as server:
        yield server


@contextmanager
def postgres_server() -> Iterator[Path]:
    """A real Postgres listening on a Unix socket only (no TCP port): the folder holding its socket."""
    folder = Path(tempfile.mkdtemp(prefix="pg"))  # a socket's path must stay under 108 bytes
    server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield folder
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[Path]:
    with postgres_server() as folder:
        yield folder


def deployment_environment(postgres: Path, home: Path) -> dict[str, str]:
    """What deploy/ reads from the environment, pointed at this Postgres: the instance's storage, the Celery broker
    (Postgres as well, through kombu's SQLAlchemy transport, standing in for RabbitMQ) and the results backend."""
    url = f"postgresql+psycopg2://postgres@/postgres?host={postgres}"
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": url,
        "DAGSTER_CELERY_BROKER": f"sqla+{url}",
        "DAGSTER_CELERY_BACKEND": f"db+{url}",
        "PYTHONPATH": os.pathsep.join([str(DEPLOY), os.environ.get("PYTHONPATH", "")]),
    }


@pytest.fixture
def deployment(postgres, sync_env, tmp_path, monkeypatch) -> dict[str, str]:
    """The environment of a deployment over the sandbox: its Dagster home holds deploy/dagster.yaml."""
    values = deployment_environment(postgres, tmp_path / "dagster_home")
    for name, value in values.items():
        monkeypatch.setenv(name, value)  # this process reads the instance too ...
    monkeypatch.syspath_prepend(str(DEPLOY))  # ... whose storage is deploy/'s
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text(INSTANCE_YAML)
    return {**sync_env, **values}


@contextmanager
def celery_worker(queue: str, env: dict[str, str], log_path: Path, concurrency: int = 1) -> Iterator[subprocess.Popen]:
    """A worker as deploy/ runs one, consuming `queue`, `concurrency` runs at a time, in a session of its own; once
    ready."""
    command = [str(Path(sys.executable).parent / "celery"), "--app", "celery_workers", "worker", "--queues", queue,
               "--concurrency", str(concurrency), "--hostname", f"{queue}@%h", "--loglevel", "INFO"]  # fmt: skip
    with log_path.open("wb") as log:
        worker = subprocess.Popen(command, env={**os.environ, **env}, cwd=env["DAGSTER_HOME"], stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            wait_for(lambda: "ready." in log_path.read_text() or None, HANG_GUARD_SECONDS, f"the {queue} worker")
            yield worker
        finally:
            if worker.poll() is None:
                stop_group(worker)


def _logged(log: Path, line: str) -> bool | None:
    return line in log.read_text() or None


def _xero_steps() -> set[str]:
    graph = code_location().resolve_asset_graph()
    return {"__".join(key.path) for key in graph.get_all_asset_keys() if "xero_api" in graph.get(key).pools}


def _finished(instance: dg.DagsterInstance, *run_ids: str) -> list[dg.DagsterRun] | None:
    runs = [instance.get_run_by_id(run_id) for run_id in run_ids]
    return runs if all(run.status in FINISHED for run in runs) else None


def _intervals(instance: dg.DagsterInstance, run_id: str, steps: set[str]) -> list[tuple[float, float]]:
    """When each of these steps ran in the run: (start, end) from its event log."""
    started: dict[str, float] = {}
    spans = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key not in steps:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = record.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            spans.append((started[event.step_key], record.timestamp))
    return spans


@pytest.mark.timeout(900)
def test_runs_go_to_the_workers_and_the_xero_pool_holds_across_them(deployment, sandbox, admin, tmp_path):
    deployment = {**deployment, "XERO_TENANT_ID": sandbox.tenant_ids[0]}  # one connection: the first organisation
    with (
        celery_worker("first", deployment, tmp_path / "first.log"),
        celery_worker("second", deployment, tmp_path / "second.log"),
    ):
        # Both queued before the daemon starts: it launches them together, one to each worker.
        runs = {
            queue: launch_job("xero_to_segment_sync", deployment, tags={QUEUE_TAG: queue})
            for queue in ("first", "second")
        }
        with (
            dagster_daemon(deployment, tmp_path / "daemon.log", instance_yaml=INSTANCE_YAML),
            dg.DagsterInstance.from_config(deployment["DAGSTER_HOME"]) as instance,
        ):
            done = wait_for(lambda: _finished(instance, *runs.values()), HANG_GUARD_SECONDS * 2, "both runs")
            assert [run.status for run in done] == [dg.DagsterRunStatus.SUCCESS] * 2
            # Each run was a task of its own queue's worker, a process of its own, and they ran at once. The worker
            # logs the task's success once the task returns, a moment after the run has recorded its own end.
            for run, queue in zip(done, runs, strict=True):
                line = f"Task execute_job[{run.tags[TASK_TAG]}] succeeded"
                wait_for(partial(_logged, tmp_path / f"{queue}.log", line), HANG_GUARD_SECONDS, f"{queue}'s task")
            first, second = (instance.get_run_record_by_id(run.run_id) for run in done)
            assert first.start_time < second.end_time and second.start_time < first.end_time

            xero_steps = _xero_steps()
            spans = sorted(span for run_id in runs.values() for span in _intervals(instance, run_id, xero_steps))
            assert spans  # both runs read Xero ...
            assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False))
            # ... one step at a time across the two workers, and the slot is free again.
            pool = instance.event_log_storage.get_concurrency_info("xero_api")
            assert pool.limit == 1 and not pool.claimed_slots

    # The second run found nothing new to send: every message once.
    assert track_counts(admin, prefix="") == expected_flow_tracks(admin)


@pytest.mark.timeout(900)
def test_runs_of_two_connections_go_on_at_once_and_one_whose_worker_is_killed_frees_its_slot_alone(
    deployment, sandbox, admin, tmp_path, monkeypatch
):
    """North's and south's syncs run at once, one on each worker; north's worker is killed while north holds its
    Xero slot: north's run fails and its slot is freed, south's completes meanwhile, and north's next run (on the
    other worker) completes north's sync."""
    path = tmp_path / "connections.yaml"
    connections = tuple(Connection(name=n, ids={"xero": t}) for n, t in zip(NAMES, sandbox.tenant_ids, strict=True))
    save_registry(path, Registry(connections=connections))
    monkeypatch.setenv(REGISTRY_ENV, str(path))
    deployment = {**deployment, REGISTRY_ENV: str(path)}
    north_pool = "xero_api/north"
    admin.faults(xero={"latency_ms": 1500})  # a Xero step lasts long enough to be killed in
    with (
        celery_worker("first", deployment, tmp_path / "first.log") as doomed,
        celery_worker("second", deployment, tmp_path / "second.log"),
        dg.DagsterInstance.from_config(deployment["DAGSTER_HOME"]) as instance,
    ):
        instance.add_dynamic_partitions(TENANTS.name, list(NAMES))
        killed, south = (
            launch_job("xero_to_segment_sync", deployment, tags={QUEUE_TAG: queue, "dagster/partition": name})
            for queue, name in zip(("first", "second"), NAMES, strict=True)
        )
        with dagster_daemon(deployment, tmp_path / "daemon.log", instance_yaml=INSTANCE_YAML):

            def holding_north_slot() -> bool | None:
                claimed = instance.event_log_storage.get_concurrency_info(north_pool).claimed_slots
                return True if any(slot.run_id == killed for slot in claimed) else None

            wait_for(holding_north_slot, HANG_GUARD_SECONDS, "north's first Xero step")
            os.killpg(doomed.pid, signal.SIGKILL)  # the worker and the run it was running, as a lost machine
            doomed.wait()

            (failed,) = wait_for(lambda: _finished(instance, killed), HANG_GUARD_SECONDS, "the killed run's end")
            assert failed.status == dg.DagsterRunStatus.FAILURE
            wait_for(
                lambda: not instance.event_log_storage.get_concurrency_info(north_pool).claimed_slots or None,
                HANG_GUARD_SECONDS,
                "the killed run's Xero slot",
            )
            admin.faults(xero={"latency_ms": 0})
            (done,) = wait_for(lambda: _finished(instance, south), HANG_GUARD_SECONDS, "south's run")
            assert done.status == dg.DagsterRunStatus.SUCCESS
            first, second = (instance.get_run_record_by_id(run_id) for run_id in (killed, south))
            assert first.start_time < second.end_time and second.start_time < first.end_time  # at once
            tags = {QUEUE_TAG: "second", "dagster/partition": "north"}
            rerun = launch_job("xero_to_segment_sync", deployment, tags=tags)
            (completed,) = wait_for(lambda: _finished(instance, rerun), HANG_GUARD_SECONDS, "north's next run")
            assert completed.status == dg.DagsterRunStatus.SUCCESS

    # What the killed run sent and what the next one did, and south's: every message once.
    expected = sum((expected_flow_tracks(admin, tenant) for tenant in sandbox.tenant_ids), Counter())
    assert track_counts(admin, prefix="") == expected
