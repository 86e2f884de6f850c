"""What a record of another system becomes in Xero, as data (e.g. `sync_pipelines/mappings/salesforce_to_xero.yaml`).

An entity maps to any of: a contact (and the contact groups it belongs to), an invoice raised once when a
condition first holds, a payment of that invoice once another holds, and a team notification per automation.
"""

import json
import string
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

import pandas as pd
from pydantic import Field

from sync_pipelines.lib.mapping import StrictModel

# xero.md §2.5: the Contact fields a mapping may set directly, and the ones it sets through Phones and Addresses.
CONTACT_FIELDS = frozenset(
    {"Name", "FirstName", "LastName", "EmailAddress", "AccountNumber", "TaxNumber", "CompanyNumber", "Website",
     "DefaultCurrency", "ContactStatus"}
)  # fmt: skip
PHONE_FIELD = "Phone"  # -> Phones[DEFAULT].PhoneNumber
ADDRESS_FIELDS = {"Street": "AddressLine1", "City": "City", "Region": "Region", "PostalCode": "PostalCode",
                  "Country": "Country"}  # fmt: skip  # -> Addresses[STREET]
# xero.md §2.4, §2.5, §2.7: the longest text Xero takes in the fields the sync writes; a write holding more is
# refused by Xero, so the record is quarantined when staged (a target's `field_lengths`).
FIELD_LENGTHS = {
    "Name": 255, "FirstName": 255, "LastName": 255, "EmailAddress": 255, "ContactNumber": 50, "AccountNumber": 50,
    "TaxNumber": 50, "CompanyNumber": 50, "AddressLine1": 500, "City": 255, "Region": 255, "PostalCode": 50,
    "Country": 50, "PhoneNumber": 50, "InvoiceNumber": 255, "Details": 2500,
}  # fmt: skip


def json_value(value: object) -> object:
    """A dataframe cell as plain JSON: missing values as None, numpy scalars as Python ones."""
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def field_text(value: object) -> str | None:
    """A contact field's value as the two-way sync compares it: trimmed text, empty as None."""
    value = json_value(value)
    return None if value is None or str(value).strip() == "" else str(value).strip()


def template_columns(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


def render(text: str, row: Mapping[str, Any]) -> str:
    """A template filled from a row; a missing value reads "-"."""
    return text.format(**{name: "-" if json_value(row[name]) is None else row[name] for name in template_columns(text)})


class Condition(StrictModel):
    """True for a row when `column` is truthy, or, given `in`, when its value is one of those, or, given
    `at_least`, when it is a number at least that. With `key`, the value is that key of the JSON object the column
    holds (a computed trait among a person's)."""

    column: str
    key: str | None = None
    values: list[str] | None = Field(None, alias="in")
    at_least: float | None = None

    def holds(self, row: Mapping[str, Any]) -> bool:
        value = json_value(row[self.column])
        if self.key is not None:
            value = (json.loads(value) if isinstance(value, str) else value or {}).get(self.key)
        if self.at_least is not None:
            return isinstance(value, int | float) and not isinstance(value, bool) and value >= self.at_least
        return value in self.values if self.values is not None else bool(value)


class ContactMatch(StrictModel):
    """Source columns to match on, tried in this order after the cross-reference and ContactNumber.

    `same_as` names a column holding the id of another record of the same source whose Xero contact this one
    shares (a converted lead is the person it became), tried first.
    """

    same_as: str | None = None
    email: str | None = None
    domain: str | None = None  # a website's domain, against the Xero contact's Website
    name: str | None = None
    tax_number: str | None = None


class ItemLines(StrictModel):
    """Lines from a column holding the record's products as a JSON array (an order's), each by its Xero ItemCode,
    so a tracked item's stock follows the sale (https://developer.xero.com/documentation/api/accounting/items)."""

    column: str
    item_code: str = "sku"  # the keys of each product object
    description: str = "name"
    quantity: str = "quantity"
    unit_amount: str = "price"


class LineTracking(StrictModel):
    """An option of a Xero tracking category on every line, e.g. the sales channel, so revenue per option is
    reportable; the category and the option are made in Xero when missing
    (https://developer.xero.com/documentation/api/accounting/trackingcategories)."""

    category: str  # the category's name
    option: str  # column holding the option's name


class Adjustment(StrictModel):
    """A line for an amount beside the products (shipping; a discount, with sign -1), when the amount is set."""

    description: str  # template
    amount: str  # column
    sign: Literal[1, -1] = 1


class DocumentMapping(StrictModel):
    """What an invoice and a credit note share: whose it is, its date, reference, lines and currency."""

    when: Condition
    contact: str  # column holding the source id of the record whose Xero contact it is addressed to
    date: str  # ISO date column
    reference: str  # column; the record is found again by it, so one document per record survives a lost staging db
    description: str  # template, e.g. "{name}"
    amount: str | float  # column, or a fixed amount
    account_code: str = "200"  # the Xero default chart's Sales account
    line_amount_types: Literal["Exclusive", "Inclusive", "NoTax"] = "Exclusive"
    currency: str | None = None  # ISO code; the organisation's base currency when unset
    currency_column: str | None = None  # a column holding the ISO code, for records in many currencies
    # Lines: the entity's line items where it has them (lib/targets/xero.InvoiceLines), else `items`, else one line
    # of `description` for `amount`; then the adjustments.
    items: ItemLines | None = None
    adjustments: list[Adjustment] = []
    tracking: LineTracking | None = None

    def columns(self, part: str) -> Iterable[tuple[str, str]]:
        yield f"{part}.when.column", self.when.column
        yield from ((f"{part}.{field}", getattr(self, field)) for field in ("contact", "date", "reference"))
        yield from ((f"{part}.description", column) for column in template_columns(self.description))
        if isinstance(self.amount, str):
            yield f"{part}.amount", self.amount
        if self.currency_column:
            yield f"{part}.currency_column", self.currency_column
        if self.items:
            yield f"{part}.items.column", self.items.column
        for n, adjustment in enumerate(self.adjustments):
            yield f"{part}.adjustments.{n}.amount", adjustment.amount
            yield from ((f"{part}.adjustments.{n}.description", c) for c in template_columns(adjustment.description))
        if self.tracking:
            yield f"{part}.tracking.option", self.tracking.option


class InvoiceMapping(DocumentMapping):
    """An ACCREC invoice raised once per record, the first time `when` holds (xero.md §2.4)."""

    status: Literal["DRAFT", "AUTHORISED"] = "AUTHORISED"
    due_days: int = Field(30, ge=0)


class CreditNoteMapping(DocumentMapping):
    """An AUTHORISED ACCRECCREDIT credit note raised once per record, the first time `when` holds, and allocated
    to the invoice with the same Reference (https://developer.xero.com/documentation/api/accounting/creditnotes):
    a refund of an order is credited against that order's invoice. A record naming neither products nor an
    amount credits that invoice whole."""


class PaymentMapping(StrictModel):
    """A payment of the whole amount due on the record's invoice, once, the first time `when` holds (§2.9)."""

    when: Condition
    account_code: str = "090"  # the bank account the money arrived in (Xero default chart: Business Bank Account)


Policy = Literal["newest", "source", "xero"]
# The contact fields a two-way sync can keep equal, and the staged Xero contact column each is read from.
TWO_WAY_XERO_COLUMNS = {
    "EmailAddress": "email", "Phone": "phone", "Street": "address_line1", "City": "city", "Region": "region",
    "PostalCode": "postal_code", "Country": "country", "Website": "website",
}  # fmt: skip


class TwoWayMapping(StrictModel):
    """Contact fields kept equal in both systems: a change on either side is written to the other.

    `fields` maps each Xero field to the source system's own field (its API name, for writing back). When both
    sides changed a field since they last agreed, `conflicts` decides: the newest change, or always one side;
    `field_conflicts` overrides it per field.
    """

    fields: dict[str, str] = Field(min_length=1)
    conflicts: Policy = "newest"
    field_conflicts: dict[str, Policy] = {}

    def policy(self, field: str) -> Policy:
        return self.field_conflicts.get(field, self.conflicts)


# What accounting knows of a record, for the source system to show (lib/accounting.py): of the invoice the
# mapping's `invoice` raised for it, and of its Xero contact (what the customer owes on all their sales invoices).
InvoiceValue = Literal["invoice_number", "invoice_url", "invoice_status", "amount_due", "amount_paid", "paid_date"]
ContactValue = Literal["balance"]
INVOICE_VALUES, CONTACT_VALUES = get_args(InvoiceValue), get_args(ContactValue)


class GroupRecord(StrictModel):
    """A record that is itself a contact group (an Intercom segment): its name, and its members' source ids."""

    name: str  # column
    members: str  # column holding a JSON array of the members' source ids


class NoteMapping(StrictModel):
    """A History note on a contact per change of the record, or only of the records `when` holds for (e.g. the
    events worth keeping), since notes cannot be deleted
    (https://developer.xero.com/documentation/api/accounting/historyandnotes)."""

    contact: str  # column holding the source id of the record whose Xero contact gets the note
    text: str  # template
    when: Condition | None = None


class XeroMapping(StrictModel):
    """What one entity becomes in Xero; every part is optional."""

    contact: dict[str, str] | None = None  # Xero Contact field -> column
    match: ContactMatch = ContactMatch()
    groups: dict[str, Condition] = {}  # contact group name -> membership condition
    group_names: str | None = None  # column holding a JSON array of the groups the contact is in (e.g. its tags)
    group_prefix: str = ""  # put before each of those names, e.g. "Segment audience: "
    # For a record with no contact of its own (a person's audiences): the column holding the source id of the
    # record whose contact joins the groups.
    member: str | None = None
    group: GroupRecord | None = None
    note: NoteMapping | None = None
    invoice: InvoiceMapping | None = None
    payment: PaymentMapping | None = None
    credit_note: CreditNoteMapping | None = None
    notify: dict[Literal["contact", "invoice", "payment", "credit_note"], str] = {}  # automation -> template
    two_way: TwoWayMapping | None = None
    # Source field (its API name, written back) -> what Xero knows of the record (its invoice's, its contact's).
    accounting: dict[str, InvoiceValue | ContactValue] = {}

    @property
    def two_way_fields(self) -> frozenset[str]:
        return frozenset(self.two_way.fields) if self.two_way else frozenset()

    def check(self, columns: set[str], contract: str) -> list[str]:
        """Problems as "<part>.<field>: why", empty when the mapping can be used with this contract."""
        problems = []
        if self.contact is not None:
            allowed = CONTACT_FIELDS | {PHONE_FIELD, *ADDRESS_FIELDS}
            problems += [f"contact.{f}: not a Xero contact field we write" for f in self.contact if f not in allowed]
            if "Name" not in self.contact:
                problems.append("contact.Name: required (xero.md §2.5: a contact is created by its name)")
        elif self.match != ContactMatch():
            problems.append("contact: match needs a contact part")
        elif (self.groups or self.group_names) and not self.member:
            problems.append("contact: groups and group_names need a contact part, or a member column")
        if self.member and self.contact is not None:
            problems.append("member: only for a record without a contact part (it names another record's contact)")
        if self.two_way:
            problems += [
                f"two_way.fields.{field}: not a field the two-way sync keeps ({', '.join(TWO_WAY_XERO_COLUMNS)})"
                for field in self.two_way.fields
                if field not in TWO_WAY_XERO_COLUMNS
            ]
            problems += [
                f"two_way.fields.{field}: needs contact.{field} (the column it is read from)"
                for field in self.two_way.fields
                if field not in (self.contact or {})
            ]
            problems += [
                f"two_way.field_conflicts.{field}: not one of two_way.fields"
                for field in self.two_way.field_conflicts
                if field not in self.two_way.fields
            ]
        if self.payment and not self.invoice:
            problems.append("payment: needs an invoice part (it pays that invoice)")
        for field, value in self.accounting.items():
            if value in INVOICE_VALUES and not self.invoice:
                problems.append(f"accounting.{field}: {value} needs an invoice part (it is that invoice's)")
            if value in CONTACT_VALUES and not self.contact:
                problems.append(f"accounting.{field}: {value} needs a contact part (it is that contact's)")
        written_both_ways = set(self.accounting) & set(self.two_way.fields.values() if self.two_way else ())
        problems += [f"accounting.{field}: also a two_way field; a field has one owner" for field in written_both_ways]
        for automation in self.notify:
            if getattr(self, automation) is None:
                problems.append(f"notify.{automation}: there is no {automation} part to notify about")
        problems += [
            f"{where}: {column!r} is not a column of {contract}"
            for where, column in self.columns()
            if column not in columns
        ]
        return problems

    def columns(self) -> Iterable[tuple[str, str]]:
        """(where, column) for every column the mapping reads."""
        yield from ((f"contact.{field}", column) for field, column in (self.contact or {}).items())
        yield from ((f"match.{rule}", column) for rule, column in self.match.model_dump().items() if column)
        yield from ((f"groups.{name}.column", condition.column) for name, condition in self.groups.items())
        if self.group_names:
            yield "group_names", self.group_names
        if self.member:
            yield "member", self.member
        if self.group:
            yield from (("group.name", self.group.name), ("group.members", self.group.members))
        if self.note:
            yield "note.contact", self.note.contact
            if self.note.when:
                yield "note.when.column", self.note.when.column
            yield from (("note.text", column) for column in template_columns(self.note.text))
        for part in ("invoice", "credit_note"):
            if getattr(self, part):
                yield from getattr(self, part).columns(part)
        if self.payment:
            yield "payment.when.column", self.payment.when.column
        for automation, text in self.notify.items():
            yield from ((f"notify.{automation}", column) for column in template_columns(text))

    def contact_body(self, row: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> dict:
        """The Xero Contact element for one row, without the `skip` fields; empty values are left out rather than
        blanking Xero's."""
        values = {field: json_value(row[column]) for field, column in (self.contact or {}).items() if field not in skip}
        return contact_element(values, blank=False)


def contact_element(values: Mapping[str, Any], blank: bool) -> dict:
    """Xero field -> value as a Contact element, phone and address parts in Xero's shape (xero.md §2.5).

    With blank=False empty values are left out; with blank=True they are written as "" (to clear them in Xero).
    """
    if blank:
        values = {field: "" if value is None else value for field, value in values.items()}
    else:
        values = {field: value for field, value in values.items() if value not in (None, "")}
    body = {field: value for field, value in values.items() if field in CONTACT_FIELDS}
    if PHONE_FIELD in values:
        body["Phones"] = [{"PhoneType": "DEFAULT", "PhoneNumber": values[PHONE_FIELD]}]
    address = {ADDRESS_FIELDS[field]: values[field] for field in ADDRESS_FIELDS if field in values}
    if address:
        body["Addresses"] = [{"AddressType": "STREET", **address}]
    return body
