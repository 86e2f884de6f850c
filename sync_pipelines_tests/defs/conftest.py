"""A sandbox-backed environment for running the real code location end to end."""

from collections import Counter

from sync_pipelines_tests.conftest import SandboxAdmin


def track_counts(admin: SandboxAdmin) -> Counter:
    """(invoice id, event) -> how many such track calls Segment holds."""
    return Counter(
        (m["properties"]["invoice_id"], m["event"]) for m in admin.segment_messages() if m["type"] == "track"
    )


def invoice_calls(admin: SandboxAdmin) -> int:
    """List calls the sandbox's Xero saw on /Invoices."""
    return sum(n for call, n in admin.stats()["xero"].items() if call.startswith("GET") and call.endswith("/Invoices"))


def expected_track_counts(invoices: list[dict]) -> Counter:
    """What Segment should hold for the sandbox's valid sales invoices, computed from the source's side."""
    lifecycle = {"PAID": "Invoice Paid", "VOIDED": "Invoice Voided", "DELETED": "Invoice Deleted"}
    expected = Counter()
    for invoice in invoices:
        if invoice.get("_malformed") or invoice.get("Type") != "ACCREC":
            continue
        expected[(invoice["InvoiceID"], "Invoice Created")] += 1
        if invoice["Status"] in lifecycle:
            expected[(invoice["InvoiceID"], lifecycle[invoice["Status"]])] += 1
    return expected
