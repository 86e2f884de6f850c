"""Xero's entities, landed and staged: what every flow that reads Xero starts from (its own group)."""

import dagster as dg

from sync_pipelines.lib.entities import vendor_assets
from sync_pipelines.vendors.xero.entities import ENTITIES
from sync_pipelines.vendors.xero.resource import XeroResource


@dg.definitions
def defs() -> dg.Definitions:
    return vendor_assets(ENTITIES, XeroResource)
