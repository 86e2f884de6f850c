"""Salesforce -> Xero: accounts, contacts and leads become Xero contacts; a won deal an invoice, a paid one a payment.

What each becomes in Xero is the YAML mapping (`sync_pipelines/mappings/salesforce_to_xero.yaml`, or the file in
$SYNC_PIPELINES_SALESFORCE_TO_XERO_MAPPING). The Salesforce Id goes into the Xero contact's ContactNumber, and the
Xero ContactID back into the Salesforce record's `Xero_Contact_ID__c`, so each side can find the other; what
accounting knows (a deal's invoice, an account's balance) goes back to the fields the mapping's `accounting` names.
"""

from collections.abc import Sequence
from functools import partial

import dagster as dg

from sync_pipelines.lib.deliveries import Delivery
from sync_pipelines.lib.entities import Entity
from sync_pipelines.lib.flows import Flow, mapped_deliveries
from sync_pipelines.lib.targets.xero import InvoiceLines, XeroTarget
from sync_pipelines.lib.targets.xero_mapping import XeroMapping
from sync_pipelines.lib.write_backs import accounting_key, accounting_write_back, two_way_sync, xero_id_write_back
from sync_pipelines.vendors.salesforce import entities as salesforce
from sync_pipelines.vendors.xero import entities as xero

NAME = "salesforce_to_xero"
# Each person is a Xero contact of their own (not one of an organisation's ContactPersons): Xero keeps at most five
# of those per contact and replaces them as a list, and invoices are addressed to contacts. A won deal's invoice
# lines are its products (staged, not delivered).
DELIVERED = (salesforce.ACCOUNTS, salesforce.CONTACTS, salesforce.LEADS, salesforce.OPPORTUNITIES)
LINES = InvoiceLines(
    entity=salesforce.OPPORTUNITY_LINE_ITEMS, parent="opportunity_id", description="name", quantity="quantity",
    unit_amount="unit_price", discount_rate="discount", order="sort_order",
)  # fmt: skip
# A converted lead shares its person's Xero contact, and a deal is invoiced to its account's contact: those go first.
AFTER = {"leads": ("contacts",), "opportunities": ("accounts",)}


def target(entity: Entity, mapping: XeroMapping) -> XeroTarget:
    return XeroTarget(mapping, lines=LINES if entity is salesforce.OPPORTUNITIES else None)


def write_backs(deliveries: Sequence[Delivery]) -> dg.Definitions:
    """For the entities that become Xero contacts: their Xero ContactID written back, and their two-way fields;
    for those the mapping asks it of, what accounting knows of them."""
    parties = [d for d in deliveries if d.target.mapping.contact]
    return dg.Definitions(
        assets=[
            *(xero_id_write_back(d) for d in parties),
            *(two_way_sync(d) for d in parties if d.target.mapping.two_way),
            *(accounting_write_back(d) for d in deliveries if d.target.mapping.accounting),
        ]
    )


def accounting_follow_ups(deliveries: Sequence[Delivery]) -> list[tuple[Entity, dg.AssetKey]]:
    """A Xero webhook about an invoice (one we raised, paid, voided) writes what changed back at once."""
    return [(xero.INVOICES, accounting_key(d)) for d in deliveries if d.target.mapping.accounting]


FLOW = Flow(
    name=NAME,
    source="salesforce",
    target="xero",
    description="Read what changed in Salesforce, match it to Xero contacts, write them, store the Xero ids back.",
    deliveries=partial(mapped_deliveries, NAME, DELIVERED, XeroMapping, target, AFTER),
    extras=write_backs,
    follow_ups=accounting_follow_ups,
)
