"""The org's objects and fields (salesforce.md §8), how values are stored in SQLite and rendered as JSON or CSV.

Values are stored in the form the API renders them where that keeps SQL comparisons right: datetimes as
"2024-01-15T10:20:30.000+0000" (fixed width, always UTC, so text order is time order), dates as "2024-01-15",
booleans as 0/1. Datetimes have whole seconds, as in Salesforce, which is why many rows share a SystemModstamp
(salesforce.md §3.2).
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any

from sync_pipelines.sandbox.salesforce import ids

TEXT_TYPES = frozenset({"string", "textarea", "picklist", "email", "phone", "url"})
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})
ID_TYPES = frozenset({"id", "reference"})
_DEFAULT_LENGTH = {"string": 255, "picklist": 255, "email": 80, "phone": 40, "url": 255, "textarea": 255}
_LONG_TEXT = 32_000
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool = False  # must be given on create (salesforce.md §8 "required")
    createable: bool = True
    updateable: bool = True
    reference_to: str | None = None
    external_id: bool = False  # also unique, case-insensitively
    length: int | None = None
    restricted: tuple[str, ...] = ()  # allowed values of a restricted picklist

    @property
    def relationship(self) -> str | None:
        """The parent relationship name SOQL uses (AccountId -> Account, OwnerId -> Owner)."""
        return self.name[:-2] if self.type == "reference" else None

    @property
    def max_length(self) -> int | None:
        return self.length or _DEFAULT_LENGTH.get(self.type)

    @property
    def filterable(self) -> bool:
        """Long text areas can be neither filtered nor sorted in SOQL."""
        return not (self.type == "textarea" and (self.max_length or 0) > 255)

    @property
    def sql_type(self) -> str:
        if self.type in ("boolean", "int"):
            return "INTEGER"
        if self.type in NUMBER_TYPES:
            return "REAL"
        # Text compares case-insensitively in SOQL; ids, dates and datetimes compare exactly.
        return "TEXT COLLATE NOCASE" if self.type in TEXT_TYPES else "TEXT"


def _text(name: str, length: int | None = None, **options: Any) -> Field:
    return Field(name, "string", length=length, **options)


def _reference(name: str, to: str, **options: Any) -> Field:
    return Field(name, "reference", reference_to=to, **options)


def _derived(name: str, type_: str, **options: Any) -> Field:
    """Read-only: computed by the org (formula, roll-up, compound name, system field)."""
    return Field(name, type_, createable=False, updateable=False, **options)


def _address(prefix: str) -> tuple[Field, ...]:
    return (
        Field(f"{prefix}Street", "textarea"),
        _text(f"{prefix}City", 40),
        _text(f"{prefix}State", 80),
        _text(f"{prefix}PostalCode", 20),
        _text(f"{prefix}Country", 80),
    )


XERO_CONTACT_ID = Field("Xero_Contact_ID__c", "string", external_id=True)
# Custom fields an org adds for what accounting knows of a deal and of a customer (README: "Salesforce set-up").
XERO_INVOICE_FIELDS = (
    _text("Xero_Invoice_Number__c", 255),
    Field("Xero_Invoice_URL__c", "url"),
    _text("Xero_Invoice_Status__c", 40),
    Field("Xero_Amount_Due__c", "currency"),
    Field("Xero_Paid_Date__c", "date"),
)
XERO_BALANCE = Field("Xero_Balance__c", "currency")

# salesforce.md §8 (Opportunity): a stage decides Probability, IsClosed, IsWon and the forecast category.
STAGES: dict[str, tuple[int, bool, bool, str]] = {
    "Prospecting": (10, False, False, "Pipeline"),
    "Qualification": (10, False, False, "Pipeline"),
    "Needs Analysis": (20, False, False, "Pipeline"),
    "Value Proposition": (50, False, False, "Pipeline"),
    "Id. Decision Makers": (60, False, False, "Pipeline"),
    "Perception Analysis": (70, False, False, "Pipeline"),
    "Proposal/Price Quote": (75, False, False, "Pipeline"),
    "Negotiation/Review": (90, False, False, "Pipeline"),
    "Closed Won": (100, True, True, "Closed"),
    "Closed Lost": (0, True, False, "Omitted"),
    # An org's own closed stage after Closed Won, as orgs that track collection in the CRM add; the
    # Salesforce -> Xero mapping pays the deal's invoice when a deal reaches it.
    "Paid": (100, True, True, "Closed"),
}
LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")
DEFAULT_LEAD_STATUS = LEAD_STATUSES[0]  # the org default applied when Status is omitted (salesforce.md §8)


@dataclass(frozen=True)
class SObject:
    name: str
    prefix: str  # key prefix (salesforce.md §7)
    own_fields: tuple[Field, ...]
    writable: bool = True  # the API user may create, edit and delete these

    @cached_property
    def fields(self) -> tuple[Field, ...]:
        """Id and IsDeleted first, the audit fields last, as describe lists them."""
        return (
            Field("Id", "id", createable=False, updateable=False),
            _derived("IsDeleted", "boolean"),
            *self.own_fields,
            _derived("CreatedDate", "datetime"),
            _derived("CreatedById", "reference", reference_to="User"),
            _derived("LastModifiedDate", "datetime"),
            _derived("LastModifiedById", "reference", reference_to="User"),
            _derived("SystemModstamp", "datetime"),
        )

    @cached_property
    def _by_lower(self) -> dict[str, Field]:
        return {f.name.lower(): f for f in self.fields}

    @cached_property
    def _relationships(self) -> dict[str, Field]:
        return {f.relationship.lower(): f for f in self.fields if f.relationship}

    @property
    def table(self) -> str:
        return f"sf_{self.name.lower()}"

    @cached_property
    def external_ids(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.external_id)

    def field(self, name: str) -> Field | None:
        """Field names are case-insensitive in SOQL and JSON bodies."""
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> Field | None:
        """The reference field behind a parent relationship name (Account -> AccountId)."""
        return self._relationships.get(name.lower())


OBJECTS: dict[str, SObject] = {
    sobject.name: sobject
    for sobject in (
        SObject(
            "User",
            "005",
            (
                _text("Username", 80),
                _text("FirstName", 40),
                _text("LastName", 80, required=True),
                _derived("Name", "string", length=121),
                Field("Email", "email", required=True),
                _text("Alias", 8),
                _text("Title", 80),
                Field("IsActive", "boolean"),
            ),
            writable=False,
        ),
        SObject(
            "Product2",
            "01t",
            (
                _text("Name", required=True),
                _text("ProductCode"),
                Field("Description", "textarea", length=4000),
                Field("Family", "picklist"),
                Field("IsActive", "boolean"),
            ),
        ),
        SObject(
            "Account",
            "001",
            (
                _text("Name", required=True),
                _text("AccountNumber", 40),
                Field("Type", "picklist"),
                Field("Industry", "picklist"),
                Field("AnnualRevenue", "currency"),
                Field("NumberOfEmployees", "int"),
                Field("Website", "url"),
                Field("Phone", "phone"),
                Field("Description", "textarea", length=_LONG_TEXT),
                _reference("ParentId", "Account"),
                _reference("OwnerId", "User"),
                *_address("Billing"),
                *_address("Shipping"),
                Field("Rating", "picklist"),
                Field("AccountSource", "picklist"),
                XERO_CONTACT_ID,
                XERO_BALANCE,
            ),
        ),
        SObject(
            "Contact",
            "003",
            (
                _text("FirstName", 40),
                _text("LastName", 80, required=True),
                _derived("Name", "string", length=121),
                Field("Email", "email"),
                Field("Phone", "phone"),
                Field("MobilePhone", "phone"),
                _text("Title", 128),
                _text("Department", 80),
                _reference("AccountId", "Account"),
                _reference("OwnerId", "User"),
                Field("LeadSource", "picklist"),
                *_address("Mailing"),
                Field("HasOptedOutOfEmail", "boolean"),
                Field("Birthdate", "date"),
                XERO_CONTACT_ID,
            ),
        ),
        SObject(
            "Lead",
            "00Q",
            (
                _text("FirstName", 40),
                _text("LastName", 80, required=True),
                _derived("Name", "string", length=121),
                _text("Company", required=True),
                Field("Email", "email"),
                Field("Phone", "phone"),
                _text("Title", 128),
                Field("Status", "picklist", restricted=LEAD_STATUSES),
                Field("LeadSource", "picklist"),
                Field("Industry", "picklist"),
                Field("Rating", "picklist"),
                Field("AnnualRevenue", "currency"),
                Field("NumberOfEmployees", "int"),
                _reference("OwnerId", "User"),
                _derived("IsConverted", "boolean"),
                _derived("ConvertedDate", "date"),
                _derived("ConvertedAccountId", "reference", reference_to="Account"),
                _derived("ConvertedContactId", "reference", reference_to="Contact"),
                _derived("ConvertedOpportunityId", "reference", reference_to="Opportunity"),
                Field("IsUnreadByOwner", "boolean"),
                XERO_CONTACT_ID,
            ),
        ),
        SObject(
            "Opportunity",
            "006",
            (
                _text("Name", 120, required=True),
                Field("StageName", "picklist", required=True, restricted=tuple(STAGES)),
                Field("CloseDate", "date", required=True),
                _reference("AccountId", "Account"),
                Field("Amount", "currency"),
                Field("Probability", "percent"),
                _derived("ExpectedRevenue", "currency"),
                _derived("IsClosed", "boolean"),
                _derived("IsWon", "boolean"),
                Field("ForecastCategoryName", "picklist"),
                Field("Type", "picklist"),
                Field("LeadSource", "picklist"),
                _text("NextStep"),
                Field("Description", "textarea", length=_LONG_TEXT),
                _reference("OwnerId", "User"),
                _derived("HasOpportunityLineItem", "boolean"),
                _derived("FiscalYear", "int"),
                _derived("FiscalQuarter", "int"),
                *XERO_INVOICE_FIELDS,
            ),
        ),
        SObject(
            "OpportunityLineItem",
            "00k",
            (
                _reference("OpportunityId", "Opportunity", required=True, updateable=False),
                _reference("Product2Id", "Product2", required=True, updateable=False),
                _derived("ProductCode", "string"),
                _derived("Name", "string", length=376),
                Field("Quantity", "double", required=True),
                Field("UnitPrice", "currency"),
                Field("TotalPrice", "currency"),
                _derived("ListPrice", "currency"),
                Field("Discount", "percent"),
                _derived("Subtotal", "currency"),
                Field("ServiceDate", "date"),
                _text("Description"),
                Field("SortOrder", "int"),
            ),
        ),
    )
}
_OBJECTS_LOWER = {name.lower(): sobject for name, sobject in OBJECTS.items()}
PREFIXES = {sobject.prefix: sobject for sobject in OBJECTS.values()}


def sobject(name: str) -> SObject | None:
    """Object names are case-insensitive in SOQL and URLs."""
    return _OBJECTS_LOWER.get(name.lower())


# -- time and value formats -------------------------------------------------------------------


def datetime_text(ms: int) -> str:
    """JSON datetimes: "2024-01-15T10:20:30.000+0000" (salesforce.md §2), whole seconds."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def parse_datetime(value: str) -> datetime:
    """An ISO-8601 datetime with "Z", "+hh:mm" or "+hhmm" (naive means UTC), as an aware UTC datetime."""
    if not _ISO_DATETIME.match(value):
        raise ValueError(f"not a datetime: {value}")
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    elif re.search(r"[+-]\d{4}$", value):
        value = value[:-2] + ":" + value[-2:]
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def stored_datetime(moment: datetime) -> str:
    """The stored (and JSON) form of a datetime; fractions of a second are dropped like Salesforce does."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def csv_datetime(stored: str) -> str:
    """Bulk CSV renders datetimes in UTC with a "Z": "2024-01-15T10:20:30.000Z"."""
    return stored[:-5] + "Z"


def to_storage(field: Field, value: Any) -> Any:
    """A JSON input value as stored; ValueError says why it does not fit the field's type."""
    if value is None:
        return None
    kind = field.type
    if kind in TEXT_TYPES:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"Cannot deserialize instance of string from {_json_kind(value)} value {value}")
        return str(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return int(value.lower() == "true")
        raise ValueError(f"Cannot deserialize instance of boolean from {_json_kind(value)} value {value}")
    if kind in NUMBER_TYPES:
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or number != number:
            raise ValueError(f"Cannot deserialize instance of {kind} from {_json_kind(value)} value {value}")
        return int(number) if kind == "int" else number
    if kind == "date":
        if isinstance(value, str) and len(value) == 10:
            try:
                return date.fromisoformat(value).isoformat()
            except ValueError:
                pass
        raise ValueError(f"Cannot deserialize instance of date from {_json_kind(value)} value {value}")
    if kind == "datetime":
        if isinstance(value, str):
            try:
                return stored_datetime(parse_datetime(value))
            except ValueError:
                pass
        raise ValueError(f"Cannot deserialize instance of datetime from {_json_kind(value)} value {value}")
    # id / reference
    normalized = ids.normalize(value) if isinstance(value, str) else None
    if normalized is None:
        raise ValueError(f"invalid id: {value}")
    return normalized


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, int):
        return "VALUE_NUMBER_INT"
    if isinstance(value, float):
        return "VALUE_NUMBER_FLOAT"
    if isinstance(value, str):
        return "VALUE_STRING"
    return "START_OBJECT" if isinstance(value, dict) else "START_ARRAY"


def to_json(field: Field, value: Any) -> Any:
    """A stored value as the REST API renders it: booleans, JSON numbers, strings, null (salesforce.md §2)."""
    if value is None:
        return None
    if field.type == "boolean":
        return bool(value)
    if field.type == "int":
        return int(value)
    if field.type in NUMBER_TYPES:
        return float(value)
    return value


def to_csv(field: Field, value: Any) -> str:
    """A stored value as Bulk CSV renders it: empty for null, true/false, datetimes with Z (salesforce.md §6)."""
    if value is None:
        return ""
    if field.type == "boolean":
        return "true" if value else "false"
    if field.type == "int":
        return str(int(value))
    if field.type == "datetime":
        return csv_datetime(value)
    return str(value)
