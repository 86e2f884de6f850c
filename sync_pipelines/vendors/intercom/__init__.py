"""Intercom REST API connector (intercom.md)."""

from sync_pipelines.vendors.intercom.client import (
    IntercomApiError,
    IntercomClient,
    IntercomStats,
    RateLimitWindow,
)
from sync_pipelines.vendors.intercom.resource import IntercomResource

__all__ = [
    "IntercomApiError",
    "IntercomClient",
    "IntercomResource",
    "IntercomStats",
    "RateLimitWindow",
]
