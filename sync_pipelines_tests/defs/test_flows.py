"""Flows as lists of deliveries: one staged entity feeds a delivery declared on its own, and one delivery failing
stops neither staging nor the others. Against the sandbox, through the code location's own definitions."""

from collections import Counter
from dataclasses import dataclass

import dagster as dg

from sync_pipelines.defs import xero_to_segment
from sync_pipelines.defs.flows import registered_flows
from sync_pipelines.lib.deliveries import Delivery
from sync_pipelines.lib.flows import Flow
from sync_pipelines.lib.targets.segment import SegmentTarget
from sync_pipelines.vendors.xero.entities import CONTACTS
from sync_pipelines_tests.conftest import code_location

AUDIT = "xero_contacts_audit"


@dataclass(frozen=True)
class Unreachable(SegmentTarget):
    """A Segment target whose every send fails, as when its destination is down for good."""

    def deliver(self, resources, payloads, deliveries) -> None:
        raise ConnectionError("the audit destination is down")


def _audit_flow(target_type: type[SegmentTarget] = SegmentTarget) -> Flow:
    """A second delivery of Xero's staged contacts, declared alone: the same identify calls under its own namespace."""
    (contacts,) = [d for d in xero_to_segment.FLOW.deliveries() if d.entity is CONTACTS]
    return Flow(
        name=AUDIT, source="xero", target="segment", description="Xero contacts, again, for an audit workspace.",
        deliveries=lambda: [
            Delivery(AUDIT, CONTACTS, target_type(contacts.target.mapping), name=AUDIT, namespace=AUDIT)
        ],
    )  # fmt: skip


def _run(flow: Flow, *keys: dg.AssetKey) -> dg.ExecuteInProcessResult:
    definitions = dg.Definitions.merge(code_location(), flow.definitions())
    job = definitions.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, asset_selection=[CONTACTS.raw_key, *keys]
    )


def _identified(admin, namespace: str) -> Counter:
    """userId -> identify calls Segment holds from one delivery."""
    return Counter(m["userId"] for m in admin.segment_messages() if m["messageId"].startswith(f"{namespace}:identify:"))


def test_a_delivery_declared_alone_receives_every_change_of_an_entity_another_delivery_already_takes(admin, sync_env):
    assert AUDIT not in {flow.name for flow in registered_flows()}  # declared here alone, in no registry
    (contacts,) = [d for d in xero_to_segment.FLOW.deliveries() if d.entity is CONTACTS]
    audit = _audit_flow()
    (audit_delivery,) = audit.deliveries()
    # The existing delivery runs first, alone; the new one is added later and starts from the feed's beginning.
    assert _run(audit, CONTACTS.staged_key, contacts.key).success
    assert _run(audit, CONTACTS.staged_key, audit_delivery.key).success
    first, second = _identified(admin, contacts.memory), _identified(admin, AUDIT)
    assert first and first == second and set(first.values()) == {1}

    # A change in Xero: each delivery sends it once.
    changed = next(c for c in admin.get("/xero/contacts") if c["ContactStatus"] == "ACTIVE" and c["ContactID"] in first)
    admin.post(f"/xero/contacts/{changed['ContactID']}", {"EmailAddress": "moved@example.com"})
    assert _run(audit, CONTACTS.staged_key, contacts.key, audit_delivery.key).success
    assert _run(audit, CONTACTS.staged_key, contacts.key, audit_delivery.key).success  # nothing new: nothing sent
    first, second = _identified(admin, contacts.memory), _identified(admin, AUDIT)
    assert first == second and first[changed["ContactID"]] == 2 and sum(first.values()) == len(first) + 1


def test_a_failing_delivery_stops_neither_staging_nor_the_other_delivery(admin, sync_env):
    (contacts,) = [d for d in xero_to_segment.FLOW.deliveries() if d.entity is CONTACTS]
    broken = _audit_flow(Unreachable)
    (broken_delivery,) = broken.deliveries()

    result = _run(broken, CONTACTS.staged_key, contacts.key, broken_delivery.key)

    failed = {e.step_key for e in result.all_events if e.is_step_failure}
    assert failed == {"segment__xero_contacts_audit"}
    staged = {e.asset_key for e in result.get_asset_materialization_events()}
    assert {CONTACTS.raw_key, CONTACTS.staged_key, contacts.key} <= staged
    delivered = _identified(admin, contacts.memory)
    assert delivered and _identified(admin, AUDIT) == Counter()

    # Once its destination is back, the failed delivery sends what it queued, once, and the other sends nothing more.
    assert _run(_audit_flow(), CONTACTS.staged_key, contacts.key, broken_delivery.key).success
    assert _identified(admin, AUDIT) == delivered == _identified(admin, contacts.memory)
