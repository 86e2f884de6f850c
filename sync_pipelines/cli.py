"""`sync-pipelines`: the demo, the Dagster UI, the sandbox, the webhook receiver, replays, backfills, resyncs,
migrations and Xero consent."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import dagster as dg
import requests
import yaml
from cryptography.fernet import Fernet
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from tabulate import tabulate

from sync_pipelines.definitions import defs
from sync_pipelines.defs.flows import registered_deliveries, registered_flows
from sync_pipelines.defs.segment_to_xero import FLOW as SEGMENT_TO_XERO
from sync_pipelines.lib import migration
from sync_pipelines.lib.deliveries import Delivery
from sync_pipelines.lib.entities import BACKFILL_MONTHS, BACKFILL_POLICY, BACKFILLS, Entity
from sync_pipelines.lib.reconcile import latest_reconciliation
from sync_pipelines.lib.staging import (
    DRY_RUN_TAG,
    PREVIEW_TAG,
    StagingResource,
    preview_directory,
    release_held,
    requeue_dead_letters,
)
from sync_pipelines.lib.tenants import (
    MONTH_DIMENSION,
    REGISTRY_ENV,
    TENANT_DIMENSION,
    TENANTS,
    add_xero_organisations,
    load_registry,
    registry_path,
    set_account,
)
from sync_pipelines.vendors.salesforce import auth as salesforce_auth
from sync_pipelines.vendors.segment.archive import import_archive
from sync_pipelines.vendors.token_store import EncryptedTokenStore
from sync_pipelines.vendors.xero import auth
from sync_pipelines.vendors.xero.settings import SCOPES
from sync_pipelines.webhooks.inbox import WebhookInbox
from sync_pipelines.webhooks.receiver import WebhookReceiver

SANDBOX_PORT = 8765
WEBHOOK_PORT = 8766
SANDBOX_REDIRECT_URI = "http://127.0.0.1/xero/callback"
SANDBOX_SALESFORCE_REDIRECT_URI = "http://127.0.0.1/salesforce/callback"
# The demo prints step progress, not Dagster's debug event stream.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def sandbox_environment(base_url: str, data_dir: Path) -> dict[str, str]:
    """The environment that points every resource at the embedded sandbox (README: "Real APIs")."""
    # The sandbox is the optional `sandbox` extra: only the commands that run it import it.
    from sync_pipelines.sandbox.salesforce.seed import ORG_ID
    from sync_pipelines.sandbox.server import SandboxSettings

    settings = SandboxSettings(state_path=data_dir / "sandbox.sqlite")
    return {
        "XERO_API_URL": f"{base_url}/xero/api",
        "XERO_IDENTITY_URL": f"{base_url}/xero/identity",
        "XERO_LOGIN_URL": f"{base_url}/xero/login",
        "XERO_CLIENT_ID": settings.client_id,
        "XERO_CLIENT_SECRET": settings.client_secret,
        "XERO_TOKEN_PATH": str(data_dir / "sandbox_xero_token.enc"),
        "SALESFORCE_LOGIN_URL": f"{base_url}/salesforce",
        "SALESFORCE_CLIENT_ID": settings.salesforce_client_id,
        "SALESFORCE_CLIENT_SECRET": settings.salesforce_client_secret,
        "SALESFORCE_TOKEN_PATH": str(data_dir / "sandbox_salesforce_token.enc"),
        "SALESFORCE_ORGANIZATION_ID": ORG_ID,
        "INTERCOM_API_URL": f"{base_url}/intercom",
        "INTERCOM_ACCESS_TOKEN": settings.intercom_access_token,
        "INTERCOM_CLIENT_SECRET": settings.intercom_client_secret,
        "SEGMENT_API_URL": f"{base_url}/segment",
        "SEGMENT_WRITE_KEY": settings.write_key,
        "SEGMENT_WEBHOOK_SECRET": settings.segment_webhook_secret,
        "SEGMENT_PUBLIC_API_URL": f"{base_url}/segmentapis",
        "SEGMENT_PUBLIC_API_TOKEN": settings.segment_public_api_token,
        "SEGMENT_PROFILE_API_URL": f"{base_url}/profiles",
        "SEGMENT_SPACE_ID": settings.segment_space_id,
        "SEGMENT_PROFILE_API_TOKEN": settings.segment_profile_token,
        "SYNC_PIPELINES_DUCKDB": str(data_dir / "warehouse.duckdb"),
        # The sandbox's Slack lookalike records team notifications for GET /_admin/notifications.
        "SYNC_PIPELINES_NOTIFY_URL": f"{base_url}/slack/services/T0000/B0000/sandbox",
        "XERO_WEBHOOK_KEY": settings.webhook_key,
        "SYNC_PIPELINES_WEBHOOK_INBOX": str(data_dir / "webhook_inbox.sqlite"),
        "DAGSTER_HOME": str((data_dir / "dagster_home").resolve()),
    }


def connect_sandbox(env: dict[str, str]) -> None:
    """Consent to the sandbox's Xero and Salesforce once, the way a user would in a browser; store the tokens."""
    key = env["SYNC_PIPELINES_TOKEN_KEY"]
    auth.connect_with_authorization_code(
        env["XERO_LOGIN_URL"], env["XERO_IDENTITY_URL"], env["XERO_CLIENT_ID"], env["XERO_CLIENT_SECRET"],
        SANDBOX_REDIRECT_URI, EncryptedTokenStore(env["XERO_TOKEN_PATH"], key), SCOPES,
    )  # fmt: skip
    salesforce_auth.connect_with_authorization_code(
        env["SALESFORCE_LOGIN_URL"], env["SALESFORCE_CLIENT_ID"], env["SALESFORCE_CLIENT_SECRET"],
        SANDBOX_SALESFORCE_REDIRECT_URI, EncryptedTokenStore(env["SALESFORCE_TOKEN_PATH"], key),
    )  # fmt: skip


@contextmanager
def running_sandbox(data_dir: Path, port: int, **seed: int) -> Iterator[dict[str, str]]:
    """Start the sandbox, export its environment and consent to its Xero and Salesforce afresh.

    Consenting on every start means the sandbox token never has to outlive its key, so a key is made up
    when none is set.
    """
    from sync_pipelines.sandbox.server import SandboxServer, SandboxSettings

    data_dir.mkdir(parents=True, exist_ok=True)
    settings = SandboxSettings(state_path=data_dir / "sandbox.sqlite", **seed)
    with SandboxServer(settings, port=port) as server:
        env = sandbox_environment(server.url, data_dir)
        env["SYNC_PIPELINES_TOKEN_KEY"] = os.environ.get("SYNC_PIPELINES_TOKEN_KEY") or Fernet.generate_key().decode()
        os.environ.update(env)
        connect_sandbox(env)
        yield env


# Telemetry off; one Xero extract at a time across processes, so each client's limiter sees the tenant's
# whole allowance (xero.md §5: 60 calls a minute, 5 in flight, per tenant); a queued run (a webhook's sync
# among them) is launched within a second rather than the default five, in a process forked from one that has
# loaded the code already (run_launcher.py), so it starts in a fraction of a second; the webhook sensor ticks every
# few seconds, so its skipped ticks are kept for a day rather than a week. A run whose process died (kill -9, out of
# memory or disk) is marked failed by the launcher within a second; run monitoring then frees
# the pool slots it held 10 s after that, looking every 5 s, so no later run waits on a dead one's `xero_api` slot
# for more than about 16 s, and the webhook sensor (which waits for the previous webhook run) is never stuck. The
# vendor clients' own logs (a retry, a wait on a rate limit) show in the run's log beside the step's.
DAGSTER_YAML = """telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
    op_granularity_run_buffer: 25
run_queue:
  dequeue_interval_seconds: 1
run_launcher:
  module: sync_pipelines.run_launcher
  class: WarmRunLauncher
sensors:
  use_threads: true
  num_workers: 8
run_monitoring:
  enabled: true
  poll_interval_seconds: 5
  free_slots_after_run_end_seconds: 10
retention:
  sensor:
    purge_after_days:
      skipped: 1
python_logs:
  managed_python_loggers:
    - sync_pipelines
  python_log_level: INFO
"""


def _prepare_dagster_home() -> bool:
    """Make $DAGSTER_HOME and its dagster.yaml on first use, and add to an existing one the settings it lacks (a
    newer version's, say threaded sensors), leaving those it has alone; False when no home is set."""
    if not os.environ.get("DAGSTER_HOME"):
        return False
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
        return True
    present = yaml.safe_load(config.read_text()) or {}
    missing = {key: value for key, value in yaml.safe_load(DAGSTER_YAML).items() if key not in present}
    if missing:
        with config.open("a") as file:
            file.write("\n" + yaml.safe_dump(missing, sort_keys=False))
    return True


def _dagster_instance() -> dg.DagsterInstance:
    """The instance under $DAGSTER_HOME, so runs show in the UI; an ephemeral one when none is set."""
    return dg.DagsterInstance.get() if _prepare_dagster_home() else dg.DagsterInstance.ephemeral()


def _print_reconciliation(database: str) -> bool:
    with StagingResource(database=database).connect() as conn:
        rows = latest_reconciliation(conn)
    click.echo(tabulate(rows, headers="keys", tablefmt="github"))
    return all(row["ok"] for row in rows)


@click.group()
def main() -> None:
    """Keep Xero, Segment, Salesforce and Intercom in step."""


# The demo's Segment history: a dozen people signing up, ordering and getting refunds from the four sources.
DEMO_SEGMENT_PEOPLE = 12


def _import_segment_history(env: dict[str, str], data_dir: Path) -> None:
    """The sandbox's seeded Segment history, archived as Segment's S3 destination keeps it and put in the inbox as
    a migration does (`sync-pipelines migrate`); again on a second demo, it lands nothing twice."""
    bucket = (data_dir / "segment-archive").resolve()
    bucket.mkdir(parents=True, exist_ok=True)
    sandbox = env["XERO_API_URL"].removesuffix("/xero/api")
    history = {"path": str(bucket), "seed": 7, "people": DEMO_SEGMENT_PEOPLE}
    requests.post(f"{sandbox}/_admin/segment/archive", json=history, timeout=60).raise_for_status()
    import_archive(bucket, WebhookInbox(env["SYNC_PIPELINES_WEBHOOK_INBOX"]))


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True)
@click.option("--port", default=0, help="Sandbox port (0: any free port).")
@click.option("--invoices", default=200, show_default=True, help="Invoices seeded into a new sandbox.")
@click.option("--malformed", default=3, show_default=True, help="Deliberately broken invoices seeded.")
def demo(data_dir: Path, port: int, invoices: int, malformed: int) -> None:
    """Start the sandbox, run every flow's sync job, then the rest of the assets; print the reconciliation table.

    Flows run in the registry's order: those that write a vendor before those that read it (the flows into Xero
    before Xero -> Segment), so the Xero contacts they write reach Segment in the same demo.
    """
    click.echo(f"Starting the embedded sandbox (Xero, Salesforce, Intercom, Segment) with its data in {data_dir}/")
    with running_sandbox(data_dir, port, invoices=invoices, malformed=malformed) as env:
        click.echo("Importing the sandbox's Segment history, as `sync-pipelines migrate` would")
        _import_segment_history(env, data_dir)
        definitions, instance = defs(), _dagster_instance()
        flows = registered_flows()
        jobs = [definitions.resolve_job_def(flow.job_name) for flow in flows]
        everything = definitions.resolve_implicit_global_asset_job_def()
        synced = {key for job in jobs for key in job.asset_layer.executable_asset_keys}
        backfills = set(BACKFILLS.resolve(definitions.resolve_asset_graph()))  # only a backfill runs those
        rest = [key for key in everything.asset_layer.executable_asset_keys if key not in synced | backfills]
        click.echo(
            "The sandbox keeps Xero's real limit of 60 calls a minute, so a first demo spends most of its few "
            "minutes waiting on it (a 'retrying' line from a client is that limit, handled)."
        )
        results = []
        for number, job in enumerate([*jobs, everything], start=1):
            name = job.name if job is not everything else "the rest (enrichment, write-backs)"
            click.echo(f"[{number}/{len(jobs) + 1}] {name} ...")
            started = time.monotonic()
            selection = rest if job is everything else None
            result = job.execute_in_process(
                instance=instance, raise_on_error=False, run_config=QUIET_LOGS, asset_selection=selection
            )
            results.append(result)
            outcome = "done" if result.success else "FAILED"
            click.echo(f"      {outcome} in {time.monotonic() - started:.0f} s (run {result.run_id})")
        database = env["SYNC_PIPELINES_DUCKDB"]
        moved = _delivered_by_runs(database, [result.run_id for result in results])
        click.echo("\nWhat this demo delivered, per flow and entity (records, and the messages written for them):")
        click.echo(tabulate(moved, headers="keys", tablefmt="github") if moved else "nothing: no source changed")
        click.echo("\nReconciliation, everything so far (records in the source against messages delivered):")
        reconciled = _print_reconciliation(database)
    succeeded = all(result.success for result in results)
    if succeeded and reconciled:
        sent = sum(row["messages"] for row in moved)
        click.echo(
            f"\nEverything reconciles: {sent} messages delivered this time"
            f"{'' if sent else ' (nothing changed in the sources)'}; see lineage and checks with "
            "`sync-pipelines dev`, held records with `sync-pipelines quarantine`."
        )
    else:
        click.echo(
            "\nSomething did not go through: see the FAILED runs and the rows not ok above, then "
            "`sync-pipelines quarantine`, `sync-pipelines dead-letters` and the runs in `sync-pipelines dev`."
        )
    sys.exit(0 if succeeded and reconciled else 1)


def _delivered_by_runs(database: str, run_ids: list[str]) -> list[dict]:
    """Per flow and entity, the records these runs delivered and the messages written for them."""
    with StagingResource(database=database).connect() as conn:
        return (
            conn.execute(
                """SELECT flow, entity, count(DISTINCT record_id) AS records, count(*) AS messages FROM audit_log
                   WHERE outcome = 'delivered' AND run_id IN (SELECT unnest(?)) GROUP BY ALL ORDER BY ALL""",
                [run_ids],
            )
            .df()
            .to_dict("records")
        )


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True)
@click.option("--port", default=SANDBOX_PORT, show_default=True, help="Sandbox port.")
@click.option("--ui-port", default=3000, show_default=True)
@click.option("--webhook-port", default=WEBHOOK_PORT, show_default=True, help="Webhook receiver port.")
def dev(data_dir: Path, port: int, ui_port: int, webhook_port: int) -> None:
    """The Dagster UI (127.0.0.1) against the embedded sandbox, whose Xero, Intercom and Segment webhooks and
    Salesforce Outbound Messages go to a local receiver."""
    with (
        running_sandbox(data_dir, port) as env,
        WebhookReceiver(
            env["SYNC_PIPELINES_WEBHOOK_INBOX"],
            {
                "xero": env["XERO_WEBHOOK_KEY"],
                "intercom": env["INTERCOM_CLIENT_SECRET"],
                "segment": env["SEGMENT_WEBHOOK_SECRET"],
                "salesforce": env["SALESFORCE_ORGANIZATION_ID"],
            },
            port=webhook_port,
        ) as receiver,
    ):
        sandbox_url = env["XERO_API_URL"].removesuffix("/xero/api")
        hooks = {"url": receiver.url_for("xero"), "key": env["XERO_WEBHOOK_KEY"]}
        requests.put(f"{sandbox_url}/_admin/xero/webhooks", json=hooks, timeout=10).raise_for_status()
        intercom_hooks = {"url": receiver.url_for("intercom"), "client_secret": env["INTERCOM_CLIENT_SECRET"]}
        requests.put(f"{sandbox_url}/_admin/intercom/webhooks", json=intercom_hooks, timeout=10).raise_for_status()
        destination = {"url": receiver.url_for("segment"), "secret": env["SEGMENT_WEBHOOK_SECRET"]}
        requests.put(f"{sandbox_url}/_admin/segment/destination", json=destination, timeout=10).raise_for_status()
        outbound = {"url": receiver.url_for("salesforce")}
        requests.put(f"{sandbox_url}/_admin/salesforce/outbound", json=outbound, timeout=10).raise_for_status()
        click.echo(f"sandbox webhooks -> {receiver.url}/{{xero,intercom,segment}}/webhooks, {outbound['url']}")
        _prepare_dagster_home()
        # The dagster next to this interpreter: the same environment even when it is not activated.
        dagster = str(Path(sys.executable).with_name("dagster"))
        subprocess.run([dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(ui_port)], check=False)


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True)
@click.option("--port", default=SANDBOX_PORT, show_default=True)
@click.option("--seed", default=42, show_default=True)
@click.option("--invoices", default=200, show_default=True)
@click.option("--contacts", default=40, show_default=True)
@click.option("--malformed", default=0, show_default=True)
@click.option("--webhook-url", help="Deliver Xero webhooks here, e.g. http://127.0.0.1:8766/xero/webhooks.")
@click.option("--xero-organisations", default=1, show_default=True, help="Xero organisations the app is connected to.")
@click.option("--salesforce-orgs", default=1, show_default=True, help="Salesforce orgs, each at its own My Domain.")
@click.option(
    "--https", is_flag=True, help="Serve HTTPS under a local CA kept in the data dir, for SDKs that insist on https."
)
def sandbox(
    data_dir: Path,
    port: int,
    seed: int,
    invoices: int,
    contacts: int,
    malformed: int,
    webhook_url: str | None,
    xero_organisations: int,
    salesforce_orgs: int,
    https: bool,
) -> None:
    """Serve the vendor sandbox on 127.0.0.1 until interrupted (seeding only a new state file)."""
    from sync_pipelines.sandbox.server import SandboxServer, SandboxSettings

    data_dir.mkdir(parents=True, exist_ok=True)
    settings = SandboxSettings(
        state_path=data_dir / "sandbox.sqlite", seed=seed, invoices=invoices, contacts=contacts, malformed=malformed,
        webhook_url=webhook_url, xero_organisations=xero_organisations, salesforce_orgs=salesforce_orgs,
    )  # fmt: skip
    server = SandboxServer(settings, port=port, https=https)
    click.echo(f"sandbox on {server.url} (state: {settings.state_path})")
    if salesforce_orgs > 1:
        click.echo("Salesforce orgs (OrganizationId: My Domain, the SALESFORCE_LOGIN_URL of a connection to it):")
        for org_id, url in server.salesforce_urls.items():
            click.echo(f"  {org_id}: {url}")
    if server.ca_cert:
        # Both variables replace the default trust store: set them only where clients talk to the sandbox alone.
        click.echo(f"trust its CA: export REQUESTS_CA_BUNDLE={server.ca_cert} SSL_CERT_FILE={server.ca_cert}")
    server.serve_forever()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Xero needs HTTPS on 443: put a proxy in front.")
@click.option("--port", default=WEBHOOK_PORT, show_default=True)
@click.option(
    "--inbox",
    type=click.Path(path_type=Path),
    envvar="SYNC_PIPELINES_WEBHOOK_INBOX",
    show_envvar=True,
    default=Path("data/webhook_inbox.sqlite"),
    show_default=True,
    help="SQLite file the sensor reads.",
)
@click.option(
    "--key",
    envvar="XERO_WEBHOOK_KEY",
    show_envvar=True,
    help="The Xero app's webhook key; set it in the environment, not on the command line (unset: no Xero route).",
)
@click.option(
    "--intercom-secret",
    envvar="INTERCOM_CLIENT_SECRET",
    show_envvar=True,
    help="The Intercom app's client secret, which signs its webhooks (unset: no Intercom route).",
)
@click.option(
    "--segment-secret",
    envvar="SEGMENT_WEBHOOK_SECRET",
    show_envvar=True,
    help="The shared secret of the Segment Webhooks destination, which signs its deliveries (unset: no Segment route).",
)
@click.option(
    "--salesforce-org",
    envvar="SALESFORCE_ORGANIZATION_ID",
    show_envvar=True,
    help="The Salesforce organisations whose Outbound Messages are accepted, comma-separated (one per connection's "
    "org; unset: no Salesforce route).",
)
def webhooks(
    host: str, port: int, inbox: Path, key: str | None, intercom_secret: str | None, segment_secret: str | None,
    salesforce_org: str | None,
) -> None:  # fmt: skip
    """Receive Xero, Intercom and Segment webhooks and Salesforce's Outbound Messages: verify each delivery (its
    signature; Salesforce's, its organisation), store its events, acknowledge."""
    secrets = {"xero": key, "intercom": intercom_secret, "segment": segment_secret, "salesforce": salesforce_org}
    if not any(secrets.values()):
        raise click.UsageError(
            "set XERO_WEBHOOK_KEY, INTERCOM_CLIENT_SECRET, SEGMENT_WEBHOOK_SECRET or SALESFORCE_ORGANIZATION_ID"
        )
    receiver = WebhookReceiver(inbox, secrets, host=host, port=port)
    for vendor, secret in secrets.items():
        if secret:
            click.echo(f"receiving {vendor.capitalize()} webhooks on {receiver.url_for(vendor)} (inbox: {inbox})")
    receiver.serve_forever()


def _store(connection: str | None) -> StagingResource:
    """The install's staging store, or with a connection registry the named connection's."""
    store, registry = StagingResource(database=_database()), load_registry()
    if registry is None:
        if connection is not None:
            raise click.UsageError(f"--connection needs a connection registry (${REGISTRY_ENV})")
        return store
    if connection is None:
        raise click.UsageError(f"name one of the registry's connections with --connection: {', '.join(registry.names)}")
    try:
        return store.for_connection(registry.connection(connection))
    except KeyError as unknown:
        raise click.UsageError(str(unknown)) from None


# Which connection's store a command reads and its runs serve, where the install has a registry of several.
connection_option = click.option("--connection", help="The connection (with a registry of several).")


def _partition_of(instance: dg.DagsterInstance, connection: str | None) -> str | None:
    """The connection's partition (added when the `connections` sensor has not added it yet), None without one."""
    if connection is not None and not instance.has_dynamic_partition(TENANTS.name, connection):
        instance.add_dynamic_partitions(TENANTS.name, [connection])
    return connection


@main.command()
@click.option("--all", "include_exhausted", is_flag=True, help="Also replay letters that ran out of attempts.")
@connection_option
def replay(include_exhausted: bool, connection: str | None) -> None:
    """Put due dead letters back in the outbox and deliver them (to the environment's endpoints, else the
    embedded sandbox's); with a registry, the named connection's, in a run of its partition."""
    with _configured():
        definitions, store = defs(), _store(connection)
        registry = load_registry()
        runs = registry.connection(connection).runs if registry and connection else lambda flow: True
        deliveries = [d for d in registered_deliveries() if runs(d.flow)]
        with store.connect() as conn:
            requeued = sum(
                requeue_dead_letters(conn, flow=d.flow, entity=d.partition, include_exhausted=include_exhausted)
                for d in deliveries
            )
        click.echo(f"requeued {requeued} dead letters")
        instance = _dagster_instance()
        job = definitions.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance, asset_selection=[d.key for d in deliveries], run_config=QUIET_LOGS,
            partition_key=_partition_of(instance, connection),
        )  # fmt: skip
    sys.exit(0 if result.success else 1)


# Where the demo (and `dev`) keep their data: what the other commands use when no environment is set.
DATA_DIR = Path("data")


def _database() -> str:
    """The staging store: the environment's, else the one the demo made."""
    return os.environ.get("SYNC_PIPELINES_DUCKDB") or str(DATA_DIR / "warehouse.duckdb")


@contextmanager
def _configured() -> Iterator[None]:
    """The environment's endpoints; with none set (say, right after the demo), the embedded sandbox on the demo's
    data, started as the demo starts it (its state is kept in the data folder)."""
    if os.environ.get("SYNC_PIPELINES_DUCKDB"):
        yield
        return
    click.echo(f"no SYNC_PIPELINES_DUCKDB in the environment: using the embedded sandbox on {DATA_DIR}/")
    with running_sandbox(DATA_DIR, port=0):
        yield


@contextmanager
def _environment(overrides: dict[str, str]) -> Iterator[None]:
    """os.environ with `overrides` set, as it was again afterwards (the resources read it when a run starts)."""
    before = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@main.command()
@click.option(
    "--archive",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder in the layout of Segment's AWS S3 destination (segment-logs/{source}/{day}/...).",
)
@click.option("--dry-run", is_flag=True, help="Rehearse on copies of the staging store and inbox: nothing is written.")
@connection_option
def migrate(archive: Path, dry_run: bool, connection: str | None) -> None:
    """Migrate Segment's history into Xero through the segment_to_xero flow: rehearse with --dry-run, then run.

    The archive's messages go into the webhook inbox as if Segment had delivered them (each once, by messageId),
    and the flow's sync job runs. A dry run does that on copies and derives every Xero write without sending
    it. Either way the writes are printed, per delivery, and kept in the staging store's `migrations` table. With a
    registry, the named connection's run takes its Segment source's messages into its store and Xero organisation.
    """
    database, inbox = Path(_store(connection).database), Path(os.environ["SYNC_PIPELINES_WEBHOOK_INBOX"])
    flow = SEGMENT_TO_XERO
    with tempfile.TemporaryDirectory() as rehearsal:
        overrides = {"SYNC_PIPELINES_WEBHOOK_INBOX": str(migration.copy_inbox(inbox, Path(rehearsal)))}
        with _environment(overrides if dry_run else {}):
            imported = import_archive(archive, WebhookInbox(os.environ["SYNC_PIPELINES_WEBHOOK_INBOX"]))
            job = defs().resolve_job_def(flow.job_name)
            # A rehearsal's runs are not the real store's history: they stay out of the UI's instance.
            instance = dg.DagsterInstance.ephemeral() if dry_run else _dagster_instance()
            result = job.execute_in_process(
                instance=instance,
                raise_on_error=False,
                run_config=QUIET_LOGS,
                tags={DRY_RUN_TAG: "true"} if dry_run else None,
                partition_key=_partition_of(instance, connection),
            )
    # A dry run staged and derived in its scratch copy of the store.
    scratch = preview_directory(database, result.run_id) / "staging.duckdb" if dry_run else database
    with StagingResource(database=str(scratch)).connect() as conn:
        writes = migration.writes_of_run(conn, flow=flow.name, run_id=result.run_id, delivered=not dry_run)
    with StagingResource(database=str(database)).connect() as conn:
        migration.record(
            conn, run_id=result.run_id, flow=flow.name, archive=str(archive), dry_run=dry_run, writes=writes
        )
    click.echo(
        f"{'dry run' if dry_run else 'migration'} {result.run_id}: {imported.messages} messages from "
        f"{imported.files} files, {len(imported.refused)} refused; run {'succeeded' if result.success else 'FAILED'}"
    )
    for where, reason in imported.refused[:20]:
        click.echo(f"  refused {where}: {reason}")
    column = "would write" if dry_run else "written"
    rows = [{"delivery": delivery, "write": write, column: n} for (delivery, write), n in sorted(writes.items())]
    click.echo(tabulate(rows, headers="keys", tablefmt="github"))
    sys.exit(0 if result.success else 1)


def _chosen(flows: tuple[str, ...], entities: tuple[str, ...]) -> list[Delivery]:
    """The deliveries of the named flows (all if none) that read the named entities (all if none), by label."""
    known = registered_flows()
    unknown = set(flows) - {flow.name for flow in known}
    if unknown:
        raise click.BadParameter(f"no flow {', '.join(sorted(unknown))}", param_hint="--flow")
    deliveries = [d for flow in known if not flows or flow.name in flows for d in flow.deliveries()]
    if entities:
        unread = set(entities) - {d.entity.label for d in deliveries}
        if unread:
            raise click.BadParameter(f"no delivery reads {', '.join(sorted(unread))}", param_hint="--entity")
        deliveries = [d for d in deliveries if d.entity.label in entities]
    return deliveries


def _run(
    assets: list[dg.AssetKey], tags: dict[str, str], config: dict | None = None, connection: str | None = None,
    month: str | None = None,
) -> dg.ExecuteInProcessResult:  # fmt: skip
    """Materialise `assets` in one run of the code location, recorded in the UI's instance; with a registry, a run
    of the connection's partition (of its `month` of history, for backfill assets)."""
    job = defs().resolve_implicit_global_asset_job_def()
    instance = _dagster_instance()
    partition = _partition_of(instance, connection)
    if partition is not None and month is not None:
        partition = dg.MultiPartitionKey({MONTH_DIMENSION: month, TENANT_DIMENSION: partition})
    return job.execute_in_process(
        instance=instance,
        asset_selection=assets,
        raise_on_error=False,
        run_config={**QUIET_LOGS, **(config or {})},
        tags=tags,
        partition_key=partition,
    )


def _deliver(
    deliveries: list[Delivery], entities: list[Entity], tags: dict[str, str], extract: dict | None,
    connection: str | None,
) -> bool:  # fmt: skip
    """Stage what was landed and deliver it (for the connection, with a registry); print the writes made (or, in a
    dry run, planned) per delivery."""
    assets = [e.staged_key for e in entities] + [d.key for d in deliveries]
    if extract is not None:
        assets += [e.raw_key for e in entities]
    config = {"ops": {_op_name(e.raw_key): {"config": extract} for e in entities}} if extract else None
    result = _run(assets, tags, config, connection)
    database = Path(_store(connection).database)
    dry_run = tags.get(DRY_RUN_TAG) == "true"
    scratch = preview_directory(database, tags[PREVIEW_TAG]) / "staging.duckdb" if dry_run else database
    with StagingResource(database=str(scratch)).connect() as conn:
        writes = Counter()
        for flow in {d.flow for d in deliveries}:
            writes += migration.writes_of_run(conn, flow=flow, run_id=result.run_id, delivered=not dry_run)
    column = "would write" if dry_run else "written"
    rows = [{"delivery": delivery, "write": write, column: n} for (delivery, write), n in sorted(writes.items())]
    click.echo(tabulate(rows, headers="keys", tablefmt="github") if rows else "nothing to write")
    if dry_run:
        click.echo(f"every planned payload: {preview_directory(database, tags[PREVIEW_TAG])}/*.jsonl")
    return result.success


def _op_name(key: dg.AssetKey) -> str:
    return "__".join(key.path)


@main.command()
@click.option("--from", "first", required=True, type=click.DateTime(["%Y-%m"]), help="First month, e.g. 2025-01.")
@click.option("--to", "last", required=True, type=click.DateTime(["%Y-%m"]), help="Last month, included.")
@click.option("--flow", "flows", multiple=True, help="Only this flow's entities (repeatable); default: every flow.")
@click.option("--entity", "entities", multiple=True, help="Only this entity, e.g. xero_invoices (repeatable).")
@click.option("--dry-run", is_flag=True, help="Preview: stage into a scratch copy and report the writes; send none.")
@connection_option
def backfill(first, last, flows: tuple[str, ...], entities: tuple[str, ...], dry_run: bool, connection: str | None):
    """Re-read the months FROM..TO of history from the vendors, by each record's own change time, and deliver what
    differs from what the targets already hold (a range already synced writes nothing).

    The same backfill assets the UI's backfill dialog launches, a year of months per run; the ongoing sync's
    cursors are left alone. Segment entities have no windows (their history comes in with `migrate`). With a
    registry, the named connection's history, a month per run (the UI's partitions are month x connection).
    """
    _store(connection)  # a registry's connection is named, and known
    deliveries = _chosen(flows, entities)
    windowed = list({d.entity.label: d.entity for d in deliveries if d.entity.backfills}.values())
    if not windowed:
        raise click.UsageError("none of the chosen entities can re-read a window of history")
    months = BACKFILL_MONTHS.get_partition_keys_in_range(
        dg.PartitionKeyRange(first.strftime("%Y-%m-01"), last.strftime("%Y-%m-01"))
    )
    tags = {DRY_RUN_TAG: "true", PREVIEW_TAG: f"backfill-{uuid.uuid4().hex[:8]}"} if dry_run else {}
    per_run = 1 if connection else BACKFILL_POLICY.max_partitions_per_run
    with _configured():
        for at in range(0, len(months), per_run):
            span = months[at : at + per_run]
            window = {ASSET_PARTITION_RANGE_START_TAG: span[0], ASSET_PARTITION_RANGE_END_TAG: span[-1]}
            read = [e.backfill_key for e in windowed]
            result = _run(read, tags, None, connection, span[0]) if connection else _run(read, {**tags, **window})
            click.echo(f"{span[0][:7]}..{span[-1][:7]}: {'read' if result.success else 'FAILED'} ({result.run_id})")
            if not result.success:
                sys.exit(1)  # a day limit stops the window at a checkpoint: run the same command again to resume
        ok = _deliver([d for d in deliveries if d.entity in windowed], windowed, tags, None, connection)
    sys.exit(0 if ok else 1)


@main.command()
@click.argument("entities", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Preview: stage into a scratch copy and report the writes; send none.")
@connection_option
def resync(entities: tuple[str, ...], dry_run: bool, connection: str | None) -> None:
    """Resync ENTITIES (e.g. salesforce_accounts) from scratch: forget their cursors, landed records and staged
    state, re-read their whole history and deliver it; the targets are written only where they differ. With a
    registry, the named connection's."""
    _store(connection)
    deliveries = _chosen((), entities)
    chosen = list({d.entity.label: d.entity for d in deliveries}.values())
    tags = {DRY_RUN_TAG: "true", PREVIEW_TAG: f"resync-{uuid.uuid4().hex[:8]}"} if dry_run else {}
    with _configured():
        ok = _deliver(deliveries, chosen, tags, {"full_resync": True}, connection)
    sys.exit(0 if ok else 1)


@main.command()
@connection_option
def release(connection: str | None) -> None:
    """Let the changes a blocked batch held back go out with the next delivery (after you have looked)."""
    with _store(connection).connect() as conn:
        released = sum(release_held(conn, flow=d.flow, entity=d.partition) for d in registered_deliveries())
    click.echo(f"released {released} held messages")


@main.command()
@click.option("--samples", default=3, show_default=True, help="Record ids shown per reason.")
@connection_option
def quarantine(samples: int, connection: str | None) -> None:
    """What was quarantined and why: each reason with its count and a few records, most frequent first."""
    with _store(connection).connect() as conn:
        rows = conn.execute(
            """SELECT source, entity, coalesce(delivery, 'staging') AS refused_by, reason, count(*) AS records,
                      array_to_string(list(record_id ORDER BY id DESC)[1:?], ', ') AS latest,
                      max(quarantined_at) AS last_seen
               FROM (SELECT *, unnest(string_split(reasons, '; ')) AS reason FROM quarantine)
               GROUP BY ALL ORDER BY records DESC, last_seen DESC""",
            [samples],
        ).df()
    click.echo(tabulate(rows, headers="keys", tablefmt="github", showindex=False) if len(rows) else "nothing held")


@main.command("dead-letters")
@click.option("--all", "everything", is_flag=True, help="Also the letters replayed since (status 'replayed').")
@connection_option
def dead_letters(everything: bool, connection: str | None) -> None:
    """Writes the targets refused: each with its error, attempts and when it is tried again (None: it waits for
    `sync-pipelines replay --all`)."""
    with _store(connection).connect() as conn:
        rows = conn.execute(
            """SELECT flow, entity, message_id, status, attempts, left(error, 120) AS error, last_failed_at,
                      next_attempt_at FROM dead_letters WHERE ? OR status <> 'replayed'
               ORDER BY last_failed_at DESC""",
            [everything],
        ).df()
    click.echo(tabulate(rows, headers="keys", tablefmt="github", showindex=False) if len(rows) else "none")


@main.command("xero-connect")
@click.option("--redirect-uri", required=True, help="A redirect URI registered for your Xero app.")
def xero_connect(redirect_uri: str) -> None:
    """Authorise this app with real Xero organisations and store the tokens encrypted; with a connection registry
    ($SYNC_PIPELINES_CONNECTIONS), add a connection for each organisation consented to."""
    env = os.environ
    url, state = auth.authorization_url(env.get("XERO_LOGIN_URL", "https://login.xero.com"), env["XERO_CLIENT_ID"],
                                        redirect_uri, SCOPES)  # fmt: skip
    click.echo(f"Open this URL, approve, then paste the URL Xero redirected you to:\n{url}")
    redirected = click.prompt("Redirected URL", hide_input=True)
    store = EncryptedTokenStore(env["XERO_TOKEN_PATH"], env["SYNC_PIPELINES_TOKEN_KEY"])
    auth.exchange_redirected_url(
        env["XERO_IDENTITY_URL"], env["XERO_CLIENT_ID"], env["XERO_CLIENT_SECRET"], redirect_uri, redirected, state,
        store,
    )  # fmt: skip
    click.echo("Connected; tokens stored encrypted.")
    with dg.build_resources({"xero": defs().resources["xero"]}) as resources:
        organisations = resources.xero.get_client().connections()
    click.echo("Organisations the app may sync (tenantId, name):")
    for tenant, name in organisations.items():
        click.echo(f"  {tenant}  {name}")
    registry = registry_path()
    if registry is None:
        if len(organisations) > 1:
            click.echo(f"Set XERO_TENANT_ID to the one this install syncs, or {REGISTRY_ENV} to a file to sync all.")
        return
    added = add_xero_organisations(registry, organisations, env["XERO_TOKEN_PATH"])
    click.echo(f"Added to {registry}: {', '.join(c.name for c in added) or 'none (all were there)'}")


@main.command("salesforce-connect")
@click.option("--redirect-uri", required=True, help="The callback URL of your connected app.")
@click.option(
    "--connection",
    help=f"With a connection registry (${REGISTRY_ENV}): the connection whose Salesforce org this is; a new name "
    "adds one. Its tokens get a file of their own, beside SALESFORCE_TOKEN_PATH.",
)
def salesforce_connect(redirect_uri: str, connection: str | None) -> None:
    """Authorise this app with a real Salesforce org (OAuth 2.0 web server flow) and store the tokens encrypted;
    with a connection registry, record the org (its OrganizationId, login URL and token file) on the connection."""
    env = os.environ
    login_url = env.get("SALESFORCE_LOGIN_URL", "https://login.salesforce.com")
    registry, token_path = registry_path(), Path(env["SALESFORCE_TOKEN_PATH"])
    if registry is not None:
        if connection is None:
            raise click.UsageError(f"name the connection this org is for with --connection (${REGISTRY_ENV} is set)")
        token_path = token_path.with_name(f"{token_path.stem}.{connection}{token_path.suffix}")
    url, state = salesforce_auth.authorization_url(login_url, env["SALESFORCE_CLIENT_ID"], redirect_uri)
    click.echo(f"Open this URL, approve, then paste the URL Salesforce redirected you to:\n{url}")
    redirected = click.prompt("Redirected URL", hide_input=True)
    store = EncryptedTokenStore(token_path, env["SYNC_PIPELINES_TOKEN_KEY"])
    org = salesforce_auth.exchange_redirected_url(
        login_url, env["SALESFORCE_CLIENT_ID"], env["SALESFORCE_CLIENT_SECRET"], redirect_uri, redirected, state,
        store,
    )  # fmt: skip
    click.echo("Connected; tokens stored encrypted.")
    if registry is not None and connection is not None:
        if org is None:
            raise click.ClickException("Salesforce's token response named no org (no identity URL): nothing recorded")
        settings = {"login_url": login_url, "token_path": str(token_path)}
        try:
            set_account(registry, connection, "salesforce", org, settings)
        except ValueError as taken:
            raise click.UsageError(str(taken)) from None
        click.echo(f"Connection {connection} in {registry}: Salesforce org {org}")


if __name__ == "__main__":
    main()
