"""The write rules every change goes through, from the API or the admin: validation, timestamps, webhooks.

Each method runs inside the caller's transaction and queues its webhook notification there, so a failed write
announces nothing (intercom.md §9). A change that alters nothing visible neither bumps updated_at nor notifies.
Admin writes may pin created_at/updated_at, which is how tests place a change earlier in the day.
"""

import sqlite3
from collections.abc import Callable
from typing import Any

from sync_pipelines.sandbox.intercom.errors import (
    IntercomError,
    bad_request,
    company_not_found,
    contact_not_found,
    not_found,
    parameter_invalid,
    parameter_not_found,
)
from sync_pipelines.sandbox.intercom.ids import hex_id
from sync_pipelines.sandbox.intercom.render import Renderer, new_contact_data, tag_json
from sync_pipelines.sandbox.intercom.seed import new_conversation_data, part_json
from sync_pipelines.sandbox.intercom.store import IntercomStore, fold
from sync_pipelines.sandbox.intercom.webhooks import IntercomWebhooks

ROLES = ("user", "lead")
# intercom.md §5: the fields POST/PUT /contacts take; the admin may also set these audit and profile fields.
CONTACT_INPUT = {
    "role",
    "external_id",
    "email",
    "email_verified",
    "phone",
    "name",
    "avatar",
    "signed_up_at",
    "last_seen_at",
    "owner_id",
    "unsubscribed_from_emails",
    "custom_attributes",
}
CONTACT_ADMIN_INPUT = CONTACT_INPUT | {
    "created_at",
    "updated_at",
    "location",
    "last_replied_at",
    "last_contacted_at",
    "browser",
    "os",
    "language_override",
}
_CONTACT_STRINGS = ("external_id", "email", "phone", "name", "browser", "os", "language_override")
_CONTACT_TIMES = ("signed_up_at", "last_seen_at", "last_replied_at", "last_contacted_at")
# intercom.md §6: POST /companies fields; PUT takes the same but company_id and remote_created_at.
COMPANY_INPUT = {
    "name",
    "company_id",
    "plan",
    "size",
    "website",
    "industry",
    "custom_attributes",
    "remote_created_at",
    "monthly_spend",
    "update_last_request_at",
}
COMPANY_UPDATE_INPUT = COMPANY_INPUT - {"company_id", "remote_created_at"}
MAX_MONTHLY_SPEND = 2**31 - 1  # intercom.md §6: floats truncated, capped at 2**31-1
CONVERSATION_STATES = ("open", "closed", "snoozed")


def _check_keys(body: dict[str, Any], allowed: set[str]) -> None:
    """Unknown parameters are refused the way the spec's company example shows ("bad 'test' parameter")."""
    for key in body:
        if key not in allowed:
            raise bad_request(f"bad '{key}' parameter", key)


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body[name]
    if value is None or isinstance(value, str):
        return value
    if name == "external_id" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise parameter_invalid(f"{name} must be a string", name)


def _time(body: dict[str, Any], name: str, nullable: bool = True) -> int | None:
    value = body[name]
    if value is None and nullable:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise parameter_invalid(f"{name} must be a Unix timestamp in seconds", name)


def _scalars(value: Any, name: str) -> dict[str, Any]:
    """custom_attributes: a flat object of strings, numbers, booleans or nulls."""
    if not isinstance(value, dict) or not all(
        isinstance(v, str | int | float | bool) or v is None for v in value.values()
    ):
        raise parameter_invalid(f"{name} must be an object of strings, numbers, booleans or nulls", name)
    return value


class Writer:
    def __init__(self, store: IntercomStore, renderer: Renderer, webhooks: IntercomWebhooks):
        self.store, self.renderer, self.webhooks = store, renderer, webhooks

    # -- lookups ------------------------------------------------------------------------------

    def _row(self, conn: sqlite3.Connection, table: str, record_id: Any, missing: Callable[[], Exception]) -> dict:
        row = self.store.row(conn, table, str(record_id))
        if row is None:
            raise missing()
        return row

    def contact_row(self, conn: sqlite3.Connection, contact_id: str) -> dict[str, Any]:
        return self._row(conn, "ic_contacts", contact_id, contact_not_found)

    def company_row(self, conn: sqlite3.Connection, company_id: str) -> dict[str, Any]:
        return self._row(conn, "ic_companies", company_id, company_not_found)

    def tag_row(self, conn: sqlite3.Connection, tag_id: Any) -> dict[str, Any]:
        return self._row(conn, "ic_tags", tag_id, not_found)

    def conversation_row(self, conn: sqlite3.Connection, conversation_id: str) -> dict[str, Any]:
        return self._row(conn, "ic_conversations", conversation_id, not_found)

    def admin_row(self, conn: sqlite3.Connection, admin_id: Any) -> dict[str, Any]:
        return self._row(conn, "ic_admins", admin_id, lambda: IntercomError(404, "admin_not_found", "Admin not found"))

    # -- notifications ------------------------------------------------------------------------

    def _contact_event(self, conn: sqlite3.Connection, topic: str, contact_id: str, now: int) -> None:
        if self.webhooks.wants(topic):
            self.webhooks.queue(conn, topic, self.renderer.contact(conn, contact_id), now)

    def _company_event(self, conn: sqlite3.Connection, topic: str, company_id: str, now: int) -> None:
        if self.webhooks.wants(topic):
            self.webhooks.queue(conn, topic, self.renderer.company(conn, company_id), now)

    def _conversation_event(self, conn: sqlite3.Connection, topic: str, conversation_id: str, now: int) -> None:
        if self.webhooks.wants(topic):
            self.webhooks.queue(conn, topic, self.renderer.conversation(conn, conversation_id), now)

    def _bump(self, conn: sqlite3.Connection, table: str, record_id: str, now: int) -> None:
        conn.execute(f"UPDATE {table} SET updated_at = MAX(updated_at, ?) WHERE id = ?", (now, record_id))

    # -- contacts (intercom.md §5) ------------------------------------------------------------

    def _contact_changes(
        self, conn: sqlite3.Connection, body: dict[str, Any], data: dict[str, Any], admin: bool
    ) -> dict[str, Any]:
        """The validated new `data` for a body of contact fields (role and audit times are handled apart)."""
        _check_keys(body, CONTACT_ADMIN_INPUT if admin else CONTACT_INPUT)
        data = {**data, "custom_attributes": dict(data.get("custom_attributes") or {})}
        for name in _CONTACT_STRINGS:
            if name in body:
                data[name] = _string(body, name)
        for name in _CONTACT_TIMES:
            if name in body:
                data[name] = _time(body, name)
        if "email" in body:
            data["email_domain"] = data["email"].rsplit("@", 1)[1] if data["email"] and "@" in data["email"] else None
        if "avatar" in body:
            avatar = _string(body, "avatar")
            data["avatar"] = {"type": "avatar", "image_url": avatar} if avatar else None
        if "unsubscribed_from_emails" in body:
            if not isinstance(body["unsubscribed_from_emails"], bool):
                raise parameter_invalid("unsubscribed_from_emails must be a boolean", "unsubscribed_from_emails")
            data["unsubscribed_from_emails"] = body["unsubscribed_from_emails"]
        if "owner_id" in body:
            owner = body["owner_id"]
            if owner is not None:
                if isinstance(owner, bool) or not isinstance(owner, str | int):
                    raise parameter_invalid("owner_id must be an admin id", "owner_id")
                if self.store.row(conn, "ic_admins", str(owner)) is None:
                    raise parameter_invalid(f"owner_id {owner} is not an admin of this workspace", "owner_id")
                owner = str(owner)  # intercom.md §1: a string from 2.16 on
            data["owner_id"] = owner
        if "custom_attributes" in body and body["custom_attributes"] is not None:
            data["custom_attributes"].update(_scalars(body["custom_attributes"], "custom_attributes"))
        if "location" in body:
            location = body["location"]
            if not isinstance(location, dict) or set(location) - set(data["location"]):
                raise parameter_invalid("location takes country, region, city, country_code, continent_code")
            data["location"] = {**data["location"], **location}
        return data

    def _role(self, body: dict[str, Any], default: str) -> str:
        role = body.get("role", default)
        if role not in ROLES:
            raise parameter_invalid("role must be user or lead", "role")
        return role

    def _check_unique(self, conn: sqlite3.Connection, contact_id: str, role: str, data: dict[str, Any]) -> None:
        """external_id is unique; so is a user's email, case-insensitively (leads may share one)."""
        clash = None
        if data.get("external_id"):
            clash = conn.execute(
                "SELECT id FROM ic_contacts WHERE json_extract(data, '$.external_id') = ? AND id != ?",
                (data["external_id"], contact_id),
            ).fetchone()
        if clash is None and role == "user" and data.get("email"):
            clash = conn.execute(
                "SELECT id FROM ic_contacts WHERE role = 'user' AND ic_fold(json_extract(data, '$.email')) = ? "
                "AND id != ?",
                (fold(data["email"]), contact_id),
            ).fetchone()
        if clash is not None:
            # intercom.md §5: 409 (exact text unconfirmed).
            raise IntercomError(409, "conflict", f"A contact matching those details already exists with id={clash[0]}")

    def create_contact(self, conn: sqlite3.Connection, body: dict[str, Any], now: int, admin: bool = False) -> str:
        if not any(body.get(name) is not None for name in ("email", "external_id", "role")):
            raise parameter_invalid("email, external_id or role must be given")
        role = self._role(body, "user")
        data = self._contact_changes(conn, body, new_contact_data(), admin)
        created = _time(body, "created_at", nullable=False) if "created_at" in body else now
        updated = _time(body, "updated_at", nullable=False) if "updated_at" in body else max(now, created)
        contact_id = hex_id("contact", created, self.store.next_number(conn, "contact", 1))
        self._check_unique(conn, contact_id, role, data)
        self.store.insert(
            conn,
            "ic_contacts",
            {"id": contact_id, "role": role, "created_at": created, "updated_at": updated, "archived": 0, "data": data},
        )
        self._contact_event(conn, f"contact.{role}.created", contact_id, now)
        return contact_id

    def update_contact(
        self, conn: sqlite3.Connection, contact_id: str, body: dict[str, Any], now: int, admin: bool = False
    ) -> None:
        row = self.contact_row(conn, contact_id)
        role = self._role(body, row["role"])
        data = self._contact_changes(conn, body, row["data"], admin)
        pinned = _time(body, "updated_at", nullable=False) if "updated_at" in body else None
        changes: dict[str, Any] = {}
        if data != row["data"]:
            changes["data"] = data
        if role != row["role"]:
            changes["role"] = role
        if "created_at" in body and body["created_at"] != row["created_at"]:
            changes["created_at"] = _time(body, "created_at", nullable=False)
        if not changes and pinned is None:
            return
        self._check_unique(conn, contact_id, role, data)
        changes["updated_at"] = pinned if pinned is not None else max(now, row["updated_at"])
        self.store.update(conn, "ic_contacts", contact_id, changes)
        # intercom.md §9: a lead that becomes a user has signed up; other changes are updates.
        topic = "contact.lead.signed_up" if row["role"] == "lead" and role == "user" else f"contact.{role}.updated"
        self._contact_event(conn, topic, contact_id, now)

    def delete_contact(self, conn: sqlite3.Connection, contact_id: str, now: int) -> dict[str, Any]:
        row = self.contact_row(conn, contact_id)
        for sql in (
            "DELETE FROM ic_taggings WHERE kind = 'contact' AND target_id = ?",
            "DELETE FROM ic_members WHERE kind = 'contact' AND target_id = ?",
            "DELETE FROM ic_links WHERE contact_id = ?",
            "DELETE FROM ic_contacts WHERE id = ?",
        ):
            conn.execute(sql, (contact_id,))
        reference = self.renderer.contact_reference(row)
        if self.webhooks.wants("contact.deleted"):
            self.webhooks.queue(conn, "contact.deleted", reference, now)  # intercom.md §9: identifying fields only
        return {**reference, "deleted": True}

    def set_archived(self, conn: sqlite3.Connection, contact_id: str, archived: bool, now: int) -> dict[str, Any]:
        """Archived contacts leave list and search results until unarchived (archiving is not deleting)."""
        row = self.contact_row(conn, contact_id)
        if bool(row["archived"]) != archived:
            self.store.update(
                conn, "ic_contacts", contact_id, {"archived": int(archived), "updated_at": max(now, row["updated_at"])}
            )
            self._contact_event(conn, "contact.archived" if archived else "contact.unarchived", contact_id, now)
        return self.renderer.contact_reference(row, archived=archived)

    def touch_contacts(self, conn: sqlite3.Connection, count: int, now: int) -> list[str]:
        """A user edit on the `count` least recently updated live contacts (benchmarks, incremental tests)."""
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM ic_contacts WHERE archived = 0 ORDER BY updated_at, id LIMIT ?", (count,)
            )
        ]
        for contact_id in ids:
            row = self.contact_row(conn, contact_id)
            self.store.update(conn, "ic_contacts", contact_id, {"updated_at": max(now, row["updated_at"])})
            self._contact_event(conn, f"contact.{row['role']}.updated", contact_id, now)
        return ids

    # -- tags on contacts and companies (intercom.md §7) --------------------------------------

    def tag(self, conn: sqlite3.Connection, kind: str, target_id: str, tag_id: Any, now: int, by: str) -> dict:
        """Apply a tag (idempotent); the tagged record's updated_at moves when it was not tagged yet."""
        target = self.contact_row(conn, target_id) if kind == "contact" else self.company_row(conn, target_id)
        tag = self.tag_row(conn, tag_id)
        existing = conn.execute(
            "SELECT applied_at, applied_by FROM ic_taggings WHERE kind = ? AND target_id = ? AND tag_id = ?",
            (kind, target_id, tag["id"]),
        ).fetchone()
        if existing is not None:
            return tag_json(tag["id"], tag["name"], *existing)
        self.store.insert(
            conn,
            "ic_taggings",
            {"kind": kind, "target_id": target_id, "tag_id": tag["id"], "applied_at": now, "applied_by": by},
        )
        self._tagged(conn, kind, target, tag, now, "created")
        return tag_json(tag["id"], tag["name"], now, by)

    def untag(self, conn: sqlite3.Connection, kind: str, target_id: str, tag_id: Any, now: int) -> dict:
        target = self.contact_row(conn, target_id) if kind == "contact" else self.company_row(conn, target_id)
        tag = self.tag_row(conn, tag_id)
        existing = conn.execute(
            "SELECT applied_at, applied_by FROM ic_taggings WHERE kind = ? AND target_id = ? AND tag_id = ?",
            (kind, target_id, tag["id"]),
        ).fetchone()
        if existing is None:
            raise not_found()
        conn.execute(
            "DELETE FROM ic_taggings WHERE kind = ? AND target_id = ? AND tag_id = ?", (kind, target_id, tag["id"])
        )
        self._tagged(conn, kind, target, tag, now, "deleted")
        return tag_json(tag["id"], tag["name"], *existing)

    def _tagged(
        self, conn: sqlite3.Connection, kind: str, target: dict[str, Any], tag: dict[str, Any], now: int, change: str
    ) -> None:
        """contact.{role}.tag.created|deleted carries a contact_tag item; a company's tags are a company.updated."""
        table = "ic_contacts" if kind == "contact" else "ic_companies"
        self._bump(conn, table, target["id"], now)
        if kind == "company":
            self._company_event(conn, "company.updated", target["id"], now)
            return
        topic = f"contact.{target['role']}.tag.{change}"
        if self.webhooks.wants(topic):
            item = {
                "type": "contact_tag",
                "created_at": now,
                "tag": tag_json(tag["id"], tag["name"]),
                "contact": self.renderer.contact(conn, target["id"]),
            }
            self.webhooks.queue(conn, topic, item, now)

    def find_or_create_tag(self, conn: sqlite3.Connection, name: Any, now: int) -> dict[str, Any]:
        """Tag names are case-insensitive (intercom.md §7): an existing tag of that name is reused."""
        if not isinstance(name, str) or not name.strip():
            raise parameter_invalid("invalid tag parameters", "name")
        rows = self.store.dicts(conn.execute("SELECT * FROM ic_tags WHERE ic_fold(name) = ?", (fold(name),)))
        if rows:
            return rows[0]
        row = {"id": str(self.store.next_number(conn, "tag", 1)), "name": name, "created_at": now}
        self.store.insert(conn, "ic_tags", row)
        return row

    def rename_tag(self, conn: sqlite3.Connection, tag_id: Any, name: Any) -> dict[str, Any]:
        tag = self.tag_row(conn, tag_id)
        if not isinstance(name, str) or not name.strip():
            raise parameter_invalid("invalid tag parameters", "name")
        self.store.update(conn, "ic_tags", tag["id"], {"name": name})
        return {**tag, "name": name}

    def delete_tag(self, conn: sqlite3.Connection, tag_id: str) -> None:
        tag = self.tag_row(conn, tag_id)
        conn.execute("DELETE FROM ic_taggings WHERE tag_id = ?", (tag["id"],))
        conn.execute("DELETE FROM ic_tags WHERE id = ?", (tag["id"],))

    # -- contact <-> company links (intercom.md §5) -------------------------------------------

    def attach(self, conn: sqlite3.Connection, contact_id: str, company_id: Any, now: int) -> None:
        """Both records' updated_at move (the spec's detach example shows the company's moving)."""
        self.contact_row(conn, contact_id)
        if not isinstance(company_id, str) or not company_id:
            raise parameter_not_found("company not specified", "id")
        self.company_row(conn, company_id)
        exists = conn.execute(
            "SELECT 1 FROM ic_links WHERE contact_id = ? AND company_id = ?", (contact_id, company_id)
        ).fetchone()
        if exists:
            return
        self.store.insert(conn, "ic_links", {"contact_id": contact_id, "company_id": company_id, "created_at": now})
        self._linked(conn, contact_id, company_id, now, "attached")

    def detach(self, conn: sqlite3.Connection, contact_id: str, company_id: str, now: int) -> None:
        self.contact_row(conn, contact_id)
        self.company_row(conn, company_id)
        deleted = conn.execute(
            "DELETE FROM ic_links WHERE contact_id = ? AND company_id = ?", (contact_id, company_id)
        ).rowcount
        if not deleted:
            raise company_not_found()
        self._linked(conn, contact_id, company_id, now, "detached")

    def _linked(self, conn: sqlite3.Connection, contact_id: str, company_id: str, now: int, change: str) -> None:
        self._bump(conn, "ic_contacts", contact_id, now)
        self._bump(conn, "ic_companies", company_id, now)
        topic = f"company.contact.{change}"
        if self.webhooks.wants(topic):
            # The item's shape for this topic is unconfirmed (intercom.md §9 lists the topic only).
            item = {
                "type": "contact_company",
                "created_at": now,
                "contact": self.renderer.contact(conn, contact_id),
                "company": self.renderer.company(conn, company_id),
            }
            self.webhooks.queue(conn, topic, item, now)

    # -- companies (intercom.md §6) -----------------------------------------------------------

    def _company_changes(
        self, conn: sqlite3.Connection, body: dict[str, Any], row: dict[str, Any], now: int
    ) -> dict[str, Any]:
        """Validated new columns for a company from a create-or-update or update body."""
        data = {**row["data"], "custom_attributes": dict(row["data"].get("custom_attributes") or {})}
        changes: dict[str, Any] = {}
        for name in ("name", "website", "industry"):
            if name in body:
                if body[name] is not None and not isinstance(body[name], str):
                    raise parameter_invalid(f"{name} must be a string", name)
                data[name] = body[name]
        for name in ("size", "remote_created_at"):
            if name in body:
                if body[name] is not None and (isinstance(body[name], bool) or not isinstance(body[name], int)):
                    raise parameter_invalid(f"{name} must be an integer", name)
                data[name] = body[name]
        if "monthly_spend" in body:
            spend = body["monthly_spend"]
            if isinstance(spend, bool) or not isinstance(spend, int | float) or not 0 <= spend <= MAX_MONTHLY_SPEND:
                raise parameter_invalid(f"monthly_spend must be a number up to {MAX_MONTHLY_SPEND}", "monthly_spend")
            data["monthly_spend"] = int(spend)  # floats are truncated
        if "plan" in body:
            data["plan"] = self._plan(conn, body["plan"])
        if body.get("custom_attributes") is not None:
            data["custom_attributes"].update(_scalars(body["custom_attributes"], "custom_attributes"))
        if data != row["data"]:
            changes["data"] = data
        if body.get("update_last_request_at") is True:
            changes["last_request_at"] = now
        return changes

    def _plan(self, conn: sqlite3.Connection, name: Any) -> dict[str, Any]:
        """A plan is given by name and shown as {"type": "plan", "id", "name"}; one id per name."""
        if name is None or name == "":
            return {}
        if not isinstance(name, str):
            raise parameter_invalid("plan must be a plan name", "plan")
        known = conn.execute(
            "SELECT json_extract(data, '$.plan.id') FROM ic_companies WHERE json_extract(data, '$.plan.name') = ? "
            "LIMIT 1",
            (name,),
        ).fetchone()
        plan_id = known[0] if known else str(self.store.next_number(conn, "plan", 1))
        return {"type": "plan", "id": plan_id, "name": name}

    def upsert_company(self, conn: sqlite3.Connection, body: dict[str, Any], now: int, admin: bool = False) -> str:
        """POST /companies: update the company with this company_id, else create it (intercom.md §6)."""
        _check_keys(body, COMPANY_INPUT | ({"created_at", "updated_at"} if admin else set()))
        key = body.get("company_id")
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str) or not key:
            raise parameter_not_found("company_id not specified", "company_id")
        found = conn.execute("SELECT id FROM ic_companies WHERE company_id = ?", (key,)).fetchone()
        rest = {k: v for k, v in body.items() if k != "company_id"}
        if found:
            self.update_company(conn, found[0], rest, now, admin=admin, checked=True)
            return found[0]
        created = _time(body, "created_at", nullable=False) if "created_at" in body else now
        blank = {
            "id": "",
            "data": {"name": None, "monthly_spend": 0, "session_count": 0, "plan": {}, "custom_attributes": {}},
        }
        changes = self._company_changes(conn, rest, blank, now)
        company_id = hex_id("company", created, self.store.next_number(conn, "company", 1))
        self.store.insert(
            conn,
            "ic_companies",
            {
                "id": company_id,
                "company_id": key,
                "created_at": created,
                "updated_at": _time(body, "updated_at", nullable=False) if "updated_at" in body else max(now, created),
                "last_request_at": changes.get("last_request_at"),
                "data": changes.get("data", blank["data"]),
            },
        )
        self._company_event(conn, "company.created", company_id, now)
        return company_id

    def update_company(
        self,
        conn: sqlite3.Connection,
        company_id: str,
        body: dict[str, Any],
        now: int,
        admin: bool = False,
        checked: bool = False,
    ) -> None:
        if not checked:
            _check_keys(body, COMPANY_UPDATE_INPUT | ({"updated_at"} if admin else set()))
        row = self.company_row(conn, company_id)
        changes = self._company_changes(conn, body, row, now)
        pinned = _time(body, "updated_at", nullable=False) if admin and "updated_at" in body else None
        if not changes and pinned is None:
            return
        changes["updated_at"] = pinned if pinned is not None else max(now, row["updated_at"])
        self.store.update(conn, "ic_companies", company_id, changes)
        self._company_event(conn, "company.updated", company_id, now)

    def delete_company(self, conn: sqlite3.Connection, company_id: str, now: int) -> dict[str, Any]:
        """Archives the company and detaches its contacts, whose updated_at moves (2.16 spec, DELETE text)."""
        row = self.company_row(conn, company_id)
        for (contact_id,) in conn.execute("SELECT contact_id FROM ic_links WHERE company_id = ?", (company_id,)):
            self._bump(conn, "ic_contacts", contact_id, now)
        for sql in (
            "DELETE FROM ic_links WHERE company_id = ?",
            "DELETE FROM ic_taggings WHERE kind = 'company' AND target_id = ?",
            "DELETE FROM ic_members WHERE kind = 'company' AND target_id = ?",
            "DELETE FROM ic_companies WHERE id = ?",
        ):
            conn.execute(sql, (company_id,))
        if self.webhooks.wants("company.deleted"):
            item = {"type": "company", "id": company_id, "company_id": row["company_id"]}
            self.webhooks.queue(conn, "company.deleted", item, now)
        return {"id": company_id, "object": "company", "deleted": True}

    # -- segments (membership is the sandbox's: intercom.md §7) -------------------------------

    def set_members(
        self,
        conn: sqlite3.Connection,
        segment_id: str,
        contacts: list[str] | None,
        companies: list[str] | None,
        now: int,
    ) -> None:
        if self.store.row(conn, "ic_segments", segment_id) is None:
            raise not_found()
        for kind, ids in (("contact", contacts), ("company", companies)):
            if ids is None:
                continue
            for record_id in ids:
                (self.contact_row if kind == "contact" else self.company_row)(conn, record_id)
            conn.execute("DELETE FROM ic_members WHERE kind = ? AND segment_id = ?", (kind, segment_id))
            conn.executemany(
                "INSERT OR IGNORE INTO ic_members (kind, target_id, segment_id) VALUES (?, ?, ?)",
                ((kind, record_id, segment_id) for record_id in ids),
            )
        conn.execute("UPDATE ic_segments SET updated_at = ? WHERE id = ?", (now, segment_id))

    # -- conversations (intercom.md §8) -------------------------------------------------------

    def _author(self, conn: sqlite3.Connection, kind: str, author_id: Any) -> dict[str, Any]:
        if kind == "admin":
            admin = self.admin_row(conn, author_id)["data"]
            return {"type": "admin", "id": admin["id"], "name": admin["name"], "email": admin["email"]}
        contact = self.contact_row(conn, str(author_id))
        data = contact["data"]
        # A lead without an email is an author with "email": "" and "name": null (recorded from a real workspace:
        # airbytehq/airbyte source-intercom integration_tests/expected_records.jsonl, conversation 1).
        email = data.get("email") or ""
        return {"type": contact["role"], "id": contact["id"], "name": data.get("name"), "email": email}

    def create_conversation(self, conn: sqlite3.Connection, body: dict[str, Any], now: int) -> str:
        """A contact starts a conversation (conversation.user.created)."""
        author = self._author(conn, "contact", body.get("contact_id"))
        text = body.get("body", "Hello")
        if not isinstance(text, str):
            raise parameter_invalid("body must be a string", "body")
        conversation_id = str(self.store.next_number(conn, "conversation", 1))
        source = {
            "type": "conversation",
            "id": str(self.store.next_number(conn, "source", 1)),
            "delivered_as": "customer_initiated",
            "subject": str(body.get("subject", "")),
            "body": f"<p>{text}</p>",
            "author": author,
            "attachments": [],
            "url": None,
            "redacted": False,
        }
        self.store.insert(
            conn,
            "ic_conversations",
            {
                "id": conversation_id,
                "created_at": now,
                "updated_at": now,
                "data": new_conversation_data(source, [author["id"]], now),
            },
        )
        self._conversation_event(conn, "conversation.user.created", conversation_id, now)
        return conversation_id

    def _add_part(
        self,
        conn: sqlite3.Connection,
        conversation_id: str,
        part_type: str,
        body: str | None,
        author: dict[str, Any],
        now: int,
        assigned_to: dict[str, Any] | None = None,
    ) -> None:
        part_id = self.store.next_number(conn, "part", 1)
        seq = conn.execute(
            "SELECT COALESCE(MAX(seq) + 1, 0) FROM ic_parts WHERE conversation_id = ?", (conversation_id,)
        ).fetchone()[0]
        part = part_json(part_id, part_type, body, now, author, assigned_to)
        self.store.insert(conn, "ic_parts", {"conversation_id": conversation_id, "seq": seq, "data": part})

    def _save_conversation(
        self, conn: sqlite3.Connection, row: dict[str, Any], data: dict[str, Any], now: int, topic: str
    ) -> None:
        parts = conn.execute("SELECT COUNT(*) FROM ic_parts WHERE conversation_id = ?", (row["id"],)).fetchone()[0]
        data["statistics"] = {**data["statistics"], "count_conversation_parts": parts}
        self.store.update(
            conn, "ic_conversations", row["id"], {"data": data, "updated_at": max(now, row["updated_at"])}
        )
        self._conversation_event(conn, topic, row["id"], now)

    def reply(self, conn: sqlite3.Connection, conversation_id: str, body: dict[str, Any], now: int) -> None:
        """A reply or note: {"author": "admin"|"contact", "admin_id"|"contact_id", "body", "part_type"?}."""
        row = self.conversation_row(conn, conversation_id)
        data = dict(row["data"])
        kind = body.get("author", "admin")
        if kind not in ("admin", "contact"):
            raise parameter_invalid("author must be admin or contact", "author")
        part_type = body.get("part_type", "comment")
        if part_type not in ("comment", "note") or (part_type == "note" and kind != "admin"):
            raise parameter_invalid("part_type is comment, or note for an admin", "part_type")
        if kind == "admin":
            author = self._author(conn, "admin", body.get("admin_id") or self._admin_of(conn, data))
        else:
            author = self._author(conn, "contact", body.get("contact_id") or (data["contacts"] or [None])[0])
        text = body.get("body", "")
        if not isinstance(text, str):
            raise parameter_invalid("body must be a string", "body")
        self._add_part(conn, conversation_id, part_type, f"<p>{text}</p>", author, now)
        stats = dict(data["statistics"])
        if part_type == "note":
            topic = "conversation.admin.noted"
        elif kind == "admin":
            topic = "conversation.admin.replied"
            stats["last_admin_reply_at"] = now
            data["waiting_since"] = None
            if author["id"] not in data["teammates"]:
                data["teammates"] = [*data["teammates"], author["id"]]
        else:
            topic = "conversation.user.replied"
            stats["last_contact_reply_at"] = now
            data["waiting_since"] = data["waiting_since"] or now
            data["read"] = False
        data["statistics"] = stats
        self._save_conversation(conn, row, data, now, topic)

    def set_state(self, conn: sqlite3.Connection, conversation_id: str, body: dict[str, Any], now: int) -> None:
        """{"state": open|closed|snoozed, "admin_id"?, "snoozed_until"?}: conversation.admin.<opened|closed|snoozed>."""
        row = self.conversation_row(conn, conversation_id)
        state = body.get("state")
        if state not in CONVERSATION_STATES:
            raise parameter_invalid("state must be open, closed or snoozed", "state")
        author = self._author(conn, "admin", body.get("admin_id") or self._admin_of(conn, row["data"]))
        data = dict(row["data"])
        stats = dict(data["statistics"])
        if state == "snoozed":
            until = body.get("snoozed_until", now + 86_400)
            if isinstance(until, bool) or not isinstance(until, int) or until <= now:
                raise parameter_invalid("snoozed_until must be a future Unix timestamp", "snoozed_until")
            data["snoozed_until"] = until
        else:
            data["snoozed_until"] = None
        if state == "closed":
            stats["first_close_at"] = stats.get("first_close_at") or now
            stats["last_close_at"] = now
        elif data["state"] == "closed":
            stats["count_reopens"] = stats.get("count_reopens", 0) + 1
        data.update(state=state, open=state != "closed", statistics=stats)
        part_type = {"open": "open", "closed": "close", "snoozed": "snoozed"}[state]
        self._add_part(conn, conversation_id, part_type, None, author, now)
        topic = {"open": "conversation.admin.opened", "closed": "conversation.admin.closed"}.get(
            state, "conversation.admin.snoozed"
        )
        self._save_conversation(conn, row, data, now, topic)

    def assign(self, conn: sqlite3.Connection, conversation_id: str, admin_id: Any, now: int) -> None:
        """Assign to an admin (0: unassign): conversation.admin.assigned."""
        row = self.conversation_row(conn, conversation_id)
        if admin_id in (0, "0", None):
            assignee, author = 0, self._author(conn, "admin", self._admin_of(conn, row["data"]))
        else:
            author = self._author(conn, "admin", admin_id)
            assignee = int(author["id"])
        data = dict(row["data"])
        stats = dict(data["statistics"])
        stats["count_assignments"] = stats.get("count_assignments", 0) + 1
        data.update(admin_assignee_id=assignee, statistics=stats)
        assigned = {"type": "admin", "id": str(assignee)} if assignee else None
        self._add_part(conn, conversation_id, "assignment", None, author, now, assigned)
        self._save_conversation(conn, row, data, now, "conversation.admin.assigned")

    @staticmethod
    def _admin_of(conn: sqlite3.Connection, data: dict[str, Any]) -> str:
        """The admin acting when none is named: the assignee, else the workspace's first admin."""
        if data["admin_assignee_id"]:
            return str(data["admin_assignee_id"])
        return conn.execute("SELECT id FROM ic_admins ORDER BY id LIMIT 1").fetchone()[0]

    def tag_conversation(self, conn: sqlite3.Connection, conversation_id: str, tag_id: Any, now: int, by: str) -> None:
        self.conversation_row(conn, conversation_id)
        tag = self.tag_row(conn, tag_id)
        conn.execute(
            "INSERT OR IGNORE INTO ic_taggings (kind, target_id, tag_id, applied_at, applied_by) "
            "VALUES ('conversation', ?, ?, ?, ?)",
            (conversation_id, tag["id"], now, by),
        )
        self._bump(conn, "ic_conversations", conversation_id, now)
