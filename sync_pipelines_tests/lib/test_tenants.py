"""Several connections on one install: each a partition, synced with its own settings into its own store."""

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import requests
from click.testing import CliRunner
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.execution.backfill import BulkActionStatus

from sync_pipelines.cli import SANDBOX_REDIRECT_URI, SANDBOX_SALESFORCE_REDIRECT_URI, main
from sync_pipelines.lib import staging
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.lib.tenants import (
    REGISTRY_ENV,
    TENANTS,
    Connection,
    Registry,
    Secret,
    load_registry,
    save_registry,
    set_account,
    shard,
    tenant_of,
)
from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines.vendors.segment.workspace import SegmentWorkspaceResource
from sync_pipelines.vendors.token_store import consent_by_redirect
from sync_pipelines.vendors.xero import entities as xero
from sync_pipelines.vendors.xero.contracts.common import parse_xero_date
from sync_pipelines.vendors.xero.resource import XeroResource
from sync_pipelines.webhooks.inbox import InboxEvent, WebhookInbox, WebhookInboxResource
from sync_pipelines_tests.conftest import SandboxAdmin, code_location
from sync_pipelines_tests.defs.conftest import track_counts
from sync_pipelines_tests.defs.test_backfills import END, MONTHS, START, backfill
from sync_pipelines_tests.webhooks.daemon import HANG_GUARD_SECONDS, wait_for

NAMES = ("north", "south")


@pytest.fixture
def sandbox(tmp_path) -> Iterator[SandboxServer]:
    """An app connected to two Xero organisations (`sync_env` consents to both), and two Salesforce orgs (`sync_env`
    consents in the first)."""
    settings = SandboxSettings(state_path=tmp_path / "sandbox.db", xero_organisations=2, salesforce_orgs=2)
    with SandboxServer(settings) as server:
        yield server


@pytest.fixture
def registry(sandbox, sync_env, tmp_path, monkeypatch) -> Registry:
    """A registry naming both organisations, as `sync-pipelines xero-connect` writes it."""
    registry = Registry(
        connections=tuple(Connection(name=n, ids={"xero": t}) for n, t in zip(NAMES, sandbox.tenant_ids, strict=True))
    )
    path = tmp_path / "data" / "connections.yaml"
    save_registry(path, registry)
    monkeypatch.setenv(REGISTRY_ENV, str(path))
    return registry


def _staged(database: str, table: str, column: str) -> set[str]:
    conn = duckdb.connect(database, read_only=True)
    try:
        return {value for (value,) in conn.execute(f'SELECT "{column}" FROM "{table}"').fetchall()}
    finally:
        conn.close()


def _sync_each_connection(job_name: str = "xero_to_segment_sync") -> None:
    """Each connection's sync of one flow, one after the other, in this process."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANTS.name, list(NAMES))
    job = code_location().resolve_job_def(job_name)
    for name in NAMES:
        assert job.execute_in_process(instance=instance, partition_key=name).success


def _sales(admin: SandboxAdmin, tenant: str) -> set[str]:
    """The ids of one organisation's sales invoices."""
    return {i["InvoiceID"] for i in admin.call("GET", "/xero/invoices", tenant=tenant) if i["Type"] == "ACCREC"}


def test_each_connection_syncs_its_own_organisation_into_its_own_store(sandbox, sync_env, registry):
    _sync_each_connection()

    admin = SandboxAdmin(sandbox.url)
    for name, tenant in zip(NAMES, sandbox.tenant_ids, strict=True):
        sales = _sales(admin, tenant)
        staged = _staged(shard(sync_env["SYNC_PIPELINES_DUCKDB"], name), xero.INVOICES.table, "invoice_id")
        assert sales and staged == sales
    assert not Path(sync_env["SYNC_PIPELINES_DUCKDB"]).exists()


def test_a_backfill_of_one_connection_and_some_months_reads_only_its_organisation(
    admin, sandbox, sync_env, registry, workspace
):
    workspace.instance.add_dynamic_partitions(TENANTS.name, list(NAMES))
    chosen, other = NAMES[1], NAMES[0]
    assets = [xero.INVOICES.backfill_key, xero.INVOICES.staged_key]
    admin.reset_stats()

    status = backfill(workspace, assets, [f"{month}|{chosen}" for month in MONTHS])

    assert status[1] == BulkActionStatus.COMPLETED_SUCCESS
    tenant = sandbox.tenant_ids[1]
    listed = admin.call("GET", "/xero/invoices", tenant=tenant)
    in_window = {
        i["InvoiceID"] for i in listed if i["Type"] == "ACCREC" and START <= parse_xero_date(i["UpdatedDateUTC"]) < END
    }
    staged = _staged(shard(sync_env["SYNC_PIPELINES_DUCKDB"], chosen), xero.INVOICES.table, "invoice_id")
    assert in_window and staged == in_window
    assert not Path(shard(sync_env["SYNC_PIPELINES_DUCKDB"], other)).exists()
    assert set(admin.stats()["xero_tenants"]) == {tenant}


def test_a_connection_that_fails_holds_up_no_other(sandbox, sync_env, registry, tmp_path, monkeypatch):
    broken = Connection(name="north", ids={"xero": sandbox.tenant_ids[0]},
                        settings={"segment": {"write_key": Secret(env="NORTH_SEGMENT_WRITE_KEY")}})  # fmt: skip
    path = tmp_path / "data" / "connections.yaml"
    save_registry(path, Registry(connections=(broken, registry.connection("south"))))
    monkeypatch.delenv("NORTH_SEGMENT_WRITE_KEY", raising=False)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANTS.name, list(NAMES))
    job = code_location().resolve_job_def("xero_to_segment_sync")

    failed = job.execute_in_process(instance=instance, partition_key="north", raise_on_error=False)
    assert not failed.success
    assert "NORTH_SEGMENT_WRITE_KEY" in str(failed.get_run_failure_event().event_specific_data.error)
    assert job.execute_in_process(instance=instance, partition_key="south").success


def test_schedules_request_one_run_per_connection_that_runs_their_flow(sandbox, sync_env, tmp_path, monkeypatch):
    connections = (
        Connection(name="both"),
        Connection(name="crm-only", flows=("salesforce_to_xero",)),
        Connection(name="not-yet-a-partition"),
    )
    path = tmp_path / "connections.yaml"
    save_registry(path, Registry(connections=connections))
    monkeypatch.setenv(REGISTRY_ENV, str(path))
    definitions = code_location()
    with dg.instance_for_test() as instance:
        sensor = definitions.resolve_sensor_def("connections")
        added = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        assert [r.partition_keys for r in added.dynamic_partitions_requests] == [[c.name for c in connections]]
        instance.add_dynamic_partitions(TENANTS.name, ["both", "crm-only"])

        def requested(schedule: str) -> list[str]:
            tick = definitions.resolve_schedule_def(schedule).evaluate_tick(
                dg.build_schedule_context(instance, repository_def=definitions.get_repository_def())
            )
            return [request.partition_key for request in tick.run_requests]

        assert requested("xero_to_segment_sync_schedule") == ["both"]
        assert requested("salesforce_to_xero_sync_schedule") == ["both", "crm-only"]


def test_a_webhook_starts_a_run_for_the_connection_whose_organisation_sent_it(sandbox, sync_env, registry):
    inbox_path = sync_env["SYNC_PIPELINES_WEBHOOK_INBOX"]
    south = sandbox.tenant_ids[1]
    WebhookInbox(inbox_path).store(
        [InboxEvent("xero", None, south, "INVOICE", "UPDATE", "inv-1", "2026-12-01T00:00:00", {"tenantId": south})]
    )
    definitions = code_location()
    sensor = definitions.resolve_sensor_def("xero_webhook_sensor")
    resources = {"webhook_inbox": WebhookInboxResource(path=inbox_path, listen_seconds=0)}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANTS.name, list(NAMES))

        def tick(cursor: str | None = None):
            context = dg.build_sensor_context(instance, cursor, resources=resources, definitions=definitions)
            with partition_loading_context(dynamic_partitions_store=instance):  # as the daemon evaluates it
                return sensor.evaluate_tick(context)

        first = tick()
        assert [r.partition_key for r in first.run_requests] == ["south"]
        assert xero.INVOICES.raw_key in first.run_requests[0].asset_selection
        second = tick(first.cursor)
        assert not second.run_requests  # those events are taken
        # An organisation no connection has (consented to, never added): its events start nothing, and the tick
        # says so rather than skipping in silence.
        stranger = InboxEvent("xero", None, "org-3", "INVOICE", "UPDATE", "inv-2", "2026-12-01T00:00:00", {})
        WebhookInbox(inbox_path).store([stranger])
        third = tick(second.cursor)
        assert not third.run_requests
        assert "accounts no connection has: org-3" in third.skip_message


def test_xero_connect_adds_a_connection_for_each_organisation_consented_to(sandbox, sync_env, tmp_path):
    path = tmp_path / "connections.yaml"
    save_registry(path, Registry(connections=(Connection(name="kept", ids={"salesforce": "00D000000000001"}),)))
    env = {**os.environ, REGISTRY_ENV: str(path)}
    for _ in range(2):  # consenting again adds nothing twice
        process = subprocess.Popen(
            [sys.executable, "-m", "sync_pipelines.cli", "xero-connect", "--redirect-uri", SANDBOX_REDIRECT_URI],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        consent = next(line for line in process.stdout if line.startswith("http"))
        output, _ = process.communicate(consent_by_redirect(consent.strip()) + "\n", timeout=60)
        assert process.returncode == 0, output

    registry = load_registry(path)
    assert registry.names[0] == "kept"
    added = {c.ids["xero"]: c for c in registry.connections[1:]}
    assert set(added) == set(sandbox.tenant_ids)
    assert all(c.settings == {"xero": {"token_path": sync_env["XERO_TOKEN_PATH"]}} for c in added.values())
    assert len(set(registry.names)) == 3


def test_salesforce_connect_gives_a_connection_its_org_and_each_syncs_its_own_org_into_its_own_organisation(
    sandbox, sync_env, registry, tmp_path
):
    """South's person consents in the second Salesforce org (its My Domain) with `salesforce-connect --connection
    south`; north keeps the environment's consent, in the first. Each connection's Salesforce -> Xero sync then
    writes its own org's accounts to its own Xero organisation, and nothing of the other's."""
    (first_org, first_url), (second_org, second_url) = sandbox.salesforce_urls.items()
    for url in (first_url, second_url):
        sizes = {"accounts": 8, "contacts_per_account": 1, "leads": 2, "opportunities": 2}
        requests.post(url.replace("/salesforce", "/_admin/salesforce", 1) + "/reset", json=sizes, timeout=30)
    path = Path(os.environ[REGISTRY_ENV])
    env = {**os.environ, "SALESFORCE_LOGIN_URL": second_url}
    command = ["salesforce-connect", "--redirect-uri", SANDBOX_SALESFORCE_REDIRECT_URI, "--connection", "south"]
    process = subprocess.Popen(
        [sys.executable, "-m", "sync_pipelines.cli", *command],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    consent = next(line for line in process.stdout if line.startswith("http"))
    output, _ = process.communicate(consent_by_redirect(consent.strip()) + "\n", timeout=60)
    assert process.returncode == 0, output
    set_account(path, "north", "salesforce", first_org, {})

    south = load_registry(path).connection("south")
    assert south.ids == {"xero": sandbox.tenant_ids[1], "salesforce": second_org}
    token_path = south.settings["salesforce"]["token_path"]
    assert south.settings == {"salesforce": {"login_url": second_url, "token_path": token_path}}
    assert token_path != sync_env["SALESFORCE_TOKEN_PATH"] and Path(token_path).exists()

    _sync_each_connection("salesforce_to_xero_sync")

    admin = SandboxAdmin(sandbox.url)
    accounts = {
        org: {a["Id"] for a in requests.get(f"{url.replace('/salesforce', '/_admin/salesforce', 1)}/records/Account",
                                            timeout=30).json() if not a["IsDeleted"]}
        for org, url in sandbox.salesforce_urls.items()
    }  # fmt: skip
    for tenant, org, other in zip(sandbox.tenant_ids, (first_org, second_org), (second_org, first_org), strict=True):
        numbers = {c.get("ContactNumber") for c in admin.call("GET", "/xero/contacts", tenant=tenant)}
        assert accounts[org] and accounts[org] <= numbers
        assert not accounts[other] & numbers


def test_a_connection_calls_xero_from_one_step_at_a_time_while_others_go_on(sandbox, sync_env, registry):
    """Another step of north holds north's Xero slot: north's extract waits for it without calling Xero, and
    south's runs meanwhile; freed, north's goes on."""
    admin = SandboxAdmin(sandbox.url)
    job = code_location().resolve_implicit_global_asset_job_def()
    north, south = sandbox.tenant_ids
    pools = {"concurrency": {"pools": {"default_limit": 1}}}  # as the CLI's and deploy/'s instances have them
    with dg.instance_for_test(overrides=pools) as instance, ThreadPoolExecutor(1) as runner:
        instance.add_dynamic_partitions(TENANTS.name, list(NAMES))
        storage = instance.event_log_storage
        storage.set_concurrency_slots("xero_api/north", 1)
        assert storage.claim_concurrency_slot("xero_api/north", "another-run", "another-step").is_claimed

        def extract(name: str) -> dg.ExecuteInProcessResult:
            return job.execute_in_process(
                instance=instance, partition_key=name, asset_selection=[xero.INVOICES.raw_key]
            )

        waiting = runner.submit(extract, "north")
        wait_for(partial(_logged, instance, "waiting for a slot of xero_api/north"), HANG_GUARD_SECONDS, "the wait")
        assert extract("south").success
        assert north not in admin.stats()["xero_tenants"] and south in admin.stats()["xero_tenants"]

        storage.free_concurrency_slot_for_step("another-run", "another-step")
        assert waiting.result(timeout=HANG_GUARD_SECONDS).success
        assert north in admin.stats()["xero_tenants"]
        assert {(p.name, p.limit) for p in storage.get_pool_limits()} >= {("xero_api/south", 1), ("xero_app", 166)}


def _logged(instance: dg.DagsterInstance, message: str) -> bool | None:
    records = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_START, limit=10).records
    for record in records:
        logs = instance.all_logs(record.event_log_entry.run_id)
        if any(message in (entry.user_message or "") for entry in logs):
            return True
    return None


def test_each_connection_writes_to_segment_with_its_own_write_key(sandbox, sync_env, registry, tmp_path, monkeypatch):
    """South's write key (its own Segment source's) is one the sandbox's workspace does not have: what south sends is
    dropped as Segment drops it, and what north sends with the environment's key is kept."""
    south = Connection(name="south", ids={"xero": sandbox.tenant_ids[1]},
                       settings={"segment": {"write_key": Secret(env="SOUTH_SEGMENT_WRITE_KEY")}})  # fmt: skip
    save_registry(tmp_path / "data" / "connections.yaml", Registry(connections=(registry.connection("north"), south)))
    monkeypatch.setenv("SOUTH_SEGMENT_WRITE_KEY", "south-source-write-key")
    _sync_each_connection()

    admin = SandboxAdmin(sandbox.url)
    kept = {invoice_id for invoice_id, event in track_counts(admin, prefix="Invoice ")}
    dropped = admin.get("/segment/dropped")
    assert {d["reason"] for d in dropped} == {"invalid_write_key"}
    dropped_invoices = {d["message"]["properties"]["invoice_id"] for d in dropped
                        if d["message"].get("event", "").startswith("Invoice ")}  # fmt: skip
    for tenant, ids in zip(sandbox.tenant_ids, (kept, dropped_invoices), strict=True):
        assert ids and ids <= _sales(admin, tenant)


def test_the_cli_reads_the_dead_letters_of_the_connection_it_is_given(tmp_path, monkeypatch):
    database = str(tmp_path / "warehouse.duckdb")
    monkeypatch.setenv("SYNC_PIPELINES_DUCKDB", database)
    path = tmp_path / "connections.yaml"
    save_registry(path, Registry(connections=tuple(Connection(name=n) for n in NAMES)))
    monkeypatch.setenv(REGISTRY_ENV, str(path))
    south = StagingResource(database=database).for_connection(Connection(name="south"))
    with south.connect() as conn:
        staging.dead_letter(conn, flow="xero_to_segment", entity="invoices", target="segment", retryable=True,
                            failures=[("msg-of-south", "inv-1", "503 Service Unavailable")], run_id=None)  # fmt: skip

    listed = {name: CliRunner().invoke(main, ["dead-letters", "--connection", name]) for name in NAMES}
    unnamed = CliRunner().invoke(main, ["dead-letters"])

    assert [result.exit_code for result in listed.values()] == [0, 0]
    assert "msg-of-south" in listed["south"].output and "msg-of-south" not in listed["north"].output
    assert unnamed.exit_code == 2 and "north, south" in unnamed.output


def test_replay_of_one_connection_delivers_its_dead_letters_in_a_run_of_its_partition(
    sandbox, sync_env, registry, monkeypatch
):
    _sync_each_connection()
    south = StagingResource(database=sync_env["SYNC_PIPELINES_DUCKDB"]).for_connection(registry.connection("south"))
    with south.connect() as conn:
        (message_id, record_id) = conn.execute(
            "SELECT message_id, record_id FROM outbox WHERE flow = 'xero_to_segment' AND entity = 'invoices' LIMIT 1"
        ).fetchone()
        staging.dead_letter(conn, flow="xero_to_segment", entity="invoices", target="segment", retryable=False,
                            failures=[(message_id, record_id, "400 Bad Request")], run_id=None)  # fmt: skip
    monkeypatch.setenv("DAGSTER_HOME", str(Path(sync_env["DAGSTER_HOME"])))

    replayed = CliRunner().invoke(main, ["replay", "--all", "--connection", "south"])

    assert replayed.exit_code == 0, replayed.output
    assert "requeued 1 dead letters" in replayed.output
    with south.connect() as conn:
        assert conn.execute("SELECT DISTINCT status FROM outbox").fetchall() == [("delivered",)]
        assert conn.execute("SELECT status FROM dead_letters").fetchall() == [("replayed",)]
    with dg.DagsterInstance.from_config(sync_env["DAGSTER_HOME"]) as instance:
        (run,) = instance.get_runs()
        assert run.tags["dagster/partition"] == "south"


def test_backfill_and_resync_of_one_connection_read_only_its_organisation_into_its_store(
    admin, sandbox, sync_env, registry, monkeypatch
):
    """`backfill --connection` reads the connection's months (one run per month: its partitions are month x
    connection) and delivers them in a run of its partition; `resync --connection` re-reads its whole history. The
    other connection is never read; a registry's command names its connection."""
    monkeypatch.setenv("DAGSTER_HOME", str(Path(sync_env["DAGSTER_HOME"])))
    window = ["--from", MONTHS[0][:7], "--to", MONTHS[-1][:7], "--flow", "xero_to_segment", "--entity", "xero_invoices"]
    admin.reset_stats()

    unnamed = CliRunner().invoke(main, ["backfill", *window])
    backfilled = CliRunner().invoke(main, ["backfill", *window, "--connection", "south"])

    assert unnamed.exit_code == 2 and "north, south" in unnamed.output
    assert backfilled.exit_code == 0, backfilled.output
    south, store = sandbox.tenant_ids[1], shard(sync_env["SYNC_PIPELINES_DUCKDB"], "south")
    listed = admin.call("GET", "/xero/invoices", tenant=south)
    in_window = {
        i["InvoiceID"] for i in listed if i["Type"] == "ACCREC" and START <= parse_xero_date(i["UpdatedDateUTC"]) < END
    }
    assert in_window and _staged(store, xero.INVOICES.table, "invoice_id") == in_window
    delivered = {m.get("properties", {}).get("invoice_id") for m in admin.segment_messages()}
    assert in_window <= delivered

    resynced = CliRunner().invoke(main, ["resync", "xero_invoices", "--connection", "south"])

    assert resynced.exit_code == 0, resynced.output
    assert _staged(store, xero.INVOICES.table, "invoice_id") == _sales(admin, south)
    assert set(admin.stats()["xero_tenants"]) == {south}
    assert not Path(shard(sync_env["SYNC_PIPELINES_DUCKDB"], "north")).exists()
    with dg.DagsterInstance.from_config(sync_env["DAGSTER_HOME"]) as instance:
        tags = [run.tags for run in instance.get_runs()]
    assert all(tenant_of(t) == "south" for t in tags) and len(tags) == len(MONTHS) + 2  # the months, deliver, resync


def test_a_connections_account_ids_pick_its_xero_organisation_and_its_segment_source(tmp_path):
    connection = Connection(name="acme", ids={"xero": "org-1", "segment": "src-1"})
    workspace = SegmentWorkspaceResource(inbox_path=str(tmp_path / "inbox.sqlite"))

    assert workspace.connection_settings(connection) == {"source_id": "src-1"}
    workspace.scope_to(connection)
    assert workspace.get_inbox().tenant_id == "src-1"
    assert XeroResource(client_id="id", client_secret="secret", token_path="t", token_key="k").connection_settings(
        connection
    ) == {"tenant_id": "org-1"}
