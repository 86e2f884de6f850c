"""Xero as a target: records of another system become Xero contacts, matched before anything is created.

Matching order: the cross-reference kept from earlier syncs, then Xero's ContactNumber (where the source id is
written: Xero's external-reference field, xero.md §2.5, so a match survives a lost xref table), then email
(case-insensitive), then the normalised name, then the tax number. Candidates are Xero's contacts as the
Xero -> Segment flow stages them (`stg_xero_contacts`), active ones first.
"""

import hashlib
import re
from dataclasses import dataclass

import duckdb
import pandas as pd
import requests

from sync_pipelines.lib import staging
from sync_pipelines.lib.entity_sync import Totals
from sync_pipelines.lib.mapping import StrictModel
from sync_pipelines.lib.staging import OutboxMessage
from sync_pipelines.vendors.delivery import DeliveryReport
from sync_pipelines.vendors.retrying import RetryableResponse
from sync_pipelines.vendors.xero.client import XeroApiError, XeroDailyLimitReached

XERO_CONTACTS = "stg_xero_contacts"
# xero.md §4: batch writes, each element answered on its own with summarizeErrors=false. Fifty keeps a request
# small enough to retry cheaply while a thousand contacts still take only twenty of the 60 calls a minute.
WRITE_BATCH = 50
MAX_CONTACT_NUMBER = 50  # xero.md §2.5


def normalised_name(name: object) -> str | None:
    """Case, punctuation and spacing dropped: "ACME, Ltd." and "Acme Ltd" are one organisation.

    Legal forms are kept: "Lee LLC" and "Lee Inc" are different companies more often than not.
    """
    if not isinstance(name, str):
        return None
    return " ".join(re.sub(r"[^a-z0-9]+", " ", name.lower()).split()) or None


# xero.md §2.5: the Contact fields a mapping may set directly, and the ones it sets through Phones and Addresses.
CONTACT_FIELDS = frozenset(
    {"Name", "FirstName", "LastName", "EmailAddress", "AccountNumber", "TaxNumber", "CompanyNumber", "Website",
     "DefaultCurrency", "ContactStatus"}
)  # fmt: skip
PHONE_FIELD = "Phone"  # -> Phones[DEFAULT].PhoneNumber
ADDRESS_FIELDS = {"Street": "AddressLine1", "City": "City", "Region": "Region", "PostalCode": "PostalCode",
                  "Country": "Country"}  # fmt: skip  # -> Addresses[STREET]


class ContactMatch(StrictModel):
    """Source columns to match on, tried in this order after the cross-reference and ContactNumber."""

    email: str | None = None
    name: str | None = None
    tax_number: str | None = None


class ContactMapping(StrictModel):
    """What a source record becomes as a Xero contact: Xero field -> contract column, and how to find it first."""

    contact: dict[str, str]
    match: ContactMatch = ContactMatch()

    def check(self, columns: set[str], contract: str) -> list[str]:
        allowed = CONTACT_FIELDS | {PHONE_FIELD, *ADDRESS_FIELDS}
        problems = [
            f"contact.{field}: not a Xero contact field we write" for field in self.contact if field not in allowed
        ]
        if "Name" not in self.contact:
            problems.append("contact.Name: required (xero.md §2.5: a contact is created by its name)")
        used = [(f"contact.{field}", column) for field, column in self.contact.items()]
        used += [(f"match.{rule}", column) for rule, column in self.match.model_dump().items() if column]
        problems += [
            f"{where}: {column!r} is not a column of {contract}" for where, column in used if column not in columns
        ]
        return problems

    def body(self, row: dict) -> dict:
        """The Xero Contact element for one row; empty values are left out rather than blanking Xero's."""
        values = {field: _json_value(row[column]) for field, column in self.contact.items()}
        values = {field: value for field, value in values.items() if value not in (None, "")}
        body = {field: value for field, value in values.items() if field in CONTACT_FIELDS}
        if PHONE_FIELD in values:
            body["Phones"] = [{"PhoneType": "DEFAULT", "PhoneNumber": values[PHONE_FIELD]}]
        address = {ADDRESS_FIELDS[field]: values[field] for field in ADDRESS_FIELDS if field in values}
        if address:
            body["Addresses"] = [{"AddressType": "STREET", **address}]
        return body


@dataclass(frozen=True)
class XeroContactTarget:
    """Upserts Xero contacts (POST /Contacts, xero.md §2.5, §4.1) with the mapped fields of each changed record.

    A record is written only when its Xero contact would change: a source change Xero does not carry (or the
    echo of our own write-back, e.g. the Xero ContactID stored in the source) sends nothing.
    """

    mapping: ContactMapping
    system: str = "xero"
    totals: Totals | None = None

    @property
    def resource_keys(self) -> set[str]:
        return {self.system}

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
        """One contact write per record whose Xero contact would change, aimed at its matched contact."""
        if changed.empty:
            return []
        contact_ids = match_contacts(conn, changed, source=source, key=key, match=self.mapping.match)
        holders = _name_holders(conn)
        bodies = {}
        for row in changed.to_dict("records"):
            record_id = str(row[key])
            body = self.mapping.body(row) | {"ContactNumber": record_id[:MAX_CONTACT_NUMBER]}
            if body.get("ContactStatus") == "ARCHIVED" and not contact_ids.get(record_id):
                continue  # a record removed before it ever reached Xero is not created just to be archived
            # xero.md §2.5: names are unique among active contacts. Two people called Jo Smith stay two contacts;
            # the one that is not already the name's holder carries its source id in the name.
            own = contact_ids.get(record_id) or record_id
            taken = holders.setdefault(normalised_name(body["Name"]), own)
            if taken != own:
                body["Name"] = f"{body['Name']} ({body['ContactNumber']})"
            bodies[record_id] = body
        # The last body queued per record, as for Segment identities: unchanged bodies are not written again.
        # Compared without the ContactID, which only becomes known after the first write.
        namespace = f"{name}:{self.system}"
        bodies = staging.changed_identities(conn, namespace, bodies)
        versions = staging.remember_identities(conn, namespace, bodies)
        messages = []
        for record_id, body in bodies.items():
            if contact_ids.get(record_id):
                body = {"ContactID": contact_ids[record_id], **body}
            message_id = f"{source}:xero_contact:{record_id}:v{versions[record_id]}"
            payload = {"type": "contact", "messageId": message_id, "Contact": body}
            messages.append(OutboxMessage(message_id, record_id, "contact", None, payload))
        return messages

    def deliver(self, resources, payloads: list[dict]) -> dict[str, DeliveryReport]:
        """Batches of contacts; each element's own outcome, and the ContactID it was written to."""
        client, report = getattr(resources, self.system).get_client(), DeliveryReport()
        for start in range(0, len(payloads), WRITE_BATCH):
            batch = payloads[start : start + WRITE_BATCH]
            ids = [p["messageId"] for p in batch]
            # One key per batch composition: a retry of this exact batch is answered from Xero's cache (§4.3).
            key = "contacts-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:40]
            try:
                results = client.write("POST", "Contacts", [p["Contact"] for p in batch], key)
            except (RetryableResponse, XeroDailyLimitReached, requests.RequestException) as error:
                report.failed += [(message_id, str(error)) for message_id in ids]
                continue
            except XeroApiError as error:
                outcome = report.failed if error.status is None or error.status >= 500 else report.rejected
                outcome += [(message_id, str(error)) for message_id in ids]
                continue
            for message_id, result in zip(ids, results, strict=True):
                problems = [e.get("Message", "") for e in result.get("ValidationErrors") or []]
                if problems or result.get("HasValidationErrors"):
                    report.rejected.append((message_id, "; ".join(problems) or "validation errors"))
                else:
                    report.delivered.append(message_id)
                    report.target_ids[message_id] = result["ContactID"]
        return {self.system: report}

    def figures(self, resources) -> dict[str, int | float]:
        stats = getattr(resources, self.system).get_client().stats
        return {"api_calls": stats.calls, "api_retries": stats.retries}


def match_contacts(
    conn: duckdb.DuckDBPyConnection, rows: pd.DataFrame, *, source: str, key: str, match: ContactMatch
) -> dict[str, str]:
    """Source record id -> the Xero ContactID it stands for, by the first rule that finds one."""
    record_ids = rows[key].astype(str)
    linked = staging.linked_ids(conn, source_system=source, target_system="xero", source_ids=record_ids.tolist())
    if not staging.table_exists(conn, XERO_CONTACTS):
        return linked
    candidates = conn.execute(
        f"""SELECT contact_id, contact_number, lower(email) AS email, name, tax_number
            FROM "{XERO_CONTACTS}" ORDER BY status <> 'ACTIVE', contact_id"""
    ).df()
    candidates["name"] = candidates["name"].map(normalised_name)
    rules = [("contact_number", record_ids)]
    if match.email:
        rules.append(("email", rows[match.email].str.lower()))
    if match.name:
        rules.append(("name", rows[match.name].map(normalised_name)))
    if match.tax_number:
        rules.append(("tax_number", rows[match.tax_number]))
    found = dict(linked)
    for column, values in rules:
        lookup = candidates.dropna(subset=[column]).drop_duplicates(column).set_index(column)["contact_id"]
        for record_id, value in zip(record_ids, values, strict=True):
            if record_id not in found and isinstance(value, str) and value in lookup.index:
                found[record_id] = lookup[value]
    return found


def _name_holders(conn: duckdb.DuckDBPyConnection) -> dict[str | None, str]:
    """Normalised name -> the ContactID of the active Xero contact that holds it."""
    if not staging.table_exists(conn, XERO_CONTACTS):
        return {}
    rows = conn.execute(
        f"""SELECT name, contact_id FROM "{XERO_CONTACTS}" WHERE status = 'ACTIVE' ORDER BY contact_id"""
    )
    return {normalised_name(name): contact_id for name, contact_id in reversed(rows.fetchall())}


def _json_value(value: object) -> object:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value
