"""What Segment should hold for the sandbox's records, computed from the source's side, and what it holds."""

from collections import Counter

from sync_pipelines.vendors.xero.entities import is_expense_bill
from sync_pipelines_tests.conftest import SandboxAdmin

# Every track event the flow sends names its record in one of these properties.
RECORD_PROPERTIES = ("payment_id", "bank_transaction_id", "expense_id", "bill_id", "invoice_id")


def track_counts(admin: SandboxAdmin, prefix: str = "Invoice ") -> Counter:
    """(record id, event) -> how many such track calls Segment holds, for events starting with `prefix`."""
    return Counter(
        (next(m["properties"][p] for p in RECORD_PROPERTIES if p in m["properties"]), m["event"])
        for m in admin.segment_messages()
        if m["type"] == "track" and m["event"].startswith(prefix)
    )


def invoice_calls(admin: SandboxAdmin) -> int:
    """List calls the sandbox's Xero saw on /Invoices."""
    return sum(n for call, n in admin.stats()["xero"].items() if call.startswith("GET") and call.endswith("/Invoices"))


def _lifecycle(expected: Counter, record_id: str, created: str, status: str, events: dict[str, str]) -> None:
    expected[(record_id, created)] += 1
    if status in events:
        expected[(record_id, events[status])] += 1


def expected_track_counts(invoices: list[dict]) -> Counter:
    """Track calls for the sandbox's valid sales invoices: created, then the status they are in now."""
    expected = Counter()
    for invoice in invoices:
        if not invoice.get("_malformed") and invoice.get("Type") == "ACCREC":
            events = {"PAID": "Invoice Paid", "VOIDED": "Invoice Voided", "DELETED": "Invoice Deleted"}
            _lifecycle(expected, invoice["InvoiceID"], "Invoice Created", invoice["Status"], events)
    return expected


def expected_flow_tracks(admin: SandboxAdmin, tenant: str | None = None) -> Counter:
    """Every track call the whole flow owes the sandbox's current records (of one Xero organisation, by default the
    first), seen for the first time."""
    organisation = {"tenant": tenant} if tenant else {}
    expected = expected_track_counts(admin.get("/xero/invoices", **organisation))
    gone = {"VOIDED": "Voided", "DELETED": "Deleted"}
    for bill in admin.get("/xero/invoices", **organisation):
        if bill["Type"] != "ACCPAY":
            continue
        events = {
            "AUTHORISED": "Bill Approved",
            "PAID": "Bill Paid",
            "VOIDED": "Bill Voided",
            "DELETED": "Bill Deleted",
        }
        _lifecycle(expected, bill["InvoiceID"], "Bill Created", bill["Status"], events)
        if is_expense_bill(bill):
            expense_events = {s: f"Expense {action}" for s, action in gone.items()}
            _lifecycle(expected, bill["InvoiceID"], "Expense Recorded", bill["Status"], expense_events)
    for payment in admin.get("/xero/payments", **organisation):
        created = {"ACCRECPAYMENT": "Payment Received", "ACCPAYPAYMENT": "Payment Made"}[payment["PaymentType"]]
        _lifecycle(expected, payment["PaymentID"], created, payment["Status"], {"DELETED": "Payment Deleted"})
    for txn in admin.get("/xero/bank-transactions", **organisation):
        thing = "Expense" if txn["Type"] == "SPEND" else "Bank Transaction"
        events = {s: f"{thing} {action}" for s, action in gone.items()}
        _lifecycle(expected, txn["BankTransactionID"], f"{thing} Recorded", txn["Status"], events)
    return expected
