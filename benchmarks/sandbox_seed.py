"""Seeding the Xero sandbox: a new state file, then a reset over it, as the sandbox's start-up and /_admin/reset do.

Runs the sandbox's own seeding path (Runtime.reset: the seeder, its worker processes and the store) on a state file
in a temporary folder, and prints for each the wall time, the CPU time of this process and its workers, and
invoices per second of wall time. Contacts default to one per 50 invoices, as the other benchmarks seed them.

    python benchmarks/sandbox_seed.py [--invoices 1000000] [--contacts N] [--seed 42]
"""

import argparse
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sync_pipelines.sandbox.runtime import Runtime, SandboxSettings
from sync_pipelines.sandbox.store import Store


def _cpu_seconds() -> float:
    """User and system CPU of this process and of its children that have ended (the seeder's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(label: str, invoices: int, seed_once: Callable[[], object]) -> None:
    wall, cpu = time.perf_counter(), _cpu_seconds()
    seed_once()
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    print(f"{label:<28} {wall:7.1f} s wall {cpu:7.1f} s CPU {invoices / wall:10,.0f} invoices/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, help="default: invoices / 50, at least 40")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    contacts = args.contacts or max(40, args.invoices // 50)
    with tempfile.TemporaryDirectory(prefix="sandbox-seed-") as work:
        settings = SandboxSettings(state_path=Path(work) / "sandbox.sqlite", seed=args.seed, invoices=0, contacts=40)
        store = Store(settings.state_path)
        runtime = Runtime(settings, store)  # seeds every vendor, Xero with no invoices
        try:
            options = {"invoices": args.invoices, "contacts": contacts}
            _timed(f"seed {args.invoices:,} invoices", args.invoices, lambda: runtime.reset(**options))
            _timed("reset over them", args.invoices, lambda: runtime.reset(**options))
            size = sum(path.stat().st_size for path in Path(work).iterdir())
            print(f"state file {size / 2**30:.2f} GiB with its WAL")
        finally:
            runtime.close()
            store.close()


if __name__ == "__main__":
    main()
