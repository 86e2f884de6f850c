"""The contracts of the Salesforce records the Salesforce -> Xero flow reads (salesforce.md §7, §8)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from sync_pipelines.schemas.xero import UTC_TIMESTAMP, optional_text

# salesforce.md §7: 15 or 18 case-sensitive alphanumerics; the API returns the 18-character form.
SALESFORCE_ID_PATTERN = r"^[a-zA-Z0-9]{18}$"


def parse_salesforce_datetime(value: object) -> object:
    """ "2024-01-15T10:20:30.000+0000" (REST) as an aware datetime; anything unparseable as it came."""
    if not isinstance(value, str):
        return value
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        return value


class SalesforceRecord(pa.DataFrameModel):
    """What every synced object shares: its id, the soft-delete flag, the change stamp and our Xero link."""

    id: Series[pd.StringDtype] = pa.Field(str_matches=SALESFORCE_ID_PATTERN, unique=True, description="Id")
    is_deleted: Series[pd.BooleanDtype] = pa.Field(description="IsDeleted: in the recycle bin (read by queryAll)")
    xero_status: Series[pd.StringDtype] = pa.Field(
        isin=["ACTIVE", "ARCHIVED"],
        description="ARCHIVED for a deleted record: Xero contacts are archived, not deleted",
    )
    xero_contact_id: Series[pd.StringDtype] = pa.Field(nullable=True, description="Xero_Contact_ID__c")
    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="SystemModstamp: the incremental cursor")

    class Config:
        coerce = True
        strict = True


class SalesforceAddressed(SalesforceRecord):
    """A record with a phone and one postal address (an account's billing, a contact's mailing address)."""

    phone: Series[pd.StringDtype] = pa.Field(nullable=True)
    street: Series[pd.StringDtype] = pa.Field(nullable=True, description="<Kind>Street")
    city: Series[pd.StringDtype] = pa.Field(nullable=True, description="<Kind>City")
    state: Series[pd.StringDtype] = pa.Field(nullable=True, description="<Kind>State")
    postal_code: Series[pd.StringDtype] = pa.Field(nullable=True, description="<Kind>PostalCode")
    country: Series[pd.StringDtype] = pa.Field(nullable=True, description="<Kind>Country")


class SalesforceAccount(SalesforceAddressed):
    """An organisation, addressed by its billing address; it becomes a Xero contact of its own."""

    name: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, description="Name")
    website: Series[pd.StringDtype] = pa.Field(nullable=True)


ACCOUNT_FIELDS = ("Name", "Phone", "Website", "BillingStreet", "BillingCity", "BillingState", "BillingPostalCode",
                  "BillingCountry", "Xero_Contact_ID__c")  # fmt: skip


_ADDRESS_PARTS = {
    "street": "Street",
    "city": "City",
    "state": "State",
    "postal_code": "PostalCode",
    "country": "Country",
}


def _addressed(record: dict, kind: str) -> dict:
    """The SalesforceAddressed columns, from the `kind` address fields (Billing, Mailing)."""
    return {
        "phone": optional_text(record.get("Phone")),
        **{column: optional_text(record.get(f"{kind}{field}")) for column, field in _ADDRESS_PARTS.items()},
    }


_ADDRESS_PARTS = {
    "street": "Street",
    "city": "City",
    "state": "State",
    "postal_code": "PostalCode",
    "country": "Country",
}


def _common(record: dict) -> dict:
    deleted = record.get("IsDeleted")
    return {
        "id": record.get("Id"),
        "is_deleted": deleted,
        "xero_status": "ARCHIVED" if deleted is True else "ACTIVE",
        "xero_contact_id": optional_text(record.get("Xero_Contact_ID__c")),
        "updated_at": parse_salesforce_datetime(record.get("SystemModstamp")),
    }


def flatten_account(record: dict) -> dict:
    """A queried Account as a contract row; values are left as they came for the contract to judge."""
    return {
        **_common(record),
        **_addressed(record, "Billing"),
        "name": record.get("Name"),
        "website": optional_text(record.get("Website")),
    }


class SalesforceContact(SalesforceAddressed):
    """A person, addressed by their mailing address; it becomes a Xero contact of its own, found again by email."""

    first_name: Series[pd.StringDtype] = pa.Field(nullable=True)
    last_name: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, description="LastName (required)")
    full_name: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, description="Name: First Last")
    email: Series[pd.StringDtype] = pa.Field(nullable=True)
    account_id: Series[pd.StringDtype] = pa.Field(nullable=True, str_matches=SALESFORCE_ID_PATTERN)


CONTACT_FIELDS = ("FirstName", "LastName", "Name", "Email", "Phone", "MailingStreet", "MailingCity", "MailingState",
                  "MailingPostalCode", "MailingCountry", "AccountId", "Xero_Contact_ID__c")  # fmt: skip


def flatten_contact(record: dict) -> dict:
    """A queried Contact as a contract row; values are left as they came for the contract to judge."""
    return {
        **_common(record),
        "first_name": optional_text(record.get("FirstName")),
        "last_name": record.get("LastName"),
        "full_name": record.get("Name"),
        **_addressed(record, "Mailing"),
        "email": optional_text(record.get("Email")),
        "account_id": optional_text(record.get("AccountId")),
    }
