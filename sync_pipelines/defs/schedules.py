"""Incremental runs on a clock: the safety net under webhooks, and the only path for polled entities."""

import dagster as dg

from sync_pipelines.defs.xero_to_segment import FLOW

xero_to_segment_job = dg.define_asset_job(
    f"{FLOW}_sync",
    selection=dg.AssetSelection.groups(FLOW),
    description="Extract what changed in Xero since the last cursor, validate, stage and deliver to Segment.",
)

xero_to_segment_schedule = dg.ScheduleDefinition(
    job=xero_to_segment_job,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
