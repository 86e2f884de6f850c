"""Writes to the org: validation, defaults, derived fields, soft deletes and roll-ups (salesforce.md §4, §8).

REST, sObject Collections and the admin API all write through `Writer` inside the caller's transaction, so
they share one set of rules and a failed record rolls back alone (a savepoint) or with the request.
"""

import re
import sqlite3
from collections.abc import Callable
from datetime import date
from typing import Any

from sync_pipelines.sandbox.salesforce import ids
from sync_pipelines.sandbox.salesforce.errors import SalesforceError, not_found
from sync_pipelines.sandbox.salesforce.schema import (
    DEFAULT_LEAD_STATUS,
    OBJECTS,
    PREFIXES,
    STAGES,
    TEXT_TYPES,
    Field,
    SObject,
    to_storage,
)
from sync_pipelines.sandbox.salesforce.store import SalesforceStore

AUDIT_FIELDS = ("CreatedDate", "LastModifiedDate", "SystemModstamp")  # the admin API may set these
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NAMED = ("Contact", "Lead", "User")  # Name = FirstName + LastName


def field_error(code: str, message: str, fields: list[str]) -> SalesforceError:
    return SalesforceError(400, code, message, fields)


def entity_is_deleted() -> SalesforceError:
    return SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted", [])


SaveHook = Callable[[sqlite3.Connection, SObject, str], None]


class Writer:
    """Creates, updates and deletes records as the org's API user (OwnerId, CreatedById, LastModifiedById).

    `on_save` hears of every record saved, created or edited (a roll-up edits its opportunity), inside the write's
    transaction: the org's workflow rules (outbound.py) fire there. Deletes and SystemModstamp-only changes do not.
    """

    def __init__(self, store: SalesforceStore, user_id: str, on_save: SaveHook | None = None):
        self.store, self.user_id = store, user_id
        self.on_save: SaveHook = on_save or (lambda conn, sobject, record_id: None)

    # -- entry points -------------------------------------------------------------------------

    def create(
        self, conn: sqlite3.Connection, sobject: SObject, values: dict[str, Any], now: str, admin: bool = False
    ) -> dict[str, Any]:
        self._writable(sobject)
        if any(key.lower() == "id" for key in values):
            raise field_error("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
        changes = self._changes(conn, sobject, values, creating=True, admin=admin)
        row: dict[str, Any] = {f.name: None for f in sobject.fields}
        row.update(
            Id=self.store.next_ids(conn, sobject.prefix)[0],
            IsDeleted=0,
            CreatedDate=now,
            CreatedById=self.user_id,
            LastModifiedDate=now,
            LastModifiedById=self.user_id,
            SystemModstamp=now,
        )
        if sobject.field("OwnerId"):
            row["OwnerId"] = self.user_id
        for name in ("HasOptedOutOfEmail", "IsConverted", "IsUnreadByOwner", "HasOpportunityLineItem", "IsActive"):
            if sobject.field(name):
                row[name] = 0
        if sobject.name == "Lead":
            row["Status"] = DEFAULT_LEAD_STATUS
        row.update(changes)
        return self._save(conn, sobject, row, changes, now, None)

    def update(
        self,
        conn: sqlite3.Connection,
        sobject: SObject,
        record_id: str,
        values: dict[str, Any],
        now: str,
        admin: bool = False,
    ) -> dict[str, Any]:
        """A user edit: LastModifiedDate and SystemModstamp move to now, even when no value changes."""
        self._writable(sobject)
        current = self.live(conn, sobject, record_id)
        given_id = next((v for k, v in values.items() if k.lower() == "id"), None)
        if given_id is not None and (not isinstance(given_id, str) or ids.normalize(given_id) != current["Id"]):
            raise field_error("INVALID_ID_FIELD", f"Id in the body ({given_id}) does not match the record", ["Id"])
        if sobject.name == "Lead" and current["IsConverted"]:
            raise SalesforceError(400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        changes = self._changes(conn, sobject, {k: v for k, v in values.items() if k.lower() != "id"}, False, admin)
        row = {**current, "LastModifiedDate": now, "LastModifiedById": self.user_id, "SystemModstamp": now}
        row.update(changes)
        return self._save(conn, sobject, row, changes, now, current)

    def upsert(
        self,
        conn: sqlite3.Connection,
        sobject: SObject,
        field_name: str,
        value: str,
        values: dict[str, Any],
        now: str,
    ) -> tuple[dict[str, Any], bool]:
        """Match on an external id (or Id): none -> insert, one -> update (salesforce.md §4.1). (row, created)."""
        key = sobject.field(field_name)
        if key is None or not (key.external_id or key.name == "Id"):
            raise not_found()  # salesforce.md §4.1: an unknown field is a 404 NOT_FOUND
        body_value = next((v for k, v in values.items() if k.lower() == key.name.lower()), None)
        if body_value is not None and str(body_value).lower() != value.lower():
            raise field_error(
                "INVALID_FIELD",
                f"The value of {key.name} in the body ({body_value}) does not match the URL ({value})",
                [key.name],
            )
        values = {k: v for k, v in values.items() if k.lower() != key.name.lower()}
        if key.name == "Id":
            record_id = ids.normalize(value)
            if record_id is None or self.store.get(conn, sobject, record_id) is None:
                raise not_found()
            return self.update(conn, sobject, record_id, values, now), False
        matches = self.store.find(conn, sobject, key.name, value)
        if matches:
            return self.update(conn, sobject, matches[0]["Id"], values, now), False
        return self.create(conn, sobject, {**values, key.name: value}, now), True

    def delete(self, conn: sqlite3.Connection, sobject: SObject, record_id: str, now: str) -> dict[str, Any]:
        """Soft delete into the recycle bin: IsDeleted, only queryAll sees it (salesforce.md §3.1).

        Deleting an account also deletes its contacts and opportunities; an opportunity takes its line items.
        """
        self._writable(sobject)
        current = self.live(conn, sobject, record_id)
        stamp = {"IsDeleted": 1, "LastModifiedDate": now, "LastModifiedById": self.user_id, "SystemModstamp": now}
        self.store.update(conn, sobject, current["Id"], stamp)
        children = {"Account": (("Contact", "AccountId"), ("Opportunity", "AccountId")), "Opportunity": ()}
        for child_name, field_name in children.get(sobject.name, ()):
            for child in self.store.find(conn, OBJECTS[child_name], field_name, current["Id"]):
                self.delete(conn, OBJECTS[child_name], child["Id"], now)
        if sobject.name == "Opportunity":
            line_items = OBJECTS["OpportunityLineItem"]
            for item in self.store.find(conn, line_items, "OpportunityId", current["Id"]):
                self.store.update(conn, line_items, item["Id"], stamp)
        if sobject.name == "OpportunityLineItem":
            self._roll_up(conn, current["OpportunityId"], now)
        return {**current, **stamp}

    def touch(self, conn: sqlite3.Connection, sobject: SObject, record_id: str, now: str) -> dict[str, Any]:
        """A change by automation (a trigger, a recalculation): only SystemModstamp moves (salesforce.md §3.2)."""
        current = self.live(conn, sobject, record_id)
        self.store.update(conn, sobject, current["Id"], {"SystemModstamp": now})
        return {**current, "SystemModstamp": now}

    def convert_lead(
        self, conn: sqlite3.Connection, lead_id: str, now: str, opportunity: bool = True
    ) -> dict[str, dict[str, Any]]:
        """Lead conversion: a new account, contact and (optionally) opportunity; the lead becomes read-only."""
        leads = OBJECTS["Lead"]
        lead = self.live(conn, leads, lead_id)
        if lead["IsConverted"]:
            raise SalesforceError(400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        account = self.create(conn, OBJECTS["Account"], {"Name": lead["Company"], "Phone": lead["Phone"]}, now)
        person = {k: lead[k] for k in ("FirstName", "LastName", "Email", "Phone", "Title", "LeadSource")}
        contact = self.create(conn, OBJECTS["Contact"], {**person, "AccountId": account["Id"]}, now)
        result = {"account": account, "contact": contact}
        if opportunity:
            opportunity_values = {
                "Name": f"{lead['Company']}-",
                "StageName": "Prospecting",
                "CloseDate": now[:10],
                "AccountId": account["Id"],
            }
            result["opportunity"] = self.create(conn, OBJECTS["Opportunity"], opportunity_values, now)
        changes = {
            "IsConverted": 1,
            "ConvertedDate": now[:10],
            "ConvertedAccountId": account["Id"],
            "ConvertedContactId": contact["Id"],
            "ConvertedOpportunityId": result["opportunity"]["Id"] if opportunity else None,
            "Status": "Closed - Converted",
            "LastModifiedDate": now,
            "LastModifiedById": self.user_id,
            "SystemModstamp": now,
        }
        self.store.update(conn, leads, lead["Id"], changes)
        self.on_save(conn, leads, lead["Id"])
        result["lead"] = {**lead, **changes}
        return result

    def live(self, conn: sqlite3.Connection, sobject: SObject, record_id: str) -> dict[str, Any]:
        """The current row, or 404 NOT_FOUND (unknown) / ENTITY_IS_DELETED (in the recycle bin)."""
        normalized = ids.normalize(record_id)
        row = self.store.get(conn, sobject, normalized) if normalized else None
        if row is None:
            raise not_found()
        if row["IsDeleted"]:
            raise entity_is_deleted()
        return row

    # -- rules --------------------------------------------------------------------------------

    def _save(
        self,
        conn: sqlite3.Connection,
        sobject: SObject,
        row: dict[str, Any],
        changes: dict[str, Any],
        now: str,
        current: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Derive, check, then insert (no current row) or write what changed; line items roll up."""
        self._derive(conn, sobject, row, changes)
        self._check_row(conn, sobject, row)
        if current is None:
            self.store.insert(conn, sobject, row)
        else:
            self.store.update(conn, sobject, row["Id"], {k: v for k, v in row.items() if current[k] != v})
        self.on_save(conn, sobject, row["Id"])
        if sobject.name == "OpportunityLineItem":
            self._roll_up(conn, row["OpportunityId"], now)
        return row

    @staticmethod
    def _writable(sobject: SObject) -> None:
        if not sobject.writable:
            raise SalesforceError(
                400, "INSUFFICIENT_ACCESS_OR_READONLY", f"insufficient access rights on {sobject.name} records", []
            )

    def _changes(
        self, conn: sqlite3.Connection, sobject: SObject, values: dict[str, Any], creating: bool, admin: bool
    ) -> dict[str, Any]:
        """Body fields converted to stored values, after the unknown-field and read-only checks."""
        changes: dict[str, Any] = {}
        read_only: list[str] = []
        for key, value in values.items():
            if key == "attributes":
                continue
            field = sobject.field(key)
            if field is None:
                raise SalesforceError(400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject.name}")
            allowed = field.createable if creating else field.updateable
            if not allowed and not (admin and field.name in AUDIT_FIELDS):
                read_only.append(field.name)
                continue
            changes[field.name] = self._value(conn, field, value)
        if read_only:
            raise field_error(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(read_only)}. Please check the security settings of "
                "this field and verify that it is read/write for your profile or permission set.",
                read_only,
            )
        return changes

    def _value(self, conn: sqlite3.Connection, field: Field, value: Any) -> Any:
        try:
            stored = to_storage(field, value)
        except ValueError as exc:
            if field.type == "reference":
                raise field_error(
                    "MALFORMED_ID", f"{field.relationship} ID: id value of incorrect type: {value}", [field.name]
                ) from None
            raise SalesforceError(400, "JSON_PARSER_ERROR", f"{exc} for field {field.name}") from None
        if stored is None:
            return None
        if field.type in TEXT_TYPES:
            if len(stored) > field.max_length:
                raise field_error(
                    "STRING_TOO_LONG",
                    f"{field.name}: data value too large: {stored[:40]} (max length={field.max_length})",
                    [field.name],
                )
            if field.restricted and stored not in field.restricted:
                raise field_error(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{field.name}: bad value for restricted picklist field: {stored}",
                    [field.name],
                )
            if field.type == "email" and not _EMAIL.match(stored):
                raise field_error(
                    "INVALID_EMAIL_ADDRESS", f"{field.name}: invalid email address: {stored}", [field.name]
                )
        if field.type == "reference":
            target = PREFIXES.get(stored[:3])
            if target is None or target.name != field.reference_to:
                raise field_error(
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"{field.relationship} ID: id value of incorrect type: {value}",
                    [field.name],
                )
            parent = self.store.get(conn, target, stored)
            if parent is None:
                raise field_error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [field.name])
            if parent["IsDeleted"]:
                raise field_error("ENTITY_IS_DELETED", "entity is deleted", [field.name])
        return stored

    def _derive(self, conn: sqlite3.Connection, sobject: SObject, row: dict[str, Any], changes: dict) -> None:
        """Compound names, opportunity stage metadata and line-item pricing (salesforce.md §8)."""
        if sobject.name in _NAMED:
            row["Name"] = " ".join(part for part in (row.get("FirstName"), row.get("LastName")) if part) or None
        if sobject.name == "Opportunity":
            derive_opportunity(row, changes)
        if sobject.name == "OpportunityLineItem":
            self._derive_line_item(conn, row, changes)

    def _derive_line_item(self, conn: sqlite3.Connection, row: dict[str, Any], changes: dict[str, Any]) -> None:
        price_line_item(row, changes)
        opportunity = self.store.get(conn, OBJECTS["Opportunity"], row["OpportunityId"] or "")
        product = self.store.get(conn, OBJECTS["Product2"], row["Product2Id"] or "")
        if opportunity and product:
            row["Name"] = f"{opportunity['Name']} {product['Name']}"
            row["ProductCode"] = product["ProductCode"]

    def _check_row(self, conn: sqlite3.Connection, sobject: SObject, row: dict[str, Any]) -> None:
        missing = [f.name for f in sobject.fields if f.required and row.get(f.name) in (None, "")]
        if missing:
            raise field_error("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        for field in sobject.external_ids:
            value = row.get(field.name)
            if value is None:
                continue
            clash = [other for other in self.store.find(conn, sobject, field.name, value) if other["Id"] != row["Id"]]
            if clash:
                raise field_error(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {field.name} duplicates value on record with id: {clash[0]['Id']}",
                    [field.name],
                )

    def _roll_up(self, conn: sqlite3.Connection, opportunity_id: str, now: str) -> None:
        """Line items roll up into Amount and HasOpportunityLineItem: a system change to the opportunity."""
        opportunities = OBJECTS["Opportunity"]
        opportunity = self.store.get(conn, opportunities, opportunity_id)
        items = self.store.find(conn, OBJECTS["OpportunityLineItem"], "OpportunityId", opportunity_id)
        changes: dict[str, Any] = {"HasOpportunityLineItem": int(bool(items)), "SystemModstamp": now}
        if items:
            changes["Amount"] = round(sum(item["TotalPrice"] for item in items), 2)
        row = {**opportunity, **changes}
        _expected_revenue(row)
        changes["ExpectedRevenue"] = row["ExpectedRevenue"]
        self.store.update(conn, opportunities, opportunity_id, changes)
        self.on_save(conn, opportunities, opportunity_id)


def derive_opportunity(row: dict[str, Any], changes: dict[str, Any]) -> None:
    """Stage metadata, expected revenue and fiscal period (salesforce.md §8); the seed uses it too."""
    if row["HasOpportunityLineItem"] and "Amount" in changes:
        # salesforce.md §8 (unconfirmed): with line items, Amount is their sum and cannot be set.
        raise field_error(
            "FIELD_INTEGRITY_EXCEPTION",
            "Amount: cannot be changed on an opportunity with line items; it is the sum of their TotalPrice",
            ["Amount"],
        )
    stage = STAGES.get(row["StageName"])
    if stage is not None:
        probability, closed, won, forecast = stage
        if "StageName" in changes:
            if "Probability" not in changes:
                row["Probability"] = float(probability)
            if "ForecastCategoryName" not in changes:
                row["ForecastCategoryName"] = forecast
        row["IsClosed"], row["IsWon"] = int(closed), int(won)
    _expected_revenue(row)
    if row["CloseDate"]:
        close = date.fromisoformat(row["CloseDate"])
        row["FiscalYear"], row["FiscalQuarter"] = close.year, (close.month - 1) // 3 + 1


def price_line_item(row: dict[str, Any], changes: dict[str, Any]) -> None:
    """Set UnitPrice or TotalPrice, not both; the other and Subtotal follow (salesforce.md §8)."""
    if "UnitPrice" in changes and "TotalPrice" in changes:
        raise field_error(
            "FIELD_INTEGRITY_EXCEPTION",
            "field integrity exception: TotalPrice (only one of UnitPrice and TotalPrice may be specified)",
            ["TotalPrice", "UnitPrice"],
        )
    quantity = row["Quantity"]
    if quantity is None:
        return  # REQUIRED_FIELD_MISSING follows
    if quantity <= 0:
        raise field_error(
            "FIELD_INTEGRITY_EXCEPTION", "field integrity exception: Quantity (must be positive)", ["Quantity"]
        )
    discount = (row["Discount"] or 0) / 100
    if changes.get("TotalPrice") is not None:
        row["UnitPrice"] = round(row["TotalPrice"] / quantity / (1 - discount), 2) if discount < 1 else 0.0
    elif row["UnitPrice"] is None:
        raise field_error("REQUIRED_FIELD_MISSING", "Required fields are missing: [UnitPrice]", ["UnitPrice"])
    row["Subtotal"] = round(quantity * row["UnitPrice"], 2)
    row["TotalPrice"] = round(row["Subtotal"] * (1 - discount), 2)
    if row["ListPrice"] is None:
        row["ListPrice"] = row["UnitPrice"]  # the sandbox has no price books: list price = first sales price


def _expected_revenue(row: dict[str, Any]) -> None:
    amount, probability = row["Amount"], row["Probability"]
    row["ExpectedRevenue"] = None if amount is None or probability is None else round(amount * probability / 100, 2)
