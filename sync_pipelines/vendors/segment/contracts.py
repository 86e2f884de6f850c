"""The contracts of the Segment records the Segment -> Xero flow reads, as the Webhooks destination delivers them.

Reserved traits follow Segment's Identify spec (https://segment.com/docs/connections/spec/identify/#traits):
camelCase (`firstName`, `createdAt`) with `address` and `company` as objects; custom traits are the workspace's
own, and snake_case by Segment's recommendation (https://segment.com/docs/protocols/tracking-plan/best-practices/),
so both spellings of a name are read.
"""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from sync_pipelines.vendors.intercom.contracts import split_name
from sync_pipelines.vendors.xero.contracts.common import UTC_TIMESTAMP, optional_text, website_domain

# Traits the contract has a column for; the rest are kept, as JSON, in `other_traits`.
READ_TRAITS = frozenset(
    {"email", "name", "firstName", "first_name", "lastName", "last_name", "phone", "website", "address", "company",
     "plan", "owner_email", "tax_number", "title", "createdAt", "created_at"}
)  # fmt: skip


def parse_timestamp(value: object) -> object:
    """An ISO-8601 timestamp (Segment's, with Z) as an aware UTC datetime; anything else as it came, for the
    contract to reject."""
    if isinstance(value, str):
        try:
            return pd.Timestamp(datetime.fromisoformat(value)).tz_convert("UTC")
        except (ValueError, TypeError, OverflowError):
            return value
    return value


def trait(traits: dict, *names: str) -> object:
    """The first of these spellings that is set, as text; None when none is."""
    for name in names:
        value = traits.get(name)
        if value is not None and not isinstance(value, dict | list):
            return optional_text(str(value))
    return None


class SegmentUser(pa.DataFrameModel):
    """A person Segment identified: a Xero contact of their own, matched by the cross-reference, then email."""

    user_id: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, unique=True, description="userId")
    email: Series[pd.StringDtype] = pa.Field(nullable=True, str_matches=r"^[^@\s]+@[^@\s]+$")
    xero_name: Series[pd.StringDtype] = pa.Field(
        str_length={"min_value": 1}, description="Name for Xero: the name, else first and last, else the email"
    )
    first_name: Series[pd.StringDtype] = pa.Field(nullable=True, description="firstName, else split from name")
    last_name: Series[pd.StringDtype] = pa.Field(nullable=True, description="lastName, else split from name")
    phone: Series[pd.StringDtype] = pa.Field(nullable=True, description="phone, as given")
    website: Series[pd.StringDtype] = pa.Field(nullable=True, description="website, as given")
    domain: Series[pd.StringDtype] = pa.Field(nullable=True, description="website_domain(website)")
    company: Series[pd.StringDtype] = pa.Field(nullable=True, description="company.name (or company as text)")
    title: Series[pd.StringDtype] = pa.Field(nullable=True)
    street: Series[pd.StringDtype] = pa.Field(nullable=True, description="address.street")
    city: Series[pd.StringDtype] = pa.Field(nullable=True, description="address.city")
    region: Series[pd.StringDtype] = pa.Field(nullable=True, description="address.state")
    postal_code: Series[pd.StringDtype] = pa.Field(nullable=True, description="address.postal_code")
    country: Series[pd.StringDtype] = pa.Field(nullable=True, description="address.country")
    plan: Series[pd.StringDtype] = pa.Field(nullable=True)
    owner_email: Series[pd.StringDtype] = pa.Field(nullable=True, description="the owner or assignee, by email")
    tax_number: Series[pd.StringDtype] = pa.Field(nullable=True)
    other_traits: Series[pd.StringDtype] = pa.Field(description="JSON object of the traits without a column")
    first_seen_at: Series[UTC_TIMESTAMP] = pa.Field(description="the earliest identify's timestamp")
    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="the latest identify's timestamp")

    class Config:
        coerce = True
        strict = True


def flatten_user(record: dict) -> dict:
    """A merged profile (vendors/segment/entities.py) as a contract row."""
    traits = record.get("traits") or {}
    address = traits.get("address") if isinstance(traits.get("address"), dict) else {}
    company = traits.get("company")
    name = trait(traits, "name")
    first, last = trait(traits, "firstName", "first_name"), trait(traits, "lastName", "last_name")
    if name and not (first or last):
        first, last = split_name(name)
    email = trait(traits, "email")
    website = trait(traits, "website")
    return {
        "user_id": record.get("userId"),
        "email": email,
        "xero_name": name or " ".join(p for p in (first, last) if p) or email or f"Segment user {record.get('userId')}",
        "first_name": first,
        "last_name": last,
        "phone": trait(traits, "phone"),
        "website": website,
        "domain": website_domain(website),
        "company": trait(company, "name") if isinstance(company, dict) else trait(traits, "company"),
        "title": trait(traits, "title"),
        "street": trait(address, "street"),
        "city": trait(address, "city"),
        "region": trait(address, "state", "region"),
        "postal_code": trait(address, "postal_code", "postalCode"),
        "country": trait(address, "country"),
        "plan": trait(traits, "plan") or (trait(company, "plan") if isinstance(company, dict) else None),
        "owner_email": trait(traits, "owner_email"),
        "tax_number": trait(traits, "tax_number"),
        "other_traits": json.dumps({k: v for k, v in traits.items() if k not in READ_TRAITS}, sort_keys=True),
        "first_seen_at": parse_timestamp(record.get("first_seen_at")),
        "updated_at": parse_timestamp(record.get("timestamp")),
    }
