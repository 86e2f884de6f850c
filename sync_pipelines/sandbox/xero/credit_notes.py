"""Credit notes and their allocation to invoices (https://developer.xero.com/documentation/api/credit-notes).

A credit note is written like an invoice (xero.md §2.4, §4.1): PUT creates, POST creates or updates, line items are
replaced, it starts DRAFT and may be created SUBMITTED or AUTHORISED; ACCRECCREDIT numbers come from the
organisation's sequence ("CN-0005" in the spec's example) and are unique, ACCPAYCREDIT ones are free text. Its
RemainingCredit is what allocations have not used; an allocation moves credit onto an AUTHORISED invoice of the
matching type, lowering the invoice's AmountDue and raising its AmountCredited, and either document becomes PAID
when nothing is left. Allocations are refused as Xero refuses them, all reasons at once; the messages quoted are
Xero's, as integrators report them (waynerobinson/xeroizer#320).
"""

import sqlite3
import uuid
from decimal import Decimal

from sync_pipelines.sandbox.xero.accounting import (
    BASE_CURRENCY,
    Ledger,
    check_transaction_enums,
    check_transition,
    contact_summary,
    parse_date_input_or_fail,
    price_lines,
    refresh_invoice_amounts,
    set_date,
    stamp,
)
from sync_pipelines.sandbox.xero.dates import net, parse_net
from sync_pipelines.sandbox.xero.values import Invalid, decimal, money

CREDIT_NOTE_TYPES = ("ACCPAYCREDIT", "ACCRECCREDIT")
CREDIT_NOTE_STATUSES = ("DRAFT", "SUBMITTED", "DELETED", "AUTHORISED", "PAID", "VOIDED")
INVOICE_TYPE_FOR = {"ACCRECCREDIT": "ACCREC", "ACCPAYCREDIT": "ACCPAY"}
# What stays editable once credit is allocated, as for an invoice with a payment (xero.md §2.4).
_ALLOCATED_EDITABLE = {
    "Reference",
    "DueDate",
    "CreditNoteNumber",
    "BrandingThemeID",
    "Contact",
    "CreditNoteID",
    "Status",
}
_EDITABLE_FIELDS = (
    "CreditNoteNumber",
    "Reference",
    "CurrencyCode",
    "LineAmountTypes",
    "BrandingThemeID",
    "SentToContact",
)


def new_credit_note(
    credit_note_id: str,
    note_type: str,
    number: str,
    contact: dict,
    lines: list[dict],
    status: str,
    currency: str,
    date_ms: int,
    updated_ms: int,
) -> dict:
    """A credit note in the key order of the spec's getCreditNotes example."""
    note = {
        "CreditNoteID": credit_note_id,
        "CreditNoteNumber": number,
        "Payments": [],
        "ID": credit_note_id,
        "CurrencyRate": 1.0,
        "Type": note_type,
        "Reference": "",
        "RemainingCredit": 0.0,
        "Allocations": [],
        "HasAttachments": False,
        "Contact": contact_summary(contact),
    }
    set_date(note, "Date", date_ms)
    note.update(Status=status, LineAmountTypes="Exclusive", LineItems=lines, SubTotal=0.0, TotalTax=0.0, Total=0.0)
    stamp(note, updated_ms)
    note["CurrencyCode"] = currency
    return note


def refresh_credit_note_amounts(note: dict) -> None:
    """Totals from the lines; RemainingCredit is the total less allocations and refunds, nothing once VOIDED or
    DELETED (as an invoice's AmountDue)."""
    subtotal, tax = price_lines(note["LineItems"], note.get("LineAmountTypes", "Exclusive"))
    total = subtotal + tax
    used = sum((Decimal(str(entry["Amount"])) for entry in note["Allocations"] + note["Payments"]), Decimal("0"))
    remaining = Decimal("0") if note["Status"] in ("VOIDED", "DELETED") else total - used
    note.update(SubTotal=money(subtotal), TotalTax=money(tax), Total=money(total), RemainingCredit=money(remaining))


class CreditNotes:
    """Credit-note writes on the ledger's store, contacts, line items and save hook (webhooks, stock)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.store = ledger.store

    def write(
        self, conn: sqlite3.Connection, element: dict, now: int, create_only: bool = False, target_id: str | None = None
    ) -> dict:
        check_transaction_enums(element, CREDIT_NOTE_TYPES, CREDIT_NOTE_STATUSES)
        dates = {
            field: parse_date_input_or_fail(element[field], field)
            for field in ("Date", "DueDate")
            if element.get(field) is not None
        }
        existing = self.ledger.existing_record(
            conn, "CreditNotes", target_id or element.get("CreditNoteID"), create_only, "Credit note"
        )
        note = self._create(conn, element, now) if existing is None else self._update(conn, existing, element, now)
        for field, ms in dates.items():
            set_date(note, field, ms)
        refresh_credit_note_amounts(note)
        if note["Type"] == "ACCRECCREDIT" and self.store.label_taken(
            "CreditNotes", note["CreditNoteNumber"], note["CreditNoteID"], "type = 'ACCRECCREDIT'", conn
        ):
            raise Invalid("Credit Note # must be unique.")
        self.ledger.save(conn, "CreditNotes", note)
        return note

    def _create(self, conn: sqlite3.Connection, element: dict, now: int) -> dict:
        note_type = element.get("Type")
        if note_type is None:
            raise Invalid("Credit note Type must be specified (ACCRECCREDIT or ACCPAYCREDIT)")
        status = element.get("Status", "DRAFT")
        if status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            raise Invalid("Credit notes can only be created as DRAFT, SUBMITTED or AUTHORISED")
        lines = self.ledger.line_items(conn, element.get("LineItems", []), note_type, None)
        if status != "DRAFT" and not lines:
            raise Invalid("Credit notes must have at least one line item before they can be submitted or approved")
        # IsCustomer/IsSupplier follow from invoices only (xero.md §2.5), so no type here.
        contact = self.ledger.contact_for(conn, element.get("Contact"), now, None)
        number = element.get("CreditNoteNumber") or (
            f"CN-{self.ledger.next_number('credit_note_number', conn):04d}" if note_type == "ACCRECCREDIT" else ""
        )
        note = new_credit_note(
            str(uuid.uuid4()),
            note_type,
            number,
            contact,
            lines,
            status,
            element.get("CurrencyCode", BASE_CURRENCY),
            now - now % 86_400_000,  # today, unless the element dates it
            now,
        )
        for field in _EDITABLE_FIELDS:
            if field in element:
                note[field] = element[field]
        return note

    def _update(self, conn: sqlite3.Connection, note: dict, element: dict, now: int) -> dict:
        current = note["Status"]
        if current in ("VOIDED", "DELETED"):
            raise Invalid(f"This document cannot be edited as it has a status of {current}.")
        allocated = bool(note["Allocations"] or note["Payments"])
        if allocated and set(element) - _ALLOCATED_EDITABLE:
            raise Invalid("This document cannot be edited as it has a payment or credit note allocated to it.")
        if "Type" in element and element["Type"] != note["Type"]:
            raise Invalid("The Type of an existing credit note cannot be changed")
        status = element.get("Status", current)
        if status != current:
            check_transition(current, status, allocated, "credit note")
        if "Contact" in element:
            note["Contact"] = contact_summary(self.ledger.contact_for(conn, element["Contact"], now, None))
        if "LineItems" in element:
            note["LineItems"] = self.ledger.line_items(conn, element["LineItems"], note["Type"], note["LineItems"])
        for field in _EDITABLE_FIELDS:
            if field in element:
                note[field] = element[field]
        note["Status"] = status
        stamp(note, now)
        return note

    def allocate(self, conn: sqlite3.Connection, credit_note_id: str, element: dict, now: int) -> dict:
        """PUT /CreditNotes/{id}/Allocations: one allocation, answered in the shape of the spec's example."""
        note = self.store.get("CreditNotes", credit_note_id, conn)
        reference = element.get("Invoice")
        if not isinstance(reference, dict) or not reference.get("InvoiceID"):
            raise Invalid("An allocation must name the Invoice (InvoiceID) the credit is applied to")
        invoice = self.store.get("Invoices", reference["InvoiceID"], conn)
        if invoice is None:
            raise Invalid(f"Invoice with ID {reference['InvoiceID']} could not be found")
        if element.get("Amount") is None:
            raise Invalid("The Amount to allocate must be specified")
        amount = decimal(element["Amount"], "Amount")
        problems = self._allocation_problems(note, invoice, amount)
        if problems:
            raise Invalid(*problems)
        if element.get("Date") is not None:
            date_ms = parse_date_input_or_fail(element["Date"], "Date")
        else:
            # Undated, an allocation is dated when both documents exist: the later of their dates.
            date_ms = max(parse_net(note["Date"]), parse_net(invoice["Date"]))
        allocation_id = str(uuid.uuid4())
        note["Allocations"].append(
            {
                "AllocationID": allocation_id,
                "Amount": money(amount),
                "Date": net(date_ms),
                "Invoice": {"InvoiceID": invoice["InvoiceID"], "InvoiceNumber": invoice["InvoiceNumber"]},
            }
        )
        refresh_credit_note_amounts(note)
        if note["RemainingCredit"] <= 0:
            note.update(Status="PAID", FullyPaidOnDate=net(date_ms))
        stamp(note, now)
        applied = {
            "CreditNoteID": credit_note_id,
            "CreditNoteNumber": note["CreditNoteNumber"],
            "ID": credit_note_id,
            "AppliedAmount": money(amount),
        }
        set_date(applied, "Date", date_ms)
        invoice["CreditNotes"].append({**applied, "LineItems": [], "Total": note["Total"]})
        refresh_invoice_amounts(invoice)
        if invoice["AmountDue"] <= 0:
            invoice.update(Status="PAID", FullyPaidOnDate=net(date_ms))
        stamp(invoice, now)
        self.ledger.save(conn, "CreditNotes", note)
        self.ledger.save(conn, "Invoices", invoice)
        invoice_summary = {"InvoiceID": invoice["InvoiceID"], "InvoiceNumber": invoice["InvoiceNumber"]}
        invoice_summary.update(Payments=[], CreditNotes=[], Prepayments=[], Overpayments=[], HasErrors=False)
        invoice_summary.update(IsDiscounted=False, LineItems=[], ValidationErrors=[])
        return {
            "AllocationID": allocation_id,
            "Amount": money(amount),
            "Date": net(date_ms),
            "Invoice": invoice_summary,
            "CreditNote": {"CreditNoteID": credit_note_id, "ID": credit_note_id, "LineItems": []},
            "ValidationErrors": [],
        }

    @staticmethod
    def _allocation_problems(note: dict, invoice: dict, amount: Decimal) -> list[str]:
        """Every reason Xero would refuse the allocation."""
        problems = []
        if note["Status"] == "PAID":
            problems.append("This credit note has no remaining credit to allocate")
        elif note["Status"] != "AUTHORISED":
            problems.append(f"Only AUTHORISED credit notes can be allocated (status is {note['Status']})")
        if invoice["Status"] == "PAID":
            problems.append("The invoice you are trying to allocate to has already been paid off")
        elif invoice["Status"] != "AUTHORISED":
            problems.append(f"Credit can only be allocated to AUTHORISED invoices (status is {invoice['Status']})")
        if invoice["Type"] != INVOICE_TYPE_FOR[note["Type"]]:
            problems.append("Credit Note cannot be allocated to an incorrect invoice type")
        if invoice["Contact"]["ContactID"] != note["Contact"]["ContactID"]:
            problems.append("A credit note can only be allocated to an invoice for the same contact")
        if invoice["CurrencyCode"] != note["CurrencyCode"]:
            problems.append("A credit note can only be allocated to an invoice in the same currency")
        if amount <= 0:
            problems.append("The Amount to allocate must be positive")
        elif amount > Decimal(str(invoice["AmountDue"])) or amount > Decimal(str(note["RemainingCredit"])):
            problems.append("Credit Note cannot be allocated as amount is greater than amount outstanding")
        return problems
