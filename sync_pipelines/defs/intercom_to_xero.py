"""Intercom -> Xero: contacts and companies become Xero contacts; tags and segments contact groups; conversations
History notes on the contact.

What each becomes in Xero is the YAML mapping (`sync_pipelines/mappings/intercom_to_xero.yaml`, or the file in
$SYNC_PIPELINES_INTERCOM_TO_XERO_MAPPING). The Intercom id goes into the Xero contact's ContactNumber, so each is
found again in Xero.
"""

from sync_pipelines.lib.deliveries import Delivery
from sync_pipelines.lib.flows import Flow
from sync_pipelines.lib.mapping import load_mapping, mapping_path
from sync_pipelines.lib.targets.xero import ContactPersons, XeroTarget
from sync_pipelines.lib.targets.xero_mapping import XeroMapping
from sync_pipelines.vendors.intercom import entities as intercom

NAME = "intercom_to_xero"
# A company's contact persons are its staged people (the first five with an email).
PERSONS = ContactPersons(
    entity=intercom.CONTACTS, parents="company_ids", first_name="first_name", last_name="last_name", email="email"
)


def deliveries() -> list[Delivery]:
    mappings = load_mapping(mapping_path(NAME), XeroMapping, {e.name: e.contract for e in intercom.ENTITIES})
    return [
        Delivery(
            NAME,
            entity,
            XeroTarget(mappings[entity.name], persons=PERSONS if entity is intercom.COMPANIES else None),
            # Companies list their people, segments their members and conversations their contact: contacts first.
            after=() if entity is intercom.CONTACTS else ("contacts",),
        )  # fmt: skip
        for entity in intercom.ENTITIES
    ]


FLOW = Flow(
    name=NAME,
    source="intercom",
    target="xero",
    description="Read what changed in Intercom, match it to Xero contacts, write them, their groups and notes.",
    deliveries=deliveries,
    # Salesforce, the system of record for people, writes its contacts first; Intercom's are matched to them.
    after=("salesforce_to_xero",),
)
