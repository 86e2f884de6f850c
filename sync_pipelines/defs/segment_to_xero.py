"""Segment -> Xero: the people Segment identifies become Xero contacts, with their traits on the contact; the
organisations their group calls name, organisation contacts with them as contact persons; their completed orders
sales invoices of Xero items, and their refunds credit notes allocated to those invoices; their other events History
notes, and their Engage audiences and computed traits contact groups.

What each becomes in Xero is the YAML mapping (`sync_pipelines/mappings/segment_to_xero.yaml`, or the file in
$SYNC_PIPELINES_SEGMENT_TO_XERO_MAPPING). The Segment userId goes into the Xero contact's ContactNumber, so each is
found again in Xero.
"""

from functools import partial

from sync_pipelines.lib.entities import Entity
from sync_pipelines.lib.flows import Flow, mapped_deliveries
from sync_pipelines.lib.targets.xero import ListedPersons, XeroTarget
from sync_pipelines.lib.targets.xero_mapping import XeroMapping
from sync_pipelines.vendors.segment import entities as segment

NAME = "segment_to_xero"
# An organisation's row lists its people (who joined it by group calls) as they are in Segment.
PERSONS = ListedPersons("persons")
# An order is invoiced to its person's contact, a refund credited against its order's invoice; an event is noted on
# its person's contact, and a person's audiences are that contact's groups.
AFTER = {"orders": ("users",), "refunds": ("orders",), "events": ("users",), "profiles": ("users",)}


def target(entity: Entity, mapping: XeroMapping) -> XeroTarget:
    return XeroTarget(mapping, persons=PERSONS if entity is segment.GROUPS else None)


FLOW = Flow(
    name=NAME,
    source="segment",
    target="xero",
    description="Land what Segment's Webhooks destination delivered: people to Xero contacts, orders to invoices.",
    deliveries=partial(mapped_deliveries, NAME, segment.ENTITIES, XeroMapping, target, AFTER),
    # Xero's own contacts go to Segment first, so a person both know is matched rather than made twice.
    after=("xero_to_segment",),
)
