"""Historical migration of a Segment archive into Xero: the dry run's report against what the migration then writes.

Starts the sandbox with its Xero limits lifted (a real organisation allows 60 calls a minute and 5,000 a day,
https://developer.xero.com/documentation/guides/oauth2/limits/, so a real migration of this size spans days), has it
write `--messages` of its seeded history in the layout of Segment's AWS S3 destination (and its sources emit the
whole history, so that the Profile API knows everyone's audiences and computed traits), then runs
`sync-pipelines migrate --dry-run` and `sync-pipelines migrate` on it. Prints each one's time and writes, whether
the two reports agree, and whether Xero then holds what they say.

    python benchmarks/segment_migration.py [--messages 10000] [--people 2600]
"""

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from sync_pipelines.cli import main as cli
from sync_pipelines.cli import running_sandbox
from sync_pipelines.lib import migration
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines_tests.conftest import SandboxAdmin, xero_resource

UNLIMITED = 1_000_000


def _reports(database: str) -> dict[bool, Counter]:
    with StagingResource(database=database).connect() as conn:
        return migration.latest_reports(conn, "segment_to_xero")


def _writes(admin: SandboxAdmin) -> int:
    return sum(n for call, n in admin.stats()["xero"].items() if call.startswith(("POST /api", "PUT /api")))


def _holdings(admin: SandboxAdmin, env: dict[str, str]) -> dict[str, int]:
    """What Xero holds of each kind a migration makes (people and organisations are both contacts)."""
    client = xero_resource(env).get_client()
    return {
        "contact created": len(admin.get("/xero/contacts")),
        "invoice raised": sum(map(len, client.iter_pages("Invoices", where='Type=="ACCREC"'))),
        "credit_note raised": sum(map(len, client.iter_pages("CreditNotes"))),
    }


def _timed(args: list[str]) -> float:
    started = time.monotonic()
    result = CliRunner().invoke(cli, args)
    if result.exit_code != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.output[-3000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--people", type=int, default=2_600)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, running_sandbox(Path(tmp) / "data", port=0) as env:
        admin = SandboxAdmin(env["XERO_API_URL"].removesuffix("/xero/api"))
        admin.limits(minute_limit=UNLIMITED, day_limit=UNLIMITED, app_minute_limit=UNLIMITED)
        os.environ["XERO_CALLS_PER_MINUTE"] = str(UNLIMITED)
        bucket = Path(tmp) / "bucket"
        bucket.mkdir()
        archived = admin.segment_archive(bucket, seed=11, people=args.people, messages=args.messages)
        # Engage knows these people from the whole history the archive begins: the Profile API answers for them.
        admin.segment_seed(seed=11, people=args.people)
        before = _holdings(admin, env)
        writes = _writes(admin)
        rehearsal = _timed(["migrate", "--archive", str(bucket), "--dry-run"])
        rehearsal_writes = _writes(admin) - writes
        migration = _timed(["migrate", "--archive", str(bucket)])
        reports = _reports(env["SYNC_PIPELINES_DUCKDB"])
        after = _holdings(admin, env)
        held = {write: after[write] - before[write] for write in after}

    print(f"archive: {archived['messages']} messages in {len(archived['files'])} files, {args.people} people")
    print(f"dry run: {rehearsal:.1f} s, Xero writes during it: {rehearsal_writes}")
    print(f"migration: {migration:.1f} s")
    print(json.dumps({f"{d} {w}": n for (d, w), n in sorted(reports[True].items())}, indent=1))
    print(f"dry run == migration: {reports[True] == reports[False]}")
    reported = Counter()
    for (_, write), count in reports[False].items():
        reported[write] += count
    for write, count in held.items():
        print(f"Xero holds for {write}: {count} (reported {reported[write]})")


if __name__ == "__main__":
    main()
