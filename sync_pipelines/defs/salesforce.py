"""Salesforce's entities, landed and staged: what every flow that reads Salesforce starts from (its own group)."""

import dagster as dg

from sync_pipelines.lib.entities import vendor_assets
from sync_pipelines.vendors.salesforce.entities import ENTITIES
from sync_pipelines.vendors.salesforce.resource import SalesforceResource


@dg.definitions
def defs() -> dg.Definitions:
    return vendor_assets(ENTITIES, SalesforceResource)
