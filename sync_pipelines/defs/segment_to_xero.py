"""Segment -> Xero: the people Segment identifies become Xero contacts, with their traits on the contact.

What each becomes in Xero is the YAML mapping (`sync_pipelines/mappings/segment_to_xero.yaml`, or the file in
$SYNC_PIPELINES_SEGMENT_TO_XERO_MAPPING). The Segment userId goes into the Xero contact's ContactNumber, so each is
found again in Xero.
"""

from functools import partial

from sync_pipelines.lib.flows import Flow, mapped_deliveries
from sync_pipelines.lib.targets.xero import XeroTarget
from sync_pipelines.lib.targets.xero_mapping import XeroMapping
from sync_pipelines.vendors.segment import entities as segment

NAME = "segment_to_xero"

FLOW = Flow(
    name=NAME,
    source="segment",
    target="xero",
    description="Land what Segment's Webhooks destination delivered, match people to Xero contacts and write them.",
    deliveries=partial(mapped_deliveries, NAME, segment.ENTITIES, XeroMapping, lambda _, mapped: XeroTarget(mapped)),
    # Xero's own contacts go to Segment first, so a person both know is matched rather than made twice.
    after=("xero_to_segment",),
)
