"""Dagster resource for Xero; bind secrets with dg.EnvVar so they never land in run config."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import PrivateAttr

from sync_pipelines.lib.tenants import TenantScoped
from sync_pipelines.vendors.token_store import EncryptedTokenStore
from sync_pipelines.vendors.xero import settings
from sync_pipelines.vendors.xero.client import XeroClient


class XeroResource(TenantScoped):
    """One Xero tenant. get_client() returns one shared client per resource so its limiter sees every call."""

    registry_key: ClassVar[str] = "xero"
    # A connection's organisation: its `ids.xero`, a tenantId from GET /connections.
    account_field: ClassVar[tuple[str, str] | None] = ("xero", "tenant_id")

    api_url: str = settings.API_URL
    identity_url: str = settings.IDENTITY_URL
    login_url: str = settings.LOGIN_URL
    client_id: str
    client_secret: str
    token_path: str
    token_key: str
    tenant_id: str | None = None
    grant: Literal["authorization_code", "client_credentials"] = "authorization_code"
    page_size: int = settings.MAX_PAGE_SIZE
    calls_per_minute: int = settings.CALLS_PER_MINUTE
    max_concurrent: int = settings.MAX_CONCURRENT
    write_batch: int = settings.WRITE_BATCH  # elements per batch write: fewer only to test many small writes
    max_attempts: int = 8  # tries per call before its messages wait in the dead letters

    _client: XeroClient | None = PrivateAttr(default=None)

    def token_store(self) -> EncryptedTokenStore:
        return EncryptedTokenStore(self.token_path, self.token_key)

    def get_client(self) -> XeroClient:
        if self._client is None:
            self._client = XeroClient(
                api_url=self.api_url,
                identity_url=self.identity_url,
                client_id=self.client_id,
                client_secret=self.client_secret,
                token_store=self.token_store(),
                tenant_id=self.tenant_id,
                grant=self.grant,
                page_size=self.page_size,
                calls_per_minute=self.calls_per_minute,
                max_concurrent=self.max_concurrent,
                write_batch=self.write_batch,
                max_attempts=self.max_attempts,
            )
        return self._client
