"""Xero as a target: records of another system become Xero contacts, their groups and notes, invoices and
payments; each matched to what Xero holds (lib/matching.py) before anything is created, written through the Xero
write mechanics (vendors/xero/writes.py)."""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from typing import ClassVar

import dagster as dg
import duckdb
import pandas as pd

from sync_pipelines.lib import staging
from sync_pipelines.lib.deliveries import Changes, Totals
from sync_pipelines.lib.entities import Entity
from sync_pipelines.lib.matching import (
    contact_numbers,
    match_contacts,
    name_holders,
    normalised_name,
    raised_invoices,
    staged_ids,
)
from sync_pipelines.lib.staging import OutboxMessage
from sync_pipelines.lib.targets.xero_mapping import (
    FIELD_LENGTHS,
    CreditNoteMapping,
    DocumentMapping,
    ItemLines,
    XeroMapping,
    field_text,
    json_value,
    render,
)
from sync_pipelines.vendors.delivery import Deliveries
from sync_pipelines.vendors.notifier.resource import NotifierResource
from sync_pipelines.vendors.xero import entities as xero
from sync_pipelines.vendors.xero.resource import XeroResource
from sync_pipelines.vendors.xero.writes import (
    ContactGroups,
    ContactIds,
    add_note,
    attempt,
    ensure_tracking_options,
    found_again,
    own_name,
    pay_invoices,
    raise_credit_note,
    raise_invoices,
    write_contacts,
    written_versions,
)

MAX_CONTACT_NUMBER = 50  # xero.md §2.5
MAX_NOTE = 2500  # xero.md §2.7


@dataclass(frozen=True)
class InvoiceLines:
    """Where an entity's invoice lines are staged, and the columns that make a Xero LineItem (xero.md §2.4)."""

    entity: Entity  # where the lines are staged
    parent: str  # the column holding the invoiced record's id
    description: str
    quantity: str
    unit_amount: str
    discount_rate: str | None = None
    order: str | None = None

    def of(self, conn: duckdb.DuckDBPyConnection, record_ids: list[str], account_code: str) -> dict[str, list[dict]]:
        """Each record's live lines, in order, as Xero LineItems."""
        if not record_ids or not staging.table_exists(conn, self.entity.table):
            return {}
        order = f't."{self.order}" NULLS LAST, t.id' if self.order else "t.id"
        with staging.frame_as(conn, "invoiced", pd.DataFrame({"record_id": record_ids})):
            rows = conn.execute(
                f"""SELECT t.* FROM "{self.entity.table}" t JOIN invoiced i ON t."{self.parent}" = i.record_id
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

    entity: Entity  # where the people are staged
    parents: str  # the column listing, comma-joined, the ids of the organisations a person belongs to
    first_name: str
    last_name: str
    email: str

    @property
    def reads(self) -> tuple[Entity, ...]:
        return (self.entity,)

    def of(self, conn: duckdb.DuckDBPyConnection, rows: dict[str, dict]) -> dict[str, list[dict]]:
        """Each organisation's first five people with an email (Xero keeps at most five), by email."""
        record_ids = list(rows)
        if not record_ids or not staging.table_exists(conn, self.entity.table):
            return {}
        with staging.frame_as(conn, "organisations", pd.DataFrame({"record_id": record_ids})):
            rows = conn.execute(
                f"""SELECT o.record_id, p."{self.first_name}", p."{self.last_name}", p."{self.email}"
                    FROM "{self.entity.table}" p JOIN organisations o
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
class ListedPersons:
    """An organisation whose row lists its people as Xero ContactPersons already (a JSON array column)."""

    column: str
    reads: tuple[Entity, ...] = ()

    def of(self, conn: duckdb.DuckDBPyConnection, rows: dict[str, dict]) -> dict[str, list[dict]]:
        return {record_id: json.loads(row[self.column] or "[]") for record_id, row in rows.items()}


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
    persons: ContactPersons | ListedPersons | None = None
    system: str = "xero"
    totals: Totals | None = None
    # What Xero refuses as too long: a record that would write more is quarantined when staged.
    field_lengths: ClassVar[Mapping[str, int]] = FIELD_LENGTHS

    @property
    def resources(self) -> dict[str, type[dg.ConfigurableResource]]:
        notifier = {"notifier": NotifierResource} if self.mapping.notify else {}
        return {"xero": XeroResource, **notifier}

    @property
    def reads(self) -> tuple[Entity, ...]:
        """What matching reads (Xero's contacts; its invoices when raising them), and the lines or people it
        writes."""
        invoices = (xero.INVOICES,) if self.mapping.invoice else ()
        lines = (self.lines.entity,) if self.lines else ()
        return (xero.CONTACTS, *invoices, *lines, *(self.persons.reads if self.persons else ()))

    def messages_for(self, conn: duckdb.DuckDBPyConnection, changes: Changes) -> list[OutboxMessage]:
        """The contact, group, invoice and payment writes these changes call for, and their notifications."""
        entity, changed, previous, namespace = changes.entity, changes.changed, changes.previous, changes.namespace
        if changed.empty:
            return []
        source, key = entity.vendor, entity.key
        rows = {str(row[key]): row for row in changed.to_dict("records")}
        before = {str(row[key]): row for row in previous.to_dict("records")}
        messages: list[OutboxMessage] = []
        if self.mapping.contact is not None:
            contacts, refs = self._contacts(conn, namespace=namespace, entity=entity, changed=changed, rows=rows)
            messages += contacts + self._groups(source, rows, before, refs)
        elif self.mapping.member:
            members = {r: str(json_value(row[self.mapping.member])) for r, row in rows.items()}
            messages += self._groups(source, rows, before, self._contact_refs(conn, source, members))
        if self.mapping.group:
            messages += self._group_members(conn, source, rows, before)
        live = {record_id: row for record_id, row in rows.items() if json_value(row.get("is_deleted")) is not True}
        if self.mapping.note:
            messages += self._notes(conn, source, live)
        if self.mapping.invoice:
            messages += self._invoices(conn, source, live)
        if self.mapping.payment:
            messages += self._payments(conn, source, live)
        if self.mapping.credit_note:
            messages += self._credit_notes(conn, source, live)
        return messages + self._notifications(messages, rows)

    def _contacts(
        self, conn, *, namespace: str, entity: Entity, changed: pd.DataFrame, rows: dict[str, dict]
    ) -> tuple[list[OutboxMessage], dict[str, dict]]:
        """Contact writes (or links) for these records, and how each one's contact is referred to."""
        source = entity.vendor
        contact_ids = match_contacts(conn, changed, source=source, key=entity.key, match=self.mapping.match)
        shared = self._shared_contacts(conn, entity, rows, contact_ids)
        refs = {r: {"ContactNumber": r[:MAX_CONTACT_NUMBER]} for r in rows} | {
            r: {"ContactID": c} for r, c in contact_ids.items()
        }
        persons = self.persons.of(conn, rows) if self.persons else {}
        holders = name_holders(conn)
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
        bodies = staging.changed_identities(conn, f"{namespace}:xero", bodies)
        versions = staging.remember_identities(conn, f"{namespace}:xero", bodies)
        # What a new contact is created with is what both sides agree on, for the two-way sync to start from.
        two_way, agreed = self.mapping.two_way_fields, []
        for record_id, body in bodies.items():
            if record_id in suffixed:
                body = {**body, "Name": own_name(body)}
            created = not contact_ids.get(record_id)
            if created:
                body = self.mapping.contact_body(rows[record_id]) | body  # a new contact gets every field
                agreed += [(record_id, f, field_text(rows[record_id][self.mapping.contact[f]])) for f in two_way]
            else:
                body = {"ContactID": contact_ids[record_id], **body}
            message_id = f"{source}:xero_contact:{record_id}:v{versions[record_id]}"
            payload = {"type": "contact", "messageId": message_id, "Contact": body}
            messages.append(OutboxMessage(message_id, record_id, "contact", "created" if created else None, payload))
        staging.settle_fields(conn, namespace, agreed)
        return messages, refs

    def _shared_contacts(
        self, conn, entity: Entity, rows: dict[str, dict], contact_ids: dict[str, str]
    ) -> dict[str, dict]:
        """Records whose contact another record of this source owns and writes: record -> that contact.

        A contact is owned by the record whose id is its ContactNumber. A converted lead (to its person's), a
        record matched to a contact another record of its entity owns, and the later of two new records sharing
        an email (compared case-insensitively) link to the owner's contact instead of writing it.
        """
        match, shared = self.mapping.match, {}
        owners = contact_numbers(conn, list(set(contact_ids.values())))
        # Owners of the same entity only: a record of another entity gives way (a lead to the person it became).
        peers = set(rows) | staged_ids(conn, entity.table, entity.key, list(set(owners.values())))
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
            groups |= {self.mapping.group_prefix + name for name in json.loads(row[self.mapping.group_names] or "[]")}
        return groups

    def _group_members(self, conn, source: str, rows: dict[str, dict], before: dict[str, dict]) -> list[OutboxMessage]:
        """A record that is a group (an Intercom segment): its members added and removed as its list changes."""
        group, messages = self.mapping.group, []
        lists = {r: set(json.loads(row[group.members] or "[]")) for r, row in rows.items()}
        earlier = {r: set(json.loads(before[r][group.members] or "[]")) if r in before else set() for r in rows}
        members = sorted(set().union(*lists.values(), *earlier.values()))
        refs = self._contact_refs(conn, source, {member: member for member in members})
        for record_id, row in rows.items():
            name = str(json_value(row[group.name]))
            for member in sorted(lists[record_id] ^ earlier[record_id]):
                action = "add" if member in lists[record_id] else "remove"
                message_id = f"{source}:xero_group:{name}:{member}:{action}:{row['content_hash'][:16]}"
                payload = {"type": "group", "messageId": message_id, "group": name, "member": action == "add",
                           **refs[member]}  # fmt: skip
                messages.append(OutboxMessage(message_id, record_id, "group", action, payload))
        return messages

    def _notes(self, conn, source: str, rows: dict[str, dict]) -> list[OutboxMessage]:
        """One History note per version of the record, on the contact of the record it names."""
        note, messages = self.mapping.note, []
        if note.when:
            rows = {record_id: row for record_id, row in rows.items() if note.when.holds(row)}
        refs = self._contact_refs(conn, source, {r: str(json_value(row[note.contact])) for r, row in rows.items()})
        for record_id, row in rows.items():
            message_id = f"{source}:xero_note:{record_id}:{row['content_hash'][:16]}"
            payload = {
                "type": "note",
                "messageId": message_id,
                # xero.md §2.7: a note's Details hold at most 2,500 characters.
                "Details": render(note.text, row)[:MAX_NOTE],
                **refs[record_id],
            }
            messages.append(OutboxMessage(message_id, record_id, "note", None, payload))
        return messages

    def _contact_refs(self, conn, source: str, about: dict[str, str]) -> dict[str, dict]:
        """record id -> how to address the contact of the source record it names: its ContactID once linked, else
        the source id as the ContactNumber it will be written under."""
        contact_ids = staging.linked_ids(
            conn, source_system=source, target_system=self.system, source_ids=sorted(set(about.values()))
        )
        return {
            record_id: {"ContactID": contact_ids[other]} if other in contact_ids else {"ContactNumber": other}
            for record_id, other in about.items()
        }

    def _invoices(self, conn, source: str, rows: dict[str, dict]) -> list[OutboxMessage]:
        invoice = self.mapping.invoice
        due = {record_id: row for record_id, row in rows.items() if invoice.when.holds(row)}
        if not due:
            return []
        references = {record_id: str(json_value(row[invoice.reference])) for record_id, row in due.items()}
        raised = raised_invoices(conn, list(references.values()))
        billed = {record_id: str(json_value(row[invoice.contact])) for record_id, row in due.items()}
        contact_ids = staging.linked_ids(
            conn, source_system=source, target_system=self.system, source_ids=list(billed.values())
        )
        lines = self.lines.of(conn, list(due), invoice.account_code) if self.lines else {}
        messages = []
        for record_id, row in due.items():
            if references[record_id] in raised:
                continue  # Xero already has this record's invoice (e.g. the staging db was rebuilt)
            issued = _date(json_value(row[invoice.date]))
            body = {
                "Type": "ACCREC",
                "Contact": _addressed_to(billed[record_id], contact_ids),
                "Date": issued.isoformat(),
                "DueDate": (issued + timedelta(days=invoice.due_days)).isoformat(),
                "Reference": references[record_id],
                "Status": invoice.status,
                **document_lines(invoice, row, lines.get(record_id)),
            }
            message_id = f"{source}:xero_invoice:{record_id}"
            payload = {"type": "invoice", "messageId": message_id, "Invoice": body}
            messages.append(OutboxMessage(message_id, record_id, "invoice", "raised", payload))
        return messages

    def _payments(self, conn, source: str, rows: dict[str, dict]) -> list[OutboxMessage]:
        """A payment per record whose `when` holds; with its invoice's InvoiceID when that invoice is staged, so
        payments are looked up in Xero fifty at a time by ID rather than one by one by Reference."""
        payment, invoice = self.mapping.payment, self.mapping.invoice
        due = {record_id: str(json_value(row[invoice.reference])) for record_id, row in rows.items()
               if payment.when.holds(row)}  # fmt: skip
        invoice_ids = raised_invoices(conn, list(due.values()))
        messages = []
        for record_id, reference in due.items():
            message_id = f"{source}:xero_payment:{record_id}"
            payload = {
                "type": "payment",
                "messageId": message_id,
                "reference": reference,
                "Account": {"Code": payment.account_code},
                "Date": staging.utcnow().date().isoformat(),
                **({"InvoiceID": invoice_ids[reference]} if reference in invoice_ids else {}),
            }
            messages.append(OutboxMessage(message_id, record_id, "payment", "paid", payload))
        return messages

    def _credit_notes(self, conn, source: str, rows: dict[str, dict]) -> list[OutboxMessage]:
        """A credit note per record, once ever (its message id carries no version), allocated when delivered to
        the invoice with its Reference."""
        credit = self.mapping.credit_note
        due = {record_id: row for record_id, row in rows.items() if credit.when.holds(row)}
        credited = {record_id: str(json_value(row[credit.contact])) for record_id, row in due.items()}
        contact_ids = staging.linked_ids(
            conn, source_system=source, target_system=self.system, source_ids=list(credited.values())
        )
        messages = []
        for record_id, row in due.items():
            contact = credited[record_id]
            body = {
                "Type": "ACCRECCREDIT",
                "Contact": {"ContactID": contact_ids[contact]}
                if contact in contact_ids
                else {"ContactNumber": contact},
                "Date": _date(json_value(row[credit.date])).isoformat(),
                "Reference": str(json_value(row[credit.reference])),
                "Status": "AUTHORISED",
                **document_lines(credit, row, None),
            }
            message_id = f"{source}:xero_credit_note:{record_id}"
            payload = {"type": "credit_note", "messageId": message_id, "CreditNote": body}
            messages.append(OutboxMessage(message_id, record_id, "credit_note", "raised", payload))
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
        client, report = resources.xero.get_client(), deliveries.report(self.system)
        resending = deliveries.resending
        by_type: dict[str, list[dict]] = {}
        for payload in payloads:
            by_type.setdefault(payload["type"], []).append(payload)
        contacts = [
            found
            for payload in by_type.get("contact", [])
            if (found := found_again(client, payload, report) if payload["messageId"] in resending else payload)
        ]
        write_contacts(client, contacts, report)
        written = {p["Contact"]["ContactNumber"]: report.target_ids[p["messageId"]] for p in contacts
                   if p["messageId"] in report.target_ids and "ContactNumber" in p["Contact"]}  # fmt: skip
        contact_id = ContactIds(client, written)
        for link in by_type.get("link", []):  # nothing to write: the contact is another record's
            found = attempt(report, [link["messageId"]], partial(contact_id, link), reads=True)
            if found is not None:
                report.delivered.append(link["messageId"])
                report.target_ids[link["messageId"]] = found
        ContactGroups(client, contact_id).apply(by_type.get("group", []), report)
        documents = [p for kind in ("invoice", "credit_note") for p in by_type.get(kind, [])]
        # The tracking options the documents' lines name, made once for the batch; should that fail, so do they.
        make_options = partial(
            ensure_tracking_options, client, [p.get("Invoice") or p["CreditNote"] for p in documents]
        )
        if documents and attempt(report, [p["messageId"] for p in documents], make_options, reads=True) is None:
            by_type["invoice"], by_type["credit_note"] = [], []

        def one_by_one(kind: str, write) -> None:
            for payload in by_type.get(kind, []):
                message_id = payload["messageId"]
                written = attempt(report, [message_id], partial(write, client, payload, message_id in resending))
                if written is not None:
                    report.versions[message_id] = written_versions(written)
                    report.delivered.append(message_id)

        one_by_one("note", partial(add_note, contact_id=contact_id))
        raise_invoices(client, by_type.get("invoice", []), resending, contact_id, report)
        pay_invoices(client, by_type.get("payment", []), report)
        one_by_one("credit_note", partial(raise_credit_note, contact_id=contact_id))
        notifications = by_type.get("notify", [])
        if notifications:
            unsent = {m for m, _ in report.failed + report.rejected}
            waiting = [n for n in notifications if n["messageId"].removesuffix(":notify") in unsent]
            told = deliveries.report("notifier")
            resources.notifier.get_client().send([n for n in notifications if n not in waiting], told)
            told.failed += [(n["messageId"], "the write it announces has not gone yet") for n in waiting]

    def rehearsed_id(self, payload: dict) -> str | None:
        """In a dry run, the ContactID a contact or link write would leave: the one it names, else a stand-in for
        the contact its ContactNumber will find (lib/outbox.Rehearsal)."""
        kind = payload["type"]
        if kind not in ("contact", "link"):
            return None
        named = payload["Contact"] if kind == "contact" else payload
        return named.get("ContactID") or f"preview:{named['ContactNumber']}"

    def figures(self, resources) -> dict[str, int | float]:
        stats = resources.xero.get_client().stats
        figures = {"api_calls": stats.calls, "api_retries": stats.retries}
        if self.mapping.notify:
            figures["notifications_sent"] = resources.notifier.get_client().sent
        return figures


def document_lines(document: DocumentMapping, row: dict, lines: list[dict] | None) -> dict:
    """An invoice's or credit note's lines, their amount types and currency, as a mapping makes them of a row. A
    credit note naming neither products nor an amount has none: it credits its invoice whole (writes.py)."""
    if lines is None and document.items is not None:
        lines = item_lines(document.items, json_value(row[document.items.column]), document.account_code)
    amount = json_value(row[document.amount]) if isinstance(document.amount, str) else document.amount
    if not lines and (amount is not None or not isinstance(document, CreditNoteMapping)):
        lines = [{"Description": render(document.description, row), "Quantity": 1.0,
                  "UnitAmount": amount or 0.0, "AccountCode": document.account_code}]  # fmt: skip
    for adjustment in document.adjustments:
        amount = json_value(row[adjustment.amount])
        if amount:
            line = {"Description": render(adjustment.description, row), "Quantity": 1.0}
            lines.append({**line, "UnitAmount": adjustment.sign * float(amount), "AccountCode": document.account_code})
    if document.tracking is not None and (option := json_value(row[document.tracking.option])) is not None:
        tracking = [{"Name": document.tracking.category, "Option": str(option)}]
        lines = [{**line, "Tracking": tracking} for line in lines]
    currency = json_value(row[document.currency_column]) if document.currency_column else document.currency
    return {"LineAmountTypes": document.line_amount_types, "LineItems": lines,
            **({"CurrencyCode": str(currency).upper()} if currency else {})}  # fmt: skip


def item_lines(items: ItemLines, products: object, account_code: str) -> list[dict]:
    """Each product of a JSON array as a line of its Xero item; Xero fills in what the item holds."""
    listed = json.loads(products) if isinstance(products, str) else products or []
    return [
        {
            "ItemCode": str(product[items.item_code]),
            "Description": str(product.get(items.description) or product[items.item_code]),
            "Quantity": float(product.get(items.quantity) or 1),
            "UnitAmount": float(product.get(items.unit_amount) or 0),
            "AccountCode": account_code,
        }
        for product in listed
    ]


def _addressed_to(contact: str, contact_ids: dict[str, str]) -> dict:
    """xero.md §2.4: a contact not linked yet is found by its ContactNumber, the source id."""
    return {"ContactID": contact_ids[contact]} if contact in contact_ids else {"ContactNumber": contact}


def _date(value: object) -> date:
    """A date column's value (ISO text, a date or a timestamp) as a calendar date."""
    return date.fromisoformat(value.isoformat()[:10] if isinstance(value, date) else str(value)[:10])
