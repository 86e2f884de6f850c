"""The sandbox ledger: how Xero builds, validates and changes invoices, contacts, bank transactions, payments and
items (with the stock of tracked ones, inventory.py); credit notes build on it (credit_notes.py).

Shared by the seeder (to price records), the Accounting API (writes) and the admin API, so a record looks
the same whichever way it was made. Records are dicts in rendered API form (xero.md §2.2).
"""

import json
import sqlite3
import uuid
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sync_pipelines.sandbox.store import Store
from sync_pipelines.sandbox.xero.dates import date_string, net, parse_date_input, utc_string
from sync_pipelines.sandbox.xero.inventory import Inventory, build_item, fill_line_from_item, find_item
from sync_pipelines.sandbox.xero.tracking import line_tracking
from sync_pipelines.sandbox.xero.values import CENT, Invalid, PostDataInvalid, decimal, is_sale, money

# Rates behind the sandbox's tax types (NZ-style GST, as in the spec examples).
TAX_RATES = {"OUTPUT": Decimal("0.15"), "INPUT": Decimal("0.15"), "NONE": Decimal("0"), "EXEMPTOUTPUT": Decimal("0")}
BASE_CURRENCY = "USD"
# Xero's default chart of accounts: 200 Sales (REVENUE), 300 Purchases (DIRECTCOSTS), 090 the bank account, and
# EXPENSE-class accounts in the 400s: 404 Bank Fees, 429 General Expenses, 453 Office Expenses, 493 Travel - National.
SALES_ACCOUNT, PURCHASES_ACCOUNT, BANK_ACCOUNT = "200", "300", "090"
GENERAL_EXPENSES_ACCOUNT = "429"
EXPENSE_ACCOUNTS = ("404", GENERAL_EXPENSES_ACCOUNT, "453", "493")
BANK_ACCOUNT_ID = "5690f1e8-1d02-4893-90c2-ee1a69eff942"

INVOICE_TYPES = ("ACCREC", "ACCPAY")
INVOICE_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED", "PAID", "VOIDED", "DELETED")
LINE_AMOUNT_TYPES = ("Exclusive", "Inclusive", "NoTax")
CONTACT_STATUSES = ("ACTIVE", "ARCHIVED", "GDPRREQUEST")
BANK_TRANSACTION_TYPES = (
    "RECEIVE",
    "RECEIVE-OVERPAYMENT",
    "RECEIVE-PREPAYMENT",
    "SPEND",
    "SPEND-OVERPAYMENT",
    "SPEND-PREPAYMENT",
    "RECEIVE-TRANSFER",
    "SPEND-TRANSFER",
)
BANK_TRANSACTION_STATUSES = ("AUTHORISED", "DELETED", "VOIDED")
CONTACT_GROUP_STATUSES = ("ACTIVE", "DELETED")
MAX_CONTACT_GROUPS = 100  # xero.md §2.6; the message is the spec's createContactGroup 400 example
MAX_CONTACT_PERSONS = 5  # xero.md §2.5
MAX_NOTE_CHARS = 2500  # xero.md §2.7
# xero.md §2.3, §2.7: the collections the sandbox serves that have GET+PUT /{id}/History.
HISTORY_COLLECTIONS = ("Invoices", "Contacts", "BankTransactions", "Payments", "Items", "CreditNotes")
_CONTACT_FIELDS = (
    "ContactNumber",
    "AccountNumber",
    "Name",
    "FirstName",
    "LastName",
    "EmailAddress",
    "CompanyNumber",
    "TaxNumber",
    "DefaultCurrency",
    "Website",
    "Addresses",
    "Phones",
    "ContactStatus",
)
_PAID_EDITABLE = {"Reference", "DueDate", "InvoiceNumber", "BrandingThemeID", "Url", "Contact", "InvoiceID", "Status"}


def set_date(record: dict, field: str, ms: int) -> None:
    """Dates render with a helper string beside them (xero.md §2.2)."""
    record[field] = net(ms)
    record[f"{field}String"] = date_string(ms)


def stamp(record: dict, ms: int, with_string: bool = True) -> None:
    record["UpdatedDateUTC"] = net(ms)
    if with_string:
        record["UpdatedDateUTCString"] = utc_string(ms)


def group_summary(group: dict, contacts: list[dict] | None = None) -> dict:
    """A contact group as the spec's examples render it; Contacts only when one group is fetched (xero.md §2.6)."""
    return {**group, "Contacts": contacts or [], "HasValidationErrors": False}


def contact_summary(contact: dict) -> dict:
    return {"ContactID": contact["ContactID"], "Name": contact["Name"], "EmailAddress": contact.get("EmailAddress", "")}


def price_lines(lines: list[dict], line_amount_types: str) -> tuple[Decimal, Decimal]:
    """Fill LineAmount/TaxAmount on each line and return (SubTotal, TotalTax) (xero.md §2.4)."""
    subtotal = tax = Decimal("0")
    for line in lines:
        quantity = decimal(line.get("Quantity", 1), "Quantity")
        unit = decimal(line.get("UnitAmount", 0), "UnitAmount")
        discount = decimal(line.get("DiscountRate", 0), "DiscountRate")
        amount = (quantity * unit * (1 - discount / 100)).quantize(CENT, rounding=ROUND_HALF_UP)
        rate = TAX_RATES.get(line.get("TaxType", "NONE"), Decimal("0"))
        if line_amount_types == "NoTax":
            line_tax = Decimal("0")
        elif line_amount_types == "Inclusive":
            line_tax = (amount * rate / (1 + rate)).quantize(CENT, rounding=ROUND_HALF_UP)
        else:
            line_tax = (amount * rate).quantize(CENT, rounding=ROUND_HALF_UP)
        line.update(
            Quantity=float(quantity), UnitAmount=float(unit), LineAmount=money(amount), TaxAmount=money(line_tax)
        )
        subtotal += amount - line_tax if line_amount_types == "Inclusive" else amount
        tax += line_tax
    return subtotal, tax


def refresh_invoice_amounts(invoice: dict) -> None:
    """Recompute the read-only totals from lines, payments and allocated credit notes; VOIDED/DELETED owe nothing
    (spec example)."""
    subtotal, tax = price_lines(invoice["LineItems"], invoice.get("LineAmountTypes", "Exclusive"))
    total = subtotal + tax
    paid = sum((Decimal(str(p["Amount"])) for p in invoice.get("Payments", [])), Decimal("0"))
    credited = sum((Decimal(str(c["AppliedAmount"])) for c in invoice.get("CreditNotes", [])), Decimal("0"))
    due = Decimal("0") if invoice["Status"] in ("VOIDED", "DELETED") else total - paid - credited
    invoice.update(
        SubTotal=money(subtotal),
        TotalTax=money(tax),
        Total=money(total),
        AmountPaid=money(paid),
        AmountDue=money(due),
        AmountCredited=money(credited),
    )


def new_invoice(
    invoice_id: str,
    invoice_type: str,
    number: str,
    reference: str,
    contact: dict,
    lines: list[dict],
    status: str,
    currency: str,
    date_ms: int,
    due_ms: int,
    updated_ms: int,
) -> dict:
    """An invoice in the key order of the spec's getInvoices example."""
    invoice = {
        "Type": invoice_type,
        "InvoiceID": invoice_id,
        "InvoiceNumber": number,
        "Reference": reference,
        "Payments": [],
        "CreditNotes": [],
        "Prepayments": [],
        "Overpayments": [],
        "AmountDue": 0.0,
        "AmountPaid": 0.0,
        "AmountCredited": 0.0,
        "CurrencyRate": 1.0,
        "HasErrors": False,
        "IsDiscounted": False,
        "HasAttachments": False,
        "Contact": contact_summary(contact),
    }
    set_date(invoice, "Date", date_ms)
    set_date(invoice, "DueDate", due_ms)
    invoice.update(Status=status, LineAmountTypes="Exclusive", LineItems=lines)
    invoice.update(SubTotal=0.0, TotalTax=0.0, Total=0.0)
    stamp(invoice, updated_ms)
    invoice["CurrencyCode"] = currency
    refresh_invoice_amounts(invoice)
    return invoice


def new_payment(payment_id: str, invoice: dict, amount: Decimal, date_ms: int, updated_ms: int, reference: str) -> dict:
    payment = {"PaymentID": payment_id}
    set_date(payment, "Date", date_ms)
    payment.update(
        BankAmount=money(amount),
        Amount=money(amount),
        Reference=reference,
        CurrencyRate=1.0,
        PaymentType="ACCRECPAYMENT" if invoice["Type"] == "ACCREC" else "ACCPAYPAYMENT",
        Status="AUTHORISED",
    )
    stamp(payment, updated_ms)
    payment.update(
        HasAccount=True,
        IsReconciled=False,
        Account={"AccountID": BANK_ACCOUNT_ID, "Code": BANK_ACCOUNT},
        Invoice={
            "Type": invoice["Type"],
            "InvoiceID": invoice["InvoiceID"],
            "InvoiceNumber": invoice["InvoiceNumber"],
            "Contact": invoice["Contact"],
            "CurrencyCode": invoice["CurrencyCode"],
        },
        HasValidationErrors=False,
    )
    return payment


def apply_payment(invoice: dict, payment: dict, updated_ms: int) -> None:
    """Payments drive AmountPaid/AmountDue and flip the invoice to PAID when covered (xero.md §2.9)."""
    invoice["Payments"].append(
        {
            "PaymentID": payment["PaymentID"],
            "Date": payment["Date"],
            "Amount": payment["Amount"],
            "CurrencyRate": 1.0,
            "HasAccount": False,
            "HasValidationErrors": False,
        }
    )
    refresh_invoice_amounts(invoice)
    if invoice["AmountDue"] <= 0:
        invoice["Status"] = "PAID"
        invoice["FullyPaidOnDate"] = payment["Date"]
    stamp(invoice, updated_ms)


class Ledger:
    """Validating writes against the store; every method runs inside the caller's transaction.

    before_save sees every record just before it is saved, inside the same transaction (the webhook emitter
    queues its events there, so a rolled-back write announces nothing). Before that, the inventory moves the stock
    of tracked items the record uses, and may refuse the write.
    """

    def __init__(self, store: Store, before_save: Callable[[sqlite3.Connection, str, dict], None] | None = None):
        self.store = store
        self.before_save = before_save
        self.inventory = Inventory(store)

    def save(self, conn: sqlite3.Connection, collection: str, record: dict) -> None:
        self.inventory.sync(conn, collection, record)
        if self.before_save is not None:
            self.before_save(conn, collection, record)
        self.store.save(conn, collection, record)

    # -- shared lookups -----------------------------------------------------------------------

    def contact_for(self, conn: sqlite3.Connection, reference: Any, now: int, invoice_type: str | None) -> dict:
        """Resolve a Contact by ID, ContactNumber or Name; an unknown Name creates the contact.

        An invoice (invoice_type given) also marks its contact as a customer or supplier.
        """
        if not isinstance(reference, dict) or not any(reference.get(k) for k in ("ContactID", "Name", "ContactNumber")):
            raise Invalid(
                "The Contact must contain at least 1 of the following elements to identify the contact: "
                "Name, ContactID, ContactNumber"
            )
        if reference.get("ContactID"):
            contact = self.store.get("Contacts", reference["ContactID"], conn)
            if contact is None:
                raise Invalid(f"Contact with ContactID {reference['ContactID']} could not be found")
        elif reference.get("ContactNumber"):
            contact = _first(
                self.store.find(
                    "Contacts",
                    "json_extract(body, '$.ContactNumber') = ?",
                    (reference["ContactNumber"],),
                    limit=1,
                    conn=conn,
                )
            )
            if contact is None:
                raise Invalid(f"Contact with ContactNumber {reference['ContactNumber']} could not be found")
        else:
            contact = _first(
                self.store.find("Contacts", "label = ? AND status = 'ACTIVE'", (reference["Name"],), limit=1, conn=conn)
            )
            if contact is None:
                contact = self.write_contact(conn, {"Name": reference["Name"]}, now, create_only=True)
        if invoice_type is None:
            return contact
        flag = "IsCustomer" if invoice_type == "ACCREC" else "IsSupplier"
        if not contact.get(flag):
            # IsCustomer/IsSupplier are derived and do not bump UpdatedDateUTC (xero.md §3.2).
            contact[flag] = True
            self.save(conn, "Contacts", contact)
        return contact

    def existing_record(
        self, conn: sqlite3.Connection, collection: str, record_id: str | None, create_only: bool, noun: str
    ) -> dict | None:
        if not record_id:
            return None
        if create_only:
            raise Invalid(f"{noun} {record_id} already has an ID; PUT only creates, use POST to update")
        existing = self.store.get(collection, record_id, conn)
        if existing is None:
            raise Invalid(f"{noun} with ID {record_id} could not be found")
        return existing

    # -- invoices -----------------------------------------------------------------------------

    def write_invoice(
        self, conn: sqlite3.Connection, element: dict, now: int, create_only: bool = False, target_id: str | None = None
    ) -> dict:
        """PUT creates, POST creates or updates (xero.md §4.1) with Xero's status rules (§2.4)."""
        check_transaction_enums(element, INVOICE_TYPES, INVOICE_STATUSES)
        dates = {
            field: parse_date_input_or_fail(element[field], field)
            for field in ("Date", "DueDate")
            if element.get(field) is not None
        }
        existing = self.existing_record(conn, "Invoices", target_id or element.get("InvoiceID"), create_only, "Invoice")
        if existing is None:
            invoice = self._create_invoice(conn, element, dates, now)
        else:
            invoice = self._update_invoice(conn, existing, element, dates, now)
        # xero.md §2.4: sales invoice numbers are unique; bill numbers are not.
        if invoice["Type"] == "ACCREC" and self.store.label_taken(
            "Invoices", invoice["InvoiceNumber"], invoice["InvoiceID"], "type = 'ACCREC'", conn
        ):
            raise Invalid("Invoice # must be unique.")
        self.save(conn, "Invoices", invoice)
        return invoice

    def _create_invoice(self, conn: sqlite3.Connection, element: dict, dates: dict[str, int], now: int) -> dict:
        invoice_type = element.get("Type")
        if invoice_type is None:
            raise Invalid("Invoice Type must be specified (ACCREC or ACCPAY)")
        status = element.get("Status", "DRAFT")
        if status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            raise Invalid("Invoices can only be created as DRAFT, SUBMITTED or AUTHORISED")
        lines = self.line_items(conn, element.get("LineItems", []), invoice_type, None)
        if status != "DRAFT" and not lines:
            raise Invalid("Invoices must have at least one line item before they can be submitted or approved")
        contact = self.contact_for(conn, element.get("Contact"), now, invoice_type)
        number = element.get("InvoiceNumber") or (
            f"INV-{self.next_number('invoice_number', conn):05d}" if invoice_type == "ACCREC" else ""
        )
        date_ms = dates.get("Date", now - now % 86_400_000)
        invoice = new_invoice(
            str(uuid.uuid4()),
            invoice_type,
            number,
            element.get("Reference", ""),
            contact,
            lines,
            status,
            element.get("CurrencyCode", BASE_CURRENCY),
            date_ms,
            dates.get("DueDate", date_ms),
            now,
        )
        invoice["LineAmountTypes"] = element.get("LineAmountTypes", "Exclusive")
        for field in ("Url", "BrandingThemeID", "SentToContact"):
            if field in element:
                invoice[field] = element[field]
        refresh_invoice_amounts(invoice)
        return invoice

    def _update_invoice(
        self, conn: sqlite3.Connection, invoice: dict, element: dict, dates: dict[str, int], now: int
    ) -> dict:
        current = invoice["Status"]
        if current in ("VOIDED", "DELETED"):
            raise Invalid(f"This document cannot be edited as it has a status of {current}.")
        settled = bool(invoice.get("Payments") or invoice.get("CreditNotes"))
        if settled and set(element) - _PAID_EDITABLE:
            raise Invalid("This document cannot be edited as it has a payment or credit note allocated to it.")
        if "Type" in element and element["Type"] != invoice["Type"]:
            raise Invalid("The Type of an existing invoice cannot be changed")
        status = element.get("Status", current)
        if status != current:
            check_transition(current, status, settled)
        if "Contact" in element:
            invoice["Contact"] = contact_summary(self.contact_for(conn, element["Contact"], now, invoice["Type"]))
        if "LineItems" in element:
            invoice["LineItems"] = self.line_items(conn, element["LineItems"], invoice["Type"], invoice["LineItems"])
        for field in (
            "InvoiceNumber",
            "Reference",
            "CurrencyCode",
            "LineAmountTypes",
            "Url",
            "BrandingThemeID",
            "SentToContact",
        ):
            if field in element:
                invoice[field] = element[field]
        for field, ms in dates.items():
            set_date(invoice, field, ms)
        invoice["Status"] = status
        refresh_invoice_amounts(invoice)
        stamp(invoice, now)
        return invoice

    def line_items(
        self, conn: sqlite3.Connection, submitted: Any, invoice_type: str, current: list[dict] | None
    ) -> list[dict]:
        """Line-item replacement: IDs update, no ID adds, omitted lines go (xero.md §2.4). An ItemCode must name an
        item, which fills what the line leaves out; Tracking must name active categories and options."""
        if not isinstance(submitted, list):
            raise PostDataInvalid("LineItems must be an array")
        by_id = {line["LineItemID"]: line for line in current or []}
        lines = []
        for given in submitted:
            if not isinstance(given, dict):
                raise PostDataInvalid("Each line item must be an object")
            line = dict(by_id.get(given.get("LineItemID"), {}))
            line.update(given)
            if "ItemCode" in given:
                self._apply_item(conn, line, invoice_type)
            if "Tracking" in given:
                line["Tracking"] = line_tracking(self.store, conn, given["Tracking"])
            if not str(line.get("Description", "")).strip():
                raise Invalid("Description must be specified for every line item")
            line.setdefault("LineItemID", str(uuid.uuid4()))
            line.setdefault("Quantity", 1)
            line.setdefault("UnitAmount", 0)
            line.setdefault("AccountCode", default_account(invoice_type))
            line.setdefault("TaxType", "OUTPUT" if invoice_type in ("ACCREC", "ACCRECCREDIT", "RECEIVE") else "INPUT")
            lines.append(line)
        return lines

    def _apply_item(self, conn: sqlite3.Connection, line: dict, invoice_type: str) -> None:
        """A line's ItemCode names an existing item; an empty one takes the item off the line."""
        code = line["ItemCode"]
        if code in (None, ""):
            line.pop("ItemCode")
            line.pop("Item", None)
            return
        item = find_item(self.store, conn, code) if isinstance(code, str) else None
        if item is None:
            raise Invalid(f"Item code '{code}' is not valid: no item has this code")
        fill_line_from_item(item, invoice_type, line)

    def void_invoice(self, conn: sqlite3.Connection, invoice: dict, now: int) -> dict:
        """AUTHORISED/PAID -> VOIDED, DRAFT/SUBMITTED -> DELETED; payments are deleted first (xero.md §7)."""
        for applied in invoice.get("Payments", []):
            self.delete_payment(conn, self.store.get("Payments", applied["PaymentID"], conn), now)
        target = "DELETED" if invoice["Status"] in ("DRAFT", "SUBMITTED") else "VOIDED"
        return self.write_invoice(conn, {"Status": target}, now, target_id=invoice["InvoiceID"])

    # -- items (xero.md §2.10) ----------------------------------------------------------------

    def write_item(
        self, conn: sqlite3.Connection, element: dict, now: int, create_only: bool = False, target_id: str | None = None
    ) -> dict:
        item = build_item(self.store, conn, element, now, create_only, target_id)
        self.save(conn, "Items", item)
        return item

    # -- contacts -----------------------------------------------------------------------------

    def write_contact(
        self, conn: sqlite3.Connection, element: dict, now: int, create_only: bool = False, target_id: str | None = None
    ) -> dict:
        """Names are unique among active contacts; archive instead of delete (xero.md §2.5)."""
        check_enum(element, "ContactStatus", CONTACT_STATUSES)
        existing = self.existing_record(conn, "Contacts", target_id or element.get("ContactID"), create_only, "Contact")
        if existing is None:
            if not str(element.get("Name", "")).strip():
                raise Invalid("The contact name must be specified")
            contact = new_contact(str(uuid.uuid4()), element["Name"], now)
        else:
            contact = existing
        for field in _CONTACT_FIELDS:
            if field in element:
                contact[field] = element[field]
        if "ContactPersons" in element:
            contact["ContactPersons"] = contact_persons(element["ContactPersons"])
        if not valid_email(contact.get("EmailAddress", "")):
            raise Invalid("Email address must be valid.")
        # xero.md §2.5: names are unique among active contacts.
        if contact["ContactStatus"] == "ACTIVE" and self.store.label_taken(
            "Contacts", contact["Name"], contact["ContactID"], "status = 'ACTIVE'", conn
        ):
            raise Invalid(
                f"The contact name {contact['Name']} is already assigned to another contact. "
                "The contact name must be unique across all active contacts."
            )
        stamp(contact, now, with_string=False)
        self.save(conn, "Contacts", contact)
        return contact

    # -- contact groups (xero.md §2.6) ---------------------------------------------------------

    def write_contact_group(
        self, conn: sqlite3.Connection, element: dict, create_only: bool = False, target_id: str | None = None
    ) -> dict:
        """PUT creates, POST /ContactGroups/{id} renames or deletes (Status DELETED); names are unique among
        ACTIVE groups, compared case-insensitively, and an organisation has at most 100 of them."""
        check_enum(element, "Status", CONTACT_GROUP_STATUSES)
        group_id = target_id or element.get("ContactGroupID")
        if group_id:
            if create_only:
                raise Invalid(f"Contact group {group_id} already has an ID; PUT only creates, use POST to update")
            group = self.store.contact_group(group_id, conn)
            if group is None or group["Status"] != "ACTIVE":
                raise Invalid(f"Contact group with ID {group_id} could not be found")
        else:
            if element.get("Status", "ACTIVE") != "ACTIVE":
                raise Invalid("A new contact group must be ACTIVE")
            if len(self.store.contact_groups(conn=conn)) >= MAX_CONTACT_GROUPS:
                raise Invalid(f"You’ve reached the limit of {MAX_CONTACT_GROUPS} contact groups.")
            group = {"ContactGroupID": str(uuid.uuid4()), "Name": None, "Status": "ACTIVE"}
        if "Name" in element or group["Name"] is None:
            if not isinstance(element.get("Name"), str) or not element["Name"].strip():
                raise Invalid("The contact group Name must be specified")
            group["Name"] = element["Name"]
        group["Status"] = element.get("Status", group["Status"])
        if group["Status"] == "ACTIVE" and self.store.group_name_taken(conn, group["Name"], group["ContactGroupID"]):
            # The message integrators quote (calcinai/xero-php#16).
            raise Invalid("A Contact Group already exists with this name")
        self.store.save_contact_group(conn, group)
        if group["Status"] == "DELETED":
            members = self.store.remove_members(conn, group["ContactGroupID"])
        else:
            members = self.store.group_members(group["ContactGroupID"], conn)
        self.refresh_contact_groups(conn, members)
        return group_summary(group)

    def add_group_member(self, conn: sqlite3.Connection, group_id: str, element: dict) -> dict:
        """PUT /ContactGroups/{id}/Contacts: adding a member twice is a no-op. The element comes back in the
        sparse shape of the spec's createContactGroupContacts example."""
        contact_id = element.get("ContactID")
        if not contact_id:
            raise Invalid("A ContactID must be specified to add a contact to a contact group")
        if self.store.get("Contacts", contact_id, conn) is None:
            raise Invalid(f"Contact with ContactID {contact_id} could not be found")
        self.store.add_member(conn, group_id, contact_id)
        self.refresh_contact_groups(conn, [contact_id])
        return {
            "ContactID": contact_id,
            "Addresses": [],
            "Phones": [],
            "ContactGroups": [],
            "ContactPersons": [],
            "HasValidationErrors": False,
            "ValidationErrors": [],
        }

    def remove_group_members(self, conn: sqlite3.Connection, group_id: str, contact_id: str | None = None) -> None:
        """DELETE one member (an unknown contact is invalid; a non-member is already removed) or all of them."""
        if contact_id is not None and self.store.get("Contacts", contact_id, conn) is None:
            raise Invalid(f"Contact with ContactID {contact_id} could not be found")
        self.refresh_contact_groups(conn, self.store.remove_members(conn, group_id, contact_id))

    def refresh_contact_groups(self, conn: sqlite3.Connection, contact_ids: list[str]) -> None:
        """Re-render the ContactGroups[] a contact shows on single and paged GETs (xero.md §2.5).

        Membership belongs to the group, not the contact, so it neither bumps the contact's UpdatedDateUTC nor
        announces a CONTACT event: like the other fields derived from elsewhere (xero.md §3.2), and the
        conservative choice, since a client that trusted If-Modified-Since to see membership changes would miss
        them at Xero if Xero does not bump (not documented either way). Saved past before_save on purpose.
        """
        for contact_id in contact_ids:
            contact = self.store.get("Contacts", contact_id, conn)
            contact["ContactGroups"] = [group_summary(group) for group in self.store.groups_of(conn, contact_id)]
            self.store.save(conn, "Contacts", contact)

    # -- history and notes (xero.md §2.7) -----------------------------------------------------

    def add_note(self, conn: sqlite3.Connection, collection: str, record_id: str, element: dict, now: int) -> dict:
        """A note added through the API: shown as "System Generated", never edited or deleted, and not a change
        to the record itself (its UpdatedDateUTC stays). Returns the spec's HistoryRecordCreated element."""
        details = element.get("Details")
        if not isinstance(details, str) or not details.strip():
            raise Invalid("Details must be specified for a history note")
        if len(details) > MAX_NOTE_CHARS:
            raise Invalid(f"Details cannot be longer than {MAX_NOTE_CHARS} characters")
        self.store.add_history(
            conn,
            collection,
            record_id,
            {
                "Changes": "Note",
                "DateUTCString": date_string(now),
                "DateUTC": net(now),
                "User": "System Generated",
                "Details": details,
            },
        )
        return {
            "DateUTCString": date_string(now),
            "DateUTC": net(now, offset=False),
            "Details": details,
            "ValidationErrors": [],
        }

    # -- bank transactions --------------------------------------------------------------------

    def write_bank_transaction(
        self, conn: sqlite3.Connection, element: dict, now: int, create_only: bool = False, target_id: str | None = None
    ) -> dict:
        """Type, LineItems and BankAccount are required; transfers are read-only (xero.md §2.8)."""
        check_transaction_enums(element, BANK_TRANSACTION_TYPES, BANK_TRANSACTION_STATUSES)
        date_ms = parse_date_input_or_fail(element["Date"], "Date") if element.get("Date") is not None else None
        existing = self.existing_record(
            conn, "BankTransactions", target_id or element.get("BankTransactionID"), create_only, "Bank transaction"
        )
        if existing is None:
            txn_type = element.get("Type")
            if txn_type is None or txn_type.endswith("TRANSFER"):
                raise Invalid("Type must be one of RECEIVE, SPEND (and their prepayment/overpayment forms)")
            account = element.get("BankAccount")
            if not isinstance(account, dict) or not (account.get("AccountID") or account.get("Code")):
                raise Invalid("A bank account must be specified (AccountID or Code)")
            if not element.get("LineItems"):
                raise Invalid("At least one line item must be specified")
            txn = new_bank_transaction(
                str(uuid.uuid4()),
                txn_type,
                {"AccountID": account.get("AccountID", BANK_ACCOUNT_ID), "Code": account.get("Code", BANK_ACCOUNT)},
                None,
                [],
                element.get("CurrencyCode", BASE_CURRENCY),
                date_ms or now - now % 86_400_000,
                now,
            )
        else:
            txn = existing
            if txn["Status"] != "AUTHORISED":
                raise Invalid(f"This bank transaction cannot be edited as it has a status of {txn['Status']}.")
        if "Contact" in element:
            # IsCustomer/IsSupplier come from invoices only (xero.md §2.5), so no invoice type here.
            txn["Contact"] = contact_summary(self.contact_for(conn, element["Contact"], now, None))
        if "LineItems" in element:
            txn["LineItems"] = self.line_items(conn, element["LineItems"], txn["Type"], txn["LineItems"])
        for field in ("Reference", "IsReconciled", "LineAmountTypes", "Status", "Url"):
            if field in element:
                txn[field] = element[field]
        if date_ms is not None:
            set_date(txn, "Date", date_ms)
        subtotal, tax = price_lines(txn["LineItems"], txn.get("LineAmountTypes", "Exclusive"))
        txn.update(SubTotal=money(subtotal), TotalTax=money(tax), Total=money(subtotal + tax))
        stamp(txn, now, with_string=False)
        self.save(conn, "BankTransactions", txn)
        return txn

    # -- payments -----------------------------------------------------------------------------

    def create_payment(self, conn: sqlite3.Connection, element: dict, now: int) -> tuple[dict, dict]:
        """Payments need an invoice, an account and an amount no larger than AmountDue (xero.md §2.9)."""
        invoice_ref = element.get("Invoice") if isinstance(element.get("Invoice"), dict) else {}
        invoice_id, number = (
            invoice_ref.get("InvoiceID"),
            invoice_ref.get("InvoiceNumber") or element.get("InvoiceNumber"),
        )
        if invoice_id:
            invoice = self.store.get("Invoices", invoice_id, conn)
        elif number:
            invoice = _first(self.store.find("Invoices", "label = ?", (number,), limit=1, conn=conn))
        else:
            raise Invalid("You must specify an Invoice (InvoiceID or InvoiceNumber) to make a payment against")
        if invoice is None:
            raise Invalid("Invoice could not be found")
        account = element.get("Account")
        if not isinstance(account, dict) or not (account.get("AccountID") or account.get("Code")):
            raise Invalid("You must specify an Account (AccountID or Code) to make a payment from")
        if invoice["Status"] != "AUTHORISED":
            raise Invalid("Payments can only be made against AUTHORISED invoices")
        amount = (
            decimal(element.get("Amount"), "Amount")
            if element.get("Amount") is not None
            else Decimal(str(invoice["AmountDue"]))
        )
        if amount <= 0 or amount > Decimal(str(invoice["AmountDue"])):
            raise Invalid("Payment amount must be positive and cannot exceed the amount outstanding on this document")
        date_ms = (
            parse_date_input_or_fail(element["Date"], "Date")
            if element.get("Date") is not None
            else now - now % 86_400_000
        )
        payment = new_payment(str(uuid.uuid4()), invoice, amount, date_ms, now, element.get("Reference", ""))
        apply_payment(invoice, payment, now)
        self.save(conn, "Payments", payment)
        self.save(conn, "Invoices", invoice)
        return payment, invoice

    def delete_payment(self, conn: sqlite3.Connection, payment: dict, now: int) -> dict:
        """POST {"Status":"DELETED"} reverses a payment and restores the invoice's AmountDue (xero.md §2.9)."""
        if payment["Status"] == "DELETED":
            raise Invalid("This payment has already been deleted")
        payment["Status"] = "DELETED"
        stamp(payment, now)
        invoice = self.store.get("Invoices", payment["Invoice"]["InvoiceID"], conn)
        invoice["Payments"] = [p for p in invoice["Payments"] if p["PaymentID"] != payment["PaymentID"]]
        invoice.pop("FullyPaidOnDate", None)
        if invoice["Status"] == "PAID":
            invoice["Status"] = "AUTHORISED"
        refresh_invoice_amounts(invoice)
        stamp(invoice, now)
        self.save(conn, "Payments", payment)
        self.save(conn, "Invoices", invoice)
        return payment

    def next_number(self, name: str, conn: sqlite3.Connection) -> int:
        rows = conn.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchall()
        value = int(rows[0][0]) + 1 if rows else 1
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (name, str(value)))
        return value


def new_contact(contact_id: str, name: str, updated_ms: int) -> dict:
    """A contact in the key order of the spec's getContacts example."""
    contact = {
        "ContactID": contact_id,
        "ContactStatus": "ACTIVE",
        "Name": name,
        "FirstName": "",
        "LastName": "",
        "EmailAddress": "",
        "BankAccountDetails": "",
        "Addresses": [],
        "Phones": [],
    }
    stamp(contact, updated_ms, with_string=False)
    contact.update(
        ContactGroups=[],
        IsSupplier=False,
        IsCustomer=False,
        ContactPersons=[],
        HasAttachments=False,
        HasValidationErrors=False,
    )
    return contact


def new_bank_transaction(
    txn_id: str,
    txn_type: str,
    bank_account: dict,
    contact: dict | None,
    lines: list[dict],
    currency: str,
    date_ms: int,
    updated_ms: int,
) -> dict:
    txn = {
        "BankTransactionID": txn_id,
        "BankAccount": {**bank_account, "Name": "Business Bank Account"},
        "Type": txn_type,
        "IsReconciled": False,
        "HasAttachments": False,
    }
    if contact is not None:
        txn["Contact"] = contact_summary(contact)
    set_date(txn, "Date", date_ms)
    txn.update(Status="AUTHORISED", LineAmountTypes="Exclusive", LineItems=lines)
    subtotal, tax = price_lines(lines, "Exclusive")
    txn.update(SubTotal=money(subtotal), TotalTax=money(tax), Total=money(subtotal + tax))
    stamp(txn, updated_ms, with_string=False)
    txn["CurrencyCode"] = currency
    return txn


def default_account(transaction_type: str) -> str:
    """Sales (and customer credit) post to 200, bills (and supplier credit) to 300 Purchases, money spent to 429
    General Expenses."""
    if is_sale(transaction_type):
        return SALES_ACCOUNT
    return PURCHASES_ACCOUNT if transaction_type in ("ACCPAY", "ACCPAYCREDIT") else GENERAL_EXPENSES_ACCOUNT


def check_transition(current: str, target: str, settled: bool, document: str = "invoice") -> None:
    """DRAFT/SUBMITTED may be DELETED, an unsettled AUTHORISED one VOIDED; PAID is never set directly (xero.md
    §2.4). An invoice is settled by payments, a credit note by allocations; the rules are the same."""
    article, settlements = ("A", "allocations") if document == "credit note" else ("An", "payments")
    if target == "PAID":
        raise Invalid(f"{article} {document} becomes PAID only when its {settlements} cover its total")
    if target == "DELETED" and current not in ("DRAFT", "SUBMITTED"):
        raise Invalid(f"{article} {document} with status {current} cannot be DELETED; void it instead")
    if target == "VOIDED" and (current != "AUTHORISED" or settled):
        raise Invalid(f"Only AUTHORISED {document}s without {settlements} can be VOIDED (status is {current})")
    if target in ("DRAFT", "SUBMITTED") and current in ("AUTHORISED", "PAID"):
        raise Invalid(f"{article} {document} with status {current} cannot go back to {target}")


def valid_email(email: Any) -> bool:
    """Empty, or an address with an @ and no umlauts (xero.md §2.5)."""
    return not email or (isinstance(email, str) and "@" in email and email.isascii())


def contact_persons(value: Any) -> list[dict]:
    """ContactPersons[] in the spec's field order; at most five (xero.md §2.5)."""
    if not isinstance(value, list) or not all(isinstance(person, dict) for person in value):
        raise PostDataInvalid("ContactPersons must be an array of objects")
    if len(value) > MAX_CONTACT_PERSONS:
        raise Invalid(f"A contact can have at most {MAX_CONTACT_PERSONS} contact persons")
    persons = []
    for person in value:
        if not isinstance(person.get("IncludeInEmails", False), bool):
            raise PostDataInvalid("IncludeInEmails must be true or false")
        if not valid_email(person.get("EmailAddress", "")):
            raise Invalid("Email address must be valid.")
        persons.append(
            {
                "FirstName": person.get("FirstName", ""),
                "LastName": person.get("LastName", ""),
                "EmailAddress": person.get("EmailAddress", ""),
                "IncludeInEmails": person.get("IncludeInEmails", False),
            }
        )
    return persons


def check_enum(element: dict, field: str, allowed: tuple[str, ...]) -> None:
    """Enum literals are case-sensitive; a wrong one is a request-level 400 (xero.md §2.1)."""
    if field in element and element[field] not in allowed:
        raise PostDataInvalid(
            f"'{element[field]}' is not a valid value for {field}. Expected one of: {', '.join(allowed)}"
        )


def check_transaction_enums(element: dict, types: tuple[str, ...], statuses: tuple[str, ...]) -> None:
    """The enum and currency fields invoices and bank transactions share."""
    check_enum(element, "Type", types)
    check_enum(element, "Status", statuses)
    check_enum(element, "LineAmountTypes", LINE_AMOUNT_TYPES)
    check_currency(element)


def check_currency(element: dict) -> None:
    code = element.get("CurrencyCode")
    if code is not None and not (isinstance(code, str) and len(code) == 3 and code.isalpha() and code.isupper()):
        raise PostDataInvalid(f"'{code}' is not a valid ISO 4217 CurrencyCode")


def parse_date_input_or_fail(value: Any, field: str) -> int:
    try:
        return parse_date_input(value)
    except (ValueError, TypeError) as exc:
        raise PostDataInvalid(f"{field} '{value}' is not a valid date") from exc


def _first(rows: list[tuple[str, str | None]]) -> dict | None:
    return json.loads(rows[0][0]) if rows else None
