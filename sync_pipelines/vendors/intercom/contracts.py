"""The contracts of the Intercom records the Intercom -> Xero flow reads (intercom.md §5-§8).

Timestamps are Unix epoch seconds (§1); contact and company ids are 24 hex characters, conversation, tag,
segment and admin ids numeric strings.
"""

from __future__ import annotations

import json
import unicodedata

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from sync_pipelines.vendors.xero.contracts.common import (
    UTC_TIMESTAMP,
    from_epoch,
    nested,
    optional_text,
    website_domain,
)

INTERCOM_ID_PATTERN = r"^[0-9a-f]{24}$"
NUMERIC_ID_PATTERN = r"^\d+$"
# What the read adds to each landed record: names the API gives only as ids (tags, the owner's email).
RESOLVED = "sync_pipelines"


def parse_epoch(value: object) -> object:
    """Epoch seconds as an aware UTC datetime; anything else (or out of range) as it came, for the contract to
    reject."""
    if isinstance(value, int) and not isinstance(value, bool):
        return from_epoch(value, value)
    return value


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """(FirstName, LastName) from one name field, deliberately conservative.

    Two or more words: the last is the last name ("Ana María López" -> "Ana María", "López"). One word in a
    script that writes names with spaces: a first name only ("Cher"). A name in a script without spaces
    between its parts (Chinese, Japanese, Korean, e.g. "山田太郎"): neither, since which part is the family
    name cannot be told from the text. Empty: neither.
    """
    words = (name or "").split()
    if len(words) >= 2:
        return " ".join(words[:-1]), words[-1]
    if len(words) == 1 and not _unspaced_script(words[0]):
        return words[0], None
    return None, None


def _unspaced_script(word: str) -> bool:
    return any(unicodedata.name(ch, "").startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL")) for ch in word)


class IntercomRecord(pa.DataFrameModel):
    """What every synced Intercom record has: its change time (epoch seconds, read as UTC)."""

    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="updated_at: the incremental cursor")

    class Config:
        coerce = True
        strict = True


class IntercomContact(IntercomRecord):
    """A person (role user) or a lead: a Xero contact of its own, matched by email in any case."""

    id: Series[pd.StringDtype] = pa.Field(str_matches=INTERCOM_ID_PATTERN, unique=True)
    role: Series[pd.StringDtype] = pa.Field(isin=["user", "lead"])
    email: Series[pd.StringDtype] = pa.Field(nullable=True, str_matches=r"^[^@\s]+@[^@\s]+$")
    name: Series[pd.StringDtype] = pa.Field(nullable=True, description="name as Intercom holds it")
    xero_name: Series[pd.StringDtype] = pa.Field(
        str_length={"min_value": 1}, description="Name for Xero: the name, else the email, else the Intercom id"
    )
    first_name: Series[pd.StringDtype] = pa.Field(nullable=True, description="split_name(name)[0]")
    last_name: Series[pd.StringDtype] = pa.Field(nullable=True, description="split_name(name)[1]")
    phone: Series[pd.StringDtype] = pa.Field(nullable=True)
    external_id: Series[pd.StringDtype] = pa.Field(nullable=True)
    owner_email: Series[pd.StringDtype] = pa.Field(nullable=True, description="the owning admin's email")
    company_ids: Series[pd.StringDtype] = pa.Field(nullable=True, description="Intercom company ids, comma-joined")
    tag_names: Series[pd.StringDtype] = pa.Field(description="JSON array of the contact's tag names, sorted")


def flatten_contact(record: dict) -> dict:
    """A contact as a contract row; values are left as they came for the contract to judge."""
    name = optional_text(record.get("name"))
    first, last = split_name(name if isinstance(name, str) else None)
    email = optional_text(record.get("email"))
    resolved = record.get(RESOLVED) or {}
    return {
        "id": record.get("id"),
        "role": record.get("role"),
        "email": email,
        "name": name,
        "xero_name": name or email or f"Intercom {record.get('role')} {record.get('id')}",
        "first_name": first,
        "last_name": last,
        "phone": optional_text(record.get("phone")),
        "external_id": optional_text(record.get("external_id")),
        "owner_email": resolved.get("owner_email"),
        "company_ids": ",".join(resolved.get("company_ids") or []) or None,
        "tag_names": json.dumps(sorted(resolved.get("tag_names") or [])),
        "updated_at": parse_epoch(record.get("updated_at")),
    }


class IntercomCompany(IntercomRecord):
    """An organisation: a Xero contact matched by its website's domain or its tax number."""

    id: Series[pd.StringDtype] = pa.Field(str_matches=INTERCOM_ID_PATTERN, unique=True)
    company_id: Series[pd.StringDtype] = pa.Field(nullable=True, description="company_id: the workspace's own id")
    name: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1})
    website: Series[pd.StringDtype] = pa.Field(nullable=True)
    domain: Series[pd.StringDtype] = pa.Field(nullable=True, description="website_domain(website)")
    tax_number: Series[pd.StringDtype] = pa.Field(nullable=True, description="ABN / VAT from a custom attribute")


def company_flattener(tax_attributes: tuple[str, ...]):
    """A flatten for companies whose tax number is the first of these custom attributes that is set."""

    def flatten_company(record: dict) -> dict:
        custom = nested(record, "custom_attributes")
        tax = next((optional_text(custom[a]) for a in tax_attributes if optional_text(custom.get(a))), None)
        return {
            "id": record.get("id"),
            "company_id": optional_text(record.get("company_id")),
            "name": optional_text(record.get("name")),
            "website": optional_text(record.get("website")),
            "domain": website_domain(record.get("website")),
            "tax_number": tax,
            "updated_at": parse_epoch(record.get("updated_at")),
        }

    return flatten_company


class IntercomConversation(IntercomRecord):
    """A support conversation: each change is a History note on its contact's Xero contact."""

    id: Series[pd.StringDtype] = pa.Field(str_matches=NUMERIC_ID_PATTERN, unique=True)
    contact_id: Series[pd.StringDtype] = pa.Field(str_matches=INTERCOM_ID_PATTERN, description="its first contact")
    subject: Series[pd.StringDtype] = pa.Field(
        description="title, else the first message's subject, else '-'", metadata={"free_text": True}
    )
    state: Series[pd.StringDtype] = pa.Field(isin=["open", "closed", "snoozed"])
    admin_email: Series[pd.StringDtype] = pa.Field(nullable=True, description="the assigned admin's email")
    url: Series[pd.StringDtype] = pa.Field(description="the conversation in the Intercom inbox")


def flatten_conversation(record: dict) -> dict:
    """A conversation as a contract row; values are left as they came for the contract to judge."""
    contacts = nested(record, "contacts").get("contacts") or []
    source = nested(record, "source")
    resolved = record.get(RESOLVED) or {}
    return {
        "id": record.get("id"),
        "contact_id": contacts[0].get("id") if contacts and isinstance(contacts[0], dict) else None,
        "subject": optional_text(record.get("title")) or optional_text(source.get("subject")) or "-",
        "state": record.get("state"),
        "admin_email": resolved.get("admin_email"),
        "url": resolved.get("url"),
        "updated_at": parse_epoch(record.get("updated_at")),
    }


class IntercomSegment(IntercomRecord):
    """A segment and its contacts: a Xero contact group whose membership follows it."""

    id: Series[pd.StringDtype] = pa.Field(unique=True)
    name: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1})
    member_ids: Series[pd.StringDtype] = pa.Field(description="JSON array of its contacts' ids, sorted")


def flatten_segment(record: dict) -> dict:
    return {
        "id": record.get("id"),
        "name": optional_text(record.get("name")),
        "member_ids": json.dumps(sorted((record.get(RESOLVED) or {}).get("member_ids") or [])),
        "updated_at": parse_epoch(record.get("updated_at")),
    }
