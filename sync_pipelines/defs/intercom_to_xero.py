"""Intercom -> Xero: contacts and companies become Xero contacts; tags and segments contact groups; conversations
History notes on the contact.

Which Intercom records make up each entity is below; what each becomes in Xero is the YAML mapping
(`sync_pipelines/mappings/intercom_to_xero.yaml`, or the file in $SYNC_PIPELINES_INTERCOM_TO_XERO_MAPPING). The
Intercom id goes into the Xero contact's ContactNumber, so each is found again in Xero.
"""

import dagster as dg

from sync_pipelines.defs.xero_to_segment import SPECS as XERO_TO_SEGMENT
from sync_pipelines.lib.entity_sync import Entities, build_entity_sync, flow_specs
from sync_pipelines.lib.mapping import load_mapping, mapping_path
from sync_pipelines.lib.sources.intercom import (
    IntercomCompanies,
    IntercomContacts,
    IntercomConversations,
    IntercomSegments,
)
from sync_pipelines.lib.targets.xero import ContactPersons, XeroTarget
from sync_pipelines.lib.targets.xero_mapping import XeroMapping
from sync_pipelines.schemas.intercom import (
    IntercomCompany,
    IntercomContact,
    IntercomConversation,
    IntercomSegment,
    company_flattener,
    flatten_contact,
    flatten_conversation,
    flatten_segment,
)

FLOW = "intercom_to_xero"
MAPPING_PATH = mapping_path(FLOW)
# Matching reads Xero's contacts as the Xero -> Segment flow stages them.
XERO_CONTACTS = next(spec for spec in XERO_TO_SEGMENT if spec.entity == "contacts")
# The company custom attributes that may hold its tax number (ABN, VAT, ...), the first one set wins.
TAX_NUMBER_ATTRIBUTES = ("tax_number", "vat_number", "abn")

ENTITIES: Entities = {
    "contacts": ("Intercom users and leads", IntercomContacts(), (IntercomContact, "id", flatten_contact)),
    "companies": (
        "Intercom companies (organisations)",
        IntercomCompanies(),
        (IntercomCompany, "id", company_flattener(TAX_NUMBER_ATTRIBUTES)),
    ),
    "segments": ("Intercom segments and their contacts", IntercomSegments(), (IntercomSegment, "id", flatten_segment)),
    "conversations": (
        "Intercom conversations",
        IntercomConversations(),
        (IntercomConversation, "id", flatten_conversation),
    ),
}
# A company's contact persons are its staged people (the first five with an email).
PERSONS = {
    "companies": ContactPersons(
        table="stg_intercom_contacts", parents="company_ids", first_name="first_name", last_name="last_name",
        email="email",
    )
}  # fmt: skip

# Companies list their people, segments their members and conversations their contact: contacts go first.
STAGED_AFTER = {entity: ("contacts",) for entity in ("companies", "segments", "conversations")}

MAPPINGS = load_mapping(MAPPING_PATH, XeroMapping, {entity: record[0] for entity, (_, _, record) in ENTITIES.items()})
SPECS = flow_specs(
    FLOW,
    ENTITIES,
    lambda entity: XeroTarget(MAPPINGS[entity], persons=PERSONS.get(entity)),
    after=STAGED_AFTER,
    upstream=(XERO_CONTACTS.staged_key,),
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(*(build_entity_sync(spec) for spec in SPECS))
