"""Does a change alter what the vendors receive? Runs the demo on a base revision and on the working tree, each on a
fresh sandbox with the same seed, and compares what Segment, Xero and the team notifier hold afterwards, by content.

    python benchmarks/demo_messages.py --base <git revision>

Ids the sandbox makes up when a record is created (Xero ContactIDs, InvoiceIDs, ...) and times of day are replaced
by stable labels (a contact's ContactNumber or name, an invoice's number and reference) before comparing, so two
runs that made the same writes compare equal. Prints the count per target and every difference; exits 1 on any.
"""

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Stamped by the sandbox or the sender at the moment of the run, not by what the flows decided.
VOLATILE = {
    "UpdatedDateUTC", "UpdatedDateUTCString", "sentAt", "receivedAt", "LineItemID", "DateTimeUTC", "DateUTC",
    "DateUTCString", "_sandbox",
}  # fmt: skip
# A time of day on the day of the run is when a record was written during it (a created invoice's UpdatedDateUTC
# becomes its Segment event's timestamp): stamped by the clock, not decided by the flows.
TODAY = re.compile(rf"^{datetime.now(UTC).date().isoformat()}T[0-9:.]+Z?$")
# How each Xero collection's records are named once their ids are replaced.
LABELS = {
    "contacts": lambda b: f"contact:{b.get('ContactNumber') or b.get('Name')}",
    "invoices": lambda b: f"invoice:{b.get('InvoiceNumber')}:{b.get('Reference')}",
    "payments": lambda b: f"payment:{b.get('Reference')}:{b.get('Amount')}",
    "bank_transactions": lambda b: f"bank:{b.get('Reference')}:{b.get('Total')}",
}


def _strip(value: object) -> object:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    if isinstance(value, str) and TODAY.match(value):
        return "<during the run>"
    return value


def received(state: Path) -> dict[str, Counter]:
    """What each target holds, as normalised JSON texts with how many times each is held."""
    db = sqlite3.connect(state)
    labels, xero = {}, {}
    for table, label in LABELS.items():
        # The table names are the constants above, never input.
        bodies = [json.loads(body) for (body,) in db.execute(f"SELECT body FROM {table}")]
        xero[f"xero {table}"] = bodies
        for body in bodies:
            labels.update({v: label(body) for k, v in body.items() if k.endswith("ID") and isinstance(v, str)})
    labels |= {group_id: f"group:{name}" for group_id, name in db.execute("SELECT id, name FROM contact_groups")}

    def normalised(values) -> Counter:
        texts = (json.dumps(_strip(v), sort_keys=True) for v in values)
        return Counter(UUID.sub(lambda m: labels.get(m.group(), m.group()), text) for text in texts)

    def rows(sql: str) -> list:
        return [json.loads(body) for (body,) in db.execute(sql)]

    return {
        "segment messages": normalised(rows("SELECT body FROM segment_messages")),
        "notifications": normalised(rows("SELECT body FROM notifications")),
        **{name: normalised(bodies) for name, bodies in xero.items()},
        "xero history notes": normalised(
            {"record": r, "note": json.loads(b)} for r, b in db.execute("SELECT record_id, body FROM history")
        ),
        "xero group members": normalised(
            db.execute(
                """SELECT g.id, m.contact_id FROM contact_group_members m JOIN contact_groups g ON g.id = m.group_id"""
            ).fetchall()
        ),
    }


def demo(tree: Path, data_dir: Path) -> dict[str, Counter]:
    """The demo of the code in `tree`, on a sandbox of its own."""
    environment = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {"PYTHONPATH": str(tree)}
    subprocess.run(
        [sys.executable, "-m", "sync_pipelines.cli", "demo", "--data-dir", str(data_dir)],
        cwd=tree, env=environment, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return received(data_dir / "sandbox.sqlite")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the git revision to compare the working tree with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base_tree = Path(scratch) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), args.base], cwd=ROOT, check=True)
        try:
            before = demo(base_tree, Path(scratch) / "base-data")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, check=True)
        after = demo(ROOT, Path(scratch) / "tree-data")
    differences = 0
    for target in before:
        missing, extra = before[target] - after[target], after[target] - before[target]
        differences += sum(missing.values()) + sum(extra.values())
        print(f"{target}: {sum(before[target].values())} before, {sum(after[target].values())} after, "
              f"{sum(missing.values())} only before, {sum(extra.values())} only after")  # fmt: skip
        for text in list(missing)[:3]:
            print(f"  only before: {text}")
        for text in list(extra)[:3]:
            print(f"  only after:  {text}")
    print("the same by content" if not differences else f"{differences} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
