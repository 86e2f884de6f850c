"""Runs that start in a fraction of a second: each run's process is forked from a warm one.

Dagster's default launcher asks the code server to spawn a fresh Python for every run, which imports Dagster,
pandas, pandera and DuckDB and builds the definitions again before the first step: 2 to 3 s of a webhook run's
5, and the reason a small run took twice its work. `WarmRunLauncher` keeps, per code location, one process that
has done that once (the warm process) and forks it for each run. The child runs Dagster's own run worker entry
point (`dagster api execute_run`'s), so the run executes, logs, is cancelled and fails exactly as it would under
Dagster's launcher. The warm process forks only while it is single-threaded (it serves requests one at a time on
a pipe) and is replaced as soon as a file of the code location changes, so a code reload in `dagster dev` is
honoured.

A run whose process dies is marked failed as soon as the warm process reaps it (the code server does the same
for the runs it spawns); if the launcher's own process is gone too, run monitoring asks
`check_run_worker_health`, which checks the pid and start time recorded on the run.
"""

import importlib.util
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from queue import Queue
from typing import Any, TextIO

import dagster as dg
import psutil
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._core.origin import RepositoryPythonOrigin
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData, deserialize_value, serialize_value
from dagster._utils import get_run_crash_explanation
from dagster._utils.interrupts import capture_interrupts

# The run's worker, as "<pid>@<process start time>": a pid alone may be reused by another process.
RUN_WORKER_TAG = "sync_pipelines/run_worker"
# How often the warm process looks for run processes that ended, between requests.
REAP_SECONDS = 0.25


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run in a process forked from a warm process of its code location."""

    def __init__(self, inst_data: ConfigurableClassData | None = None):
        self._inst_data = inst_data
        self._lock = threading.Lock()
        self._warm: dict[str, WarmProcess] = {}
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None:
            raise dg.DagsterInvariantViolationError(f"Run {run.run_id} has no code origin to execute.")
        request = ExecuteRunArgs(
            job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref(), set_exit_code_on_failure=True
        )
        with self._lock:
            pid = self._warm_process(origin.repository_origin).fork(run.run_id, serialize_value(request))
            if pid is None:  # the code changed since the warm process loaded it: a fresh one loads it anew
                pid = self._warm_process(origin.repository_origin).fork(run.run_id, serialize_value(request))
        if pid is None:
            raise dg.DagsterLaunchFailedError(f"run {run.run_id}: the code kept changing while it was launched")

    def _warm_process(self, origin: RepositoryPythonOrigin) -> "WarmProcess":
        """The live warm process for `origin`, started (or replaced, after a code change) when needed."""
        key = serialize_value(origin)
        warm = self._warm.get(key)
        if warm is None or not warm.accepting:
            if warm is not None:
                warm.retire()
            warm = self._warm[key] = WarmProcess(origin, self._worker_exited)
        return warm

    def _worker_exited(self, run_id: str, exit_code: int) -> None:
        """A run's process ended: if it had not ended its run, the run failed (the process was killed, say)."""
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return
        message = get_run_crash_explanation(f"Run worker process for {run_id}", exit_code)
        self._instance.report_engine_event(message, run, cls=self.__class__)
        self._instance.report_run_failed(run)

    def terminate(self, run_id: str) -> bool:
        """Cancel the run as Dagster's code server does: mark it canceling, interrupt its process."""
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        worker = _run_worker(run)
        if worker is None:
            return False
        worker.send_signal(signal.SIGINT)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        if _run_worker(run) is None:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"its process {run.tags.get(RUN_WORKER_TAG)} is gone")
        return CheckRunHealthResult(WorkerStatus.RUNNING)

    def dispose(self) -> None:
        with self._lock:
            for warm in self._warm.values():
                warm.retire()
            self._warm.clear()


def _run_worker(run: dg.DagsterRun) -> psutil.Process | None:
    """The run's process while it is alive, from the pid and start time recorded on the run."""
    pid, _, started = run.tags.get(RUN_WORKER_TAG, "").partition("@")
    try:
        process = psutil.Process(int(pid))
        alive = process.create_time() == float(started) and process.status() != psutil.STATUS_ZOMBIE
    except (ValueError, psutil.Error):
        return None
    return process if alive else None


class WarmProcess:
    """The launcher's side of one warm process: asks it to fork a run, hears which runs' processes ended."""

    def __init__(self, origin: RepositoryPythonOrigin, on_exit: Callable[[str, int], None]):
        self._process = subprocess.Popen(
            [origin.executable_path, "-m", __name__, serialize_value(origin)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        self._replies: Queue[dict] = Queue()
        self._pending = ""  # the run whose fork was asked for (one at a time)
        self._runs: dict[int, str] = {}
        self._on_exit = on_exit
        self.accepting = True
        threading.Thread(target=self._listen, name="warm-process", daemon=True).start()

    def fork(self, run_id: str, request: str) -> int | None:
        """The pid of a worker forked for the serialized `ExecuteRunArgs`; None when the code changed since this
        process loaded it (it takes no more runs then)."""
        self._pending = run_id
        try:
            self._process.stdin.write(request + "\n")
        except OSError as error:
            self.accepting = False
            raise dg.DagsterLaunchFailedError(
                f"run {run_id}: the warm process ended ({self._process.wait()})"
            ) from error
        reply = self._replies.get()
        if "pid" in reply:
            return reply["pid"]
        self.accepting = False
        if "stale" in reply:
            return None
        raise dg.DagsterLaunchFailedError(f"run {run_id}: {reply['error']}")

    def retire(self) -> None:
        """Take no more runs; the process exits once its runs' processes have (it still reports their ends)."""
        self.accepting = False
        try:
            self._process.stdin.close()
        except OSError:
            pass  # it had ended already

    def _listen(self) -> None:
        for line in self._process.stdout:
            reply = json.loads(line)
            if "exited" in reply:
                try:
                    self._on_exit(self._runs.pop(reply["exited"]), reply["exit_code"])
                except Exception:  # run monitoring will find the run's process gone instead
                    logging.getLogger(__name__).exception("could not mark run failed after its process ended")
                continue
            if "pid" in reply:
                self._runs[reply["pid"]] = self._pending
            self._replies.put(reply)
        self.accepting = False
        self._replies.put({"error": f"the warm process ended with exit code {self._process.wait()}"})


def _code_files(origin: RepositoryPythonOrigin) -> dict[str, int]:
    """Every file of the code location's package (or folder) with its modification time: the code as loaded."""
    pointer = origin.code_pointer
    module = getattr(pointer, "module", None) or getattr(pointer, "package", None)
    if module:
        spec = importlib.util.find_spec(module.partition(".")[0])
        roots = list(spec.submodule_search_locations or [spec.origin]) if spec else []
    else:
        roots = [str(Path(pointer.python_file).parent)]
    return {str(path): path.stat().st_mtime_ns for root in roots for path in _files(Path(root))}


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for path in root.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


def serve(origin: RepositoryPythonOrigin, replies: TextIO) -> None:
    """The warm process: load the code once, then fork a run worker per request line on stdin until it closes,
    reporting each pid and, once reaped, each worker's exit code; then wait for the workers still running."""
    # Dagster's CLI modules (the run worker's entry point) are loaded here, where runs execute, not where they launch.
    from dagster._cli.api import _execute_run_command_body
    from dagster._utils.hosted_user_process import recon_repository_from_origin

    # A Ctrl-C reaches the whole process group: it stops the runs and the daemon, whose closing pipe ends this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        recon_repository_from_origin(origin).get_definition()
    except Exception:  # each run's process loads the code again and reports the error in the run's own log
        traceback.print_exc()
    loaded = _code_files(origin)

    def reply(message: dict) -> None:
        try:
            replies.write(json.dumps(message) + "\n")
            replies.flush()
        except BrokenPipeError:
            pass  # the launcher's process is gone: run monitoring watches the runs' processes instead

    workers: set[int] = set()
    requests: TextIO | None = sys.stdin
    while requests or workers:
        readable = select.select([requests] if requests else [], [], [], REAP_SECONDS)[0]
        while workers and (ended := os.waitpid(-1, os.WNOHANG))[0]:
            workers.discard(ended[0])
            reply({"exited": ended[0], "exit_code": os.waitstatus_to_exitcode(ended[1])})
        if not readable:
            continue
        request = requests.readline()  # one request at a time: the launcher waits for each reply
        if not request:
            requests = None
        elif _code_files(origin) != loaded:
            reply({"stale": "the code changed since this process loaded it"})
            requests = None
        elif pid := os.fork():
            workers.add(pid)
            reply({"pid": pid})
        else:
            os._exit(_work(request.strip(), replies, _execute_run_command_body))


def _work(request: str, replies: TextIO, execute_run: Callable[..., int]) -> int:
    """In the forked child: record which process runs the run (before the run starts, so run monitoring never sees
    it started without), then run it as Dagster's run worker (`dagster api execute_run`) does; its exit code."""
    replies.close()
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = deserialize_value(request, ExecuteRunArgs)
    try:
        with capture_interrupts(), dg.DagsterInstance.from_ref(args.instance_ref) as instance:
            instance.add_run_tags(args.run_id, {RUN_WORKER_TAG: f"{os.getpid()}@{psutil.Process().create_time()}"})
            code = execute_run(args.run_id, instance, lambda _: None, set_exit_code_on_failure=True)
    except BaseException:  # Dagster's run worker reports a failure to the run's event log before raising
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def main() -> None:
    # Replies go on the original stdout; anything else printed goes to stderr, the launcher's log.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    serve(deserialize_value(sys.argv[1], RepositoryPythonOrigin), replies)


if __name__ == "__main__":
    main()
