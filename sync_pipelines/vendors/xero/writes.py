"""How writes are made to Xero: contacts in batches, group memberships, History notes, invoices and payments.

Each write reports every message's outcome (delivered, failed or rejected) and records what it is about to send
first (`DeliveryReport.sending`), so the outbox knows what may have reached Xero when a run dies mid-call. A write
that may have gone before is looked for in Xero first (a contact by its ContactNumber, a note by its text, an
invoice by its Reference): past the Idempotency-Key window (xero.md §4.3) Xero would make a second one.
"""

import hashlib
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TypeVar

import requests

from sync_pipelines.vendors.delivery import DeliveryReport
from sync_pipelines.vendors.retrying import RetryableResponse
from sync_pipelines.vendors.xero.client import XeroApiError, XeroDailyLimitReached
from sync_pipelines.vendors.xero.contracts.common import parse_xero_date

# xero.md §2.5: the unique-name validation message
NAME_TAKEN = "is already assigned to another contact"


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
                    p for p in batch if attempt(report, [p["messageId"]], partial(self._contact_id, p), reads=True)
                ]
                for start in range(0, len(found), self._client.write_batch):
                    chunk = found[start : start + self._client.write_batch]
                    ids = [p["messageId"] for p in chunk]
                    if attempt(report, ids, partial(self._add, group, chunk)) is not None:
                        report.delivered += ids
            else:
                for payload in batch:
                    if attempt(report, [payload["messageId"]], partial(self._remove, group, payload)) is not None:
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


def attempt(report: DeliveryReport, message_ids: list[str], write: Callable[[], T], reads: bool = False) -> T | None:
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
        # A 429 that outlasted the client's retries is Xero saying "later", not "never" (xero.md §5).
        retryable = error.status is None or error.status >= 500 or error.status == 429
        outcome = report.failed if retryable else report.rejected
        reason = str(error)
    outcome += [(message_id, reason) for message_id in message_ids]
    return None


def write_contacts(client, payloads: list[dict], report: DeliveryReport) -> None:
    """Batches of contacts; each element's own outcome, and the ContactID it was written to.

    xero.md §2.5: a name another active contact holds is refused; such a contact is written again with its
    ContactNumber (the source id) in its name, so two people called Jo Smith stay two contacts.
    """
    for start in range(0, len(payloads), client.write_batch):
        batch = payloads[start : start + client.write_batch]
        clashes = _write_contact_batch(client, batch, report)
        if clashes:
            renamed = [{**p, "Contact": {**p["Contact"], "Name": own_name(p["Contact"])}} for p in clashes]
            _write_contact_batch(client, renamed, report)


def _write_contact_batch(client, batch: list[dict], report: DeliveryReport) -> list[dict]:
    """Writes one batch; returns the payloads refused only for their name."""
    ids = [p["messageId"] for p in batch]
    # One key per batch composition: a retry of this exact batch is answered from Xero's cache (§4.3).
    # A replay aims at the contact the first attempt made (found_again adds its ContactID): another request.
    composition = "\n".join(
        f"{p['messageId']}:{p['Contact'].get('ContactID')}:{p['Contact'].get('Name')}" for p in batch
    )
    key = "contacts-" + hashlib.sha256(composition.encode()).hexdigest()[:40]
    results = attempt(report, ids, lambda: client.write("POST", "Contacts", [p["Contact"] for p in batch], key))
    if results is None:  # the batch failed as a whole: each message's outcome is in the report
        return []
    clashes = []
    for payload, result in zip(batch, results, strict=True):
        problems = _problems(result)
        if problems and NAME_TAKEN in problems and own_name(payload["Contact"]) != payload["Contact"].get("Name"):
            clashes.append(payload)
        elif problems:
            report.rejected.append((payload["messageId"], problems))
        else:
            report.delivered.append(payload["messageId"])
            report.target_ids[payload["messageId"]] = result["ContactID"]
            report.versions[payload["messageId"]] = written_versions([result])
    return clashes


def written_versions(records: list[dict]) -> list[tuple[str, str]]:
    """(id, version) of each record as a write left it: its UpdatedDateUTC in epoch milliseconds, as staging keeps
    a record's version (lib/staging.version_text), so reading that version back is known as our own echo."""
    versions = []
    for record in records:
        moment = parse_xero_date(record.get("UpdatedDateUTC"))
        record_id = next((record[key] for key in ("ContactID", "InvoiceID", "CreditNoteID") if record.get(key)), None)
        if record_id and isinstance(moment, datetime):
            versions.append((str(record_id), str(round(moment.timestamp() * 1000))))
    return versions


def own_name(contact: dict) -> str | None:
    """The contact's name made its own by its ContactNumber, as the target does for names it knows are taken
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


def found_again(client, payload: dict, report: DeliveryReport) -> dict | None:
    """A contact write that may have reached Xero, aimed at the contact it made if it did (None: the lookup
    failed, and the message's outcome is in the report)."""
    contact = payload["Contact"]
    if contact.get("ContactID") or not contact.get("ContactNumber"):
        return payload  # an update: sending it again sets the same values
    lookup = partial(_contact_by_number, client, contact["ContactNumber"])
    found = attempt(report, [payload["messageId"]], lookup, reads=True)
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


def add_note(client, payload: dict, again: bool, contact_id: ContactIds) -> list[dict]:
    """xero.md §2.7: a History note, under the message's own key, so a replay adds no second one; sent again
    past the key's window, it is first looked for among the contact's notes. A note changes no record's
    UpdatedDateUTC, so it leaves no record written."""
    path = f"Contacts/{contact_id(payload)}/History"
    if again:
        notes = client.read(path, key="HistoryRecords")
        if any(n.get("Details") == payload["Details"] for n in notes):
            return []
    _written(client.write("PUT", path, [{"Details": payload["Details"]}], payload["messageId"], key="HistoryRecords"))
    return []


def addressed(document: dict, contact_id: ContactIds) -> dict:
    """The document addressed to its contact's ContactID: one that is not in Xero yet (its own write failed and
    waits in the dead letters) makes the document wait too, rather than be refused for naming no contact."""
    return {**document, "Contact": {"ContactID": contact_id(document["Contact"])}}


def raise_invoices(
    client, payloads: list[dict], resending: frozenset[str], contact_id: ContactIds, report: DeliveryReport
) -> None:
    """Invoices in batches of up to `client.write_batch` (50) per PUT (creates only), each element settled on its own
    (summarizeErrors=false: one refused invoice does not hold up the rest).

    Once ever holds through the outbox's write-ahead record, not a per-invoice key: every message of a batch is
    recorded as sending before the call, and one that may have gone (`resending`: a crash, a timeout, a failed call)
    is first looked for by its Reference, since a batch sent again may be made of other messages, under another
    Idempotency-Key. A replay of the same batch gets Xero's first answer under the same key.
    """
    ready = []
    for payload in payloads:
        message_id = payload["messageId"]
        if message_id in resending:
            lookup = partial(_raised_or_none_yet, client, payload["Invoice"]["Reference"])
            found = attempt(report, [message_id], lookup, reads=True)
            if found:
                report.delivered.append(message_id)
                report.versions[message_id] = written_versions([found])
            if found is None or found:
                continue  # the lookup failed (recorded), or the invoice is there
        body = attempt(report, [message_id], partial(addressed, payload["Invoice"], contact_id), reads=True)
        if body is not None:
            ready.append((message_id, body))
    for start in range(0, len(ready), client.write_batch):
        batch = ready[start : start + client.write_batch]
        ids = [message_id for message_id, _ in batch]
        put = partial(client.write, "PUT", "Invoices", [body for _, body in batch], _key("invoices", *ids))
        _settle_each(report, ids, attempt(report, ids, put))


def pay_invoices(client, payloads: list[dict], report: DeliveryReport) -> None:
    """Pay what is due on each record's invoice, fifty payments to a `PUT /Payments`, each element settled on its
    own; nothing due (already paid, e.g. a replay) is success. Every invoice is read first, so sending a payment
    again needs nothing more. A DRAFT invoice is approved first, in batches too (xero.md §2.4, §2.9: only
    AUTHORISED invoices take payments)."""
    invoices = _invoices_of(client, payloads, report)
    due = []
    for payload in payloads:
        message_id, invoice = payload["messageId"], invoices.get(payload["messageId"])
        if invoice is None:
            continue  # its lookup failed, recorded
        if not invoice:
            report.failed.append((message_id, f"no invoice with Reference {payload['reference']!r} in Xero yet"))
        elif not invoice.get("AmountDue"):
            report.delivered.append(message_id)
        else:
            due.append((payload, invoice))
    approved = _approve(client, [(p, i) for p, i in due if i["Status"] == "DRAFT"], report)
    due = [(p, i) for p, i in due if i["Status"] != "DRAFT" or p["messageId"] in approved]
    for start in range(0, len(due), client.write_batch):
        batch = due[start : start + client.write_batch]
        ids = [payload["messageId"] for payload, _ in batch]
        bodies = [
            {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": payload["Account"], "Date": payload["Date"],
             "Amount": invoice["AmountDue"], "Reference": payload["reference"]}
            for payload, invoice in batch
        ]  # fmt: skip
        put = partial(client.write, "PUT", "Payments", bodies, _key("payments", *ids))
        _settle_each(report, ids, attempt(report, ids, put))


def _invoices_of(client, payloads: list[dict], report: DeliveryReport) -> dict[str, dict]:
    """Message id -> the live invoice its payment is for ({} when Xero has none yet); a failed lookup is recorded
    and its message left out. Known InvoiceIDs are read fifty at a time by `IDs` (xero.md §3.3: keep ID lists to
    about 50); the rest, and any not found that way, one by one by Reference."""
    found: dict[str, dict] = {}
    failed: set[str] = set()
    by_id = [p for p in payloads if p.get("InvoiceID")]
    for start in range(0, len(by_id), client.write_batch):
        batch = by_id[start : start + client.write_batch]
        ids = [p["messageId"] for p in batch]
        invoices = attempt(report, ids, partial(_invoices_by_id, client, [p["InvoiceID"] for p in batch]), reads=True)
        if invoices is None:
            failed.update(ids)
            continue
        found |= {p["messageId"]: invoices[p["InvoiceID"]] for p in batch if p["InvoiceID"] in invoices}
    for payload in payloads:
        message_id = payload["messageId"]
        if message_id not in found and message_id not in failed:
            lookup = partial(_raised_or_none_yet, client, payload["reference"])
            invoice = attempt(report, [message_id], lookup, reads=True)
            if invoice is not None:
                found[message_id] = invoice
    return found


def _approve(client, drafts: list[tuple[dict, dict]], report: DeliveryReport) -> set[str]:
    """Approve draft invoices in batches; the message ids whose invoice is now AUTHORISED."""
    approved: set[str] = set()
    for start in range(0, len(drafts), client.write_batch):
        batch = drafts[start : start + client.write_batch]
        ids = [payload["messageId"] for payload, _ in batch]
        bodies = [{"InvoiceID": invoice["InvoiceID"], "Status": "AUTHORISED"} for _, invoice in batch]
        results = attempt(report, ids, partial(client.write, "POST", "Invoices", bodies, _key("approve", *ids)))
        for message_id, result in zip(ids, results or [], strict=True):
            if problems := _problems(result):
                report.rejected.append((message_id, problems))
            else:
                approved.add(message_id)
    return approved


def _settle_each(report: DeliveryReport, message_ids: list[str], results: list[dict] | None) -> None:
    """Each element of a batch write settled on its own: delivered with its record's version, or rejected with
    Xero's validation messages (a failed call was recorded by `attempt`)."""
    for message_id, result in zip(message_ids, results or [], strict=True):
        if problems := _problems(result):
            report.rejected.append((message_id, problems))
        else:
            report.delivered.append(message_id)
            report.versions[message_id] = written_versions([result])


def _invoices_by_id(client, invoice_ids: list[str]) -> dict[str, dict]:
    """InvoiceID -> the live invoice, for up to about 50 IDs (xero.md §3.3)."""
    pages = client.iter_pages("Invoices", params={"IDs": ",".join(invoice_ids)})
    return {i["InvoiceID"]: i for page in pages for i in page if i["Status"] not in ("DELETED", "VOIDED")}


# What a credit note copies of each line of the invoice it credits whole.
CREDITED = ("Description", "ItemCode", "Quantity", "UnitAmount", "AccountCode", "TaxType", "DiscountRate", "Tracking")


def raise_credit_note(client, payload: dict, again: bool, contact_id: ContactIds) -> list[dict]:
    """Raise the credit note (once: under the message's own key, looked for by Reference when sent again) and
    allocate what it can to the invoice with the same Reference: a refund credits its order's invoice
    (https://developer.xero.com/documentation/api/accounting/creditnotes#allocations). Both records as the
    allocation left them (it changes the invoice's amounts, so its UpdatedDateUTC)."""
    reference = payload["CreditNote"]["Reference"]
    invoice = _invoice_by_reference(client, reference)
    if invoice is None:
        raise WaitingFor(f"no invoice with Reference {reference!r} in Xero yet to credit")
    note = _invoice_by_reference(client, reference, "CreditNotes", "ACCRECCREDIT") if again else None
    if note is None:
        body = addressed(payload["CreditNote"], contact_id)
        if not body["LineItems"]:  # a whole refund: the invoice's lines, credited as they were sold
            (sold,) = client.read(f"Invoices/{invoice['InvoiceID']}", key="Invoices")
            body = {
                **body,
                "LineItems": [{k: v for k, v in line.items() if k in CREDITED} for line in sold["LineItems"]],
            }
        note = _written(client.write("PUT", "CreditNotes", [body], payload["messageId"]))
    amount = min(float(note.get("RemainingCredit") or 0), float(invoice.get("AmountDue") or 0))
    if amount > 0:
        allocation = {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Amount": amount, "Date": note.get("DateString",
                      payload["CreditNote"]["Date"])[:10]}  # fmt: skip
        path = f"CreditNotes/{note['CreditNoteID']}/Allocations"
        _written(client.write("PUT", path, [allocation], f"{payload['messageId']}:allocate", key="Allocations"))
        (note,) = client.read(f"CreditNotes/{note['CreditNoteID']}", key="CreditNotes")
        (invoice,) = client.read(f"Invoices/{invoice['InvoiceID']}", key="Invoices")
    return [note, invoice]


def ensure_tracking_options(client, documents: list[dict]) -> bool:
    """Make the tracking categories and options the documents' lines name where Xero has none by that name
    (Xero refuses a line naming an unknown one); True once all exist."""
    wanted: dict[str, set[str]] = {}
    for document in documents:
        for line in document.get("LineItems", []):
            for tracking in line.get("Tracking", []):
                wanted.setdefault(tracking["Name"], set()).add(tracking["Option"])
    if not wanted:
        return True
    categories = {c["Name"].lower(): c for c in client.read("TrackingCategories", key="TrackingCategories")}
    for name, options in sorted(wanted.items()):
        category = categories.get(name.lower())
        if category is None:
            category = _written(client.write("PUT", "TrackingCategories", [{"Name": name}], _key("tracking", name)))
        held = {option["Name"].lower() for option in category.get("Options", [])}
        missing = sorted(option for option in options if option.lower() not in held)
        if missing:
            path = f"TrackingCategories/{category['TrackingCategoryID']}/Options"
            added = client.write(
                "PUT", path, [{"Name": o} for o in missing], _key("options", name, *missing), key="Options"
            )
            _problems_of_all(added)
    return True


def _key(*parts: str) -> str:
    """An Idempotency-Key for a write made of these parts, within Xero's length."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _problems_of_all(results: list[dict]) -> None:
    problems = [p for result in results if (p := _problems(result))]
    if problems:
        raise Rejected("; ".join(problems))


def _written(results: list[dict]) -> dict:
    """The one element a single write returns, or Rejected with Xero's validation messages."""
    (result,) = results
    problems = _problems(result)
    if problems:
        raise Rejected(problems)
    return result


def _raised_or_none_yet(client, reference: str) -> dict:
    """The live sales invoice raised under this Reference, or {} when there is none (None is a failed lookup)."""
    return _invoice_by_reference(client, reference) or {}


def _invoice_by_reference(client, reference: str, collection: str = "Invoices", kind: str = "ACCREC") -> dict | None:
    """The live sales invoice (or credit note) raised for a record (xero.md §3.3: where on Reference)."""
    where = f'Type=="{kind}" AND Reference=="{reference}"'
    for page in client.iter_pages(collection, where=where):
        for document in page:
            if document["Status"] not in ("DELETED", "VOIDED"):
                return document
    return None
