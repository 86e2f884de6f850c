"""Dagster resource for Intercom; bind access_token with dg.EnvVar so it never lands in run config."""

from __future__ import annotations

from typing import ClassVar

from pydantic import PrivateAttr

from sync_pipelines.lib.tenants import TenantScoped
from sync_pipelines.vendors.intercom import settings
from sync_pipelines.vendors.intercom.client import IntercomClient


class IntercomResource(TenantScoped):
    """One Intercom workspace. get_client() returns one shared client per resource, so its rate-limit window and
    stats see every call; base_url selects the region (intercom.md §1)."""

    registry_key: ClassVar[str] = "intercom"

    access_token: str
    base_url: str = settings.API_URL
    api_version: str = settings.API_VERSION
    # intercom.md §6.1: Intercom's is 60 s; a sandbox may be set shorter.
    scroll_ttl_seconds: float = settings.SCROLL_TTL_SECONDS

    _client: IntercomClient | None = PrivateAttr(default=None)

    def get_client(self) -> IntercomClient:
        if self._client is None:
            self._client = IntercomClient(
                base_url=self.base_url,
                access_token=self.access_token,
                api_version=self.api_version,
                scroll_ttl=self.scroll_ttl_seconds,
            )
        return self._client
