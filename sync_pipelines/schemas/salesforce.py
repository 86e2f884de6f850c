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


class SalesforceAccount(SalesforceRecord):
    """An organisation; it becomes a Xero contact of its own."""

    name: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, description="Name")
    phone: Series[pd.StringDtype] = pa.Field(nullable=True)
    website: Series[pd.StringDtype] = pa.Field(nullable=True)
    street: Series[pd.StringDtype] = pa.Field(nullable=True, description="BillingStreet")
    city: Series[pd.StringDtype] = pa.Field(nullable=True, description="BillingCity")
    state: Series[pd.StringDtype] = pa.Field(nullable=True, description="BillingState")
    postal_code: Series[pd.StringDtype] = pa.Field(nullable=True, description="BillingPostalCode")
    country: Series[pd.StringDtype] = pa.Field(nullable=True, description="BillingCountry")


ACCOUNT_FIELDS = ("Name", "Phone", "Website", "BillingStreet", "BillingCity", "BillingState", "BillingPostalCode",
                  "BillingCountry", "Xero_Contact_ID__c")  # fmt: skip


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
        "name": record.get("Name"),
        "phone": optional_text(record.get("Phone")),
        "website": optional_text(record.get("Website")),
        "street": optional_text(record.get("BillingStreet")),
        "city": optional_text(record.get("BillingCity")),
        "state": optional_text(record.get("BillingState")),
        "postal_code": optional_text(record.get("BillingPostalCode")),
        "country": optional_text(record.get("BillingCountry")),
    }


class SalesforceContact(SalesforceRecord):
    """A person, usually at an account; it becomes a Xero contact of its own, found again by email."""

    first_name: Series[pd.StringDtype] = pa.Field(nullable=True)
    last_name: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, description="LastName (required)")
    full_name: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, description="Name: First Last")
    email: Series[pd.StringDtype] = pa.Field(nullable=True)
    phone: Series[pd.StringDtype] = pa.Field(nullable=True)
    street: Series[pd.StringDtype] = pa.Field(nullable=True, description="MailingStreet")
    city: Series[pd.StringDtype] = pa.Field(nullable=True, description="MailingCity")
    state: Series[pd.StringDtype] = pa.Field(nullable=True, description="MailingState")
    postal_code: Series[pd.StringDtype] = pa.Field(nullable=True, description="MailingPostalCode")
    country: Series[pd.StringDtype] = pa.Field(nullable=True, description="MailingCountry")
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
        "email": optional_text(record.get("Email")),
        "phone": optional_text(record.get("Phone")),
        "street": optional_text(record.get("MailingStreet")),
        "city": optional_text(record.get("MailingCity")),
        "state": optional_text(record.get("MailingState")),
        "postal_code": optional_text(record.get("MailingPostalCode")),
        "country": optional_text(record.get("MailingCountry")),
        "account_id": optional_text(record.get("AccountId")),
    }
