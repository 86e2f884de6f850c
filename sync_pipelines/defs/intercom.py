"""Intercom's entities, landed and staged: what every flow that reads Intercom starts from (its own group)."""

import dagster as dg

from sync_pipelines.lib.entities import vendor_assets
from sync_pipelines.vendors.intercom.entities import ENTITIES
from sync_pipelines.vendors.intercom.resource import IntercomResource


@dg.definitions
def defs() -> dg.Definitions:
    return vendor_assets(ENTITIES, IntercomResource)
