"""Intercom -> Xero: contacts and companies become Xero contacts; tags and segments contact groups; conversations
History notes on the contact.

What each becomes in Xero is the YAML mapping (`sync_pipelines/mappings/intercom_to_xero.yaml`, or the file in
$SYNC_PIPELINES_INTERCOM_TO_XERO_MAPPING). The Intercom id goes into the Xero contact's ContactNumber, so each is
found again in Xero.
"""

from functools import partial

from sync_pipelines.lib.entities import Entity
from sync_pipelines.lib.flows import Flow, mapped_deliveries
from sync_pipelines.lib.targets.xero import ContactPersons, XeroTarget
from sync_pipelines.lib.targets.xero_mapping import XeroMapping
from sync_pipelines.vendors.intercom import entities as intercom

NAME = "intercom_to_xero"
# A company's contact persons are its staged people (the first five with an email).
PERSONS = ContactPersons(
    entity=intercom.CONTACTS, parents="company_ids", first_name="first_name", last_name="last_name", email="email"
)


# Companies list their people, segments their members and conversations their contact: contacts go first.
AFTER = {entity.name: ("contacts",) for entity in intercom.ENTITIES if entity is not intercom.CONTACTS}


def target(entity: Entity, mapping: XeroMapping) -> XeroTarget:
    return XeroTarget(mapping, persons=PERSONS if entity is intercom.COMPANIES else None)


FLOW = Flow(
    name=NAME,
    source="intercom",
    target="xero",
    description="Read what changed in Intercom, match it to Xero contacts, write them, their groups and notes.",
    deliveries=partial(mapped_deliveries, NAME, intercom.ENTITIES, XeroMapping, target, AFTER),
    # Salesforce, the system of record for people, writes its contacts first; Intercom's are matched to them.
    after=("salesforce_to_xero",),
)
