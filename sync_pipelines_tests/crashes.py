"""Kill a flow's run with SIGKILL at random moments, then let a run finish: shared by the crash tests and benchmark.

Each run is its own process, materialising one flow's assets in process against the environment of the caller
that started it, so SIGKILL stops every step at once, wherever it is: between a write and its settlement, inside a
DuckDB transaction, in the middle of a batch. Runs are forked from a multiprocessing forkserver that has imported
Dagster and the project once: a fresh interpreter per run spent about half of each run's CPU on imports.
"""

import multiprocessing
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess

import dagster as dg

from sync_pipelines.definitions import defs
from sync_pipelines.lib.flows import synced
from sync_pipelines.vendors.segment.resource import SegmentResource
from sync_pipelines.vendors.xero.settings import WRITE_BATCH
from sync_pipelines_tests.conftest import xero_resource

# How often the write count is read (a call to the sandbox's admin API): a kill lands at most this long after its
# write count is reached, still a random moment of the run (at 10 ms, the polls alone cost seconds of CPU a run).
POLL_SECONDS = 0.05


@dataclass
class KillLoop:
    """Where each run was killed (the progress count then) and how the last run, left alone, ended."""

    kill_points: list[int] = field(default_factory=list)
    finished_runs: int = 0  # runs that ended before their kill point came (nothing left to write)
    final_returncode: int | None = None


def run_flow(group: str, segment_batch_bytes: int, xero_calls_per_minute: int, xero_write_batch: int) -> int:
    """One run of a flow's assets, in this process; 0 when every step succeeded."""
    definitions = defs()
    env = dict(os.environ)
    segment = SegmentResource(
        api_url=env["SEGMENT_API_URL"], write_key=env["SEGMENT_WRITE_KEY"], max_batch_bytes=segment_batch_bytes
    )
    xero = xero_resource(env, calls_per_minute=xero_calls_per_minute, write_batch=xero_write_batch)
    result = dg.materialize(
        definitions.assets,
        resources={**definitions.resources, "segment": segment, "xero": xero},
        instance=dg.DagsterInstance.ephemeral(),
        selection=synced(group),
        raise_on_error=False,
    )
    return 0 if result.success else 1


def start_run(group: str, segment_batch_bytes: int, xero_calls_per_minute: int, xero_write_batch: int) -> BaseProcess:
    """A run of `group` in a process of its own (`run_flow`'s arguments), with this process's environment and its
    output discarded."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # only the first start reads it: the server then stays up
    run = context.Process(
        target=_run_in_child,
        args=(dict(os.environ), group, segment_batch_bytes, xero_calls_per_minute, xero_write_batch),
    )
    run.start()
    return run


def _run_in_child(env: dict[str, str], *args) -> None:
    os.environ.clear()
    os.environ.update(env)  # the forkserver's environment is that of its start, not this run's caller
    discard = os.open(os.devnull, os.O_WRONLY)
    os.dup2(discard, sys.stdout.fileno())
    os.dup2(discard, sys.stderr.fileno())
    sys.exit(run_flow(*args))


def kill_and_rerun(
    group: str,
    progress: Callable[[], int],
    *,
    kills: int,
    rng: random.Random,
    most_writes_before_kill: int = 3,
    segment_batch_bytes: int = 20_000,
    xero_calls_per_minute: int = 600,
    xero_write_batch: int = WRITE_BATCH,
) -> KillLoop:
    """Start runs of `group` and SIGKILL each once `progress()` (writes the target saw) has grown by a random
    1..most_writes_before_kill since it started; `kills` times, or until a run ends by itself. Then one more run
    is left to finish."""
    loop = KillLoop()
    arguments = (group, segment_batch_bytes, xero_calls_per_minute, xero_write_batch)
    while len(loop.kill_points) < kills and not loop.finished_runs:
        kill_at = progress() + rng.randint(1, most_writes_before_kill)
        run = start_run(*arguments)
        while run.is_alive() and progress() < kill_at:
            time.sleep(POLL_SECONDS)
        if run.is_alive():
            os.kill(run.pid, signal.SIGKILL)
            loop.kill_points.append(progress())
        else:
            loop.finished_runs += 1
        run.join()
    last = start_run(*arguments)
    last.join()
    loop.final_returncode = last.exitcode
    return loop
