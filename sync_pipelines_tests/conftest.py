"""Shared fixtures for the whole test suite."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_pipelines.sandbox import SandboxServer, SandboxSettings


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    """A real sandbox on a free 127.0.0.1 port with its state in this test's tmp_path."""
    with SandboxServer(SandboxSettings(state_path=tmp_path / "sandbox.db")) as server:
        yield server
