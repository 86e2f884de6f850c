"""Segment's entities, landed from the webhook inbox and staged: what every flow that reads Segment starts from."""

import dagster as dg

from sync_pipelines.lib.entities import vendor_assets
from sync_pipelines.vendors.segment.entities import ENTITIES
from sync_pipelines.vendors.segment.workspace import SegmentWorkspaceResource


@dg.definitions
def defs() -> dg.Definitions:
    # Segment's messages come whole through its Webhooks destination: the extracts read the inbox, not an API.
    return vendor_assets(ENTITIES, SegmentWorkspaceResource, resource_key="segment_workspace")
