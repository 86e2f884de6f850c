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


class _Reachable(pa.DataFrameModel):
    """What a person and an organisation share: how to reach them, and where they are (traits of the same names in
    the Identify and Group specs)."""

    email: Series[pd.StringDtype] = pa.Field(nullable=True, str_matches=r"^[^@\s]+@[^@\s]+$")
    phone: Series[pd.StringDtype] = pa.Field(nullable=True, description="phone, as given")
    website: Series[pd.StringDtype] = pa.Field(nullable=True, description="website, as given")
    domain: Series[pd.StringDtype] = pa.Field(nullable=True, description="website_domain(website)")
    tax_number: Series[pd.StringDtype] = pa.Field(nullable=True)
    street: Series[pd.StringDtype] = pa.Field(nullable=True, description="address.street")
    city: Series[pd.StringDtype] = pa.Field(nullable=True, description="address.city")
    region: Series[pd.StringDtype] = pa.Field(nullable=True, description="address.state")
    postal_code: Series[pd.StringDtype] = pa.Field(nullable=True, description="address.postal_code")
    country: Series[pd.StringDtype] = pa.Field(nullable=True, description="address.country")


def _reachable(traits: dict) -> dict:
    """The _Reachable columns of a person's or an organisation's traits."""
    address = traits.get("address") if isinstance(traits.get("address"), dict) else {}
    website = trait(traits, "website")
    return {
        "email": trait(traits, "email"),
        "phone": trait(traits, "phone"),
        "website": website,
        "domain": website_domain(website),
        "tax_number": trait(traits, "tax_number"),
        "street": trait(address, "street"),
        "city": trait(address, "city"),
        "region": trait(address, "state", "region"),
        "postal_code": trait(address, "postal_code", "postalCode"),
        "country": trait(address, "country"),
    }


class SegmentUser(_Reachable):
    """A person Segment identified: a Xero contact of their own, matched by the cross-reference, then email."""

    user_id: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, unique=True, description="userId")
    xero_name: Series[pd.StringDtype] = pa.Field(
        str_length={"min_value": 1}, description="Name for Xero: the name, else first and last, else the email"
    )
    first_name: Series[pd.StringDtype] = pa.Field(nullable=True, description="firstName, else split from name")
    last_name: Series[pd.StringDtype] = pa.Field(nullable=True, description="lastName, else split from name")
    company: Series[pd.StringDtype] = pa.Field(nullable=True, description="company.name (or company as text)")
    title: Series[pd.StringDtype] = pa.Field(nullable=True)
    plan: Series[pd.StringDtype] = pa.Field(nullable=True)
    owner_email: Series[pd.StringDtype] = pa.Field(nullable=True, description="the owner or assignee, by email")
    other_traits: Series[pd.StringDtype] = pa.Field(description="JSON object of the traits without a column")
    first_seen_at: Series[UTC_TIMESTAMP] = pa.Field(description="the earliest identify's timestamp")
    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="the latest identify's timestamp")
    message_id: Series[pd.StringDtype] = pa.Field(description="the latest identify's messageId: the version")

    class Config:
        coerce = True
        strict = True


def flatten_user(record: dict) -> dict:
    """A merged profile (vendors/segment/entities.py) as a contract row."""
    traits = record.get("traits") or {}
    company = traits.get("company")
    name = trait(traits, "name")
    first, last = trait(traits, "firstName", "first_name"), trait(traits, "lastName", "last_name")
    if name and not (first or last):
        first, last = split_name(name)
    reachable = _reachable(traits)
    return {
        "user_id": record.get("userId"),
        "xero_name": name
        or " ".join(p for p in (first, last) if p)
        or reachable["email"]
        or f"Segment user {record.get('userId')}",
        "first_name": first,
        "last_name": last,
        **reachable,
        "company": trait(company, "name") if isinstance(company, dict) else trait(traits, "company"),
        "title": trait(traits, "title"),
        "plan": trait(traits, "plan") or (trait(company, "plan") if isinstance(company, dict) else None),
        "owner_email": trait(traits, "owner_email"),
        "other_traits": json.dumps({k: v for k, v in traits.items() if k not in READ_TRAITS}, sort_keys=True),
        "first_seen_at": parse_timestamp(record.get("first_seen_at")),
        "updated_at": parse_timestamp(record.get("timestamp")),
        "message_id": record["messageIds"][-1],
    }


# Group traits the contract has a column for (https://segment.com/docs/connections/spec/group/#traits).
READ_GROUP_TRAITS = frozenset(
    {"name", "email", "phone", "website", "address", "industry", "employees", "plan", "tax_number"}
)


class SegmentGroup(_Reachable):
    """An organisation Segment's `group` calls name: a Xero organisation contact, its people as ContactPersons."""

    group_id: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, unique=True, description="groupId")
    xero_name: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, description="name, else the groupId")
    industry: Series[pd.StringDtype] = pa.Field(nullable=True)
    employees: Series[pd.StringDtype] = pa.Field(nullable=True)
    plan: Series[pd.StringDtype] = pa.Field(nullable=True)
    persons: Series[pd.StringDtype] = pa.Field(
        description="JSON array of its people as Xero ContactPersons (FirstName, LastName, EmailAddress)"
    )
    other_traits: Series[pd.StringDtype] = pa.Field(description="JSON object of the traits without a column")
    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="the latest group call's timestamp")
    message_id: Series[pd.StringDtype] = pa.Field(description="the latest group call's messageId: the version")

    class Config:
        coerce = True
        strict = True


def flatten_group(record: dict) -> dict:
    """A merged organisation (vendors/segment/entities.py) as a contract row."""
    traits = record.get("traits") or {}
    return {
        "group_id": record.get("groupId"),
        "xero_name": trait(traits, "name") or f"Segment group {record.get('groupId')}",
        **_reachable(traits),
        "industry": trait(traits, "industry"),
        "employees": trait(traits, "employees"),
        "plan": trait(traits, "plan"),
        "persons": json.dumps(record.get("persons") or []),
        "other_traits": json.dumps({k: v for k, v in traits.items() if k not in READ_GROUP_TRAITS}, sort_keys=True),
        "updated_at": parse_timestamp(record.get("timestamp")),
        "message_id": record["messageIds"][-1],
    }


# What the read adds to each landed message: the name of the source that sent it (from the Public API).
RESOLVED = "sync_pipelines"


class SegmentOrder(pa.DataFrameModel):
    """An `Order Completed` event (https://segment.com/docs/connections/spec/ecommerce/v2/#order-completed): one
    Xero sales invoice, its products as item lines, its source as the sales channel."""

    order_id: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, unique=True, description="order_id")
    user_id: Series[pd.StringDtype] = pa.Field(description="userId: whose Xero contact is invoiced")
    channel: Series[pd.StringDtype] = pa.Field(description="the sending source's name, else its id")
    currency: Series[pd.StringDtype] = pa.Field(nullable=True, str_matches=r"^[A-Z]{3}$", description="ISO 4217")
    total: Series[float] = pa.Field(nullable=True, ge=0, description="total (revenue when no total is given)")
    shipping: Series[float] = pa.Field(nullable=True, ge=0)
    discount: Series[float] = pa.Field(nullable=True, ge=0)
    tax: Series[float] = pa.Field(nullable=True, ge=0, description="kept for reference: Xero taxes by item")
    coupon: Series[pd.StringDtype] = pa.Field(nullable=True)
    products: Series[pd.StringDtype] = pa.Field(description="JSON array of {sku, name, quantity, price}")
    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="the event's timestamp")

    @pa.check("products", name="products_have_sku_quantity_and_price")
    def _products(cls, products: Series[str]) -> Series[bool]:
        return products.map(_valid_products)

    class Config:
        coerce = True
        strict = True


class SegmentRefund(pa.DataFrameModel):
    """An `Order Refunded` event (https://segment.com/docs/connections/spec/ecommerce/v2/#order-refunded): a Xero
    credit note, allocated to the order's invoice; the products refunded, or the whole order when none are named."""

    order_id: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, unique=True, description="order_id")
    user_id: Series[pd.StringDtype] = pa.Field(description="userId")
    channel: Series[pd.StringDtype] = pa.Field(description="the sending source's name, else its id")
    currency: Series[pd.StringDtype] = pa.Field(nullable=True, str_matches=r"^[A-Z]{3}$", description="ISO 4217")
    total: Series[float] = pa.Field(nullable=True, ge=0, description="the amount refunded, when no products are")
    products: Series[pd.StringDtype] = pa.Field(description="JSON array of the products refunded (may be empty)")
    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="the event's timestamp")

    @pa.check("products", name="products_have_sku_quantity_and_price")
    def _products(cls, products: Series[str]) -> Series[bool]:
        return products.map(lambda text: text == "[]" or _valid_products(text))

    class Config:
        coerce = True
        strict = True


def _valid_products(text: str) -> bool:
    """A non-empty array of products, each with a sku, a positive quantity and a price of at least 0."""
    try:
        products = json.loads(text)
        return bool(products) and all(
            isinstance(p.get("sku"), str) and p["sku"] and float(p["quantity"]) > 0 and float(p["price"]) >= 0
            for p in products
        )
    except (TypeError, ValueError, KeyError, AttributeError):
        return False


def _amount(value: object) -> object:
    """A money property as a number; anything else as it came, for the contract to judge."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _products(properties: dict) -> str:
    listed = properties.get("products") or []
    if not isinstance(listed, list):
        return json.dumps(listed)
    keep = ("sku", "name", "quantity", "price")
    return json.dumps([{k: p.get(k) for k in keep} if isinstance(p, dict) else p for p in listed], sort_keys=True)


def flatten_order(record: dict) -> dict:
    """An `Order Completed` or `Order Refunded` message as a contract row."""
    properties = record.get("properties") or {}
    currency = properties.get("currency")
    return {
        "order_id": None if properties.get("order_id") is None else str(properties["order_id"]),
        "user_id": record.get("userId"),
        "channel": (record.get(RESOLVED) or {}).get("source_name") or record.get("projectId"),
        "currency": currency.upper() if isinstance(currency, str) else currency,
        "total": _amount(properties.get("total", properties.get("revenue"))),
        "shipping": _amount(properties.get("shipping")),
        "discount": _amount(properties.get("discount")),
        "tax": _amount(properties.get("tax")),
        "coupon": optional_text(properties.get("coupon")),
        "products": _products(properties),
        "updated_at": parse_timestamp(record.get("timestamp")),
    }


def flatten_refund(record: dict) -> dict:
    row = flatten_order(record)
    return {key: row[key] for key in ("order_id", "user_id", "channel", "currency", "total", "products", "updated_at")}


class SegmentTrack(pa.DataFrameModel):
    """A person's track event other than an order or a refund (https://segment.com/docs/connections/spec/track/):
    kept for reference as a History note on their Xero contact when the mapping names the event."""

    message_id: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, unique=True, description="messageId")
    user_id: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, description="userId: whose contact")
    event: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, description="the event's name")
    channel: Series[pd.StringDtype] = pa.Field(description="the sending source's name, else its id")
    properties: Series[pd.StringDtype] = pa.Field(description="JSON object of the event's properties")
    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="the event's timestamp")

    class Config:
        coerce = True
        strict = True


def flatten_track(record: dict) -> dict:
    """A track message as a contract row."""
    return {
        "message_id": record.get("messageId"),
        "user_id": record.get("userId"),
        "event": record.get("event"),
        "channel": (record.get(RESOLVED) or {}).get("source_name") or record.get("projectId"),
        "properties": json.dumps(record.get("properties") or {}, sort_keys=True),
        "updated_at": parse_timestamp(record.get("timestamp")),
    }


class SegmentProfile(pa.DataFrameModel):
    """A person's audiences and computed traits from Engage (https://segment.com/docs/engage/audiences/,
    https://segment.com/docs/unify/traits/computed-traits/): Xero contact groups whose members follow them."""

    user_id: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, unique=True, description="userId")
    audiences: Series[pd.StringDtype] = pa.Field(
        description="JSON array of the audiences the person is in now (an audience left reads false, so is not)"
    )
    computed_traits: Series[pd.StringDtype] = pa.Field(description="JSON object of computed trait -> value")
    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="when the latest of these values changed")

    class Config:
        coerce = True
        strict = True


def flatten_profile(record: dict) -> dict:
    """A person's verbose audience and computed traits ({"value", "updated_at", ...} each) as a contract row."""
    audiences, computed = record.get("audiences") or {}, record.get("computed_traits") or {}
    changed = [parse_timestamp(t.get("updated_at")) for t in [*audiences.values(), *computed.values()]]
    stamps = [stamp for stamp in changed if isinstance(stamp, datetime)]
    return {
        "user_id": record.get("userId"),
        "audiences": json.dumps(sorted(name for name, t in audiences.items() if t.get("value") is True)),
        "computed_traits": json.dumps({name: t.get("value") for name, t in computed.items()}, sort_keys=True),
        "updated_at": max(stamps) if stamps else None,
    }
