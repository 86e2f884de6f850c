"""Dagster resource for Salesforce; bind secrets with dg.EnvVar so they never land in run config."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import PrivateAttr

from sync_pipelines.lib.tenants import TenantScoped
from sync_pipelines.vendors.salesforce import settings
from sync_pipelines.vendors.salesforce.client import SalesforceClient
from sync_pipelines.vendors.token_store import EncryptedTokenStore


class SalesforceResource(TenantScoped):
    """One Salesforce org. get_client() returns one shared client per resource, so its budget and stats see every call.

    login_url is the authorization server: login/test.salesforce.com for refresh_token, the org's My Domain
    for client_credentials (salesforce.md §1.4); the instance URL comes from the token response (§1.5).
    """

    registry_key: ClassVar[str] = "salesforce"
    # A connection's org: its `ids.salesforce`, an OrganizationId; tokens of another org are refused.
    account_field: ClassVar[tuple[str, str] | None] = ("salesforce", "organization_id")

    login_url: str = settings.LOGIN_URL
    client_id: str
    client_secret: str
    token_path: str
    token_key: str
    grant: Literal["refresh_token", "client_credentials"] = "refresh_token"
    api_version: str = settings.API_VERSION
    quota_share: float = settings.QUOTA_SHARE
    bulk_threshold: int = settings.BULK_THRESHOLD_ROWS
    organization_id: str | None = None

    _client: SalesforceClient | None = PrivateAttr(default=None)

    def token_store(self) -> EncryptedTokenStore:
        return EncryptedTokenStore(self.token_path, self.token_key)

    def get_client(self) -> SalesforceClient:
        if self._client is None:
            self._client = SalesforceClient(
                login_url=self.login_url,
                client_id=self.client_id,
                client_secret=self.client_secret,
                token_store=self.token_store(),
                grant=self.grant,
                api_version=self.api_version,
                quota_share=self.quota_share,
                bulk_threshold=self.bulk_threshold,
                organization_id=self.organization_id,
            )
        return self._client
