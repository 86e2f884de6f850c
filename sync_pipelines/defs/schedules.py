"""Incremental runs on a clock: the safety net under webhooks, and the only path for polled entities."""

import dagster as dg

from sync_pipelines.defs import intercom_to_xero, salesforce_to_xero
from sync_pipelines.defs.xero_to_segment import FLOW, contact_enrichment

xero_to_segment_job = dg.define_asset_job(
    f"{FLOW}_sync",
    selection=dg.AssetSelection.groups(FLOW) - dg.AssetSelection.assets(contact_enrichment),
    description="Extract what changed in Xero since the last cursor, validate, stage and deliver to Segment.",
)


def every_15_minutes(job) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(job=job, cron_schedule="*/15 * * * *", default_status=dg.DefaultScheduleStatus.RUNNING)


def into_xero_sync(flow: str, description: str):
    """A flow into Xero with what it reads upstream: matching needs Xero's contacts staged as they are now."""
    return dg.define_asset_job(
        f"{flow}_sync", selection=dg.AssetSelection.groups(flow).upstream(), description=description
    )


xero_to_segment_schedule = every_15_minutes(xero_to_segment_job)

xero_contact_enrichment_job = dg.define_asset_job(
    "xero_contact_enrichment",
    selection=dg.AssetSelection.assets(contact_enrichment),
    description="Recompute per-contact traits from what is staged and send the ones that changed.",
)

# Daily: overdue balances move with the calendar even when no record changes.
xero_contact_enrichment_schedule = dg.ScheduleDefinition(
    job=xero_contact_enrichment_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

salesforce_to_xero_job = into_xero_sync(
    salesforce_to_xero.FLOW,
    "Read what changed in Salesforce, match it to Xero contacts, write them, store the Xero ids back.",
)
salesforce_to_xero_schedule = every_15_minutes(salesforce_to_xero_job)

intercom_to_xero_job = into_xero_sync(
    intercom_to_xero.FLOW,
    "Read what changed in Intercom, match it to Xero contacts, write them, their groups and notes.",
)
# The sweep under Intercom's webhooks: it repairs what a missed webhook left, and is the only path for segments.
intercom_to_xero_schedule = every_15_minutes(intercom_to_xero_job)
