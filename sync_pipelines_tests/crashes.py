"""Kill a flow's run with SIGKILL at random moments, then let a run finish: shared by the crash tests and benchmark.

Each run is its own process (`python -m sync_pipelines_tests.crashes <group> <Segment batch bytes> <Xero
calls a minute> <Xero write batch>`), materialising
one flow's assets in process against the environment it inherits, so SIGKILL stops every step at once, wherever
it is: between a write and its settlement, inside a DuckDB transaction, in the middle of a batch.
"""

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from sync_pipelines.definitions import defs
from sync_pipelines.lib.flows import synced
from sync_pipelines.vendors.segment.resource import SegmentResource
from sync_pipelines.vendors.xero.settings import WRITE_BATCH
from sync_pipelines_tests.conftest import xero_resource

POLL_SECONDS = 0.01


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
    command = [
        sys.executable, "-m", __name__, group, str(segment_batch_bytes), str(xero_calls_per_minute),
        str(xero_write_batch),
    ]  # fmt: skip
    while len(loop.kill_points) < kills and not loop.finished_runs:
        kill_at = progress() + rng.randint(1, most_writes_before_kill)
        run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while run.poll() is None and progress() < kill_at:
            time.sleep(POLL_SECONDS)
        if run.poll() is None:
            os.kill(run.pid, signal.SIGKILL)
            loop.kill_points.append(progress())
        else:
            loop.finished_runs += 1
        run.wait()
    loop.final_returncode = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return loop


if __name__ == "__main__":
    sys.exit(run_flow(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
