"""The contract of a Xero contact (customer and/or supplier) as the sync relies on it."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from sync_pipelines.vendors.xero.contracts.common import (
    CURRENCY_PATTERN,
    UTC_TIMESTAMP,
    UUID_PATTERN,
    listed,
    optional_text,
    parse_xero_date,
)

# xero.md §2.5
CONTACT_STATUSES = ["ACTIVE", "ARCHIVED", "GDPRREQUEST"]
# Xero validates addresses on entry (xero.md §2.5: no umlauts); this only catches a value that is no address.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"
# Address columns <- Xero Address fields (spec schema Address).
_ADDRESS_FIELDS = {
    "address_line1": "AddressLine1",
    "city": "City",
    "region": "Region",
    "postal_code": "PostalCode",
    "country": "Country",
}


class XeroContact(pa.DataFrameModel):
    """One row per contact at its latest UpdatedDateUTC: who a customer or supplier is."""

    contact_id: Series[pd.StringDtype] = pa.Field(str_matches=UUID_PATTERN, unique=True, description="Xero ContactID")
    contact_number: Series[pd.StringDtype] = pa.Field(
        nullable=True, description="ContactNumber: an external system's id"
    )
    status: Series[pd.StringDtype] = pa.Field(isin=CONTACT_STATUSES, description="ContactStatus")
    name: Series[pd.StringDtype] = pa.Field(description="Name: the person's or organisation's full name")
    first_name: Series[pd.StringDtype] = pa.Field(nullable=True, description="FirstName of the contact person")
    last_name: Series[pd.StringDtype] = pa.Field(nullable=True, description="LastName of the contact person")
    email: Series[pd.StringDtype] = pa.Field(nullable=True, str_matches=EMAIL_PATTERN, description="EmailAddress")
    phone: Series[pd.StringDtype] = pa.Field(nullable=True, description="DEFAULT phone, else MOBILE: '+1 415 555-0100'")
    address_line1: Series[pd.StringDtype] = pa.Field(nullable=True, description="STREET address, else POBOX")
    city: Series[pd.StringDtype] = pa.Field(nullable=True)
    region: Series[pd.StringDtype] = pa.Field(nullable=True)
    postal_code: Series[pd.StringDtype] = pa.Field(nullable=True)
    country: Series[pd.StringDtype] = pa.Field(nullable=True)
    tax_number: Series[pd.StringDtype] = pa.Field(nullable=True, description="TaxNumber: ABN, GST, VAT or Tax ID")
    company_number: Series[pd.StringDtype] = pa.Field(nullable=True, description="CompanyNumber: company registration")
    website: Series[pd.StringDtype] = pa.Field(nullable=True)
    default_currency: Series[pd.StringDtype] = pa.Field(
        nullable=True, str_matches=CURRENCY_PATTERN, description="ISO 4217"
    )
    is_customer: Series[pd.BooleanDtype] = pa.Field(description="IsCustomer: has sales invoices (derived by Xero)")
    is_supplier: Series[pd.BooleanDtype] = pa.Field(description="IsSupplier: has bills (derived by Xero)")
    is_organisation: Series[pd.BooleanDtype] = pa.Field(
        description="Name is more than the contact person's 'FirstName LastName'"
    )
    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="UpdatedDateUTC: the incremental cursor")

    class Config:
        coerce = True
        strict = True


def flatten_contact(record: dict) -> dict:
    """A raw Contacts element as a contract row; values are left as they came for the contract to judge.

    IsCustomer/IsSupplier come only with the full (paged) shape (xero.md §2.5): a summary-shaped contact lacks
    them and is rejected rather than identified with its addresses and phones missing.
    """
    name, first_name, last_name = (optional_text(record.get(f)) for f in ("Name", "FirstName", "LastName"))
    return {
        "contact_id": record.get("ContactID"),
        "contact_number": optional_text(record.get("ContactNumber")),
        "status": record.get("ContactStatus"),
        "name": name,
        "first_name": first_name,
        "last_name": last_name,
        "email": optional_text(record.get("EmailAddress")),
        "phone": _phone(listed(record, "Phones")),
        **_address(listed(record, "Addresses")),
        "tax_number": optional_text(record.get("TaxNumber")),
        "company_number": optional_text(record.get("CompanyNumber")),
        "website": optional_text(record.get("Website")),
        "default_currency": optional_text(record.get("DefaultCurrency")),
        "is_customer": record.get("IsCustomer"),
        "is_supplier": record.get("IsSupplier"),
        "is_organisation": not _is_person(name, first_name, last_name),
        "updated_at": parse_xero_date(record.get("UpdatedDateUTC")),
    }


def _by_type(entries: list[dict], type_field: str) -> dict[str, dict]:
    return {e[type_field]: e for e in entries if isinstance(e.get(type_field), str)}


def _phone(phones: list[dict]) -> object:
    """The DEFAULT phone, else the MOBILE one, as '+<country> <area> <number>' from its non-empty parts."""
    by_type = _by_type(phones, "PhoneType")
    for phone_type in ("DEFAULT", "MOBILE"):  # spec schema Phone: PhoneType
        phone = by_type.get(phone_type, {})
        number = optional_text(phone.get("PhoneNumber"))
        if number is None:
            continue
        if not isinstance(number, str):
            return number  # for the contract to refuse, rather than written as text
        country = optional_text(phone.get("PhoneCountryCode"))
        parts = [f"+{str(country).lstrip('+')}" if country else None, optional_text(phone.get("PhoneAreaCode")), number]
        return " ".join(str(part) for part in parts if part)
    return None


def _address(addresses: list[dict]) -> dict[str, object]:
    """The STREET address, else the POBOX one; Xero lists both types even when one is blank (spec examples)."""
    by_type = _by_type(addresses, "AddressType")
    for address_type in ("STREET", "POBOX"):  # spec schema Address: AddressType
        fields = {column: optional_text(by_type.get(address_type, {}).get(f)) for column, f in _ADDRESS_FIELDS.items()}
        if any(value is not None for value in fields.values()):
            return fields
    return dict.fromkeys(_ADDRESS_FIELDS)


def _is_person(name: object, first_name: object, last_name: object) -> bool:
    """Whether Name is just the contact person's 'FirstName LastName' (ignoring case and spacing)."""
    person = " ".join(str(part) for part in (first_name, last_name) if part)
    return bool(person) and isinstance(name, str) and name.casefold().split() == person.casefold().split()
