"""Celery run workers that say they are alive, and a run launcher that takes a run for running only while its
worker does (the optional `deploy` extra; deploy/ on PYTHONPATH).

dagster-celery's launcher reports a run as running for as long as its task says STARTED, and a worker killed with
its run (kill -9, a machine lost) never changes that: the run would stay "started" and keep its pool slots, and
every later run of that pool would wait on it. Each worker here records a heartbeat in the instance's Postgres
every few seconds, by Postgres's clock, so machines' clocks never matter; the launcher fails a run whose worker has
been silent too long, and run monitoring then frees the run's slots.

    celery --app celery_workers worker --queues dagster

Outside the package: importing Celery's worker and launcher classes reads its plugins' entry points, and importing
sync_pipelines reads no file.
"""

import functools
import logging
import os
import threading
from typing import Any

from celery import bootsteps
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.make_app import make_app
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
# Silent this long, a worker is taken for dead: several missed beats, so a busy machine is not.
SILENT_SECONDS = 45.0

_TABLE = """CREATE TABLE IF NOT EXISTS sync_pipelines_worker_heartbeats (
    hostname TEXT PRIMARY KEY, beat_at TIMESTAMPTZ NOT NULL)"""


def _engine() -> Engine:
    """The instance's Postgres (deploy/dagster.yaml reads the same variable)."""
    return create_engine(os.environ["DAGSTER_POSTGRES_URL"], pool_pre_ping=True)


class Heartbeat(bootsteps.StartStopStep):
    """A worker's thread that records, every few seconds, that the worker named `hostname` is alive."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stopped = threading.Event()

    def start(self, worker: Any) -> None:
        engine = _engine()
        with engine.begin() as conn:
            conn.execute(text(_TABLE))
        threading.Thread(target=self._beat, args=(engine, worker.hostname), daemon=True).start()

    def stop(self, worker: Any) -> None:
        self._stopped.set()

    def _beat(self, engine: Engine, hostname: str) -> None:
        beat = text(
            "INSERT INTO sync_pipelines_worker_heartbeats VALUES (:hostname, now()) "
            "ON CONFLICT (hostname) DO UPDATE SET beat_at = excluded.beat_at"
        )
        while True:
            try:
                with engine.begin() as conn:
                    conn.execute(beat, {"hostname": hostname})
            except SQLAlchemyError:  # Postgres out of reach a moment: the next beat tries again, the thread goes on
                log.warning("could not record %s's heartbeat", hostname, exc_info=True)
            if self._stopped.wait(HEARTBEAT_SECONDS):
                return


class HeartbeatCeleryRunLauncher(CeleryRunLauncher):
    """dagster-celery's run launcher, which also fails a started run whose worker stopped beating."""

    def check_run_worker_health(self, run: Any) -> CheckRunHealthResult:
        health = super().check_run_worker_health(run)
        if health.status != WorkerStatus.RUNNING:
            return health
        # A STARTED task's state holds the worker that took it: {"pid": ..., "hostname": ...}.
        started = self.celery.AsyncResult(run.tags[DAGSTER_CELERY_TASK_ID_TAG]).info
        hostname = started.get("hostname") if isinstance(started, dict) else None
        silent = _silent_seconds(hostname) if hostname else None
        if silent is not None and silent > SILENT_SECONDS:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"worker {hostname} has been silent for {silent:.0f} s")
        return health


def _silent_seconds(hostname: str) -> float | None:
    """How long since the worker's last heartbeat, by Postgres's clock; None when it never beat."""
    engine = _engine()
    try:
        with engine.begin() as conn:
            conn.execute(text(_TABLE))
            silent = conn.execute(
                text(
                    "SELECT extract(epoch FROM now() - beat_at) FROM sync_pipelines_worker_heartbeats "
                    "WHERE hostname = :hostname"
                ),
                {"hostname": hostname},
            ).scalar()
        return None if silent is None else float(silent)
    finally:
        engine.dispose()


@functools.cache
def worker_app() -> Any:
    """dagster-celery's app (its tasks, queues and routes; settings from `dagster_celery_config`), with the
    heartbeat in each worker."""
    celery = make_app()
    create_execute_job_task(celery)
    create_resume_job_task(celery)
    celery.steps["worker"].add(Heartbeat)
    return celery


def __getattr__(name: str) -> Any:
    """`app`, which the Celery command looks up by module, made when it does rather than whenever the launcher's
    process imports this module."""
    if name == "app":
        return worker_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
