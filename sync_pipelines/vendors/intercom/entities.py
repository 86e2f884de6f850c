"""What is extracted from Intercom, as data: each collection read the way its endpoint pages (intercom.md §4).

Contacts and conversations are searched incrementally on updated_at; companies come through the scroll and
segments with their members, both whole each run (landing drops what did not change). Names the API gives only
as ids (tags, admins) are resolved once per read and landed beside the record under `sync_pipelines`.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sync_pipelines.lib.entities import Entity
from sync_pipelines.vendors.intercom.contracts import (
    RESOLVED,
    IntercomCompany,
    IntercomContact,
    IntercomConversation,
    IntercomSegment,
    company_flattener,
    flatten_contact,
    flatten_conversation,
    flatten_segment,
)
from sync_pipelines.vendors.intercom.resource import IntercomResource


class _Intercom:
    """What every Intercom source shares: the id field, the change time and the run's figures."""

    id_field = "id"

    def updated_at(self, record: dict) -> datetime | None:
        stamp = record.get("updated_at")
        return datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, int) else None

    def checkpoint(self, cursor: dict | None, page: list[dict], stamps: list[datetime | None]) -> dict | None:
        """Searches come oldest first: the page's last updated_at (the client re-reads from it inclusively)."""
        seconds = [r["updated_at"] for r in page if isinstance(r.get("updated_at"), int)]
        return {"updated_at": max(seconds)} if seconds else None

    def figures(self, intercom: IntercomResource) -> dict[str, int | float]:
        stats = intercom.get_client().stats
        return {
            "api_calls": stats.calls,
            "api_retries": stats.retries,
            "rate_limited": stats.rate_limited,
            "throttled_waits": stats.throttled_waits,
            "scroll_restarts": stats.scroll_restarts,
            "bytes_received": stats.bytes_received,
        }


class _Searched(_Intercom):
    """A collection `read` searches on updated_at, oldest first, so a window of it can be re-read."""

    def read_window(self, intercom: IntercomResource, start: datetime, end: datetime) -> Iterator[list[dict]]:
        """A search from `start`: the backfill stops reading at the first record past `end` (lib/entities.within);
        the companies scroll and segments are read whole every run, so have no window."""
        return self.read(intercom, {"updated_at": int(start.timestamp())})


@dataclass(frozen=True)
class IntercomContacts(_Searched):
    """Users and leads changed since the cursor (POST /contacts/search, §5.1), with tag names and owner email."""

    webhook_category: str = "contact"

    def read(self, intercom: IntercomResource, cursor: dict | None) -> Iterator[list[dict]]:
        client = intercom.get_client()
        tags = {tag["id"]: tag["name"] for tag in client.tags()}
        owners = {admin["id"]: admin.get("email") for admin in client.admins()}
        for page in client.search_contacts_since(None if cursor is None else cursor["updated_at"]):
            for contact in page:
                # §5, §10: a contact embeds at most 10 tags and 10 companies; the rest only through its own lists.
                listed = _all(contact, "tags", client.contact_tags)
                contact[RESOLVED] = {
                    "tag_names": sorted(tags.get(t["id"], t.get("name") or t["id"]) for t in listed),
                    "company_ids": sorted(c["id"] for c in _all(contact, "companies", client.contact_companies)),
                    "owner_email": owners.get(str(contact.get("owner_id"))),
                }
            yield page


def _all(contact: dict, field: str, fetch) -> list[dict]:
    """A contact's embedded list, or the whole list fetched when it says it has more."""
    embedded = contact.get(field) or {}
    return fetch(contact["id"]) if embedded.get("has_more") else embedded.get("data") or []


@dataclass(frozen=True)
class IntercomCompanies(_Intercom):
    """Every company, once, through the scroll (§6.1); unchanged ones are dropped when landing."""

    webhook_category: str = "company"

    def read(self, intercom: IntercomResource, cursor: dict | None) -> Iterator[list[dict]]:
        yield from intercom.get_client().scroll_companies()

    def checkpoint(self, cursor: dict | None, page: list[dict], stamps: list[datetime | None]) -> dict | None:
        return None  # the scroll cannot start from a point: every run reads every company


@dataclass(frozen=True)
class IntercomConversations(_Searched):
    """Conversations changed since the cursor (POST /conversations/search, §8), with the assignee's email."""

    inbox_url: str = "https://app.intercom.com/a/inbox/{app_id}/inbox/conversation/{id}"
    app_id: str = "_"
    webhook_category: str = "conversation"

    def read(self, intercom: IntercomResource, cursor: dict | None) -> Iterator[list[dict]]:
        client = intercom.get_client()
        admins = {admin["id"]: admin.get("email") for admin in client.admins()}
        for page in client.search_conversations_since(None if cursor is None else cursor["updated_at"]):
            for conversation in page:
                conversation[RESOLVED] = {
                    "admin_email": admins.get(str(conversation.get("admin_assignee_id"))),
                    "url": self.inbox_url.format(app_id=self.app_id, id=conversation["id"]),
                }
            yield page


@dataclass(frozen=True)
class IntercomSegments(_Intercom):
    """Every segment with its contacts (search on segment_id, §5.1, §7): membership changes move no updated_at,
    so it is read whole each run."""

    webhook_category: str | None = None  # Intercom sends no segment webhooks: the polling sweep covers them

    def read(self, intercom: IntercomResource, cursor: dict | None) -> Iterator[list[dict]]:
        client = intercom.get_client()
        segments = client.segments()
        for segment in segments:
            query = {"field": "segment_id", "operator": "=", "value": segment["id"]}
            members = [contact["id"] for page in client.search_contacts(query) for contact in page]
            segment[RESOLVED] = {"member_ids": sorted(members)}
        if segments:
            yield segments

    def checkpoint(self, cursor: dict | None, page: list[dict], stamps: list[datetime | None]) -> dict | None:
        return None


# The company custom attributes that may hold its tax number (ABN, VAT, ...), the first one set wins.
TAX_NUMBER_ATTRIBUTES = ("tax_number", "vat_number", "abn")

CONTACTS = Entity(
    "intercom", "contacts", "Intercom users and leads", IntercomContacts(), IntercomContact, "id", flatten_contact
)
COMPANIES = Entity(
    "intercom", "companies", "Intercom companies (organisations)",
    IntercomCompanies(), IntercomCompany, "id", company_flattener(TAX_NUMBER_ATTRIBUTES),
)  # fmt: skip
SEGMENTS = Entity(
    "intercom", "segments", "Intercom segments and their contacts", IntercomSegments(), IntercomSegment, "id",
    flatten_segment,
)  # fmt: skip
CONVERSATIONS = Entity(
    "intercom", "conversations", "Intercom conversations", IntercomConversations(), IntercomConversation, "id",
    flatten_conversation,
)  # fmt: skip
ENTITIES = (CONTACTS, COMPANIES, SEGMENTS, CONVERSATIONS)
