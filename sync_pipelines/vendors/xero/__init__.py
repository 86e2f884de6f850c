"""Xero Accounting API connector (xero.md)."""

from sync_pipelines.vendors.token_store import EncryptedTokenStore
from sync_pipelines.vendors.xero.auth import (
    XeroAuthError,
    authorization_url,
    connect_with_authorization_code,
    exchange_redirected_url,
)
from sync_pipelines.vendors.xero.client import CallStats, XeroApiError, XeroClient, XeroDailyLimitReached
from sync_pipelines.vendors.xero.resource import XeroResource

__all__ = [
    "CallStats",
    "EncryptedTokenStore",
    "XeroApiError",
    "XeroAuthError",
    "XeroClient",
    "XeroDailyLimitReached",
    "XeroResource",
    "authorization_url",
    "connect_with_authorization_code",
    "exchange_redirected_url",
]
