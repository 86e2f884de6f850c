"""A local, stateful stand-in for the vendors' APIs, for tests, demos and benchmarks; one package per vendor.

xero/, segment/, salesforce/ and intercom/ are the vendors, notifier/ receives team notifications; the modules here
are what they share: the server that mounts them, the runtime and store, fault injection, TLS, OAuth helpers, the
webhook delivery loop and the /_admin root. Installed with the `sandbox` extra.
"""

from sync_pipelines.sandbox.server import SandboxServer, SandboxSettings, run_sandbox

__all__ = ["SandboxServer", "SandboxSettings", "run_sandbox"]
