"""What is extracted from Xero, as data: each entity's collection, filter, webhook category and contract.

Every collection of the Accounting API is read paged at the maximum and incrementally by UpdatedDateUTC
(`XeroCollection`); `ENTITIES` lists what each entity is, and every flow that reads Xero starts from them.
"""

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd

from sync_pipelines.lib.entities import Entity, QuotaExhausted
from sync_pipelines.vendors.xero.client import XeroDailyLimitReached
from sync_pipelines.vendors.xero.contracts.bank_transaction import XeroBankTransaction, flatten_bank_transaction
from sync_pipelines.vendors.xero.contracts.common import parse_xero_date
from sync_pipelines.vendors.xero.contracts.contact import XeroContact, flatten_contact
from sync_pipelines.vendors.xero.contracts.invoice import XeroInvoice, flatten_invoice
from sync_pipelines.vendors.xero.contracts.payment import XeroPayment, flatten_payment
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

    def read(self, xero: XeroResource, cursor: dict | None) -> Iterator[list[dict]]:
        since = None if cursor is None else pd.Timestamp(cursor["updated_at"]).to_pydatetime() - self.overlap
        return self._pages(xero, since, self.where)

    def read_all(self, xero: XeroResource, expected_rows: int) -> Iterator[list[dict]]:
        """A full re-read (a resync): the pages `expected_rows` fill are asked for at once, up to the 5 in flight."""
        return self._pages(xero, None, self.where, expected_rows=expected_rows)

    def read_window(self, xero: XeroResource, start: datetime, end: datetime) -> Iterator[list[dict]]:
        """The records last changed in [start, end): If-Modified-Since bounds the start and `where` the end, in
        UpdatedDateUTC order, so the read stops at the window's last page (Xero's `where`, `order` and
        If-Modified-Since: https://developer.xero.com/documentation/api/accounting/requests-and-responses)."""
        before = f"UpdatedDateUTC<DateTime({end.astimezone(UTC):%Y,%m,%d,%H,%M,%S})"
        where = f"{self.where} AND {before}" if self.where else before
        # A second early, as whether If-Modified-Since is inclusive is not documented; lib/entities.within trims.
        return self._pages(xero, start - timedelta(seconds=1), where, order="UpdatedDateUTC")

    def _pages(
        self,
        xero: XeroResource,
        since: datetime | None,
        where: str | None,
        order: str | None = None,
        expected_rows: int = 0,
    ) -> Iterator[list[dict]]:
        params = dict(self.params) | ({"order": order} if order else {})
        try:
            pages = xero.get_client().iter_pages(
                self.collection, modified_since=since, where=where, params=params or None, expected_rows=expected_rows
            )
            for page in pages:
                yield page if self.keep is None else [record for record in page if self.keep(record)]
        except XeroDailyLimitReached as limit:
            # xero.md §5: the day limit means "defer the run", not "retry soon".
            raise QuotaExhausted(limit.retry_after) from limit

    def updated_at(self, record: dict) -> datetime | None:
        parsed = parse_xero_date(record.get("UpdatedDateUTC"))
        return parsed if isinstance(parsed, datetime) else None

    def checkpoint(self, cursor: dict | None, page: list[dict], stamps: list[datetime | None]) -> dict | None:
        """The cursor after a landed page, or None when it does not move; pages come oldest first (§3.1)."""
        known = [stamp for stamp in stamps if stamp is not None]
        if not known or (cursor is not None and max(known).isoformat() <= cursor["updated_at"]):
            return None
        return {"updated_at": max(known).isoformat()}

    def figures(self, xero: XeroResource) -> dict[str, int | float]:
        stats = xero.get_client().stats
        return {
            "api_calls": stats.calls,
            "api_retries": stats.retries,
            "bytes_received": stats.bytes_received,
            "min_limit_remaining": -1 if stats.min_limit_remaining is None else stats.min_limit_remaining,
            "day_limit_remaining": -1 if stats.day_limit_remaining is None else stats.day_limit_remaining,
        }


# Xero's default chart of accounts numbers EXPENSE-class accounts 400-499 (e.g. 404 Bank Fees, 429 General
# Expenses, 493 Travel); 300 Purchases is a direct cost. A bill whose every line posts there is an expense.
EXPENSE_ACCOUNT_CODES = frozenset(str(code) for code in range(400, 500))


def is_expense_bill(bill: dict) -> bool:
    lines = bill.get("LineItems") or []
    return bool(lines) and all(line.get("AccountCode") in EXPENSE_ACCOUNT_CODES for line in lines)


def is_invoice_payment(payment: dict) -> bool:
    """Payments of invoices and bills; credit-note, prepayment and overpayment payments are not synced yet."""
    return payment.get("PaymentType") in ("ACCRECPAYMENT", "ACCPAYPAYMENT")


# Xero sends webhooks for invoices and contacts only (xero.md §6); a payment always updates its invoice, so an
# INVOICE event refreshes payments too.
INVOICES = Entity(
    "xero", "invoices", "Sales invoices (ACCREC)",
    XeroCollection("Invoices", "InvoiceID", where='Type=="ACCREC"', webhook_category="INVOICE"),
    XeroInvoice, "invoice_id", flatten_invoice,
)  # fmt: skip
BILLS = Entity(
    "xero", "bills", "Bills (ACCPAY invoices)",
    XeroCollection("Invoices", "InvoiceID", where='Type=="ACCPAY"', webhook_category="INVOICE"),
    XeroInvoice, "invoice_id", flatten_invoice,
)  # fmt: skip
EXPENSE_BILLS = Entity(
    "xero", "expense_bills", "Expense bills (ACCPAY invoices posted wholly to expense accounts)",
    XeroCollection("Invoices", "InvoiceID", where='Type=="ACCPAY"', keep=is_expense_bill, webhook_category="INVOICE"),
    XeroInvoice, "invoice_id", flatten_invoice,
)  # fmt: skip
CONTACTS = Entity(
    "xero", "contacts", "Contacts, archived ones included",
    # xero.md §7: archived contacts are hidden unless asked for, and archiving must not go unseen.
    XeroCollection("Contacts", "ContactID", params={"includeArchived": "true"}, webhook_category="CONTACT"),
    XeroContact, "contact_id", flatten_contact,
)  # fmt: skip
PAYMENTS = Entity(
    "xero", "payments", "Payments of invoices (received) and bills (made)",
    XeroCollection("Payments", "PaymentID", keep=is_invoice_payment, webhook_category="INVOICE"),
    XeroPayment, "payment_id", flatten_payment,
)  # fmt: skip
BANK_TRANSACTIONS = Entity(
    "xero", "bank_transactions", "Bank transactions other than spend money",
    XeroCollection("BankTransactions", "BankTransactionID", where='Type!="SPEND"'),
    XeroBankTransaction, "bank_transaction_id", flatten_bank_transaction,
)  # fmt: skip
EXPENSES = Entity(
    "xero", "expenses", "Spend-money bank transactions (expenses)",
    XeroCollection("BankTransactions", "BankTransactionID", where='Type=="SPEND"'),
    XeroBankTransaction, "bank_transaction_id", flatten_bank_transaction,
)  # fmt: skip
ENTITIES = (INVOICES, BILLS, EXPENSE_BILLS, CONTACTS, PAYMENTS, BANK_TRANSACTIONS, EXPENSES)
