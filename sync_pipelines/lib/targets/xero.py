"""Xero as a target: records of another system become Xero contacts, matched before anything is created.

Matching order: the cross-reference kept from earlier syncs, then the contact of a record this one became (a
converted lead's person), then Xero's ContactNumber (where the source id is written: Xero's external-reference
field, xero.md §2.5, so a match survives a lost xref table), then email (case-insensitive), then the website's
domain, then the normalised name, then the tax number. Candidates are Xero's contacts as the Xero -> Segment flow
stages them (`stg_xero_contacts`), active ones first.
"""

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from typing import ClassVar, TypeVar

import duckdb
import pandas as pd
import requests

from sync_pipelines.lib import staging
from sync_pipelines.lib.entity_sync import Totals
from sync_pipelines.lib.staging import OutboxMessage
from sync_pipelines.lib.targets.xero_mapping import (
    FIELD_LENGTHS,
    ContactMatch,
    XeroMapping,
    field_text,
    json_value,
    render,
)
from sync_pipelines.schemas.xero import website_domain
from sync_pipelines.vendors.delivery import Deliveries, DeliveryReport
from sync_pipelines.vendors.retrying import RetryableResponse
from sync_pipelines.vendors.xero.client import XeroApiError, XeroDailyLimitReached

XERO_CONTACTS = "stg_xero_contacts"
# xero.md §4: batch writes, each element answered on its own with summarizeErrors=false. Fifty keeps a request
# small enough to retry cheaply while a thousand contacts still take only twenty of the 60 calls a minute.
WRITE_BATCH = 50
MAX_CONTACT_NUMBER = 50  # xero.md §2.5
NAME_TAKEN = "is already assigned to another contact"
MAX_NOTE = 2500  # xero.md §2.7  # xero.md §2.5: the unique-name validation message


def normalised_name(name: object) -> str | None:
    """Case, punctuation and spacing dropped: "ACME, Ltd." and "Acme Ltd" are one organisation.

    Legal forms are kept: "Lee LLC" and "Lee Inc" are different companies more often than not.
    """
    if not isinstance(name, str):
        return None
    return " ".join(re.sub(r"[^a-z0-9]+", " ", name.lower()).split()) or None


XERO_INVOICES = "stg_xero_invoices"


@dataclass(frozen=True)
class InvoiceLines:
    """Where an entity's invoice lines are staged, and the columns that make a Xero LineItem (xero.md §2.4)."""

    table: str
    parent: str  # the column holding the invoiced record's id
    description: str
    quantity: str
    unit_amount: str
    discount_rate: str | None = None
    order: str | None = None

    def of(self, conn: duckdb.DuckDBPyConnection, record_ids: list[str], account_code: str) -> dict[str, list[dict]]:
        """Each record's live lines, in order, as Xero LineItems."""
        if not record_ids or not staging.table_exists(conn, self.table):
            return {}
        order = f't."{self.order}" NULLS LAST, t.id' if self.order else "t.id"
        with staging.frame_as(conn, "invoiced", pd.DataFrame({"record_id": record_ids})):
            rows = conn.execute(
                f"""SELECT t.* FROM "{self.table}" t JOIN invoiced i ON t."{self.parent}" = i.record_id
                    WHERE NOT t.is_deleted ORDER BY {order}"""
            ).df()
        lines: dict[str, list[dict]] = {}
        for row in rows.to_dict("records"):
            line = {
                "Description": json_value(row[self.description]),
                "Quantity": json_value(row[self.quantity]),
                "UnitAmount": json_value(row[self.unit_amount]),
                "AccountCode": account_code,
            }
            if self.discount_rate and json_value(row[self.discount_rate]):
                line["DiscountRate"] = json_value(row[self.discount_rate])
            lines.setdefault(str(row[self.parent]), []).append(line)
        return lines


@dataclass(frozen=True)
class ContactPersons:
    """Where an organisation's people are staged, and the columns that make a Xero ContactPerson (xero.md §2.5)."""

    table: str
    parents: str  # the column listing, comma-joined, the ids of the organisations a person belongs to
    first_name: str
    last_name: str
    email: str

    def of(self, conn: duckdb.DuckDBPyConnection, record_ids: list[str]) -> dict[str, list[dict]]:
        """Each organisation's first five people with an email (Xero keeps at most five), by email."""
        if not record_ids or not staging.table_exists(conn, self.table):
            return {}
        with staging.frame_as(conn, "organisations", pd.DataFrame({"record_id": record_ids})):
            rows = conn.execute(
                f"""SELECT o.record_id, p."{self.first_name}", p."{self.last_name}", p."{self.email}"
                    FROM "{self.table}" p JOIN organisations o
                      ON list_contains(string_split(p."{self.parents}", ','), o.record_id)
                    WHERE p."{self.email}" IS NOT NULL
                    QUALIFY row_number() OVER (PARTITION BY o.record_id ORDER BY lower(p."{self.email}")) <= 5
                    ORDER BY o.record_id, lower(p."{self.email}")"""
            ).fetchall()
        persons: dict[str, list[dict]] = {}
        for record_id, first, last, email in rows:
            person = {"FirstName": first or "", "LastName": last or "", "EmailAddress": email, "IncludeInEmails": True}
            persons.setdefault(record_id, []).append(person)
        return persons


@dataclass(frozen=True)
class XeroTarget:
    """Writes what a mapping makes of each changed record: a contact and its groups, an invoice, a payment.

    Contacts are upserted (POST /Contacts, xero.md §2.5, §4.1) only when their Xero contact would change, so a
    source change Xero does not carry (or the echo of our own write-back) sends nothing. Invoices and payments
    are automations that happen once per record, ever: their message ids carry no version, so the outbox never
    queues a second, each goes out under its own Idempotency-Key (§4.3), and an invoice is found again in Xero by
    its Reference before another is raised.
    """

    mapping: XeroMapping
    lines: InvoiceLines | None = None
    persons: ContactPersons | None = None
    system: str = "xero"
    totals: Totals | None = None
    # What Xero refuses as too long: a record that would write more is quarantined when staged.
    field_lengths: ClassVar[Mapping[str, int]] = FIELD_LENGTHS

    @property
    def resource_keys(self) -> set[str]:
        return {self.system, "notifier"} if self.mapping.notify else {self.system}

    def stage_changes(
        self,
        conn: duckdb.DuckDBPyConnection,
        *,
        name: str,
        source: str,
        key: str,
        changed: pd.DataFrame,
        previous: pd.DataFrame,
    ) -> list[OutboxMessage]:
        """The contact, group, invoice and payment writes these changes call for, and their notifications."""
        if changed.empty:
            return []
        rows = {str(row[key]): row for row in changed.to_dict("records")}
        before = {str(row[key]): row for row in previous.to_dict("records")}
        messages: list[OutboxMessage] = []
        if self.mapping.contact is not None:
            contacts, refs = self._contacts(conn, name=name, source=source, key=key, changed=changed, rows=rows)
            messages += contacts + self._groups(source, rows, before, refs)
        if self.mapping.group:
            messages += self._group_members(conn, source, rows, before)
        live = {record_id: row for record_id, row in rows.items() if json_value(row.get("is_deleted")) is not True}
        if self.mapping.note:
            messages += self._notes(conn, source, live)
        if self.mapping.invoice:
            messages += self._invoices(conn, source, live)
        if self.mapping.payment:
            messages += self._payments(source, live)
        return messages + self._notifications(messages, rows)

    def _contacts(
        self, conn, *, name: str, source: str, key: str, changed: pd.DataFrame, rows: dict[str, dict]
    ) -> tuple[list[OutboxMessage], dict[str, dict]]:
        """Contact writes (or links) for these records, and how each one's contact is referred to."""
        contact_ids = match_contacts(conn, changed, source=source, key=key, match=self.mapping.match)
        shared = self._shared_contacts(conn, name, key, rows, contact_ids)
        refs = {r: {"ContactNumber": r[:MAX_CONTACT_NUMBER]} for r in rows} | {
            r: {"ContactID": c} for r, c in contact_ids.items()
        }
        persons = self.persons.of(conn, list(rows)) if self.persons else {}
        holders = _name_holders(conn)
        bodies, messages, suffixed = {}, [], set()
        for record_id, row in rows.items():
            if record_id in shared:
                # Another record writes this contact (the person a lead became; the first of two with one email).
                refs[record_id] = shared[record_id]
                target = next(iter(shared[record_id].values()))
                message_id = f"{source}:xero_link:{record_id}:{target}"
                payload = {"type": "link", "messageId": message_id, **shared[record_id]}
                messages.append(OutboxMessage(message_id, record_id, "link", None, payload))
                continue
            # Fields kept two-way are the two-way sync's to write once the contact exists (it settles conflicts).
            body = self.mapping.contact_body(row, self.mapping.two_way_fields) | {
                "ContactNumber": record_id[:MAX_CONTACT_NUMBER]
            }
            if self.persons:
                body["ContactPersons"] = persons.get(record_id, [])
            if body.get("ContactStatus") == "ARCHIVED" and not contact_ids.get(record_id):
                continue  # a record removed before it ever reached Xero is not created just to be archived
            # xero.md §2.5: names are unique among active contacts. Two people called Jo Smith stay two contacts;
            # the one that is not already the name's holder carries its source id in the name.
            own = contact_ids.get(record_id) or record_id
            if holders.setdefault(normalised_name(body["Name"]), own) != own:
                suffixed.add(record_id)
            bodies[record_id] = body
        # The last body queued per record, as for Segment identities: unchanged bodies are not written again.
        # Compared without the ContactID, which only becomes known after the first write, and without the name's
        # suffix, which depends on who else holds the name when it is written (write_contacts may add it too).
        namespace = f"{name}:{self.system}"
        bodies = staging.changed_identities(conn, namespace, bodies)
        versions = staging.remember_identities(conn, namespace, bodies)
        # What a new contact is created with is what both sides agree on, for the two-way sync to start from.
        two_way, agreed = self.mapping.two_way_fields, []
        for record_id, body in bodies.items():
            if record_id in suffixed:
                body = {**body, "Name": _own_name(body)}
            created = not contact_ids.get(record_id)
            if created:
                body = self.mapping.contact_body(rows[record_id]) | body  # a new contact gets every field
                agreed += [(record_id, f, field_text(rows[record_id][self.mapping.contact[f]])) for f in two_way]
            else:
                body = {"ContactID": contact_ids[record_id], **body}
            message_id = f"{source}:xero_contact:{record_id}:v{versions[record_id]}"
            payload = {"type": "contact", "messageId": message_id, "Contact": body}
            messages.append(OutboxMessage(message_id, record_id, "contact", "created" if created else None, payload))
        staging.settle_fields(conn, name, agreed)
        return messages, refs

    def _shared_contacts(
        self, conn, name: str, key: str, rows: dict[str, dict], contact_ids: dict[str, str]
    ) -> dict[str, dict]:
        """Records whose contact another record of this source owns and writes: record -> that contact.

        A contact is owned by the record whose id is its ContactNumber. A converted lead (to its person's), a
        record matched to a contact another record of its entity owns, and the later of two new records sharing
        an email (compared case-insensitively) link to the owner's contact instead of writing it.
        """
        match, shared = self.mapping.match, {}
        owners = _contact_numbers(conn, list(set(contact_ids.values())))
        # Owners of the same entity only: a record of another entity gives way (a lead to the person it became).
        peers = set(rows) | _staged_ids(conn, f"stg_{name}", key, list(set(owners.values())))
        for record_id, contact_id in contact_ids.items():
            owner = owners.get(contact_id)
            became = match.same_as and json_value(rows[record_id][match.same_as])
            if became or (owner and owner != record_id and owner in peers):
                shared[record_id] = {"ContactID": contact_id}
        if match.email:
            first_with: dict[str, str] = {}
            for record_id, row in rows.items():
                email = field_text(row[match.email])
                if record_id in contact_ids or email is None:
                    continue
                owner = first_with.setdefault(email.lower(), record_id)
                if owner != record_id:
                    shared[record_id] = {"ContactNumber": owner[:MAX_CONTACT_NUMBER]}
        return shared

    def _groups(
        self, source: str, rows: dict[str, dict], before: dict[str, dict], refs: dict[str, dict]
    ) -> list[OutboxMessage]:
        """A membership change per group the record joined or left since its previous staged version."""
        messages = []
        for record_id, row in rows.items():
            now, was = self._memberships(row), self._memberships(before[record_id]) if record_id in before else set()
            for group in sorted(now ^ was):
                action = "add" if group in now else "remove"
                message_id = f"{source}:xero_group:{group}:{record_id}:{action}:{row['content_hash'][:16]}"
                payload = {"type": "group", "messageId": message_id, "group": group, "member": action == "add",
                           **refs[record_id]}  # fmt: skip
                messages.append(OutboxMessage(message_id, record_id, "group", action, payload))
        return messages

    def _memberships(self, row: dict) -> set[str]:
        """The groups a record's contact belongs to: those whose condition holds, and those it lists."""
        if row.get("xero_status") == "ARCHIVED":
            return set()
        groups = {group for group, condition in self.mapping.groups.items() if condition.holds(row)}
        if self.mapping.group_names:
            groups |= set(json.loads(row[self.mapping.group_names] or "[]"))
        return groups

    def _group_members(self, conn, source: str, rows: dict[str, dict], before: dict[str, dict]) -> list[OutboxMessage]:
        """A record that is a group (an Intercom segment): its members added and removed as its list changes."""
        group, messages = self.mapping.group, []
        lists = {r: set(json.loads(row[group.members] or "[]")) for r, row in rows.items()}
        earlier = {r: set(json.loads(before[r][group.members] or "[]")) if r in before else set() for r in rows}
        members = sorted(set().union(*lists.values(), *earlier.values()))
        contact_ids = staging.linked_ids(conn, source_system=source, target_system=self.system, source_ids=members)
        for record_id, row in rows.items():
            name = str(json_value(row[group.name]))
            for member in sorted(lists[record_id] ^ earlier[record_id]):
                action = "add" if member in lists[record_id] else "remove"
                message_id = f"{source}:xero_group:{name}:{member}:{action}:{row['content_hash'][:16]}"
                contact = {"ContactID": contact_ids[member]} if member in contact_ids else {"ContactNumber": member}
                payload = {"type": "group", "messageId": message_id, "group": name, "member": action == "add",
                           **contact}  # fmt: skip
                messages.append(OutboxMessage(message_id, record_id, "group", action, payload))
        return messages

    def _notes(self, conn, source: str, rows: dict[str, dict]) -> list[OutboxMessage]:
        """One History note per version of the record, on the contact of the record it names."""
        note, messages = self.mapping.note, []
        about = {r: str(json_value(row[note.contact])) for r, row in rows.items()}
        contact_ids = staging.linked_ids(
            conn, source_system=source, target_system=self.system, source_ids=sorted(set(about.values()))
        )
        for record_id, row in rows.items():
            contact = about[record_id]
            message_id = f"{source}:xero_note:{record_id}:{row['content_hash'][:16]}"
            payload = {
                "type": "note",
                "messageId": message_id,
                # xero.md §2.7: a note's Details hold at most 2,500 characters.
                "Details": render(note.text, row)[:MAX_NOTE],
                **({"ContactID": contact_ids[contact]} if contact in contact_ids else {"ContactNumber": contact}),
            }
            messages.append(OutboxMessage(message_id, record_id, "note", None, payload))
        return messages

    def _invoices(self, conn, source: str, rows: dict[str, dict]) -> list[OutboxMessage]:
        invoice = self.mapping.invoice
        due = {record_id: row for record_id, row in rows.items() if invoice.when.holds(row)}
        if not due:
            return []
        references = {record_id: str(json_value(row[invoice.reference])) for record_id, row in due.items()}
        raised = _invoiced_references(conn, list(references.values()))
        billed = {record_id: str(json_value(row[invoice.contact])) for record_id, row in due.items()}
        contact_ids = staging.linked_ids(
            conn, source_system=source, target_system=self.system, source_ids=list(billed.values())
        )
        lines = self.lines.of(conn, list(due), invoice.account_code) if self.lines else {}
        messages = []
        for record_id, row in due.items():
            if references[record_id] in raised:
                continue  # Xero already has this record's invoice (e.g. the staging db was rebuilt)
            contact = billed[record_id]
            # xero.md §2.4: a contact not linked yet is found by its ContactNumber, the source id.
            billed_to = {"ContactID": contact_ids[contact]} if contact in contact_ids else {"ContactNumber": contact}
            issued = _date(json_value(row[invoice.date]))
            amount = row[invoice.amount] if isinstance(invoice.amount, str) else invoice.amount
            body = {
                "Type": "ACCREC",
                "Contact": billed_to,
                "Date": issued.isoformat(),
                "DueDate": (issued + timedelta(days=invoice.due_days)).isoformat(),
                "Reference": references[record_id],
                "Status": invoice.status,
                "LineAmountTypes": invoice.line_amount_types,
                "LineItems": lines.get(record_id)
                or [{"Description": render(invoice.description, row), "Quantity": 1.0,
                     "UnitAmount": json_value(amount) or 0.0, "AccountCode": invoice.account_code}],
            }  # fmt: skip
            if invoice.currency:
                body["CurrencyCode"] = invoice.currency
            message_id = f"{source}:xero_invoice:{record_id}"
            payload = {"type": "invoice", "messageId": message_id, "Invoice": body}
            messages.append(OutboxMessage(message_id, record_id, "invoice", "raised", payload))
        return messages

    def _payments(self, source: str, rows: dict[str, dict]) -> list[OutboxMessage]:
        payment, invoice = self.mapping.payment, self.mapping.invoice
        messages = []
        for record_id, row in rows.items():
            if not payment.when.holds(row):
                continue
            message_id = f"{source}:xero_payment:{record_id}"
            payload = {
                "type": "payment",
                "messageId": message_id,
                "reference": str(json_value(row[invoice.reference])),
                "Account": {"Code": payment.account_code},
                "Date": staging.utcnow().date().isoformat(),
            }
            messages.append(OutboxMessage(message_id, record_id, "payment", "paid", payload))
        return messages

    def _notifications(self, messages: list[OutboxMessage], rows: dict[str, dict]) -> list[OutboxMessage]:
        """A team notification per automation the mapping notifies on: a new contact, an invoice, a payment."""
        notified = []
        for message in messages:
            text = self.mapping.notify.get(message.kind)
            if text is None or message.event is None or message.kind == "group":
                continue
            message_id = f"{message.message_id}:notify"
            payload = {"type": "notify", "messageId": message_id, "event": f"{message.kind} {message.event}",
                       "text": render(text, rows[message.record_id])}  # fmt: skip
            notified.append(OutboxMessage(message_id, message.record_id, "notify", message.kind, payload))
        return notified

    def deliver(self, resources, payloads: list[dict], deliveries: Deliveries) -> None:
        """Contacts first (in batches), then their groups, notes, invoices and payments; notifications last, each
        only once the write it announces has gone.

        A message in `deliveries.resending` may have reached Xero already: past the Idempotency-Key window (§4.3)
        Xero would make a second contact, note or invoice, so each is looked for first (a contact by its
        ContactNumber, a note by its text, an invoice by its Reference); a payment always pays what is due.
        """
        client, report = getattr(resources, self.system).get_client(), deliveries.report(self.system)
        resending = deliveries.resending
        by_type: dict[str, list[dict]] = {}
        for payload in payloads:
            by_type.setdefault(payload["type"], []).append(payload)
        contacts = [
            found
            for payload in by_type.get("contact", [])
            if (found := _found_again(client, payload, report) if payload["messageId"] in resending else payload)
        ]
        write_contacts(client, contacts, report)
        written = {p["Contact"]["ContactNumber"]: report.target_ids[p["messageId"]] for p in contacts
                   if p["messageId"] in report.target_ids and "ContactNumber" in p["Contact"]}  # fmt: skip
        contact_id = ContactIds(client, written)
        for link in by_type.get("link", []):  # nothing to write: the contact is another record's
            found = _attempt(report, [link["messageId"]], partial(contact_id, link), reads=True)
            if found is not None:
                report.delivered.append(link["messageId"])
                report.target_ids[link["messageId"]] = found
        ContactGroups(client, contact_id).apply(by_type.get("group", []), report)
        writes = (
            ("note", partial(_add_note, contact_id=contact_id)),
            ("invoice", _raise_invoice),
            ("payment", _pay_invoice),
        )
        for kind, write in writes:
            for payload in by_type.get(kind, []):
                again = payload["messageId"] in resending
                if _attempt(report, [payload["messageId"]], partial(write, client, payload, again)) is not None:
                    report.delivered.append(payload["messageId"])
        notifications = by_type.get("notify", [])
        if notifications:
            unsent = {m for m, _ in report.failed + report.rejected}
            waiting = [n for n in notifications if n["messageId"].removesuffix(":notify") in unsent]
            told = deliveries.report("notifier")
            resources.notifier.get_client().send([n for n in notifications if n not in waiting], told)
            told.failed += [(n["messageId"], "the write it announces has not gone yet") for n in waiting]

    def figures(self, resources) -> dict[str, int | float]:
        stats = getattr(resources, self.system).get_client().stats
        figures = {"api_calls": stats.calls, "api_retries": stats.retries}
        if self.mapping.notify:
            figures["notifications_sent"] = resources.notifier.get_client().sent
        return figures


class ContactIds:
    """The ContactID a payload means: its own, one written in this delivery, or the one its ContactNumber names
    (xero.md §2.5: a ContactNumber can stand in for the ContactID in the URL)."""

    def __init__(self, client, written: dict[str, str]):
        self._client = client
        self._known = dict(written)  # ContactNumber -> ContactID

    def __call__(self, payload: dict) -> str:
        if payload.get("ContactID"):
            return payload["ContactID"]
        contact_number = payload["ContactNumber"]
        if contact_number not in self._known:
            try:
                (contact,) = self._client.read(f"Contacts/{contact_number}")
            except XeroApiError as error:
                if error.status == 404:
                    raise WaitingFor(f"no Xero contact with ContactNumber {contact_number} yet") from error
                raise
            self._known[contact_number] = contact["ContactID"]
        return self._known[contact_number]


class ContactGroups:
    """Xero contact groups by name, created on first use; members added in batches, removed one by one (§2.6)."""

    def __init__(self, client, contact_id: ContactIds):
        self._client = client
        self._contact_id = contact_id
        self._group_ids: dict[str, str] | None = None

    def apply(self, payloads: list[dict], report: DeliveryReport) -> None:
        """Each membership change's outcome in the report."""
        batches: dict[tuple[str, bool], list[dict]] = {}
        for payload in payloads:
            batches.setdefault((payload["group"], payload["member"]), []).append(payload)
        for (group, member), batch in batches.items():
            if member:
                # Contacts are resolved one by one, so one that is not in Xero yet holds up only its own change.
                found = [
                    p for p in batch if _attempt(report, [p["messageId"]], partial(self._contact_id, p), reads=True)
                ]
                for start in range(0, len(found), WRITE_BATCH):
                    chunk = found[start : start + WRITE_BATCH]
                    ids = [p["messageId"] for p in chunk]
                    if _attempt(report, ids, partial(self._add, group, chunk)) is not None:
                        report.delivered += ids
            else:
                for payload in batch:
                    if _attempt(report, [payload["messageId"]], partial(self._remove, group, payload)) is not None:
                        report.delivered.append(payload["messageId"])

    def _add(self, group: str, payloads: list[dict]) -> list[dict]:
        members = [{"ContactID": self._contact_id(p)} for p in payloads]
        key = "group-members-" + hashlib.sha256("\n".join(p["messageId"] for p in payloads).encode()).hexdigest()[:40]
        path = f"ContactGroups/{self._group_id(group)}/Contacts"
        return self._client.write("PUT", path, members, key, key="Contacts")

    def _remove(self, group: str, payload: dict) -> bool:
        contact_id = self._contact_id(payload)
        try:
            self._client.delete(f"ContactGroups/{self._group_id(group)}/Contacts/{contact_id}")
        except XeroApiError as error:
            if error.status != 404:
                raise  # 404: not a member (any more), which is what was asked
        return True

    def _group_id(self, name: str) -> str:
        if self._group_ids is None:
            groups = self._client.read("ContactGroups")  # ACTIVE groups only (xero.md §7)
            self._group_ids = {g["Name"]: g["ContactGroupID"] for g in groups}
        if name not in self._group_ids:
            key = "contact-group-" + hashlib.sha256(name.encode()).hexdigest()[:40]
            self._group_ids[name] = _written(self._client.write("PUT", "ContactGroups", [{"Name": name}], key))[
                "ContactGroupID"
            ]
        return self._group_ids[name]


class Rejected(Exception):
    """Xero answered the write with validation errors: resending the same write cannot succeed."""


class WaitingFor(Exception):
    """A write that needs another to have landed first (e.g. a payment its invoice): retried from dead letters."""


T = TypeVar("T")


def _attempt(report: DeliveryReport, message_ids: list[str], write: Callable[[], T], reads: bool = False) -> T | None:
    """The write's result, or None with every message's outcome recorded: failed (worth retrying) or rejected.

    A write's messages are recorded as in flight before the call, with what earlier calls settled; a call that only
    `reads` changes nothing at Xero, so it has nothing to record first.
    """
    if not reads:
        report.sending(message_ids)
    try:
        return write()
    except (RetryableResponse, XeroDailyLimitReached, requests.RequestException, WaitingFor, Rejected) as error:
        outcome, reason = (report.rejected if isinstance(error, Rejected) else report.failed), str(error)
    except XeroApiError as error:
        outcome = report.failed if error.status is None or error.status >= 500 else report.rejected
        reason = str(error)
    outcome += [(message_id, reason) for message_id in message_ids]
    return None


def write_contacts(client, payloads: list[dict], report: DeliveryReport) -> None:
    """Batches of contacts; each element's own outcome, and the ContactID it was written to.

    xero.md §2.5: a name another active contact holds is refused; such a contact is written again with its
    ContactNumber (the source id) in its name, so two people called Jo Smith stay two contacts.
    """
    for start in range(0, len(payloads), WRITE_BATCH):
        batch = payloads[start : start + WRITE_BATCH]
        clashes = _write_contact_batch(client, batch, report)
        if clashes:
            renamed = [{**p, "Contact": {**p["Contact"], "Name": _own_name(p["Contact"])}} for p in clashes]
            _write_contact_batch(client, renamed, report)


def _write_contact_batch(client, batch: list[dict], report: DeliveryReport) -> list[dict]:
    """Writes one batch; returns the payloads refused only for their name."""
    ids = [p["messageId"] for p in batch]
    # One key per batch composition: a retry of this exact batch is answered from Xero's cache (§4.3).
    composition = "\n".join(f"{p['messageId']}:{p['Contact'].get('Name')}" for p in batch)
    key = "contacts-" + hashlib.sha256(composition.encode()).hexdigest()[:40]
    results = _attempt(report, ids, lambda: client.write("POST", "Contacts", [p["Contact"] for p in batch], key))
    clashes = []
    for payload, result in zip(batch, results or [], strict=True):
        problems = _problems(result)
        if problems and NAME_TAKEN in problems and _own_name(payload["Contact"]) != payload["Contact"].get("Name"):
            clashes.append(payload)
        elif problems:
            report.rejected.append((payload["messageId"], problems))
        else:
            report.delivered.append(payload["messageId"])
            report.target_ids[payload["messageId"]] = result["ContactID"]
    return clashes


def _own_name(contact: dict) -> str | None:
    """The contact's name made its own by its ContactNumber, as stage_changes does for names it knows are taken
    (None for a write that does not name the contact)."""
    if "Name" not in contact or "ContactNumber" not in contact:
        return None
    suffix = f" ({contact['ContactNumber']})"
    return contact["Name"] if contact["Name"].endswith(suffix) else contact["Name"] + suffix


def _problems(result: dict) -> str | None:
    problems = [e.get("Message", "") for e in result.get("ValidationErrors") or []]
    if problems or result.get("HasValidationErrors") or result.get("HasErrors"):
        return "; ".join(problems) or "validation errors"
    return None


def _found_again(client, payload: dict, report: DeliveryReport) -> dict | None:
    """A contact write that may have reached Xero, aimed at the contact it made if it did (None: the lookup
    failed, and the message's outcome is in the report)."""
    contact = payload["Contact"]
    if contact.get("ContactID") or not contact.get("ContactNumber"):
        return payload  # an update: sending it again sets the same values
    lookup = partial(_contact_by_number, client, contact["ContactNumber"])
    found = _attempt(report, [payload["messageId"]], lookup, reads=True)
    if found is None:
        return None
    return {**payload, "Contact": {"ContactID": found, **contact}} if found else payload


def _contact_by_number(client, contact_number: str) -> str:
    """The ContactID of the contact with this ContactNumber, or "" when Xero has none (xero.md §2.5)."""
    try:
        (contact,) = client.read(f"Contacts/{contact_number}")
    except XeroApiError as error:
        if error.status == 404:
            return ""
        raise
    return contact["ContactID"]


def _add_note(client, payload: dict, again: bool, contact_id: ContactIds) -> dict:
    """xero.md §2.7: a History note, under the message's own key, so a replay adds no second one; sent again
    past the key's window, it is first looked for among the contact's notes."""
    path = f"Contacts/{contact_id(payload)}/History"
    if again:
        notes = client.read(path, key="HistoryRecords")
        if (note := next((n for n in notes if n.get("Details") == payload["Details"]), None)) is not None:
            return note
    return _written(
        client.write("PUT", path, [{"Details": payload["Details"]}], payload["messageId"], key="HistoryRecords")
    )


def _raise_invoice(client, payload: dict, again: bool) -> dict:
    """PUT creates only, under the message's own key: a replay returns the first answer, not a second invoice;
    sent again past the key's window, the invoice is first looked for by its Reference."""
    if again and (invoice := _invoice_by_reference(client, payload["Invoice"]["Reference"])) is not None:
        return invoice
    return _written(client.write("PUT", "Invoices", [payload["Invoice"]], payload["messageId"]))


def _pay_invoice(client, payload: dict, again: bool) -> dict:
    """Pay what is due on the record's invoice; nothing due (already paid, e.g. a replay) is success. It always
    looks first, so sending it again (`again`) needs nothing more."""
    invoice = _invoice_by_reference(client, payload["reference"])
    if invoice is None:
        raise WaitingFor(f"no invoice with Reference {payload['reference']!r} in Xero yet")
    if not invoice.get("AmountDue"):
        return invoice
    if invoice["Status"] == "DRAFT":
        # xero.md §2.4, §2.9: only AUTHORISED invoices take payments; a paid deal's draft is approved first.
        approval = {"InvoiceID": invoice["InvoiceID"], "Status": "AUTHORISED"}
        _written(client.write("POST", "Invoices", [approval], f"{payload['messageId']}:approve"))
    body = {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": payload["Account"], "Date": payload["Date"],
            "Amount": invoice["AmountDue"], "Reference": payload["reference"]}  # fmt: skip
    return _written(client.write("PUT", "Payments", [body], payload["messageId"]))


def _written(results: list[dict]) -> dict:
    """The one element a single write returns, or Rejected with Xero's validation messages."""
    (result,) = results
    problems = _problems(result)
    if problems:
        raise Rejected(problems)
    return result


def _invoice_by_reference(client, reference: str) -> dict | None:
    """The live sales invoice raised for a record (xero.md §3.3: where on Reference)."""
    where = f'Type=="ACCREC" AND Reference=="{reference}"'
    for page in client.iter_pages("Invoices", where=where):
        for invoice in page:
            if invoice["Status"] not in ("DELETED", "VOIDED"):
                return invoice
    return None


def _invoiced_references(conn: duckdb.DuckDBPyConnection, references: list[str]) -> set[str]:
    """References of live invoices Xero already has, as the Xero -> Segment flow stages them."""
    if not references or not staging.table_exists(conn, XERO_INVOICES):
        return set()
    with staging.frame_as(conn, "wanted", pd.DataFrame({"reference": references})):
        rows = conn.execute(
            f"""SELECT DISTINCT i.reference FROM "{XERO_INVOICES}" i JOIN wanted w USING (reference)
                WHERE i.status NOT IN ('DELETED', 'VOIDED')"""
        ).fetchall()
    return {reference for (reference,) in rows}


def _date(value: object) -> date:
    """A date column's value (ISO text, a date or a timestamp) as a calendar date."""
    return date.fromisoformat(value.isoformat()[:10] if isinstance(value, date) else str(value)[:10])


def match_contacts(
    conn: duckdb.DuckDBPyConnection, rows: pd.DataFrame, *, source: str, key: str, match: ContactMatch
) -> dict[str, str]:
    """Source record id -> the Xero ContactID it stands for, by the first rule that finds one."""
    record_ids = rows[key].astype(str)
    found = staging.linked_ids(conn, source_system=source, target_system="xero", source_ids=record_ids.tolist())
    if match.same_as:
        others = dict(zip(record_ids, rows[match.same_as], strict=True))
        shared = staging.linked_ids(
            conn,
            source_system=source,
            target_system="xero",
            source_ids=[o for o in others.values() if isinstance(o, str)],
        )
        found = {r: shared[o] for r, o in others.items() if isinstance(o, str) and o in shared} | found
    if not staging.table_exists(conn, XERO_CONTACTS):
        return found
    candidates = conn.execute(
        f"""SELECT contact_id, contact_number, lower(email) AS email, name, tax_number, website
            FROM "{XERO_CONTACTS}" ORDER BY status <> 'ACTIVE', contact_id"""
    ).df()
    candidates["name"] = candidates["name"].map(normalised_name)
    candidates["domain"] = candidates["website"].map(website_domain)
    rules = [("contact_number", record_ids)]
    if match.email:
        rules.append(("email", rows[match.email].str.lower()))
    if match.domain:
        rules.append(("domain", rows[match.domain]))
    if match.name:
        rules.append(("name", rows[match.name].map(normalised_name)))
    if match.tax_number:
        rules.append(("tax_number", rows[match.tax_number]))
    for column, values in rules:
        lookup = candidates.dropna(subset=[column]).drop_duplicates(column).set_index(column)["contact_id"]
        for record_id, value in zip(record_ids, values, strict=True):
            if record_id not in found and isinstance(value, str) and value in lookup.index:
                found[record_id] = lookup[value]
    return found


def _staged_ids(conn: duckdb.DuckDBPyConnection, table: str, key: str, ids: list[str]) -> set[str]:
    """The ids among these that are staged in `table`."""
    staged = staging.current_state(conn, table, key, ids)
    return set() if staged.empty else set(staged[key])


def _contact_numbers(conn: duckdb.DuckDBPyConnection, contact_ids: list[str]) -> dict[str, str]:
    """ContactID -> its ContactNumber, as staged."""
    if not contact_ids or not staging.table_exists(conn, XERO_CONTACTS):
        return {}
    with staging.frame_as(conn, "wanted", pd.DataFrame({"contact_id": contact_ids})):
        rows = conn.execute(
            f"""SELECT c.contact_id, c.contact_number FROM "{XERO_CONTACTS}" c JOIN wanted USING (contact_id)
                WHERE c.contact_number IS NOT NULL"""
        ).fetchall()
    return dict(rows)


def _name_holders(conn: duckdb.DuckDBPyConnection) -> dict[str | None, str]:
    """Normalised name -> the ContactID of the active Xero contact that holds it."""
    if not staging.table_exists(conn, XERO_CONTACTS):
        return {}
    rows = conn.execute(
        f"""SELECT name, contact_id FROM "{XERO_CONTACTS}" WHERE status = 'ACTIVE' ORDER BY contact_id"""
    )
    return {normalised_name(name): contact_id for name, contact_id in reversed(rows.fetchall())}
