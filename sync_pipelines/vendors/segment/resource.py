"""Dagster resource for the Segment Tracking API; bind write_key with dg.EnvVar."""

from __future__ import annotations

from typing import ClassVar

from pydantic import PrivateAttr

from sync_pipelines.lib.tenants import TenantScoped
from sync_pipelines.vendors.segment import settings
from sync_pipelines.vendors.segment.client import SegmentClient


class SegmentResource(TenantScoped):
    """A Segment source, addressed by its write key; api_url selects the region (segment.md §1)."""

    registry_key: ClassVar[str] = "segment"

    write_key: str
    api_url: str = settings.API_URL
    max_attempts: int = 8  # per batch, with backoff; then its messages go to the dead-letter queue
    # Smaller batches bound what a crash can leave unsettled (one batch) at the cost of more calls.
    max_batch_bytes: int = settings.WORKING_BATCH_BYTES

    _client: SegmentClient | None = PrivateAttr(default=None)

    def get_client(self) -> SegmentClient:
        """One client per resource instance, so a step's figures add up across its batches."""
        if self._client is None:
            self._client = SegmentClient(
                api_url=self.api_url,
                write_key=self.write_key,
                max_attempts=self.max_attempts,
                max_batch_bytes=self.max_batch_bytes,
            )
        return self._client
