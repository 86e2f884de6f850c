"""The sensors: dead letters are replayed once their backoff passes; webhook events become coalesced sync runs."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pytest

from sync_pipelines.defs import intercom_to_xero, salesforce_to_xero, segment_to_xero, xero_to_segment
from sync_pipelines.defs.flows import registered_flows
from sync_pipelines.lib.enrichment import ENRICHMENT_KEY
from sync_pipelines.lib.flows import synced
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.vendors.intercom.webhooks import WEBHOOKS as INTERCOM
from sync_pipelines.vendors.salesforce import entities as salesforce
from sync_pipelines.vendors.salesforce.webhooks import WEBHOOKS as SALESFORCE
from sync_pipelines.vendors.segment.entities import USERS
from sync_pipelines.vendors.segment.resource import SegmentResource
from sync_pipelines.vendors.segment.webhooks import WEBHOOKS as SEGMENT
from sync_pipelines.vendors.xero.webhooks import WEBHOOKS as XERO
from sync_pipelines.webhooks.inbox import WebhookInbox, WebhookInboxResource
from sync_pipelines.webhooks.receiver import WebhookReceiver
from sync_pipelines_tests.conftest import code_location, stock_item
from sync_pipelines_tests.defs.conftest import expected_flow_tracks, track_counts
from sync_pipelines_tests.webhooks.conftest import (
    body_of,
    delivery_body,
    identify,
    intercom_notification,
    outbound_message,
    salesforce_notification,
    stored_events,
    xero_event,
)
from sync_pipelines_tests.webhooks.daemon import (
    HANG_GUARD_SECONDS,
    dagster_daemon,
    invoice_paid,
    invoices_referencing,
    launch_job,
    person_and_order,
    wait_for,
    wait_for_invoice,
    wait_for_message,
)


def _sensor(name: str) -> dg.SensorDefinition:
    return code_location().resolve_sensor_def(name)


def dead_letter_replay(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    return _sensor("dead_letter_replay")(context)


XERO_WEBHOOK_SYNC, INTERCOM_WEBHOOK_SYNC = "xero_webhook_sync", "intercom_webhook_sync"
XERO_WEBHOOK_SENSOR, INTERCOM_WEBHOOK_SENSOR = "xero_webhook_sensor", "intercom_webhook_sensor"
SEGMENT_WEBHOOK_SYNC, SEGMENT_WEBHOOK_SENSOR = "segment_webhook_sync", "segment_webhook_sensor"
SALESFORCE_WEBHOOK_SYNC, SALESFORCE_WEBHOOK_SENSOR = "salesforce_webhook_sync", "salesforce_webhook_sensor"
XERO_DELIVERIES = xero_to_segment.FLOW.deliveries()


def test_failed_writes_are_dead_lettered_then_replayed_exactly_once(admin, sync_env):
    admin.post("/faults", {"segment": {"error_rate": 1.0}}, method="PUT")
    definitions = code_location()
    # Segment stays down longer than two attempts per batch: the delivery gives up and parks the messages.
    impatient = SegmentResource(api_url=sync_env["SEGMENT_API_URL"], write_key=sync_env["SEGMENT_WRITE_KEY"],
                                max_attempts=2)  # fmt: skip
    result = dg.materialize(
        definitions.assets, resources={**definitions.resources, "segment": impatient},
        instance=dg.DagsterInstance.ephemeral(),
        selection=synced("xero_to_segment"),
    )  # fmt: skip
    assert result.success
    reconciliation = next(
        c for c in result.get_asset_check_evaluations()
        if c.check_name == "reconciliation" and c.asset_key == dg.AssetKey(["segment", "xero_invoices_to_segment"])
    )  # fmt: skip
    assert not reconciliation.passed
    # The check says why: the dead letters by their error, with the records to look at.
    (reason, *_) = reconciliation.metadata["reasons"].records
    assert reason.data["reason"].startswith("dead letter: ") and reason.data["records"] > 0
    assert reason.data["sample_record_ids"]
    database = sync_env["SYNC_PIPELINES_DUCKDB"]
    with duckdb.connect(database) as conn:
        parked, errors = conn.execute("SELECT count(*), count(DISTINCT error) FROM dead_letters").fetchone()
        assert parked > 0 and errors >= 1
        # Only Segment is down: team notifications (bills) still went out.
        delivered = "SELECT count(*) FROM outbox WHERE status = 'delivered' AND kind != 'notify'"
        assert conn.execute(delivered).fetchone() == (0,)
        (entities,) = conn.execute("SELECT count(DISTINCT entity) FROM dead_letters").fetchone()

    def tick(cursor: str | None) -> dg.SensorResult:
        """The sensor's evaluation, as the daemon's: its resources set up and torn down around it."""
        resources = {"staging_db": StagingResource(database=database)}
        with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
            return dead_letter_replay(context)

    assert tick(None).run_requests == []  # the first retry waits for its backoff

    admin.post("/faults", {"segment": {"error_rate": 0.0}}, method="PUT")
    with duckdb.connect(database) as conn:  # let the backoff pass
        conn.execute("UPDATE dead_letters SET next_attempt_at = next_attempt_at - ?", [timedelta(hours=1)])
    ticked = tick(None)
    # One delivery-only run per entity with dead letters, the contact enrichment's identify calls included.
    assert len(ticked.run_requests) == entities
    selections = [request.asset_selection for request in ticked.run_requests]
    assert [dg.AssetKey(["segment", "xero_invoices_to_segment"])] in selections
    assert [ENRICHMENT_KEY] in selections
    assert all(len(keys) == 1 and keys[0].path[0] == "segment" for keys in selections)
    again = tick(ticked.cursor)
    assert again.run_requests == []  # one run per failure wave

    job = definitions.resolve_implicit_global_asset_job_def()
    for request in ticked.run_requests:
        replay = job.execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), asset_selection=request.asset_selection
        )
        assert replay.success
    assert track_counts(admin, prefix="") == expected_flow_tracks(admin)
    with duckdb.connect(database) as conn:
        assert conn.execute("SELECT DISTINCT status FROM dead_letters").fetchall() == [("replayed",)]
        delivered_twice = conn.execute(
            """SELECT idempotency_key FROM audit_log WHERE outcome = 'delivered'
               GROUP BY idempotency_key HAVING count(*) > 1"""
        ).fetchall()
        assert delivered_twice == []


def _webhook_tick(
    instance: dg.DagsterInstance,
    inbox: WebhookInbox,
    cursor: str | None,
    sensor: str = XERO_WEBHOOK_SENSOR,
) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"webhook_inbox": WebhookInboxResource(path=str(inbox.path))}
    )
    return _sensor(sensor)(context)


def _store_xero(inbox: WebhookInbox, *events: dict) -> None:
    """What the receiver stores for one delivery of these events."""
    inbox.store(XERO.events(delivery_body(list(events))))


def _keys_for(*categories: str) -> set[dg.AssetKey]:
    """The rule the sensor follows: every entity whose Xero webhook category arrived, landed, staged and delivered,
    and the flows' follow-ups of it."""
    deliveries = [d for d in XERO_DELIVERIES if d.entity.source.webhook_category in categories]
    follow_ups = {
        key
        for flow in registered_flows()
        for entity, key in flow.follow_ups(flow.deliveries())
        if entity.vendor == "xero" and entity.source.webhook_category in categories
    }
    return {key for d in deliveries for key in (d.entity.raw_key, d.entity.staged_key, d.key)} | follow_ups


def test_webhook_sensor_requests_one_run_per_batch_of_events_and_coalesces_while_one_is_in_flight(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    inbox = WebhookInbox(tmp_path / "webhook_inbox.sqlite")
    assert isinstance(_webhook_tick(instance, inbox, None), dg.SkipReason)  # nothing received yet

    _store_xero(inbox, xero_event("INVOICE"), xero_event("INVOICE"), xero_event("CONTACT"))
    ticked = _webhook_tick(instance, inbox, None)
    (request,) = ticked.run_requests
    assert request.run_key == "xero-webhook:1-3"
    assert set(request.asset_selection) == _keys_for("INVOICE", "CONTACT")
    assert {
        dg.AssetKey(["xero", "landed_xero_invoices"]),
        dg.AssetKey(["segment", "xero_invoices_to_segment"]),
        # A deal's invoice changed in Xero: its status goes back to Salesforce in the same run.
        dg.AssetKey(["salesforce", "salesforce_opportunities_accounting"]),
    } <= set(request.asset_selection)
    assert not set(request.asset_selection) & {  # polled entities (no webhooks for them) are left to the schedule
        key for d in XERO_DELIVERIES if d.entity.source.webhook_category is None for key in (d.entity.raw_key, d.key)
    }
    assert json.loads(ticked.cursor) == {"seq": 3}
    assert isinstance(_webhook_tick(instance, inbox, ticked.cursor), dg.SkipReason)  # the cursor moved past them

    # The daemon launched that run; while it is running, new events wait (cursor unchanged) instead of a second run.
    in_flight = instance.add_run(
        dg.DagsterRun(
            job_name=XERO_WEBHOOK_SYNC, status=dg.DagsterRunStatus.STARTED,
            asset_selection=set(request.asset_selection), tags={**request.tags, "dagster/run_key": request.run_key},
        )
    )  # fmt: skip
    _store_xero(inbox, xero_event("INVOICE"))
    waiting = _webhook_tick(instance, inbox, ticked.cursor)
    assert isinstance(waiting, dg.SkipReason) and in_flight.run_id in waiting.skip_message
    _store_xero(inbox, xero_event("INVOICE"), xero_event("INVOICE"))
    assert isinstance(_webhook_tick(instance, inbox, ticked.cursor), dg.SkipReason)

    instance.report_run_canceled(in_flight)
    coalesced = _webhook_tick(instance, inbox, ticked.cursor)
    (request,) = coalesced.run_requests
    assert request.run_key == "xero-webhook:4-6"  # one run for all three events that waited
    assert set(request.asset_selection) == _keys_for("INVOICE")
    assert request.tags["sync_pipelines/webhook_events"] == "3"
    assert json.loads(coalesced.cursor) == {"seq": 6}


def test_webhook_sensor_moves_past_categories_no_entity_syncs(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    inbox = WebhookInbox(tmp_path / "webhook_inbox.sqlite")
    _store_xero(inbox, xero_event("CREDITNOTE"))  # xero.md §6: a category this flow does not sync

    ticked = _webhook_tick(instance, inbox, None)

    assert ticked.run_requests == []
    assert json.loads(ticked.cursor) == {"seq": 1}


def test_the_xero_webhook_sensor_leaves_other_vendors_events_alone(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    inbox = WebhookInbox(tmp_path / "webhook_inbox.sqlite")
    inbox.store(INTERCOM.events(json.dumps(intercom_notification("contact.user.updated")).encode()))

    assert isinstance(_webhook_tick(instance, inbox, None), dg.SkipReason)


def _store_intercom(inbox: WebhookInbox, *notifications: dict) -> None:
    """What the receiver stores for these notifications, one delivery each (intercom.md §9)."""
    for notification in notifications:
        inbox.store(INTERCOM.events(json.dumps(notification).encode()))


def _intercom_keys_for(*categories: str) -> set[dg.AssetKey]:
    deliveries = [d for d in intercom_to_xero.FLOW.deliveries() if d.entity.source.webhook_category in categories]
    return {key for d in deliveries for key in (d.entity.raw_key, d.entity.staged_key, d.key)}


def test_intercom_webhook_sensor_requests_one_run_for_a_burst_and_none_for_a_ping(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    inbox = WebhookInbox(tmp_path / "webhook_inbox.sqlite")
    _store_intercom(inbox, intercom_notification("ping", item={"type": "ping", "message": "hello"}))
    assert isinstance(_webhook_tick(instance, inbox, None, INTERCOM_WEBHOOK_SENSOR), dg.SkipReason)

    burst = [intercom_notification("contact.user.updated") for _ in range(20)]
    burst += [intercom_notification("contact.user.tag.created"), intercom_notification("company.updated")]
    _store_intercom(inbox, *burst, burst[0])  # the last one a redelivery (intercom.md §9: at least once)
    ticked = _webhook_tick(instance, inbox, None, INTERCOM_WEBHOOK_SENSOR)

    (request,) = ticked.run_requests
    assert request.run_key == "intercom-webhook:1-22"
    assert request.tags["sync_pipelines/webhook_events"] == "22"
    assert set(request.asset_selection) == _intercom_keys_for("contact", "company")
    assert dg.AssetKey(["xero", "intercom_contacts_to_xero"]) in request.asset_selection
    assert isinstance(_webhook_tick(instance, inbox, ticked.cursor, INTERCOM_WEBHOOK_SENSOR), dg.SkipReason)
    assert isinstance(_webhook_tick(instance, inbox, None), dg.SkipReason)  # Xero's sensor: none of its events


def test_intercom_webhook_sensor_moves_past_topics_no_entity_syncs(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    inbox = WebhookInbox(tmp_path / "webhook_inbox.sqlite")
    _store_intercom(inbox, intercom_notification("admin.away_mode_updated", item={"type": "admin", "id": "1"}))

    ticked = _webhook_tick(instance, inbox, None, INTERCOM_WEBHOOK_SENSOR)

    assert ticked.run_requests == []
    assert json.loads(ticked.cursor) == {"seq": 1}


def test_salesforce_webhook_sensor_requests_a_run_of_the_notified_objects_and_their_deliveries(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    inbox = WebhookInbox(tmp_path / "webhook_inbox.sqlite")
    now = datetime.now(UTC)
    won = outbound_message(*(salesforce_notification("Opportunity", f"0065g00000AbCd{n}AAV", now) for n in range(3)))
    inbox.store(SALESFORCE.events(won))

    ticked = _webhook_tick(instance, inbox, None, "salesforce_webhook_sensor")

    (request,) = ticked.run_requests
    assert request.tags["sync_pipelines/webhook_events"] == "3"
    # A deal's products come with it: a won deal's invoice is made of them.
    synced = [salesforce.OPPORTUNITIES, salesforce.OPPORTUNITY_LINE_ITEMS]
    assert set(request.asset_selection) == {
        *(key for entity in synced for key in (entity.raw_key, entity.staged_key)),
        dg.AssetKey(["xero", "salesforce_opportunities_to_xero"]),
    }
    assert isinstance(_webhook_tick(instance, inbox, ticked.cursor, "salesforce_webhook_sensor"), dg.SkipReason)


def test_segment_webhook_sensor_requests_a_run_of_the_people_and_their_delivery(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    inbox = WebhookInbox(tmp_path / "webhook_inbox.sqlite")
    messages = [identify(f"user-{n}", plan="pro") for n in range(3)]
    inbox.store(SEGMENT.events(body_of(*messages)))
    inbox.store(SEGMENT.events(body_of(messages[0])))  # a redelivery

    ticked = _webhook_tick(instance, inbox, None, "segment_webhook_sensor")

    (request,) = ticked.run_requests
    assert request.tags["sync_pipelines/webhook_events"] == "3"
    assert set(request.asset_selection) == {
        USERS.raw_key, USERS.staged_key, dg.AssetKey(["xero", "segment_users_to_xero"])
    }  # fmt: skip
    assert isinstance(_webhook_tick(instance, inbox, ticked.cursor, "segment_webhook_sensor"), dg.SkipReason)


def test_webhook_syncs_run_their_steps_in_one_process():
    definitions = code_location()
    for job in (XERO_WEBHOOK_SYNC, INTERCOM_WEBHOOK_SYNC, "segment_webhook_sync"):
        assert definitions.resolve_job_def(job).executor_def.name == dg.in_process_executor.name


def test_a_redelivered_webhook_through_the_sensor_sends_the_change_to_segment_once(admin, sync_env, run_sync):
    assert run_sync().success  # everything already delivered: only the webhook's change is new
    invoice = next(i for i in admin.get("/xero/invoices") if i["Type"] == "ACCREC" and i["Status"] == "AUTHORISED")
    before = len(admin.segment_messages())

    inbox = WebhookInbox(sync_env["SYNC_PIPELINES_WEBHOOK_INBOX"])
    with WebhookReceiver(inbox.path, {"xero": sync_env["XERO_WEBHOOK_KEY"]}) as receiver:
        admin.call("PUT", "/xero/webhooks", {"url": receiver.url_for("xero")})
        admin.post(f"/xero/invoices/{invoice['InvoiceID']}/pay")
        admin.post("/xero/webhooks/flush")
        (delivery,) = admin.get("/xero/webhooks/deliveries")
        # xero.md §6: the same body and signature again, as a Xero retry or replay brings it.
        assert admin.post("/xero/webhooks/redeliver", {"first": delivery["first"]})["status"] == 200
    assert delivery["delivered"] and len(stored_events(inbox.path)) == delivery["events"]

    instance = dg.DagsterInstance.ephemeral()
    ticked = _webhook_tick(instance, inbox, None)
    (request,) = ticked.run_requests
    run = (
        code_location()
        .resolve_job_def(XERO_WEBHOOK_SYNC)
        .execute_in_process(instance=instance, asset_selection=request.asset_selection, tags=request.tags)
    )
    assert run.success
    assert isinstance(_webhook_tick(instance, inbox, ticked.cursor), dg.SkipReason)  # the redelivery made no run

    new = [m for m in admin.segment_messages()[before:] if m["type"] == "track"]
    paid = [m for m in new if m["event"] == "Invoice Paid"]
    assert [m["properties"]["invoice_id"] for m in paid] == [invoice["InvoiceID"]]
    assert not [m for m in new if m["event"].startswith("Invoice") and m["event"] != "Invoice Paid"]


def _daemon_runs(env: dict[str, str]) -> set[tuple[str, str | None, str | None]]:
    """Every run in the daemon's instance: (job, the sensor that requested it, the schedule that did)."""
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return {
            (run.job_name, run.tags.get("dagster/sensor_name"), run.tags.get("dagster/schedule_name"))
            for run in instance.get_runs()
        }


# The waits are HANG_GUARD_SECONDS each, bounds against a broken run rather than speed claims (how fast a change
# arrives is benchmarks/webhook_latency.py's to measure); the test's own timeout leaves room for both and the rest.
@pytest.mark.timeout(3 * HANG_GUARD_SECONDS)
def test_a_paid_invoice_reaches_segment_by_webhook_under_the_real_daemon_without_waiting_for_a_sweep(
    admin, sandbox, sync_env, run_sync, tmp_path
):
    """Sandbox webhook -> receiver -> inbox -> sensor under `dagster-daemon` -> run -> Segment, all real; every
    schedule is stopped, so only the webhook path can bring the payment. The second payment comes while a sweep of
    Xero is running, and its run goes beside the sweep rather than after it."""
    assert run_sync().success
    payable = [i for i in admin.get("/xero/invoices") if i["Type"] == "ACCREC" and i["Status"] == "AUTHORISED"]
    first, second = payable[:2]
    key = sync_env["XERO_WEBHOOK_KEY"]
    with (
        WebhookReceiver(sync_env["SYNC_PIPELINES_WEBHOOK_INBOX"], {"xero": key}) as receiver,
        dagster_daemon(sync_env, tmp_path / "daemon.log"),
        dg.DagsterInstance.from_config(sync_env["DAGSTER_HOME"]) as instance,
    ):
        admin.call("PUT", "/xero/webhooks", {"url": receiver.url_for("xero"), "key": key})
        # The first change also waits for the daemon to load the code location; the second, made after that run,
        # shows that later events get a run of their own.
        admin.post(f"/xero/invoices/{first['InvoiceID']}/pay")
        wait_for_message(sandbox.url, invoice_paid(first["InvoiceID"]), seconds=HANG_GUARD_SECONDS)

        # A sweep of Xero, submitted as its schedule submits it, each Xero call slowed to 3 s: its extracts take
        # the xero_api pool's one slot in turn for half a minute or more.
        admin.faults(xero={"latency_ms": 3000})
        sweep = launch_job(xero_to_segment.FLOW.job_name, sync_env)
        wait_for(lambda: instance.get_run_record_by_id(sweep).start_time, HANG_GUARD_SECONDS, "the sweep's start")
        admin.post(f"/xero/invoices/{second['InvoiceID']}/pay")
        wait_for_message(sandbox.url, invoice_paid(second["InvoiceID"]), seconds=HANG_GUARD_SECONDS)
        (paid_run,) = instance.get_runs(dg.RunsFilter(job_name=XERO_WEBHOOK_SYNC), limit=1)
        wait_for(lambda: instance.get_run_record_by_id(sweep).end_time, HANG_GUARD_SECONDS, "the sweep's end")
        # The payment's run was launched at once and its extracts took the pool's slot between the sweep's, ahead of
        # those still waiting: real time did not queue behind the sweep.
        paid_extracts = _xero_extract_steps(instance, paid_run.run_id)
        sweep_extracts = _xero_extract_steps(instance, sweep)
        assert min(step.start_time for step in paid_extracts) < max(step.end_time for step in sweep_extracts)

    assert _daemon_runs(sync_env) == {
        (XERO_WEBHOOK_SYNC, XERO_WEBHOOK_SENSOR, None),
        (xero_to_segment.FLOW.job_name, None, None),
    }


def _xero_extract_steps(instance: dg.DagsterInstance, run_id: str) -> list:
    """A run's steps that read Xero (its landed_xero_* assets), with their start and end times."""
    return [step for step in instance.get_run_step_stats(run_id) if step.step_key.startswith("xero__landed_xero_")]


def _xero_contact_showing(admin, intercom_id: str, email: str) -> dict | None:
    """The Xero contact of an Intercom record (its ContactNumber is the Intercom id) once it shows `email`."""
    contacts = admin.get("/xero/contacts")
    return next((c for c in contacts if c.get("ContactNumber") == intercom_id and c.get("EmailAddress") == email), None)


@pytest.mark.timeout(3 * HANG_GUARD_SECONDS)  # as above
def test_an_intercom_contact_change_reaches_xero_by_webhook_under_the_real_daemon_with_no_schedule(
    admin, sync_env, run_sync, tmp_path
):
    """Sandbox notification -> receiver -> inbox -> sensor under `dagster-daemon` -> run -> Xero, all real; every
    schedule is stopped, so only the webhook path can bring the change."""
    flow = synced(intercom_to_xero.NAME).resolve(code_location().resolve_asset_graph())
    assert run_sync(list(flow)).success  # every Intercom contact already in Xero: only the change is new
    in_xero = {c.get("ContactNumber") for c in admin.get("/xero/contacts")}
    first, second = [c["id"] for c in admin.intercom_records("contacts") if c["id"] in in_xero][:2]
    secret = sync_env["INTERCOM_CLIENT_SECRET"]
    with (
        WebhookReceiver(
            sync_env["SYNC_PIPELINES_WEBHOOK_INBOX"], {"xero": sync_env["XERO_WEBHOOK_KEY"], "intercom": secret}
        ) as receiver,
        dagster_daemon(sync_env, tmp_path / "daemon.log"),
    ):
        admin.intercom_webhooks(url=receiver.url_for("intercom"), client_secret=secret)
        # The first change also waits for the daemon to load the code location; the second, made after that run,
        # shows that later events get a run of their own.
        admin.intercom_update("contacts", first, email="warm.up@example.com")
        wait_for(
            lambda: _xero_contact_showing(admin, first, "warm.up@example.com"),
            HANG_GUARD_SECONDS,
            f"{first}'s new email",
        )

        admin.intercom_update("contacts", second, email="by.webhook@example.com")
        wait_for(
            lambda: _xero_contact_showing(admin, second, "by.webhook@example.com"),
            HANG_GUARD_SECONDS,
            f"{second}'s new email",
        )

    assert _daemon_runs(sync_env) == {(INTERCOM_WEBHOOK_SYNC, INTERCOM_WEBHOOK_SENSOR, None)}


def _in_xero(admin, sandbox_url: str, user_id: str, order_id: str) -> tuple[dict, dict] | None:
    """A Segment person's Xero contact (its ContactNumber is the userId) and their order's one sales invoice."""
    contact = next((c for c in admin.get("/xero/contacts") if c.get("ContactNumber") == user_id), None)
    invoices = invoices_referencing(sandbox_url, order_id)
    return (contact, invoices[0]) if contact is not None and len(invoices) == 1 else None


@pytest.mark.timeout(3 * HANG_GUARD_SECONDS)  # as above
def test_a_segment_order_reaches_xero_by_webhook_under_the_real_daemon_with_no_schedule(
    admin, sandbox, sync_env, run_sync, tmp_path
):
    """Segment source -> Webhooks destination -> receiver -> inbox -> sensor under `dagster-daemon` -> run -> Xero,
    all real; every schedule is stopped, so only the webhook path can bring the person and their order."""
    flow = synced(segment_to_xero.NAME).resolve(code_location().resolve_asset_graph())
    assert run_sync(list(flow)).success  # Xero's contacts and invoices landed: only the Segment messages are new
    stock_item(sync_env, 1)
    person, order = person_and_order("user-by-webhook", "ord-by-webhook")
    secret = sync_env["SEGMENT_WEBHOOK_SECRET"]
    with (
        WebhookReceiver(sync_env["SYNC_PIPELINES_WEBHOOK_INBOX"], {"segment": secret}) as receiver,
        dagster_daemon(sync_env, tmp_path / "daemon.log"),
    ):
        admin.segment_destination(url=receiver.url_for("segment"), secret=secret)
        admin.segment_emit("web", person, order)
        contact, invoice = wait_for(
            lambda: _in_xero(admin, sandbox.url, "user-by-webhook", "ord-by-webhook"),
            HANG_GUARD_SECONDS,
            "the person's contact and their order's invoice",
        )

    assert all(delivery["delivered"] for delivery in admin.segment_webhook_deliveries())
    assert _daemon_runs(sync_env) == {(SEGMENT_WEBHOOK_SYNC, SEGMENT_WEBHOOK_SENSOR, None)}
    assert invoice["Contact"]["ContactID"] == contact["ContactID"]
    assert [i["InvoiceID"] for i in invoices_referencing(sandbox.url, "ord-by-webhook")] == [invoice["InvoiceID"]]


@pytest.mark.timeout(3 * HANG_GUARD_SECONDS)  # as above
def test_a_won_deal_is_invoiced_by_outbound_message_and_its_payment_comes_back_under_the_real_daemon(
    admin, sandbox, sync_env, run_sync, tmp_path
):
    """Opportunity saved -> the org's Outbound Message -> receiver -> inbox -> sensor under `dagster-daemon` -> run
    -> Xero invoice; then the invoice paid in Xero -> Xero's webhook -> run -> the Opportunity shows it paid. All
    real; every schedule is stopped, so only the webhook paths can carry either."""
    admin.reset(invoices=0, contacts=0)
    admin.salesforce_reset(accounts=6, contacts_per_account=0, leads=0, opportunities=12)
    flow = synced(salesforce_to_xero.NAME).resolve(code_location().resolve_asset_graph())
    assert run_sync(list(flow)).success  # the accounts are Xero contacts: only the won deals are new
    first, second = [
        o["Id"] for o in admin.salesforce_records("Opportunity", deleted=False) if not o["IsClosed"] and o["AccountId"]
    ][:2]
    secrets = {"salesforce": sync_env["SALESFORCE_ORGANIZATION_ID"], "xero": sync_env["XERO_WEBHOOK_KEY"]}
    with (
        WebhookReceiver(sync_env["SYNC_PIPELINES_WEBHOOK_INBOX"], secrets) as receiver,
        dagster_daemon(sync_env, tmp_path / "daemon.log"),
    ):
        admin.salesforce_outbound(url=receiver.url_for("salesforce"))
        admin.call("PUT", "/xero/webhooks", {"url": receiver.url_for("xero"), "key": secrets["xero"]})
        # The first change also waits for the daemon to load the code location; the second, made after that run,
        # shows that later messages get a run of their own.
        admin.salesforce_update("Opportunity", first, StageName="Closed Won")
        wait_for_invoice(sandbox.url, first)
        admin.salesforce_update("Opportunity", second, StageName="Closed Won")
        invoice = wait_for_invoice(sandbox.url, second)
        admin.post(f"/xero/invoices/{invoice['InvoiceID']}/pay")
        shown = wait_for(
            lambda: next(
                (o for o in admin.salesforce_records("Opportunity") if o["Id"] == second
                 and o["Xero_Invoice_Status__c"] == "PAID"), None,
            ),
            HANG_GUARD_SECONDS, "the paid status on the deal",
        )  # fmt: skip
        admin.salesforce_flush_outbound()

    assert all(delivery["delivered"] for delivery in admin.salesforce_outbound_deliveries())
    assert _daemon_runs(sync_env) == {
        (SALESFORCE_WEBHOOK_SYNC, SALESFORCE_WEBHOOK_SENSOR, None),
        (XERO_WEBHOOK_SYNC, XERO_WEBHOOK_SENSOR, None),
    }
    (paid,) = invoices_referencing(sandbox.url, second)
    assert shown["Xero_Invoice_Number__c"] == paid["InvoiceNumber"] and shown["Xero_Amount_Due__c"] == 0
    assert shown["Xero_Paid_Date__c"] is not None
    assert [len(invoices_referencing(sandbox.url, deal)) for deal in (first, second)] == [1, 1]
