"""Segment -> Xero while Xero is down: a burst of people, orders and refunds arrives while the sandbox's Xero answers a
large share of requests with a 5xx, a 429 or a connection cut after the request was processed. What fails waits in
the dead-letter queue; once Xero answers again, the schedule's next run and the dead-letter replays bring everything
to Xero exactly once, and a further run writes nothing."""

from collections import Counter
from datetime import timedelta

import dagster as dg
import duckdb
import pytest

from sync_pipelines.defs.segment_to_xero import NAME as FLOW
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.vendors.xero.resource import XeroResource
from sync_pipelines_tests.conftest import code_location, stock_item, xero_resource
from sync_pipelines_tests.defs.test_segment_to_xero import (
    GROUP,
    _contacts_by_number,
    _flow_assets,
    _identify,
    _mugs,
    _order,
    _segment_sends,
    _writes,
)

PEOPLE = 20
STOCK = 100
REFUNDED = (3, 8, 13, 17)  # whole refunds: those orders' mugs come back into stock
PAYING = "pro"
# Shares of Xero's answers that are a 500/503, a 429 (Retry-After: 1) or a response cut short after the request was
# processed (sandbox/faults.py); the rest are answered normally. Which requests fail follows from the sandbox's seed.
OUTAGES = {
    "partial": {"error_rate": 0.2, "rate_limit_rate": 0.1, "drop_rate": 0.15},
    "severe": {"error_rate": 0.3, "rate_limit_rate": 0.1, "drop_rate": 0.2},
    "mostly dropped": {"error_rate": 0.25, "rate_limit_rate": 0.05, "drop_rate": 0.3},
}
RECOVERED = {"error_rate": 0.0, "rate_limit_rate": 0.0, "drop_rate": 0.0}
OUTAGE_RUNS = 3  # the schedule's runs while Xero is down
# Replay waves after recovery: a refund's credit note waits for its order's invoice, which waits for its contact.
REPLAY_WAVES = 5


def _xero(env: dict[str, str], **overrides) -> XeroResource:
    """The resource the code location binds, told the sandbox's raised minute limit (see the test)."""
    return xero_resource(env, calls_per_minute=10_000, **overrides)


def _user(n: int) -> str:
    return f"user-burst-{n:02d}"


def _order_id(n: int) -> str:
    return f"ord-burst-{n:02d}"


def _quantity(n: int) -> int:
    return 1 + n % 3


def _plan(n: int) -> str:
    return PAYING if n % 3 == 0 else "free"


def _burst(admin, env: dict[str, str]) -> None:
    """Twenty people identified, each with an order, half from the web and half from the shop's point of sale; a
    few of the orders refunded whole at the point of sale."""
    by_source: dict[str, list[dict]] = {"web": [], "point-of-sale": []}
    for n in range(PEOPLE):
        person = _identify(_user(n), f"2026-03-01T09:{n:02d}:00Z", email=f"burst{n:02d}@example.test",
                           name=f"Burst Buyer {n:02d}", plan=_plan(n))  # fmt: skip
        order = _order("Order Completed", _order_id(n), f"2026-03-01T10:{n:02d}:00Z", products=_mugs(_quantity(n)),
                       total=12.5 * _quantity(n))  # fmt: skip
        by_source["web" if n % 2 == 0 else "point-of-sale"] += [person, {**order, "userId": _user(n)}]
    for n in REFUNDED:
        refund = _order("Order Refunded", _order_id(n), f"2026-03-02T10:{n:02d}:00Z")
        by_source["point-of-sale"].append({**refund, "userId": _user(n)})
    for source, messages in by_source.items():
        _segment_sends(admin, env, *messages, source=source)


def _sync(instance: dg.DagsterInstance, xero: XeroResource, selection: list[dg.AssetKey]) -> list[str]:
    """Materialise the assets as a run of the code location would, with this Xero resource; the errors of the
    steps that failed."""
    definitions = code_location()
    result = dg.materialize(
        definitions.assets, resources={**definitions.resources, "xero": xero}, instance=instance,
        selection=selection, raise_on_error=False,
    )  # fmt: skip
    return [f"{e.step_key}: {_innermost(e.step_failure_data.error)}" for e in result.all_events if e.is_step_failure]


def _innermost(error) -> str:
    """What a step failure comes down to (Dagster wraps the asset's own exception)."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def _replay_dead_letters(instance: dg.DagsterInstance, xero: XeroResource, database: str) -> list[str]:
    """What the dead_letter_replay sensor and the runs it requests do as the dead letters' backoffs pass, wave after
    wave until it finds nothing due (the backoffs made to pass at once, as test_sensors.py does); the errors of any
    step that failed."""
    staging_db = StagingResource(database=database)
    sensor = code_location().resolve_sensor_def("dead_letter_replay")
    cursor, failures = None, []
    for _ in range(REPLAY_WAVES):
        with duckdb.connect(database) as conn:  # let the backoff pass
            conn.execute("UPDATE dead_letters SET next_attempt_at = next_attempt_at - ?", [timedelta(hours=1)])
        with dg.build_sensor_context(cursor=cursor, resources={"staging_db": staging_db}) as context:
            ticked = sensor(context)
        cursor = ticked.cursor
        if not ticked.run_requests:
            break
        for request in ticked.run_requests:
            failures += _sync(instance, xero, list(request.asset_selection))
    return failures


def _dead_letters(database: str) -> list[tuple[str, str, str]]:
    """(message id, status, error) of the flow's dead letters."""
    with duckdb.connect(database) as conn:
        return conn.execute(
            "SELECT message_id, status, error FROM dead_letters WHERE flow = ? ORDER BY ALL", [FLOW]
        ).fetchall()


def _outbox(database: str) -> Counter:
    """The flow's outbox messages by status."""
    with duckdb.connect(database) as conn:
        rows = conn.execute("SELECT status, count(*) FROM outbox WHERE flow = ? GROUP BY ALL", [FLOW]).fetchall()
    return Counter(dict(rows))


def _documents(client, collection: str, kind: str, references: set[str]) -> Counter:
    """How many live sales invoices (or credit notes) Xero holds for each of these References."""
    return Counter(
        document["Reference"]
        for page in client.iter_pages(collection, where=f'Type=="{kind}"')
        for document in page
        if document["Reference"] in references and document["Status"] not in ("DELETED", "VOIDED")
    )


@pytest.mark.parametrize("outage", OUTAGES.values(), ids=OUTAGES.keys())
def test_a_burst_while_xero_is_down_arrives_exactly_once_after_recovery(admin, sync_env, outage):
    stock_item(sync_env, STOCK)
    # A dozen runs in a minute call Xero more often than its 60 calls a minute (xero.md §5); the resources are told
    # the same limit (_xero), so no run waits out a minute.
    admin.limits(minute_limit=10_000)
    database = sync_env["SYNC_PIPELINES_DUCKDB"]
    instance = dg.DagsterInstance.ephemeral()
    people, orders = {_user(n) for n in range(PEOPLE)}, {_order_id(n) for n in range(PEOPLE)}

    admin.faults(xero=outage)
    _burst(admin, sync_env)
    # The schedule's runs while Xero is down, each call tried twice so that what fails is dead-lettered at once. A
    # run may fail outright (Xero's contacts could not be read, say): what it left waits for the next.
    impatient = _xero(sync_env, max_attempts=2)
    for _ in range(OUTAGE_RUNS):
        _sync(instance, impatient, _flow_assets())
    assert admin.stats()["faults_injected"] > 0
    # Some of the burst's writes failed and wait in the dead-letter queue for their next attempt.
    assert any(status == "due" for _, status, _ in _dead_letters(database))
    assert set(_outbox(database)) - {"delivered"}

    # Recovery: Xero answers again. The schedule's next run, then the replays of the dead letters as they fall due.
    admin.faults(xero=RECOVERED)
    xero = _xero(sync_env)
    assert _sync(instance, xero, _flow_assets()) == []
    assert _replay_dead_letters(instance, xero, database) == []

    # Whatever still waits, and why, explains a failure below.
    waiting = [letter for letter in _dead_letters(database) if letter[1] != "replayed"]
    contacts = [c for c in admin.get("/xero/contacts") if c.get("ContactNumber") in people]
    assert Counter(c["ContactNumber"] for c in contacts) == Counter(people), waiting
    assert sum("Burst Buyer" in c["Name"] for c in admin.get("/xero/contacts")) == PEOPLE
    client = xero_resource(sync_env).get_client()
    assert _documents(client, "Invoices", "ACCREC", orders) == Counter(orders), waiting
    refunds = {_order_id(n) for n in REFUNDED}
    assert _documents(client, "CreditNotes", "ACCRECCREDIT", orders) == Counter(refunds), waiting
    kept = sum(_quantity(n) for n in range(PEOPLE) if n not in REFUNDED)
    assert client.read("Items/MUG", key="Items")[0]["QuantityOnHand"] == STOCK - kept
    # Each person's profile note once, and the paying ones in the group.
    notes = {
        c["ContactNumber"]: [n for n in admin.get(f"/xero/contacts/{c['ContactID']}/history")
                             if n["Details"].startswith("Segment profile:")]
        for c in contacts
    }  # fmt: skip
    assert {number: len(found) for number, found in notes.items()} == dict.fromkeys(people, 1), waiting
    groups = {g["Name"]: {c["ContactID"] for c in g["Contacts"]} for g in admin.get("/xero/contact-groups")}
    by_number = _contacts_by_number(admin)
    paying = {by_number[_user(n)]["ContactID"] for n in range(PEOPLE) if _plan(n) == PAYING}
    assert groups.get(GROUP) == paying, waiting
    # Nothing waits any more: every dead letter was replayed, every message delivered.
    assert waiting == []
    assert set(_outbox(database)) == {"delivered"}

    # Another run, and another tick of the replay sensor, write nothing.
    writes = _writes(admin)
    assert _sync(instance, xero, _flow_assets()) == []
    assert _replay_dead_letters(instance, xero, database) == []
    assert _writes(admin) == writes
