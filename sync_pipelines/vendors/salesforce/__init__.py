"""Salesforce REST, Bulk API 2.0 and OAuth connector (salesforce.md)."""

from sync_pipelines.vendors.salesforce.auth import (
    SalesforceAuthError,
    SalesforceSession,
    authorization_url,
    connect_with_authorization_code,
    exchange_redirected_url,
)
from sync_pipelines.vendors.salesforce.client import (
    ApiUsage,
    BulkJobFailed,
    Position,
    RecordResult,
    SalesforceApiError,
    SalesforceClient,
    SalesforceQuotaBudgetReached,
    SalesforceStats,
    parse_limit_info,
)
from sync_pipelines.vendors.salesforce.resource import SalesforceResource

__all__ = [
    "ApiUsage",
    "BulkJobFailed",
    "Position",
    "RecordResult",
    "SalesforceApiError",
    "SalesforceAuthError",
    "SalesforceClient",
    "SalesforceQuotaBudgetReached",
    "SalesforceResource",
    "SalesforceSession",
    "SalesforceStats",
    "authorization_url",
    "connect_with_authorization_code",
    "exchange_redirected_url",
    "parse_limit_info",
]
