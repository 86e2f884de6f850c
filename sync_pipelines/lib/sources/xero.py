"""A Xero Accounting API collection as a source: paged at the maximum, incremental by UpdatedDateUTC."""

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from sync_pipelines.lib.entity_sync import QuotaExhausted
from sync_pipelines.schemas.xero import parse_xero_date
from sync_pipelines.vendors.xero.client import XeroDailyLimitReached
from sync_pipelines.vendors.xero.resource import XeroResource


@dataclass(frozen=True)
class XeroCollection:
    """One collection of the Accounting API, e.g. Invoices filtered to ACCREC (xero.md §2.3, §3)."""

    collection: str  # endpoint, e.g. "Invoices"
    id_field: str  # e.g. "InvoiceID"
    where: str | None = None  # e.g. 'Type=="ACCREC"' (xero.md §3.3)
    params: Mapping[str, str] = field(default_factory=dict)  # e.g. includeArchived for Contacts (xero.md §7)
    # A test on each record for what `where` cannot express (line items); records it refuses are not landed.
    keep: Callable[[dict], bool] | None = None
    # xero.md §3.2: the If-Modified-Since boundary is unconfirmed, it is accurate to the second, and late
    # commits happen: re-read a window behind the cursor; exact re-reads are dropped when landing.
    overlap: timedelta = timedelta(minutes=5)
    # xero.md §6: the webhook category whose events mean this collection changed (INVOICE, CONTACT), or None
    # for collections Xero sends no webhooks for (Payments, BankTransactions: the polling sweep covers them).
    webhook_category: str | None = None
    system: str = "xero"

    def read(self, xero: XeroResource, cursor: dict | None) -> Iterator[list[dict]]:
        since = None if cursor is None else pd.Timestamp(cursor["updated_at"]).to_pydatetime() - self.overlap
        try:
            pages = xero.get_client().iter_pages(
                self.collection, modified_since=since, where=self.where, params=dict(self.params) or None
            )
            for page in pages:
                yield page if self.keep is None else [record for record in page if self.keep(record)]
        except XeroDailyLimitReached as limit:
            # xero.md §5: the day limit means "defer the run", not "retry soon".
            raise QuotaExhausted(limit.retry_after) from limit

    def updated_at(self, record: dict) -> datetime | None:
        parsed = parse_xero_date(record.get("UpdatedDateUTC"))
        return parsed if isinstance(parsed, datetime) else None

    def checkpoint(self, cursor: dict | None, page: list[dict]) -> dict | None:
        """The cursor after a landed page, or None when it does not move; pages come oldest first (§3.1)."""
        stamps = [stamp for stamp in map(self.updated_at, page) if stamp is not None]
        if not stamps or (cursor is not None and max(stamps).isoformat() <= cursor["updated_at"]):
            return None
        return {"updated_at": max(stamps).isoformat()}

    def figures(self, xero: XeroResource) -> dict[str, int | float]:
        stats = xero.get_client().stats
        return {
            "api_calls": stats.calls,
            "api_retries": stats.retries,
            "bytes_received": stats.bytes_received,
            "min_limit_remaining": -1 if stats.min_limit_remaining is None else stats.min_limit_remaining,
            "day_limit_remaining": -1 if stats.day_limit_remaining is None else stats.day_limit_remaining,
        }
