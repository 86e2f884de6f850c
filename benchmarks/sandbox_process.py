"""The benchmarks' sandbox: its own process (so its work does not count against ours), connected like the demo."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from sync_pipelines.cli import connect_sandbox, sandbox_environment


@contextmanager
def sandbox_process(work: Path, *options: str, ready_seconds: float = 120) -> Iterator[str]:
    """`sync-pipelines sandbox` on a free loopback port with its state in `work`; yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "sync_pipelines.cli", "sandbox", "--data-dir", str(work), "--port", str(port)]
    sandbox = subprocess.Popen([*command, *options], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_seconds
        while True:
            try:
                requests.get(f"{url}/_admin/stats", timeout=2).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"sandbox at {url} did not come up in {ready_seconds}s") from None
                time.sleep(0.5)
        yield url
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)


def connect(url: str, work: Path) -> None:
    """Point this process's resources at the sandbox and consent to its Xero and Salesforce."""
    env = sandbox_environment(url, work)
    env["SYNC_PIPELINES_TOKEN_KEY"] = Fernet.generate_key().decode()
    os.environ.update(env)
    connect_sandbox(env)
