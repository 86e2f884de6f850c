"""Records as the 2.16 API renders them, built from stored rows with their relations fetched once per page.

Field order follows the spec's response examples. A contact embeds at most 10 tags and companies with a `url`
to the full list (intercom.md §5, §10); companies and conversations embed tags as {"type": "tag.list"}.
"""

import json
import sqlite3
from typing import Any

from sync_pipelines.sandbox.intercom.store import IntercomStore

EMBEDDED_LIMIT = 10  # intercom.md §5: max 10 embedded items; follow `url` for more
PARTS_LIMIT = 500  # intercom.md §8: GET /conversations/{id} returns the 500 most recent parts

# Stored contact fields (the `data` column), in the API's order around role, created_at and updated_at.
CONTACT_HEAD = (
    "external_id",
    "role",
    "email",
    "email_domain",
    "phone",
    "name",
    "avatar",
    "owner_id",
    "social_profiles",
    "has_hard_bounced",
    "marked_email_as_spam",
    "unsubscribed_from_emails",
)
CONTACT_MIDDLE = (
    "signed_up_at",
    "last_seen_at",
    "last_replied_at",
    "last_contacted_at",
    "last_email_opened_at",
    "last_email_clicked_at",
    "language_override",
    "browser",
    "browser_version",
    "browser_language",
    "os",
    "location",
    "android_app_name",
    "android_app_version",
    "android_device",
    "android_os_version",
    "android_sdk_version",
    "android_last_seen_at",
    "ios_app_name",
    "ios_app_version",
    "ios_device",
    "ios_os_version",
    "ios_sdk_version",
    "ios_last_seen_at",
    "custom_attributes",
)
CONTACT_TAIL = (
    "utm_campaign",
    "utm_content",
    "utm_medium",
    "utm_source",
    "utm_term",
    "referrer",
    "enabled_push_messaging",
)
# A contact without an email (a lead) renders email and email_domain as "", as the 2.16 description types them
# (string, not nullable) and as Intercom renders a missing email elsewhere: see DEVIATIONS.md beside this file.
EMPTY_WHEN_UNSET = ("email", "email_domain")
STORED_CONTACT_FIELDS = tuple(f for f in CONTACT_HEAD + CONTACT_MIDDLE + CONTACT_TAIL if f != "role")


def empty_location() -> dict[str, Any]:
    return {
        "type": "location",
        "country": None,
        "region": None,
        "city": None,
        "country_code": None,
        "continent_code": None,
    }


def new_contact_data(**values: Any) -> dict[str, Any]:
    """A contact's stored fields with the API's defaults: unset strings and times null, flags false."""
    data: dict[str, Any] = dict.fromkeys(STORED_CONTACT_FIELDS)
    data.update(
        social_profiles={"type": "list", "data": []},
        has_hard_bounced=False,
        marked_email_as_spam=False,
        unsubscribed_from_emails=False,
        location=empty_location(),
        custom_attributes={},
    )
    data.update(values)
    return data


def _embedded(contact_id: str, kind: str, item_ids: list[str], path: str) -> dict[str, Any]:
    return {
        "type": "list",
        "data": [{"type": kind, "id": item_id, "url": f"/{path}/{item_id}"} for item_id in item_ids[:EMBEDDED_LIMIT]],
        "url": f"/contacts/{contact_id}/{path}",
        "total_count": len(item_ids),
        "has_more": len(item_ids) > EMBEDDED_LIMIT,
    }


def _empty_list(url: str) -> dict[str, Any]:
    return {"type": "list", "data": [], "url": url, "total_count": 0, "has_more": False}


def tag_json(tag_id: str, name: str, applied_at: int | None = None, applied_by: str | None = None) -> dict:
    """A tag; applied_at/applied_by only where it is shown as applied to something (spec `tag`)."""
    body: dict[str, Any] = {"type": "tag", "id": tag_id, "name": name}
    if applied_at is not None:
        body["applied_at"] = applied_at
        body["applied_by"] = {"type": "admin", "id": applied_by} if applied_by else None
    return body


def segment_json(row: dict[str, Any], count: int | None = None) -> dict[str, Any]:
    body = {
        "type": "segment",
        "id": row["id"],
        "name": row["name"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "person_type": row["person_type"],
    }
    if count is not None:
        body["count"] = count
    return body


class Renderer:
    def __init__(self, store: IntercomStore, app_id: str):
        self.store, self.app_id = store, app_id

    # -- contacts -----------------------------------------------------------------------------

    def contacts(self, conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [row["id"] for row in rows]
        tags = self.store.grouped(
            conn,
            "SELECT target_id, tag_id FROM ic_taggings WHERE kind = 'contact' AND target_id IN ({ids}) "
            "ORDER BY applied_at, tag_id",
            ids,
        )
        companies = self.store.grouped(
            conn,
            "SELECT contact_id, company_id FROM ic_links WHERE contact_id IN ({ids}) ORDER BY created_at, company_id",
            ids,
        )
        raw = self.store.raw_bodies(conn, ids)  # served as given, in place of their placeholder contacts
        return [
            raw[row["id"]]
            if row["id"] in raw
            else self._contact(row, [t for (t,) in tags[row["id"]]], [c for (c,) in companies[row["id"]]])
            for row in rows
        ]

    def _contact(self, row: dict[str, Any], tag_ids: list[str], company_ids: list[str]) -> dict[str, Any]:
        contact_id, data = row["id"], row["data"]
        body: dict[str, Any] = {"type": "contact", "id": contact_id, "workspace_id": self.app_id}
        for name in CONTACT_HEAD:
            body[name] = row["role"] if name == "role" else data.get(name)
            if name in EMPTY_WHEN_UNSET and body[name] is None:
                body[name] = ""
        body["created_at"], body["updated_at"] = row["created_at"], row["updated_at"]
        for name in CONTACT_MIDDLE:
            body[name] = data.get(name)
        body["tags"] = _embedded(contact_id, "tag", tag_ids, "tags")
        body["notes"] = _empty_list(f"/contacts/{contact_id}/notes")
        body["companies"] = _embedded(contact_id, "company", company_ids, "companies")
        body["opted_out_subscription_types"] = _empty_list(f"/contacts/{contact_id}/subscriptions")
        body["opted_in_subscription_types"] = _empty_list(f"/contacts/{contact_id}/subscriptions")
        for name in CONTACT_TAIL:
            body[name] = data.get(name)
        return body

    def contact(self, conn: sqlite3.Connection, contact_id: str) -> dict[str, Any] | None:
        row = self.store.row(conn, "ic_contacts", contact_id)
        return self.contacts(conn, [row])[0] if row else None

    @staticmethod
    def contact_reference(row: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """{"id", "external_id", "type": "contact", ...}: what delete/archive answer (spec contact_deleted)."""
        return {"id": row["id"], "external_id": row["data"].get("external_id"), "type": "contact", **extra}

    # -- companies ----------------------------------------------------------------------------

    def companies(self, conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [row["id"] for row in rows]
        tags = self.store.grouped(
            conn,
            "SELECT g.target_id, t.id, t.name FROM ic_taggings g JOIN ic_tags t ON t.id = g.tag_id "
            "WHERE g.kind = 'company' AND g.target_id IN ({ids}) ORDER BY g.applied_at, t.id",
            ids,
        )
        segments = self.store.grouped(
            conn,
            "SELECT m.target_id, s.id, s.name, s.person_type, s.created_at, s.updated_at FROM ic_members m "
            "JOIN ic_segments s ON s.id = m.segment_id WHERE m.kind = 'company' AND m.target_id IN ({ids}) "
            "ORDER BY s.id",
            ids,
        )
        users = self.store.grouped(
            conn, "SELECT company_id, COUNT(*) FROM ic_links WHERE company_id IN ({ids}) GROUP BY company_id", ids
        )
        return [
            self._company(row, tags[row["id"]], segments[row["id"]], users[row["id"]][0][0] if users[row["id"]] else 0)
            for row in rows
        ]

    def _company(self, row: dict[str, Any], tags: list[tuple], segments: list[tuple], user_count: int) -> dict:
        data = row["data"]
        body: dict[str, Any] = {
            "type": "company",
            "company_id": row["company_id"],
            "id": row["id"],
            "app_id": self.app_id,
            "name": data.get("name"),
        }
        # Unset, remote_created_at is left out, not null (real companies made by the API without it, in
        # airbytehq/airbyte source-intercom integration_tests/expected_records.jsonl); the spec types it integer.
        if data.get("remote_created_at") is not None:
            body["remote_created_at"] = data["remote_created_at"]
        body.update(created_at=row["created_at"], updated_at=row["updated_at"])
        if row["last_request_at"] is not None:
            body["last_request_at"] = row["last_request_at"]
        body["monthly_spend"] = data.get("monthly_spend", 0)
        body["session_count"] = data.get("session_count", 0)
        body["user_count"] = user_count
        for name in ("size", "website", "industry"):  # the spec's examples leave unset ones out
            if data.get(name) is not None:
                body[name] = data[name]
        body["tags"] = {"type": "tag.list", "tags": [tag_json(tag_id, name) for tag_id, name in tags]}
        keys = ("id", "name", "person_type", "created_at", "updated_at")
        body["segments"] = {
            "type": "segment.list",
            "segments": [segment_json(dict(zip(keys, s, strict=True))) for s in segments],
        }
        body["plan"] = data.get("plan") or {}
        body["custom_attributes"] = data.get("custom_attributes") or {}
        return body

    def company(self, conn: sqlite3.Connection, company_id: str) -> dict[str, Any] | None:
        row = self.store.row(conn, "ic_companies", company_id)
        return self.companies(conn, [row])[0] if row else None

    # -- conversations ------------------------------------------------------------------------

    def conversations(
        self, conn: sqlite3.Connection, rows: list[dict[str, Any]], with_parts: bool = False
    ) -> list[dict[str, Any]]:
        ids = [row["id"] for row in rows]
        tags = self.store.grouped(
            conn,
            "SELECT g.target_id, t.id, t.name, g.applied_at, g.applied_by FROM ic_taggings g "
            "JOIN ic_tags t ON t.id = g.tag_id WHERE g.kind = 'conversation' AND g.target_id IN ({ids}) "
            "ORDER BY g.applied_at, t.id",
            ids,
        )
        contact_ids = {cid for row in rows for cid in row["data"]["contacts"]}
        external = {
            cid: ext
            for cid, values in self.store.grouped(
                conn, "SELECT id, json_extract(data, '$.external_id') FROM ic_contacts WHERE id IN ({ids})", contact_ids
            ).items()
            for (ext,) in values[:1]
        }
        parts: dict[str, list[tuple]] = {}
        if with_parts:
            parts = self.store.grouped(
                conn, "SELECT conversation_id, data FROM ic_parts WHERE conversation_id IN ({ids}) ORDER BY seq", ids
            )
        return [self._conversation(row, tags[row["id"]], external, parts.get(row["id"])) for row in rows]

    @staticmethod
    def _conversation(
        row: dict[str, Any], tags: list[tuple], external: dict[str, str | None], parts: list[tuple] | None
    ) -> dict[str, Any]:
        data = row["data"]
        body: dict[str, Any] = {
            "type": "conversation",
            "id": row["id"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "waiting_since": data["waiting_since"],
            "snoozed_until": data["snoozed_until"],
            "source": data["source"],
            "contacts": {
                "type": "contact.list",
                "contacts": [
                    {"type": "contact", "id": cid, "external_id": external.get(cid)} for cid in data["contacts"]
                ],
            },
            "first_contact_reply": data["first_contact_reply"],
            "admin_assignee_id": data["admin_assignee_id"],
            "team_assignee_id": data["team_assignee_id"],
            "open": data["open"],
            "state": data["state"],
            "read": data["read"],
            "tags": {"type": "tag.list", "tags": [tag_json(*tag) for tag in tags]},
            "priority": data["priority"],
            "sla_applied": None,
            "statistics": data["statistics"],
            "conversation_rating": None,
            "teammates": {"type": "admin.list", "admins": [{"type": "admin", "id": a} for a in data["teammates"]]},
            "title": data["title"],
            "custom_attributes": data["custom_attributes"],
            "topics": {},
            "ticket": None,
            "linked_objects": {"type": "list", "data": [], "total_count": 0, "has_more": False},
            "ai_agent": None,
            "ai_agent_participated": False,
        }
        if parts is not None:
            recent = [json.loads(part) for (part,) in parts[-PARTS_LIMIT:]]
            body["conversation_parts"] = {
                "type": "conversation_part.list",
                "conversation_parts": recent,
                "total_count": len(recent),
            }
        return body

    def conversation(self, conn: sqlite3.Connection, conversation_id: str) -> dict[str, Any] | None:
        row = self.store.row(conn, "ic_conversations", conversation_id)
        return self.conversations(conn, [row], with_parts=True)[0] if row else None
