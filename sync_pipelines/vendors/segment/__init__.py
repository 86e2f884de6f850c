"""Segment Tracking API connector (segment.md)."""

from sync_pipelines.vendors.segment.client import DeliveryReport, SegmentClient, SendStats, drop_reason
from sync_pipelines.vendors.segment.resource import SegmentResource

__all__ = ["DeliveryReport", "SegmentClient", "SegmentResource", "SendStats", "drop_reason"]
