"""A local, stateful stand-in for the Xero and Segment APIs, for tests, demos and benchmarks."""

from sync_pipelines.sandbox.server import SandboxServer, SandboxSettings, run_sandbox

__all__ = ["SandboxServer", "SandboxSettings", "run_sandbox"]
