"""What the Segment entities read: the messages Segment's Webhooks destination delivered, the workspace's sources by
name, and people's audiences and computed traits; bind the paths and tokens with dg.EnvVar."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, PrivateAttr

from sync_pipelines.lib.tenants import TenantScoped
from sync_pipelines.vendors.segment.profiles import SegmentProfileApi
from sync_pipelines.vendors.segment.public_api import SegmentPublicApi
from sync_pipelines.webhooks.inbox import WebhookInbox


class SegmentWorkspaceResource(TenantScoped):
    """Segment pushes its messages, so an extract reads the receiver's inbox; the Public API (Team and Business
    plans) names the source each message came from, for the sales channel."""

    registry_key: ClassVar[str] = "segment_workspace"
    # A connection's messages: its source's, `ids.segment`.
    account_field: ClassVar[tuple[str, str] | None] = ("segment", "source_id")

    inbox_path: str = Field(description="SQLite file of received webhook events, e.g. data/webhook_inbox.sqlite.")
    public_api_url: str = Field("", description="Segment's Public API, e.g. https://api.segmentapis.com; empty: none")
    public_api_token: str = Field("", description="A workspace token for the Public API")
    profile_api_url: str = Field(
        "", description="Segment's Profile API (Engage), e.g. https://profiles.segment.com; empty: none"
    )
    space_id: str = Field("", description="The Engage space whose profiles are read")
    profile_api_token: str = Field("", description="The space's access token for the Profile API")

    source_id: str = Field(
        "", description="Only this source's messages (its id, the messages' projectId); empty: every source's"
    )

    _profile_api: SegmentProfileApi | None = PrivateAttr(default=None)

    def get_inbox(self) -> WebhookInbox:
        return WebhookInbox(self.inbox_path, tenant_id=self.source_id or None)

    def source_names(self) -> dict[str, str]:
        """Source id -> name; empty without a Public API (messages then name their source by its id)."""
        if not self.public_api_url:
            return {}
        return SegmentPublicApi(self.public_api_url, self.public_api_token).source_names()

    def profile_api(self) -> SegmentProfileApi | None:
        """The space's Profile API, one client per resource instance (its figures add up over a step); None without
        Engage, which Segment sells apart."""
        if not self.profile_api_url:
            return None
        if self._profile_api is None:
            self._profile_api = SegmentProfileApi(self.profile_api_url, self.space_id, self.profile_api_token)
        return self._profile_api
