"""The `sync-pipelines` commands a new user runs, run the same way (in process, real sandbox, temp data)."""

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from unittest.mock import patch

import duckdb
import pytest
import requests
import yaml
from click.testing import CliRunner

from sync_pipelines.cli import DAGSTER_YAML, _prepare_dagster_home, main
from sync_pipelines.defs.flows import registered_deliveries, registered_flows
from sync_pipelines.lib import migration, staging
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.vendors.token_store import EncryptedTokenStore, consent_by_redirect
from sync_pipelines_tests.conftest import SandboxAdmin, xero_resource
from sync_pipelines_tests.webhooks.conftest import stored_events


# The demo keeps to the sandbox's real Xero limit (60 calls a minute), so it mostly waits for minute windows: about
# 220 s on an idle 2-core machine, 270 s with two busy loops beside it, where a window missed costs a whole
# minute more. Over 3x that, as a bound for a hung run only (the suite's 300 s would be a speed claim).
@pytest.mark.timeout(900)
def test_demo_delivers_everything_prints_the_reconciliation_and_reruns_idempotently(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo's data folder, ./data, is where the other commands look by default
    data_dir = tmp_path / "data"
    # The demo exports its sandbox environment: each command starts from a shell that set none of this project's
    # variables, and the environment is as it was after the test.
    with patch.dict(os.environ, _bare_environment(), clear=True):
        first = CliRunner().invoke(main, ["demo", "--malformed", "3"])
        assert first.exit_code == 0, first.output
    with patch.dict(os.environ, _bare_environment(), clear=True):
        second = CliRunner().invoke(main, ["demo"])
        assert second.exit_code == 0, second.output
    with patch.dict(os.environ, _bare_environment(), clear=True):
        held = CliRunner().invoke(main, ["quarantine"])
        letters = CliRunner().invoke(main, ["dead-letters"])
        released = CliRunner().invoke(main, ["release"])
        replayed = CliRunner().invoke(main, ["replay"])

    header = next(line for line in first.output.splitlines() if "in_source" in line)
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "flow", "entity", "in_source", "staged", "quarantined", "refused", "delivered", "dead_lettered", "pending",
        "ok",
    ]  # fmt: skip
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        rows = conn.execute(
            """SELECT entity, quarantined, delivered, dead_lettered, pending, ok FROM reconciliation
               ORDER BY checked_at, entity"""
        ).fetchall()
        # What the deliveries sent: the contact enrichment's identify calls and the write-backs to Salesforce have
        # no source records of their own to reconcile against.
        (sent,) = conn.execute(
            "SELECT count(*) FROM audit_log WHERE outcome = 'delivered' AND list_contains(?, entity)",
            [[d.partition for d in registered_deliveries()]],
        ).fetchone()
        deal_reasons = conn.execute("SELECT DISTINCT reasons FROM quarantine WHERE entity = 'opportunities'").fetchall()
    deliveries = registered_deliveries()
    # One reconciliation per delivery from each demo and from the replay.
    reconciled, *later = [rows[at : at + len(deliveries)] for at in range(0, len(rows), len(deliveries))]
    assert sorted(entity for entity, *_ in reconciled) == sorted(d.partition for d in deliveries)
    # The second demo and the replay found nothing new and delivered nothing more (the replay delivers every flow
    # in one run, so its rows come in another order).
    assert [sorted(run) for run in later] == [sorted(reconciled)] * 2
    # The malformed invoices, and the seed's won deals without an account, which cannot be invoiced.
    assert {entity: n for entity, n, *_ in reconciled if n} == {"invoices": 3, "opportunities": 2}
    assert deal_reasons == [("row: won_deal_has_an_account failed",)]
    assert sum(row[2] for row in reconciled) == sent
    assert all(row[3:] == (0, 0, True) for row in reconciled)
    # The demo says what it does as it goes, and ends with its outcome.
    for flow in registered_flows():
        assert f"] {flow.job_name} ..." in first.output
    assert all(demo.output.strip().splitlines()[-1].startswith("Everything reconciles:") for demo in (first, second))
    # Right after the demo, with no variables set, the operator's commands find its data.
    assert held.exit_code == 0, held.output
    assert len([line for line in held.output.splitlines() if "| invoices" in line]) >= 1, held.output
    assert letters.exit_code == 0 and letters.output.strip() == "none", letters.output
    assert released.exit_code == 0 and "released 0 held messages" in released.output, released.output
    assert replayed.exit_code == 0 and "requeued 0 dead letters" in replayed.output, replayed.output


def _bare_environment() -> dict[str, str]:
    """The environment of a shell that has set none of this project's variables."""
    prefixes = ("SYNC_PIPELINES_", "XERO_", "SALESFORCE_", "INTERCOM_", "SEGMENT_", "DAGSTER_")
    return {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}


def _bare_environment() -> dict[str, str]:
    """The environment of a shell that has set none of this project's variables."""
    prefixes = ("SYNC_PIPELINES_", "XERO_", "SALESFORCE_", "INTERCOM_", "SEGMENT_", "DAGSTER_")
    return {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}


def test_replay_requeues_exhausted_dead_letters_and_delivers_them(admin, sync_env):
    admin.faults(segment={"error_rate": 1.0})
    with duckdb.connect(sync_env["SYNC_PIPELINES_DUCKDB"]) as conn:
        # A message that ran out of attempts, as the delivery step would have left it.
        staging.migrate(conn)
        message = staging.OutboxMessage(
            "xero:invoice:replayed:created", "replayed", "track", "Invoice Created",
            {"type": "track", "messageId": "xero:invoice:replayed:created", "userId": "u1",
             "event": "Invoice Created", "properties": {}},
        )  # fmt: skip
        staging.enqueue(conn, flow="xero_to_segment", entity="invoices", messages=[message], run_id=None)
        staging.dead_letter(
            conn, flow="xero_to_segment", entity="invoices", target="segment", run_id=None,
            failures=[(message.message_id, "replayed", "503 Service Unavailable")], retryable=False,
        )  # fmt: skip
    admin.faults(segment={"error_rate": 0.0})
    listed = CliRunner().invoke(main, ["dead-letters"])
    assert listed.exit_code == 0 and "xero:invoice:replayed:created" in listed.output, listed.output
    assert "503 Service Unavailable" in listed.output

    result = CliRunner().invoke(main, ["replay", "--all"])

    assert result.exit_code == 0, result.output
    assert "requeued 1 dead letters" in result.output
    assert [m["messageId"] for m in admin.segment_messages()] == ["xero:invoice:replayed:created"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(args: list[str], env: dict[str, str], log: Path, ready_url: str) -> subprocess.Popen:
    """A `sync-pipelines` server command in the background, returned once it answers HTTP."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "sync_pipelines.cli", *args], env={**os.environ, **env}, stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(ready_url, timeout=2)
            return process
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(log.read_text()) from None
            time.sleep(0.2)


def test_the_sandbox_delivers_webhooks_to_the_webhooks_command_which_stores_them(tmp_path):
    receiver_port, sandbox_port = _free_port(), _free_port()
    webhook_url = f"http://127.0.0.1:{receiver_port}/xero/webhooks"
    inbox = tmp_path / "webhook_inbox.sqlite"
    secret = "a-secret-webhook-key"
    receiver_log, sandbox_log = tmp_path / "receiver.log", tmp_path / "sandbox.log"
    receiver = _serve(["webhooks", "--port", str(receiver_port), "--inbox", str(inbox)],
                      {"XERO_WEBHOOK_KEY": secret}, receiver_log, webhook_url)  # fmt: skip
    sandbox = _serve(
        ["sandbox", "--port", str(sandbox_port), "--data-dir", str(tmp_path / "data"), "--webhook-url", webhook_url],
        {}, sandbox_log, f"http://127.0.0.1:{sandbox_port}/_admin/stats",
    )  # fmt: skip
    try:
        admin = SandboxAdmin(f"http://127.0.0.1:{sandbox_port}")
        admin.call("PUT", "/xero/webhooks", {"key": secret})  # the key the Xero app shows its developer
        invoice = next(i for i in admin.get("/xero/invoices") if i["Status"] == "AUTHORISED")
        admin.post(f"/xero/invoices/{invoice['InvoiceID']}/pay")
        admin.post("/xero/webhooks/flush")
        assert admin.post("/xero/webhooks/itr")["passed"]
    finally:
        for process in (receiver, sandbox):
            process.terminate()
            process.wait(timeout=30)

    assert [(e["resource_id"], e["category"], e["event_type"]) for e in stored_events(inbox)] == [
        (invoice["InvoiceID"], "INVOICE", "UPDATE")
    ]
    assert f"receiving Xero webhooks on {webhook_url}" in receiver_log.read_text()
    assert secret not in receiver_log.read_text()


def test_the_webhooks_command_needs_a_vendor_secret_from_the_environment():
    result = CliRunner().invoke(main, ["webhooks"], env={"XERO_WEBHOOK_KEY": None, "INTERCOM_CLIENT_SECRET": None})

    assert result.exit_code == 2
    assert "XERO_WEBHOOK_KEY" in result.output


def test_an_existing_dagster_yaml_gains_the_settings_it_lacks_and_keeps_its_own(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("# mine\nrun_queue:\n  max_concurrent_runs: 3\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    assert _prepare_dagster_home()
    assert _prepare_dagster_home()  # a second time adds nothing more

    text = (home / "dagster.yaml").read_text()
    assert text.startswith("# mine\n") and text.count("sensors:") == 1
    settings = yaml.safe_load(text)
    assert settings["run_queue"] == {"max_concurrent_runs": 3}
    assert settings["sensors"] == yaml.safe_load(DAGSTER_YAML)["sensors"]
    assert set(settings) == set(yaml.safe_load(DAGSTER_YAML))


def _xero_writes(admin: SandboxAdmin) -> int:
    return sum(n for call, n in admin.stats()["xero"].items() if call.startswith(("POST /api", "PUT /api")))


def _migration_reports(database: str) -> dict[bool, Counter]:
    with StagingResource(database=database).connect() as conn:
        return migration.latest_reports(conn, "segment_to_xero")


# Bounds a hung run only, several times what it takes on a loaded 2-core machine (it is no speed claim).
@pytest.mark.timeout(900)
def test_a_dry_run_of_a_segment_archive_reports_the_writes_the_migration_then_makes(
    admin, sync_env, tmp_path, monkeypatch
):
    # A migration makes thousands of calls: more than a real organisation's 60 a minute and 5,000 a day (xero.md §5).
    admin.limits(minute_limit=1_000_000, day_limit=1_000_000, app_minute_limit=1_000_000)
    monkeypatch.setenv("XERO_CALLS_PER_MINUTE", "1000000")
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    # benchmarks/segment_migration.py does the same with 10,000 messages.
    assert admin.segment_archive(bucket, seed=11, people=500, messages=2_000)["messages"] == 2_000
    contacts, writes = len(admin.get("/xero/contacts")), _xero_writes(admin)

    rehearsal = CliRunner().invoke(main, ["migrate", "--archive", str(bucket), "--dry-run"])
    assert rehearsal.exit_code == 0, rehearsal.output
    assert "2000 messages" in rehearsal.output
    # Nothing was written: not to Xero, not to the real staging store's outbox or inbox.
    assert (_xero_writes(admin), len(admin.get("/xero/contacts"))) == (writes, contacts)
    with duckdb.connect(sync_env["SYNC_PIPELINES_DUCKDB"]) as conn:
        assert conn.execute("SELECT count(*) FROM outbox WHERE flow = 'segment_to_xero'").fetchone() == (0,)
    planned = _migration_reports(sync_env["SYNC_PIPELINES_DUCKDB"])[True]
    assert planned[("users", "contact created")] > 100 and planned[("orders", "invoice raised")] > 100

    migrated = CliRunner().invoke(main, ["migrate", "--archive", str(bucket)])
    assert migrated.exit_code == 0, migrated.output
    assert _migration_reports(sync_env["SYNC_PIPELINES_DUCKDB"])[False] == planned
    # What the reports say is what Xero now holds (people and organisations are both contacts).
    invoices = [i for i in admin.get("/xero/invoices") if i["Type"] == "ACCREC" and i.get("Reference")]
    credit_notes = xero_resource(sync_env).get_client().iter_pages("CreditNotes")
    made = {
        "contact created": len(admin.get("/xero/contacts")) - contacts,
        "invoice raised": len({i["Reference"] for i in invoices} & _orders(bucket)),
        "credit_note raised": sum(map(len, credit_notes)),
    }
    by_write = Counter()
    for (_, write), count in planned.items():
        by_write[write] += count
    assert made == {write: by_write[write] for write in made}

    again = _xero_writes(admin)
    rerun = CliRunner().invoke(main, ["migrate", "--archive", str(bucket)])
    assert rerun.exit_code == 0, rerun.output
    assert _xero_writes(admin) == again


def _orders(bucket: Path) -> set[str]:
    """The order_ids of the archive's Order Completed messages."""
    return {
        str(message["properties"]["order_id"])
        for path in bucket.rglob("*.gz")
        for message in map(json.loads, gzip.decompress(path.read_bytes()).decode().splitlines())
        if message.get("event") == "Order Completed"
    }


def _write_counts(output: str) -> dict[tuple[str, str], int]:
    """(delivery, write) -> messages, from the table `backfill` and `resync` print."""
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in output.splitlines() if "|" in line]
    return {(delivery, write): int(n) for delivery, write, n in cells if n.isdigit()}


def test_backfill_previews_then_writes_a_range_once_and_resync_rereads_an_entity_writing_nothing_new(
    admin, sync_env, monkeypatch
):
    # A small org, so a year of it is quick; Xero's 60 calls a minute lifted for its writes.
    admin.salesforce_reset(accounts=12, contacts_per_account=2, leads=6, opportunities=16)
    admin.limits(minute_limit=1_000_000, app_minute_limit=1_000_000)
    monkeypatch.setenv("XERO_CALLS_PER_MINUTE", "1000000")
    year = ["--from", "2024-01", "--to", "2024-12", "--flow", "salesforce_to_xero"]
    writes = _xero_writes(admin)

    preview = CliRunner().invoke(main, ["backfill", *year, "--dry-run"])

    assert preview.exit_code == 0, preview.output
    assert _xero_writes(admin) == writes  # nothing sent
    planned = _write_counts(preview.output)
    assert planned[("accounts", "contact created")] and "would write" in preview.output

    backfilled = CliRunner().invoke(main, ["backfill", *year])

    assert backfilled.exit_code == 0, backfilled.output
    assert _write_counts(backfilled.output) == planned  # the writes the preview listed
    accounts = {a["Id"] for a in admin.salesforce_records("Account", deleted=False)}
    numbers = Counter(c.get("ContactNumber") for c in admin.get("/xero/contacts"))
    assert all(numbers[account] == 1 for account in accounts)  # every account once
    written = _xero_writes(admin)
    assert written > writes

    again = CliRunner().invoke(main, ["backfill", *year])

    assert again.exit_code == 0, again.output
    assert "nothing to write" in again.output and _xero_writes(admin) == written

    resynced = CliRunner().invoke(main, ["resync", "salesforce_accounts"])

    assert resynced.exit_code == 0, resynced.output
    assert _xero_writes(admin) == written  # the whole history re-read and re-staged; the target already holds it
    with StagingResource(database=sync_env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        staged = {row[0] for row in conn.execute("SELECT id FROM stg_salesforce_accounts").fetchall()}
    assert accounts <= staged


@pytest.mark.parametrize(
    ("command", "token_path", "redirect_uri"),
    [
        ("xero-connect", "XERO_TOKEN_PATH", "http://127.0.0.1/xero/callback"),
        ("salesforce-connect", "SALESFORCE_TOKEN_PATH", "http://127.0.0.1/salesforce/callback"),
    ],
)
def test_a_connect_command_prints_the_consent_url_and_stores_the_tokens_encrypted(
    sandbox, sync_env, tmp_path, command, token_path, redirect_uri
):
    """As a person runs it: the command prints the consent URL; the person approves in a browser (here the
    sandbox's consent page, which approves by redirecting) and pastes where it redirected to."""
    store = tmp_path / f"{command}.enc"
    env = {**os.environ, token_path: str(store)}
    process = subprocess.Popen(
        [sys.executable, "-m", "sync_pipelines.cli", command, "--redirect-uri", redirect_uri],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    consent = next(line for line in process.stdout if line.startswith("http"))
    output, _ = process.communicate(consent_by_redirect(consent.strip()) + "\n", timeout=60)

    assert process.returncode == 0, output
    assert "Connected; tokens stored encrypted." in output
    token = EncryptedTokenStore(str(store), sync_env["SYNC_PIPELINES_TOKEN_KEY"]).load()
    assert token["refresh_token"] and token["refresh_token"] not in store.read_text()
