"""Xero -> Segment: accounting records become Segment track, identify and group calls.

Every Xero entity is delivered; what each becomes in Segment is the YAML mapping
(`sync_pipelines/mappings/xero_to_segment.yaml`, or the file in $SYNC_PIPELINES_XERO_TO_SEGMENT_MAPPING), checked
against the entity's contract when the definitions are built.
"""

from collections.abc import Sequence
from functools import partial

import dagster as dg

from sync_pipelines.lib.deliveries import Delivery
from sync_pipelines.lib.enrichment import ENRICHMENT, ENRICHMENT_KEY, enrichment_asset
from sync_pipelines.lib.flows import Flow, mapped_deliveries
from sync_pipelines.lib.targets.segment import SegmentTarget
from sync_pipelines.lib.targets.segment_mapping import EntityMapping
from sync_pipelines.lib.tenants import FLOW_TAG
from sync_pipelines.vendors.xero import entities as xero

NAME = "xero_to_segment"


def contact_enrichment(deliveries: Sequence[Delivery]) -> dg.Definitions:
    """Per-contact traits, recomputed daily (overdue balances move with the calendar even when no record changes)."""
    enrichment = enrichment_asset(NAME, (xero.INVOICES, xero.BILLS, xero.PAYMENTS))
    job = dg.define_asset_job(
        "xero_contact_enrichment",
        selection=dg.AssetSelection.assets(enrichment),
        description="Recompute per-contact traits from what is staged and send the ones that changed.",
    )
    schedule = dg.ScheduleDefinition(
        job=job,
        cron_schedule="0 6 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        tags={FLOW_TAG: NAME},
    )
    return dg.Definitions(assets=[enrichment], jobs=[job], schedules=[schedule])


FLOW = Flow(
    name=NAME,
    source="xero",
    target="segment",
    description="Extract what changed in Xero since the last cursor, validate, stage and deliver to Segment.",
    deliveries=partial(
        mapped_deliveries, NAME, xero.ENTITIES, EntityMapping, lambda _, mapping: SegmentTarget(mapping)
    ),
    extras=contact_enrichment,
    unsynced=(ENRICHMENT_KEY,),
    extra_outboxes=((ENRICHMENT, ENRICHMENT_KEY),),
)
