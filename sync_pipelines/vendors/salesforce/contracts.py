"""The contracts of the Salesforce records the Salesforce -> Xero flow reads (salesforce.md §7, §8)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from sync_pipelines.vendors.xero.contracts.common import UTC_TIMESTAMP, optional_text, within_range

# salesforce.md §7: 15 or 18 case-sensitive alphanumerics; the API returns the 18-character form.
SALESFORCE_ID_PATTERN = r"^[a-zA-Z0-9]{18}$"


def parse_salesforce_datetime(value: object) -> object:
    """ "2024-01-15T10:20:30.000+0000" (REST) as an aware datetime; anything unparseable (or out of range) as it
    came."""
    if not isinstance(value, str):
        return value
    try:
        return within_range(datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z"), value)
    except ValueError:
        return value


def _chars(most: int, least: int = 0) -> dict:
    """A text field's length as Salesforce bounds it (its object reference; the sandbox's schema.py)."""
    return {"str_length": {"min_value": least, "max_value": most}}


class SalesforceRecord(pa.DataFrameModel):
    """What every synced object shares: its id, the soft-delete flag and the change stamp."""

    id: Series[pd.StringDtype] = pa.Field(str_matches=SALESFORCE_ID_PATTERN, unique=True, description="Id")
    is_deleted: Series[pd.BooleanDtype] = pa.Field(description="IsDeleted: in the recycle bin (read by queryAll)")
    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="SystemModstamp: the incremental cursor")

    class Config:
        coerce = True
        strict = True


class SalesforceParty(SalesforceRecord):
    """A record that becomes a Xero contact: its link to it, the status it gives it, and a phone."""

    xero_status: Series[pd.StringDtype] = pa.Field(
        isin=["ACTIVE", "ARCHIVED"],
        description="ARCHIVED for a deleted record: Xero contacts are archived, not deleted",
    )
    xero_contact_id: Series[pd.StringDtype] = pa.Field(nullable=True, **_chars(255), description="Xero_Contact_ID__c")
    phone: Series[pd.StringDtype] = pa.Field(nullable=True, **_chars(40))


class SalesforceAddressed(SalesforceParty):
    """A party with one postal address (an account's billing, a contact's mailing address)."""

    street: Series[pd.StringDtype] = pa.Field(
        nullable=True, **_chars(255), description="<Kind>Street", metadata={"free_text": True}
    )
    city: Series[pd.StringDtype] = pa.Field(nullable=True, **_chars(40), description="<Kind>City")
    state: Series[pd.StringDtype] = pa.Field(nullable=True, **_chars(80), description="<Kind>State")
    postal_code: Series[pd.StringDtype] = pa.Field(nullable=True, **_chars(20), description="<Kind>PostalCode")
    country: Series[pd.StringDtype] = pa.Field(nullable=True, **_chars(80), description="<Kind>Country")


class SalesforceAccount(SalesforceAddressed):
    """An organisation, addressed by its billing address; it becomes a Xero contact of its own."""

    name: Series[pd.StringDtype] = pa.Field(**_chars(255, least=1), description="Name")
    website: Series[pd.StringDtype] = pa.Field(nullable=True, **_chars(255))


ACCOUNT_FIELDS = ("Name", "Phone", "Website", "BillingStreet", "BillingCity", "BillingState", "BillingPostalCode",
                  "BillingCountry", "Xero_Contact_ID__c")  # fmt: skip


def _addressed(record: dict, kind: str) -> dict:
    """The SalesforceAddressed columns, from the `kind` address fields (Billing, Mailing)."""
    return {
        **_party(record),
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
    return {
        "id": record.get("Id"),
        "is_deleted": record.get("IsDeleted"),
        "updated_at": parse_salesforce_datetime(record.get("SystemModstamp")),
    }


def _party(record: dict) -> dict:
    return {
        **_common(record),
        "xero_status": "ARCHIVED" if record.get("IsDeleted") is True else "ACTIVE",
        "xero_contact_id": optional_text(record.get("Xero_Contact_ID__c")),
        "phone": optional_text(record.get("Phone")),
    }


def flatten_account(record: dict) -> dict:
    """A queried Account as a contract row; values are left as they came for the contract to judge."""
    return {
        **_addressed(record, "Billing"),
        "name": record.get("Name"),
        "website": optional_text(record.get("Website")),
    }


class SalesforceContact(SalesforceAddressed):
    """A person, addressed by their mailing address; it becomes a Xero contact of its own, found again by email."""

    first_name: Series[pd.StringDtype] = pa.Field(nullable=True, **_chars(40))
    last_name: Series[pd.StringDtype] = pa.Field(**_chars(80, least=1), description="LastName (required)")
    full_name: Series[pd.StringDtype] = pa.Field(**_chars(121, least=1), description="Name: First Last")
    email: Series[pd.StringDtype] = pa.Field(nullable=True, **_chars(80))
    account_id: Series[pd.StringDtype] = pa.Field(nullable=True, str_matches=SALESFORCE_ID_PATTERN)


CONTACT_FIELDS = ("FirstName", "LastName", "Name", "Email", "Phone", "MailingStreet", "MailingCity", "MailingState",
                  "MailingPostalCode", "MailingCountry", "AccountId", "Xero_Contact_ID__c")  # fmt: skip


def flatten_contact(record: dict) -> dict:
    """A queried Contact as a contract row; values are left as they came for the contract to judge."""
    return {
        **_addressed(record, "Mailing"),
        "first_name": optional_text(record.get("FirstName")),
        "last_name": record.get("LastName"),
        "full_name": record.get("Name"),
        "email": optional_text(record.get("Email")),
        "account_id": optional_text(record.get("AccountId")),
    }


class SalesforceLead(SalesforceParty):
    """A prospect: a Xero contact of its own until converted, when its account and contact take over."""

    first_name: Series[pd.StringDtype] = pa.Field(nullable=True, **_chars(40))
    last_name: Series[pd.StringDtype] = pa.Field(**_chars(80, least=1), description="LastName (required)")
    full_name: Series[pd.StringDtype] = pa.Field(**_chars(121, least=1), description="Name: First Last")
    company: Series[pd.StringDtype] = pa.Field(nullable=True, **_chars(255), description="Company (required on create)")
    email: Series[pd.StringDtype] = pa.Field(nullable=True, **_chars(80))
    lead_status: Series[pd.StringDtype] = pa.Field(nullable=True, description="Status")
    is_converted: Series[pd.BooleanDtype] = pa.Field(description="IsConverted")
    converted_contact_id: Series[pd.StringDtype] = pa.Field(
        nullable=True, str_matches=SALESFORCE_ID_PATTERN, description="ConvertedContactId: the person it became"
    )
    is_prospect: Series[pd.BooleanDtype] = pa.Field(description="Live, unconverted and not closed as lost")


LEAD_FIELDS = ("FirstName", "LastName", "Name", "Company", "Email", "Phone", "Status", "IsConverted",
               "ConvertedContactId", "Xero_Contact_ID__c")  # fmt: skip
# salesforce.md §8: the closed statuses of the default Lead Status picklist.
_LEAD_CLOSED_STATUSES = frozenset({"Closed - Converted", "Closed - Not Converted"})


def flatten_lead(record: dict) -> dict:
    """A queried Lead as a contract row; values are left as they came for the contract to judge."""
    live = record.get("IsDeleted") is not True and record.get("IsConverted") is not True
    return {
        **_party(record),
        "first_name": optional_text(record.get("FirstName")),
        "last_name": record.get("LastName"),
        "full_name": record.get("Name"),
        "company": optional_text(record.get("Company")),
        "email": optional_text(record.get("Email")),
        "lead_status": optional_text(record.get("Status")),
        "is_converted": record.get("IsConverted"),
        "converted_contact_id": optional_text(record.get("ConvertedContactId")),
        "is_prospect": live and record.get("Status") not in _LEAD_CLOSED_STATUSES,
    }


class SalesforceOpportunity(SalesforceRecord):
    """A deal: won, it is invoiced in Xero to its account's contact; at the paid stage, that invoice is paid."""

    name: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1})
    stage: Series[pd.StringDtype] = pa.Field(description="StageName")
    is_won: Series[pd.BooleanDtype] = pa.Field(description="IsWon")
    amount: Series[float] = pa.Field(nullable=True, ge=0, description="Amount")
    close_date: Series[pd.StringDtype] = pa.Field(str_matches=r"^\d{4}-\d{2}-\d{2}$", description="CloseDate")
    account_id: Series[pd.StringDtype] = pa.Field(nullable=True, str_matches=SALESFORCE_ID_PATTERN)
    description: Series[pd.StringDtype] = pa.Field(nullable=True, metadata={"free_text": True})

    @pa.dataframe_check(description="a won deal has an account to invoice")
    def won_deal_has_an_account(cls, df: pd.DataFrame) -> Series[bool]:
        return ~(df["is_won"].fillna(False) & ~df["is_deleted"].fillna(False)) | df["account_id"].notna()


OPPORTUNITY_FIELDS = ("Name", "StageName", "IsWon", "Amount", "CloseDate", "AccountId", "Description")


def flatten_opportunity(record: dict) -> dict:
    """A queried Opportunity as a contract row; values are left as they came for the contract to judge."""
    return {
        **_common(record),
        "name": record.get("Name"),
        "stage": record.get("StageName"),
        "is_won": record.get("IsWon"),
        "amount": record.get("Amount"),
        "close_date": record.get("CloseDate"),
        "account_id": optional_text(record.get("AccountId")),
        "description": optional_text(record.get("Description")),
    }


class SalesforceOpportunityLineItem(SalesforceRecord):
    """A product line of a deal: it becomes a line of the deal's Xero invoice."""

    opportunity_id: Series[pd.StringDtype] = pa.Field(str_matches=SALESFORCE_ID_PATTERN)
    name: Series[pd.StringDtype] = pa.Field(str_length={"min_value": 1}, description="Name: deal and product")
    product_code: Series[pd.StringDtype] = pa.Field(nullable=True)
    description: Series[pd.StringDtype] = pa.Field(nullable=True, metadata={"free_text": True})
    quantity: Series[float] = pa.Field(gt=0)
    unit_price: Series[float] = pa.Field(ge=0)
    discount: Series[float] = pa.Field(nullable=True, ge=0, le=100, description="Discount, percent")
    total_price: Series[float] = pa.Field(ge=0, description="TotalPrice: after the discount")
    sort_order: Series[pd.Int64Dtype] = pa.Field(nullable=True)


LINE_ITEM_FIELDS = ("OpportunityId", "Name", "ProductCode", "Description", "Quantity", "UnitPrice", "Discount",
                    "TotalPrice", "SortOrder")  # fmt: skip


def flatten_line_item(record: dict) -> dict:
    """A queried OpportunityLineItem as a contract row; values are left as they came for the contract to judge."""
    return {
        **_common(record),
        "opportunity_id": record.get("OpportunityId"),
        "name": record.get("Name"),
        "product_code": optional_text(record.get("ProductCode")),
        "description": optional_text(record.get("Description")),
        "quantity": record.get("Quantity"),
        "unit_price": record.get("UnitPrice"),
        "discount": record.get("Discount"),
        "total_price": record.get("TotalPrice"),
        "sort_order": record.get("SortOrder"),
    }
