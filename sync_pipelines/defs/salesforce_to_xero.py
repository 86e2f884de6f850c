"""Salesforce -> Xero: CRM records become Xero contacts, matched before anything is created.

Which Salesforce records make up each entity is below; what each becomes in Xero is the YAML mapping
(`sync_pipelines/mappings/salesforce_to_xero.yaml`, or the file in $SYNC_PIPELINES_SALESFORCE_TO_XERO_MAPPING).
The Salesforce Id goes into the Xero contact's ContactNumber, and the Xero ContactID back into the Salesforce
record's `Xero_Contact_ID__c`, so each side can find the other.
"""

import time

import dagster as dg
import pandas as pd

from sync_pipelines.defs.xero_to_segment import SPECS as XERO_TO_SEGMENT
from sync_pipelines.lib import staging
from sync_pipelines.lib.entity_sync import Entities, EntitySyncSpec, build_entity_sync, flow_specs
from sync_pipelines.lib.mapping import load_mapping, mapping_path
from sync_pipelines.lib.sources.salesforce import SalesforceObject
from sync_pipelines.lib.targets.xero import ContactMapping, XeroContactTarget
from sync_pipelines.schemas.salesforce import (
    ACCOUNT_FIELDS,
    CONTACT_FIELDS,
    SalesforceAccount,
    SalesforceContact,
    flatten_account,
    flatten_contact,
)
from sync_pipelines.vendors.salesforce.client import SalesforceQuotaBudgetReached

FLOW = "salesforce_to_xero"
MAPPING_PATH = mapping_path(FLOW)
# Matching reads Xero's contacts as the Xero -> Segment flow stages them.
XERO_CONTACTS = next(spec for spec in XERO_TO_SEGMENT if spec.entity == "contacts")

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
}

MAPPINGS = load_mapping(
    MAPPING_PATH, ContactMapping, {entity: record[0] for entity, (_, _, record) in ENTITIES.items()}
)
SPECS = flow_specs(
    FLOW, ENTITIES, lambda entity: XeroContactTarget(MAPPINGS[entity]), upstream=(XERO_CONTACTS.staged_key,)
)


def _unlinked(conn, spec: EntitySyncSpec) -> pd.DataFrame:
    """Staged live records whose Xero_Contact_ID__c differs from the Xero contact they are linked to."""
    if not staging.table_exists(conn, spec.table):
        return pd.DataFrame(columns=["Id", "Xero_Contact_ID__c"])
    return conn.execute(
        f"""SELECT s.id AS "Id", x.target_id AS "Xero_Contact_ID__c" FROM "{spec.table}" s
            JOIN xrefs x ON x.source_system = 'salesforce' AND x.target_system = 'xero' AND x.source_id = s.id
            WHERE NOT s.is_deleted AND s.xero_contact_id IS DISTINCT FROM x.target_id ORDER BY s.id"""
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


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        *(build_entity_sync(spec) for spec in SPECS),
        dg.Definitions(assets=[build_xero_id_write_back(spec) for spec in SPECS]),
    )
