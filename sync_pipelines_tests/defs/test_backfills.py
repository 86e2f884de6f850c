"""Backfills through Dagster's own machinery, as the UI launches them: the `launchPartitionBackfill` GraphQL
mutation creates the backfill, and the backfill daemon's iteration submits its runs (here called by the test rather
than on the daemon's 30-second loop, so nothing waits on a clock), which execute in their own processes against the
sandbox's seeded history of each vendor."""

import json
import logging
import math
from collections import Counter
from datetime import UTC, datetime
from functools import partial

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
)
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.backfill import execute_backfill_iteration
from dagster_graphql.test.utils import execute_dagster_graphql

from sync_pipelines.defs import intercom_to_xero, salesforce_to_xero, xero_to_segment
from sync_pipelines.lib.entities import Entity, vendor_assets
from sync_pipelines.lib.staging import DRY_RUN_TAG, StagingResource, preview_directory
from sync_pipelines.vendors.intercom import entities as intercom
from sync_pipelines.vendors.intercom.settings import MAX_PER_PAGE
from sync_pipelines.vendors.salesforce import entities as salesforce
from sync_pipelines.vendors.salesforce.settings import MAX_BATCH_SIZE
from sync_pipelines.vendors.xero import entities as xero
from sync_pipelines.vendors.xero.contracts.common import parse_xero_date
from sync_pipelines.vendors.xero.resource import XeroResource
from sync_pipelines.vendors.xero.settings import MAX_PAGE_SIZE
from sync_pipelines_tests.conftest import code_location, xero_resource
from sync_pipelines_tests.webhooks.daemon import HANG_GUARD_SECONDS, wait_for

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on UnauthorizedError { message }
  }
}
"""
# The third quarter of 2024, which every vendor's seeded history covers (xero and salesforce: 2024; intercom: from
# June 2024), by the months a user ticks in the backfill dialog.
MONTHS = ["2024-07-01", "2024-08-01", "2024-09-01"]
START, END = datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 10, 1, tzinfo=UTC)
FINISHED = BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED_FAILED, BulkActionStatus.FAILED


def launch(workspace: WorkspaceProcessContext, assets: list[dg.AssetKey], months: list[str], **tags: str) -> str:
    """Launch a backfill of `months` over `assets` as the UI does (with tags, as the launchpad sets them)."""
    params = {
        "assetSelection": [{"path": key.path} for key in assets],
        "partitionNames": months,
        "tags": [{"key": key, "value": value} for key, value in tags.items()],
    }
    answer = execute_dagster_graphql(workspace.create_request_context(), LAUNCH, {"params": params})
    launched = answer.data["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def _ended(instance: dg.DagsterInstance, run_id: str) -> bool | None:
    return instance.get_run_by_id(run_id).is_finished or None


def finish(workspace: WorkspaceProcessContext, backfill_id: str) -> BulkActionStatus:
    """Let the backfill daemon's iteration run the backfill to its end; its final status."""
    instance, logger = workspace.instance, logging.getLogger("backfill")

    def finished() -> BulkActionStatus | None:
        list(execute_backfill_iteration(workspace, logger))
        for run in instance.get_runs(dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id})):
            wait_for(partial(_ended, instance, run.run_id), HANG_GUARD_SECONDS, "the run")
        status = instance.get_backfill(backfill_id).status
        return status if status in FINISHED else None

    return wait_for(finished, 4 * HANG_GUARD_SECONDS, "the backfill's end")


def backfill(
    workspace: WorkspaceProcessContext, assets: list[dg.AssetKey], months: list[str] = MONTHS, **tags: str
) -> tuple[str, BulkActionStatus]:
    backfill_id = launch(workspace, assets, months, **tags)
    return backfill_id, finish(workspace, backfill_id)


def _in_window(stamps: dict[str, datetime | None]) -> set[str]:
    return {record_id for record_id, stamp in stamps.items() if stamp is not None and START <= stamp < END}


BACKFILLED = (xero.INVOICES, salesforce.ACCOUNTS, intercom.CONTACTS)


def _window(admin) -> dict[str, set[str]]:
    """What each backfilled entity's window holds at the vendor (by vendor), by its own change time."""
    invoices = {i["InvoiceID"]: parse_xero_date(i["UpdatedDateUTC"]) for i in admin.get("/xero/invoices")
                if i["Type"] == "ACCREC"}  # fmt: skip
    accounts = {
        a["Id"]: datetime.fromisoformat(a["SystemModstamp"].replace("+0000", "+00:00"))
        for a in admin.salesforce_records("Account")
    }
    # An archived contact is out of the API's reach, so of every read's.
    contacts = {c["id"]: datetime.fromtimestamp(c["updated_at"], UTC) for c in admin.intercom_records("contacts")
                if not c.get("_archived")}  # fmt: skip
    return {"xero": _in_window(invoices), "salesforce": _in_window(accounts), "intercom": _in_window(contacts)}


def _staged(env: dict[str, str], entity: Entity) -> tuple[Counter, set[str]]:
    """How often each record is staged, and the records quarantined (the seeded history holds a few malformed)."""
    with StagingResource(database=env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        staged = Counter(key for (key,) in conn.execute(f"SELECT {entity.key} FROM {entity.table}").fetchall())
        held = conn.execute(
            "SELECT record_id FROM quarantine WHERE source = ? AND entity = ?", [entity.vendor, entity.name]
        ).fetchall()
    return staged, {record_id for (record_id,) in held}


def _deliveries() -> list[dg.AssetKey]:
    flows = (xero_to_segment.FLOW, salesforce_to_xero.FLOW, intercom_to_xero.FLOW)
    return [d.key for flow in flows for d in flow.deliveries() if d.entity.label in {e.label for e in BACKFILLED}]


def _list_calls(admin) -> dict[str, int]:
    stats = admin.stats()
    return {
        "xero": stats["xero"].get("GET /api.xro/2.0/Invoices", 0),
        "salesforce": sum(n for call, n in stats["salesforce"].items() if "query" in call.lower()),
        "intercom": stats["intercom"].get("POST /contacts/search", 0),
    }


def _writes(admin) -> dict[str, int]:
    stats = admin.stats()
    return {
        "xero": sum(n for call, n in stats["xero"].items() if call.startswith(("POST", "PUT", "DELETE"))),
        "segment": len(admin.segment_messages()),
    }


def test_a_backfill_of_months_reads_exactly_that_window_and_a_second_one_writes_nothing(admin, sync_env, workspace):
    window = _window(admin)
    assert all(window.values())  # each vendor's seeded history has records in the quarter
    assets = [key for entity in BACKFILLED for key in (entity.backfill_key, entity.staged_key)] + _deliveries()
    admin.reset_stats()

    assert backfill(workspace, assets)[1] == BulkActionStatus.COMPLETED_SUCCESS

    calls = _list_calls(admin)
    pages = {"xero": MAX_PAGE_SIZE, "salesforce": MAX_BATCH_SIZE, "intercom": MAX_PER_PAGE}
    for vendor, page in pages.items():
        # One read per run of the backfill: the months go in one run (BACKFILL_POLICY), so one window's pages. Xero
        # (`where` on UpdatedDateUTC) and Salesforce (SOQL on SystemModstamp) bound both ends of the window; Intercom's
        # search matches dates by whole days, so it reads from two days early and one page past the end.
        fixed = 2 if vendor == "intercom" else 0
        rows = len(window[vendor])
        assert calls[vendor] <= 1.05 * math.ceil(rows / page) + fixed, (vendor, calls, rows)
    for entity in BACKFILLED:
        (staged, quarantined), ids = _staged(sync_env, entity), window[entity.vendor]
        assert ids <= set(staged) | quarantined and all(staged[i] <= 1 for i in ids), entity.label

    writes = _writes(admin)
    assert writes["xero"] > 0 and writes["segment"] > 0  # the quarter's records reached their targets

    assert backfill(workspace, assets)[1] == BulkActionStatus.COMPLETED_SUCCESS
    assert _writes(admin) == writes  # history already synced: nothing is written again


def _delivered(admin, env: dict[str, str], flow: str) -> dict[str, object]:
    """messageId -> payload of what the flow delivered, a contact named by its ContactNumber, the source id it was
    written for (a preview names a contact not yet made by that; the real run, having made it, by its ContactID)."""
    with StagingResource(database=env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        rows = conn.execute(
            "SELECT message_id, payload FROM outbox WHERE flow = ? AND status = 'delivered' AND kind <> 'notify'",
            [flow],
        ).fetchall()
    numbers = {c["ContactID"]: c["ContactNumber"] for c in admin.get("/xero/contacts") if c.get("ContactNumber")}
    return {_by_source_id(message, numbers): _by_source_id(json.loads(payload), numbers) for message, payload in rows}


def _by_source_id(value: object, numbers: dict[str, str]) -> object:
    """`value` with each ContactID (and a rehearsed "preview:<ContactNumber>") replaced by the source id it was
    made for; a link's messageId names the contact it links to too."""
    if isinstance(value, dict):
        if set(value) == {"ContactID"}:
            return {"ContactNumber": _by_source_id(value["ContactID"], numbers)}
        return {key: _by_source_id(item, numbers) for key, item in value.items()}
    if isinstance(value, list):
        return [_by_source_id(item, numbers) for item in value]
    if isinstance(value, str):
        return ":".join(numbers.get(part, part) for part in value.replace("preview:", "").split(":"))
    return value


def _staged_anything(env: dict[str, str], vendor: str) -> int:
    with StagingResource(database=env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        cursors = conn.execute("SELECT count(*) FROM sync_cursors WHERE name LIKE ?", [f"{vendor}_%"]).fetchone()[0]
        landed = conn.execute("SELECT count(*) FROM raw_landing WHERE source = ?", [vendor]).fetchone()[0]
        outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    return cursors + landed + outbox


@pytest.fixture
def unthrottled(admin, monkeypatch) -> None:
    """Xero's 60 calls a minute lifted (https://developer.xero.com/documentation/guides/oauth2/limits/), for a
    year of history's writes: set before the code location starts, as its runs inherit its environment."""
    admin.limits(minute_limit=1_000_000, app_minute_limit=1_000_000)
    monkeypatch.setenv("XERO_CALLS_PER_MINUTE", "1000000")


def test_a_dry_run_of_a_salesforce_backfill_lists_the_writes_the_real_backfill_then_makes(
    admin, sync_env, unthrottled, workspace
):
    entities = [entity for entity in salesforce.ENTITIES if entity.backfills]
    flow = salesforce_to_xero.FLOW
    assets = [key for entity in entities for key in (entity.backfill_key, entity.staged_key)]
    assets += [delivery.key for delivery in flow.deliveries()]
    year = [f"2024-{month:02d}-01" for month in range(1, 13)]  # the seeded org's whole history
    # None is seeded Paid: two won deals were paid in December 2024, so the year has payments to write too.
    won = [o["Id"] for o in admin.salesforce_records("Opportunity", deleted=False) if o["StageName"] == "Closed Won"]
    for deal in won[:2]:
        admin.salesforce_update("Opportunity", deal, StageName="Paid", SystemModstamp="2024-12-15T10:00:00.000+0000")
    before = _writes(admin)["xero"]

    preview, status = backfill(workspace, assets, year, **{DRY_RUN_TAG: "true"})

    assert status == BulkActionStatus.COMPLETED_SUCCESS
    assert _writes(admin)["xero"] == before  # nothing sent
    assert _staged_anything(sync_env, "salesforce") == 0  # the real store is as it was: the preview had a copy
    reports = sorted(preview_directory(sync_env["SYNC_PIPELINES_DUCKDB"], preview).glob(f"{flow.name}.*.jsonl"))
    planned = [json.loads(line) for report in reports for line in report.read_text().splitlines()]
    kinds = Counter(write["write"].split()[0] for write in planned)
    assert kinds["contact"] and kinds["invoice"] and kinds["payment"], kinds

    _, status = backfill(workspace, assets, year)

    assert status == BulkActionStatus.COMPLETED_SUCCESS
    delivered = _delivered(admin, sync_env, flow.name)
    expected = {_by_source_id(w["messageId"], {}): _by_source_id(w["payload"], {}) for w in planned}
    assert delivered == expected
    assert _writes(admin)["xero"] > before


def test_a_backfill_and_an_incremental_sync_at_once_neither_skip_nor_double_a_record(
    admin, sync_env, unthrottled, workspace
):
    admin.salesforce_reset(accounts=60, contacts_per_account=0, leads=0, opportunities=0)
    accounts = admin.salesforce_records("Account", deleted=False)
    # Edited now: out of 2024's windows, so only the incremental sync reads these versions.
    renamed = {account["Id"]: f"Renamed {n}" for n, account in enumerate(accounts[:15])}
    for account_id, name in renamed.items():
        admin.salesforce_update("Account", account_id, Name=name)
    flow = salesforce_to_xero.FLOW
    assets = [salesforce.ACCOUNTS.backfill_key, salesforce.ACCOUNTS.staged_key]
    assets += [delivery.key for delivery in flow.deliveries() if delivery.entity == salesforce.ACCOUNTS]
    year = [f"2024-{month:02d}-01" for month in range(1, 13)]

    backfill_id = launch(workspace, assets, year)
    list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))  # its first run starts
    sync = code_location().resolve_job_def(flow.job_name).execute_in_process(instance=dg.DagsterInstance.ephemeral())

    assert sync.success
    assert finish(workspace, backfill_id) == BulkActionStatus.COMPLETED_SUCCESS
    contacts = [c for c in admin.get("/xero/contacts") if c.get("ContactNumber")]
    numbers = Counter(c["ContactNumber"] for c in contacts)
    assert {a["Id"] for a in accounts} <= set(numbers)  # none skipped
    assert max(numbers.values()) == 1  # none doubled
    names = {c["ContactNumber"]: c["Name"] for c in contacts}
    assert {account_id: names[account_id] for account_id in renamed} == renamed  # the latest versions won


def _landed_ids(env: dict[str, str], entity: Entity) -> Counter:
    with StagingResource(database=env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        rows = conn.execute(
            "SELECT record_id FROM raw_landing WHERE source = ? AND entity = ?", [entity.vendor, entity.name]
        ).fetchall()
    return Counter(record_id for (record_id,) in rows)


def test_a_backfill_stopped_by_the_day_limit_resumes_from_its_checkpoint(admin, sync_env):
    window = _window(admin)["xero"]
    page = max(1, len(window) // 5)  # small pages, so the window takes several
    xero_api = xero_resource(sync_env, page_size=page)
    client = xero_api.get_client()
    next(client.iter_pages("Contacts"))
    used_today = 5000 - client.stats.day_limit_remaining  # the sandbox's (Xero's) 5,000 calls a day
    admin.limits(day_limit=used_today + 2)  # two pages of the window, and the day's allowance is spent
    resources = {"xero": xero_api, "staging_db": StagingResource(database=sync_env["SYNC_PIPELINES_DUCKDB"])}
    invoices = next(
        a for a in vendor_assets([xero.INVOICES], XeroResource).assets if a.key == xero.INVOICES.backfill_key
    )
    quarter = {ASSET_PARTITION_RANGE_START_TAG: MONTHS[0], ASSET_PARTITION_RANGE_END_TAG: MONTHS[-1]}

    stopped = dg.materialize([invoices], resources=resources, tags=quarter, raise_on_error=False)

    assert not stopped.success
    assert len(_landed_ids(sync_env, xero.INVOICES).keys() & window) == 2 * page  # the two pages it was allowed
    admin.limits(day_limit=1_000_000)  # the next day
    admin.reset_stats()

    resumed = dg.materialize([invoices], resources=resources, tags=quarter)

    assert resumed.success
    landed = _landed_ids(sync_env, xero.INVOICES)
    assert window <= set(landed) and all(landed[i] == 1 for i in window)  # every record once
    rest = len(window) - 2 * page
    assert _list_calls(admin)["xero"] <= math.ceil(rest / page) + 1  # from the checkpoint, not the window's start
