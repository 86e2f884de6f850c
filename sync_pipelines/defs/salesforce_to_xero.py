"""Salesforce -> Xero: accounts, contacts and leads become Xero contacts; a won deal an invoice, a paid one a payment.

Which Salesforce records make up each entity is below; what each becomes in Xero is the YAML mapping
(`sync_pipelines/mappings/salesforce_to_xero.yaml`, or the file in $SYNC_PIPELINES_SALESFORCE_TO_XERO_MAPPING).
The Salesforce Id goes into the Xero contact's ContactNumber, and the Xero ContactID back into the Salesforce
record's `Xero_Contact_ID__c`, so each side can find the other.
"""

import json
import time
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from sync_pipelines.defs.xero_to_segment import SPECS as XERO_TO_SEGMENT
from sync_pipelines.lib import staging
from sync_pipelines.lib.entity_sync import Entities, EntitySyncSpec, build_entity_sync, flow_specs
from sync_pipelines.lib.mapping import load_mapping, mapping_path
from sync_pipelines.lib.outbox import deliver_outbox
from sync_pipelines.lib.sources.salesforce import SalesforceObject
from sync_pipelines.lib.staging import OutboxMessage
from sync_pipelines.lib.targets.xero import InvoiceLines, XeroTarget, write_contacts
from sync_pipelines.lib.targets.xero_mapping import XeroMapping, contact_element
from sync_pipelines.lib.two_way import settle
from sync_pipelines.schemas.salesforce import (
    ACCOUNT_FIELDS,
    CONTACT_FIELDS,
    LEAD_FIELDS,
    LINE_ITEM_FIELDS,
    OPPORTUNITY_FIELDS,
    SalesforceAccount,
    SalesforceContact,
    SalesforceLead,
    SalesforceOpportunity,
    SalesforceOpportunityLineItem,
    flatten_account,
    flatten_contact,
    flatten_lead,
    flatten_line_item,
    flatten_opportunity,
)
from sync_pipelines.vendors.delivery import Deliveries
from sync_pipelines.vendors.salesforce.client import SalesforceQuotaBudgetReached

FLOW = "salesforce_to_xero"
MAPPING_PATH = mapping_path(FLOW)
# Matching reads Xero's contacts, and invoicing Xero's invoices, as the Xero -> Segment flow stages them.
XERO_CONTACTS, XERO_INVOICES = (next(s for s in XERO_TO_SEGMENT if s.entity == e) for e in ("contacts", "invoices"))

ENTITIES: Entities = {
    "accounts": (
        "Salesforce accounts (organisations)",
        SalesforceObject("Account", ACCOUNT_FIELDS),
        (SalesforceAccount, "id", flatten_account),
    ),
    # Each person is a Xero contact of their own (not one of an organisation's ContactPersons): Xero keeps at
    # most five of those per contact and replaces them as a list, and invoices are addressed to contacts.
    "contacts": (
        "Salesforce contacts (people)",
        SalesforceObject("Contact", CONTACT_FIELDS),
        (SalesforceContact, "id", flatten_contact),
    ),
    # Converted leads are read too: conversion takes them out of the prospects group.
    "leads": (
        "Salesforce leads (prospects)",
        SalesforceObject("Lead", LEAD_FIELDS),
        (SalesforceLead, "id", flatten_lead),
    ),
    # Staged only, for the invoices of won deals.
    "opportunity_line_items": (
        "Salesforce opportunity products",
        SalesforceObject("OpportunityLineItem", LINE_ITEM_FIELDS),
        (SalesforceOpportunityLineItem, "id", flatten_line_item),
    ),
    "opportunities": (
        "Salesforce opportunities (deals)",
        SalesforceObject("Opportunity", OPPORTUNITY_FIELDS),
        (SalesforceOpportunity, "id", flatten_opportunity),
    ),
}
LOOKUPS = ("opportunity_line_items",)
# A won deal's invoice lines are its products; a deal is staged after them, and after its account's contact.
INVOICE_LINES = {
    "opportunities": InvoiceLines(
        table="stg_salesforce_opportunity_line_items", parent="opportunity_id", description="name",
        quantity="quantity", unit_amount="unit_price", discount_rate="discount", order="sort_order",
    )
}  # fmt: skip
# A converted lead shares its person's Xero contact, so leads go after contacts.
STAGED_AFTER = {"leads": ("contacts",), "opportunities": ("opportunity_line_items", "accounts")}
# salesforce.md §8: a converted lead cannot be edited (CANNOT_UPDATE_CONVERTED_LEAD); its person holds the link.
NOT_WRITABLE = {"leads": "s.is_converted"}

MAPPINGS = load_mapping(
    MAPPING_PATH,
    XeroMapping,
    {entity: record[0] for entity, (_, _, record) in ENTITIES.items() if entity not in LOOKUPS},
)
SPECS = flow_specs(
    FLOW,
    ENTITIES,
    lambda entity: None if entity in LOOKUPS else XeroTarget(MAPPINGS[entity], lines=INVOICE_LINES.get(entity)),
    after=STAGED_AFTER,
    upstream=(XERO_CONTACTS.staged_key, XERO_INVOICES.staged_key),
)
# The entities that become Xero contacts, whose Xero ContactID is written back to Salesforce.
PARTIES = [spec for spec in SPECS if spec.target and spec.target.mapping.contact]


def _unlinked(conn, spec: EntitySyncSpec) -> pd.DataFrame:
    """Staged live records whose Xero_Contact_ID__c differs from the Xero contact they are linked to."""
    if not staging.table_exists(conn, spec.table):
        return pd.DataFrame(columns=["Id", "Xero_Contact_ID__c"])
    return conn.execute(
        f"""SELECT s.id AS "Id", x.target_id AS "Xero_Contact_ID__c" FROM "{spec.table}" s
            JOIN xrefs x ON x.source_system = 'salesforce' AND x.target_system = 'xero' AND x.source_id = s.id
            WHERE NOT s.is_deleted AND NOT ({NOT_WRITABLE.get(spec.entity, "false")})
              AND s.xero_contact_id IS DISTINCT FROM x.target_id ORDER BY s.id"""
    ).df()


def build_xero_id_write_back(spec: EntitySyncSpec) -> dg.AssetsDefinition:
    """Stores each record's Xero ContactID in Salesforce, so people and other tools see the link there.

    Setting a field to the value it should hold is idempotent, and what fails is tried again next run, as it
    still differs. The write changes SystemModstamp, so the record is read again; its Xero contact does not
    change, so nothing goes back to Xero (no echo).
    """

    @dg.asset(
        key=["salesforce", f"xero_ids_{spec.entity}"],
        deps=[spec.delivered_key],
        group_name=spec.flow,
        kinds={"salesforce"},
        required_resource_keys={"salesforce", "staging_db"},
        description=f"{spec.description}: the Xero ContactID written to Xero_Contact_ID__c in Salesforce.",
    )
    def write_back(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        started = time.monotonic()
        with context.resources.staging_db.connect() as conn:
            pending = _unlinked(conn, spec)
        client = context.resources.salesforce.get_client()
        quota_exhausted = False
        try:
            results = client.collection_update(spec.source.sobject, pending.to_dict("records"))
        except SalesforceQuotaBudgetReached:
            # salesforce.md §5: the day's budget is spent; what is still unlinked is written next run.
            quota_exhausted, results = True, []
            context.log.warning("Salesforce quota budget reached; the Xero ids are written back next run")
        failed = [(r.id, r.errors) for r in results if not r.success]
        if failed:
            context.log.warning(f"{len(failed)} Xero ids not written back; the next run retries: {failed[:5]}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(results) - len(failed),
                "failed": len(failed),
                "quota_exhausted": quota_exhausted,
                "seconds": round(time.monotonic() - started, 3),
            }
        )

    return write_back


@dataclass(frozen=True)
class TwoWayWrites:
    """Delivers two-way settlements: contact fields to Xero, record fields to Salesforce (both idempotent:
    each sets values rather than adding anything)."""

    sobject: str

    def deliver(self, resources, payloads: list[dict], deliveries: Deliveries) -> None:
        to_xero, to_salesforce = deliveries.report("xero"), deliveries.report("salesforce")
        # Each sets the contact it names (ContactID), so a resend cannot make a second one.
        write_contacts(resources.xero.get_client(), [p for p in payloads if p["type"] == "contact"], to_xero)
        records = [p for p in payloads if p["type"] == "record"]
        to_salesforce.sending([p["messageId"] for p in records])
        try:
            results = resources.salesforce.get_client().collection_update(self.sobject, [p["record"] for p in records])
        except SalesforceQuotaBudgetReached as budget:
            to_salesforce.failed += [(p["messageId"], str(budget)) for p in records]
            results = []
        for payload, result in zip(records, results, strict=False):
            if result.success:
                to_salesforce.delivered.append(payload["messageId"])
            else:
                to_salesforce.rejected.append((payload["messageId"], json.dumps(result.errors)))

    def figures(self, resources) -> dict[str, int | float]:
        xero, salesforce = resources.xero.get_client().stats, resources.salesforce.get_client().stats
        return {"xero_api_calls": xero.calls, "salesforce_api_calls": salesforce.rest_calls}


def build_two_way_sync(spec: EntitySyncSpec) -> dg.AssetsDefinition:
    """Keeps the mapping's two-way fields equal between each record and its Xero contact (lib/two_way.py)."""
    mapping, entity = spec.target.mapping, f"{spec.entity}_two_way"

    @dg.asset(
        key=["salesforce", f"two_way_{spec.entity}"],
        deps=[spec.delivered_key, XERO_CONTACTS.staged_key],
        group_name=spec.flow,
        kinds={"salesforce", "xero"},
        required_resource_keys={"salesforce", "xero", "staging_db"},
        description=(
            f"{spec.description}: {', '.join(mapping.two_way.fields)} kept equal with their Xero contacts both ways; "
            "conflicts settled by the mapping's policy, the losing value in the audit log."
        ),
    )
    def two_way(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        started = time.monotonic()
        with context.resources.staging_db.connect() as conn:
            conn.execute("BEGIN TRANSACTION")
            settlements = settle(
                conn, entity=spec.name, source_system=spec.source.system, source_table=spec.table,
                source_columns={f: mapping.contact[f] for f in mapping.two_way.fields}, mapping=mapping.two_way,
                skip=staging.undelivered_records(conn, flow=spec.flow, entity=entity),
            )  # fmt: skip
            # A settlement is decided once: its message ids are stamped with the decision, so a value that comes
            # back later is a new write, and a replay of this one is the same write.
            stamp = staging.utcnow().strftime("%Y%m%dT%H%M%S%f")
            messages = []
            for s in settlements:
                if s.to_xero:
                    message_id = f"two_way:{spec.entity}:{s.source_id}:xero:{stamp}"
                    body = {"ContactID": s.contact_id, **contact_element(s.to_xero, blank=True)}
                    payload = {"type": "contact", "messageId": message_id, "Contact": body}
                    messages.append(OutboxMessage(message_id, s.source_id, "contact", "two_way", payload))
                if s.to_source:
                    message_id = f"two_way:{spec.entity}:{s.source_id}:salesforce:{stamp}"
                    payload = {"type": "record", "messageId": message_id, "record": {"Id": s.source_id, **s.to_source}}
                    messages.append(OutboxMessage(message_id, s.source_id, "record", "two_way", payload))
            staging.enqueue(conn, flow=spec.flow, entity=entity, messages=messages, run_id=context.run.run_id)
            staging.settle_fields(
                conn, spec.entity, [(s.source_id, f, v) for s in settlements for f, v in s.agreed.items()]
            )
            conflicts = [(s.source_id, f"kept {c['winner']}", c) for s in settlements for c in s.conflicts]
            staging.audit(
                conn, flow=spec.flow, entity=entity, action="conflict", target="xero+salesforce", entries=conflicts,
                run_id=context.run.run_id,
            )  # fmt: skip
            conn.execute("COMMIT")
        figures = deliver_outbox(
            context, flow=spec.flow, entity=entity, source=spec.source.system, target=TwoWayWrites(spec.source.sobject)
        )
        return dg.MaterializeResult(
            metadata={
                **figures,
                "to_xero": sum(bool(s.to_xero) for s in settlements),
                "to_salesforce": sum(bool(s.to_source) for s in settlements),
                "conflicts": len(conflicts),
                "seconds": round(time.monotonic() - started, 3),
            }
        )

    return two_way


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        *(build_entity_sync(spec) for spec in SPECS),
        dg.Definitions(assets=[build_xero_id_write_back(spec) for spec in PARTIES]),
        dg.Definitions(assets=[build_two_way_sync(spec) for spec in PARTIES if spec.target.mapping.two_way]),
    )
