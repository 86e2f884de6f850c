"""What is extracted from Salesforce, as data: each entity's sObject, fields and contract.

Every object is read incrementally on SystemModstamp with an Id tie-break, soft deletes included
(`SalesforceObject`); `ENTITIES` lists what each entity is.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sync_pipelines.lib.entities import Entity, QuotaExhausted
from sync_pipelines.vendors.salesforce.client import Position, SalesforceQuotaBudgetReached
from sync_pipelines.vendors.salesforce.contracts import (
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
from sync_pipelines.vendors.salesforce.resource import SalesforceResource


@dataclass(frozen=True)
class SalesforceObject:
    """One sObject's fields, read through REST for deltas and Bulk API 2.0 for backfills (salesforce.md §3, §6)."""

    sobject: str  # e.g. "Account"
    fields: tuple[str, ...]  # beyond Id, SystemModstamp and IsDeleted, which every read carries
    where: str | None = None  # SOQL condition, e.g. "IsConverted = false"
    # salesforce.md §3.2: SystemModstamp has whole seconds and late commits happen: re-read a window behind the
    # cursor; exact re-reads are dropped when landing.
    overlap: timedelta = timedelta(minutes=5)
    id_field: str = "Id"
    # The sObject whose Outbound Messages say this one changed (salesforce.md §9): the webhook run re-reads it.
    webhook_category: str | None = None

    def read(self, salesforce: SalesforceResource, cursor: dict | None) -> Iterator[list[dict]]:
        since = None if cursor is None else Position.from_dict(cursor)
        try:
            # queryAll: a soft-deleted record is a change too (salesforce.md §3.1).
            yield from salesforce.get_client().changed_since(
                self.sobject, self.fields, since=since, overlap=self.overlap, include_deleted=True, where=self.where
            )
        except SalesforceQuotaBudgetReached as budget:
            # salesforce.md §5: what landed is checkpointed; the next run resumes from the cursor.
            raise QuotaExhausted(None) from budget

    def read_window(self, salesforce: SalesforceResource, start: datetime, end: datetime) -> Iterator[list[dict]]:
        """SOQL on the indexed SystemModstamp, both bounds in the query (salesforce.md §3.2); a large window goes on
        in a Bulk API 2.0 job like any large read (§6)."""
        try:
            yield from salesforce.get_client().changed_since(
                self.sobject, self.fields, since=Position(start), overlap=timedelta(0), include_deleted=True,
                where=self.where, until=end,
            )  # fmt: skip
        except SalesforceQuotaBudgetReached as budget:
            raise QuotaExhausted(None) from budget

    def updated_at(self, record: dict) -> datetime | None:
        return Position.of(record).system_modstamp

    def checkpoint(self, cursor: dict | None, page: list[dict], stamps: list[datetime | None]) -> dict | None:
        """The last row of the page; pages come ordered by (SystemModstamp, Id)."""
        return Position.of(page[-1]).as_dict() if page else None

    def figures(self, salesforce: SalesforceResource) -> dict[str, int | float]:
        stats = salesforce.get_client().stats
        return {
            "api_calls": stats.rest_calls + stats.bulk_calls,
            "rest_calls": stats.rest_calls,
            "bulk_calls": stats.bulk_calls,
            "bulk_fallbacks": stats.bulk_fallbacks,
            "api_retries": stats.retries,
            "session_refreshes": stats.session_refreshes,
            "bytes_received": stats.bytes_received,
            "api_used_today": stats.api_used or 0,
            "api_limit": stats.api_limit or 0,
        }


# Each sObject as data: (name, description, sObject, fields read, contract, flattener). Converted leads are read
# too: conversion takes them out of the prospects group. An opportunity's Outbound Message also re-reads its
# products, which a won deal's invoice is made of.
ENTITIES = ACCOUNTS, CONTACTS, LEADS, OPPORTUNITY_LINE_ITEMS, OPPORTUNITIES = tuple(
    Entity("salesforce", name, description, SalesforceObject(sobject, fields, webhook_category=notified_by), contract,
           "id", flatten)
    for name, description, sobject, notified_by, fields, contract, flatten in (
        ("accounts", "Salesforce accounts (organisations)", "Account", "Account", ACCOUNT_FIELDS, SalesforceAccount,
         flatten_account),
        ("contacts", "Salesforce contacts (people)", "Contact", "Contact", CONTACT_FIELDS, SalesforceContact,
         flatten_contact),
        ("leads", "Salesforce leads (prospects)", "Lead", "Lead", LEAD_FIELDS, SalesforceLead, flatten_lead),
        ("opportunity_line_items", "Salesforce opportunity products", "OpportunityLineItem", "Opportunity",
         LINE_ITEM_FIELDS, SalesforceOpportunityLineItem, flatten_line_item),
        ("opportunities", "Salesforce opportunities (deals)", "Opportunity", "Opportunity", OPPORTUNITY_FIELDS,
         SalesforceOpportunity, flatten_opportunity),
    )
)  # fmt: skip
