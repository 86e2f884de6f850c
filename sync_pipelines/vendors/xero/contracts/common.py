"""What every Xero contract shares: .NET JSON dates, GUID ids, currencies, optional text, documents with totals
(and the website domains contacts are matched by)."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

# xero.md §2.2: "/Date(<unix-ms>)/" or "/Date(<unix-ms>+0000)/"; the SDK's own regex.
_DOTNET_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{2,4})?\)/$")
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UTC_TIMESTAMP = pd.DatetimeTZDtype(unit="ns", tz="UTC")
CURRENCY_PATTERN = r"^[A-Z]{3}$"  # ISO 4217 (spec schema CurrencyCode)
# What a staged (nanosecond) timestamp holds, to the microsecond, as datetimes: compared once per date read.
_EARLIEST = pd.Timestamp.min.ceil("us").tz_localize(UTC).to_pydatetime()
_LATEST = pd.Timestamp.max.floor("us").tz_localize(UTC).to_pydatetime()
# Text columns are pandas strings, not objects: a batch where an optional column is all missing still stages as
# VARCHAR (DuckDB types an all-None object column NULL, and a later value could not be inserted into it).


def parse_xero_date(value: object) -> object:
    """A Xero date as an aware UTC datetime; anything unparseable (or out of range) is returned as it came.

    Returning the original lets the pandera contract reject it with the offending value in the reason.
    """
    if not isinstance(value, str):
        return value
    # Invoices share their dates (Date, DueDate): most are parsed once. Only what a date can be is kept.
    return _parse_date_cached(value) if len(value) <= _DATE_LENGTH else _parse_xero_text(value)


def _parse_xero_text(value: str) -> object:
    match = _DOTNET_DATE.match(value)
    if match:
        # Entity timestamps are UTC ms; a non-zero offset only says how to render them locally.
        return from_epoch(int(match.group(1)), value, per_second=1000)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    return within_range(parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC), value)


_DATE_LENGTH = len("/Date(-62135596800000+0000)/")
_parse_date_cached = functools.lru_cache(maxsize=4096)(_parse_xero_text)


def from_epoch(count: int, value: object, per_second: int = 1) -> object:
    """`count` seconds (or 1/per_second fractions) after the epoch as an aware UTC datetime; `value` as it came
    when no staged column could hold that moment."""
    try:
        return within_range(datetime.fromtimestamp(count / per_second, UTC), value)
    except (OverflowError, OSError, ValueError):  # e.g. /Date(99999999999999999)/: beyond any calendar
        return value


def within_range(moment: datetime, value: object) -> object:
    """`moment` when a staged (nanosecond) timestamp can hold it, 1677-09-21 to 2262-04-11; else `value` as it
    came, for the contract to reject instead of a conversion failing mid-batch."""
    return moment if _EARLIEST <= moment <= _LATEST else value


def nested(record: dict, field: str) -> dict:
    """The object a field holds ({} when absent); any other value means the record is not one this contract
    reads, which the staged step quarantines with this error as its reason."""
    value = record.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{field} is {type(value).__name__}, not an object")
    return value


def listed(record: dict, field: str) -> list[dict]:
    """The objects a list field holds ([] when absent); anything else is refused, as by `nested`."""
    value = record.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{field} is {type(value).__name__}, not a list")
    for position, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"{field}[{position}] is {type(item).__name__}, not an object")
    return value


def optional_text(value: object) -> object:
    """None for Xero's rendering of an unset text field ("", spec examples); anything else as it came."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def website_domain(website: object) -> str | None:
    """The registrable host of a website as people write it: "https://www.Acme.com/about" -> "acme.com"."""
    text = optional_text(website)
    if not isinstance(text, str):
        return None
    host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
    host = re.sub(r"^www\d*\.", "", host.lower()).strip(".")
    return host if "." in host else None


def account_codes(lines: list[dict]) -> str | None:
    """The distinct AccountCodes of a record's LineItems, sorted and comma-joined (xero.md §2.4 LineItem)."""
    codes = {str(line["AccountCode"]) for line in lines if line.get("AccountCode")}
    return ",".join(sorted(codes)) or None


class XeroDocument(pa.DataFrameModel):
    """What invoices, bills and bank transactions share: priced line items and a change timestamp."""

    sub_total: Series[float] = pa.Field(ge=0)
    # Xero taxes each line: a discount line on a taxed account against untaxed items (an order of zero-rated goods
    # with a coupon) nets below zero, and Xero keeps such a document; only its total is never negative.
    total_tax: Series[float]
    total: Series[float] = pa.Field(ge=0)
    line_item_count: Series[int] = pa.Field(ge=0)
    account_codes: Series[pd.StringDtype] = pa.Field(
        nullable=True, description="Distinct line AccountCodes, sorted, comma-joined, e.g. '404,429'"
    )
    updated_at: Series[UTC_TIMESTAMP] = pa.Field(description="UpdatedDateUTC: the incremental cursor")

    @pa.dataframe_check(description="Total = SubTotal + TotalTax (to the cent)")
    def total_adds_up(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["sub_total"] + df["total_tax"] - df["total"]).abs() < 0.01

    class Config:
        coerce = True
        strict = True


def document_totals(record: dict) -> dict:
    """The XeroDocument columns of a raw invoice or bank transaction, as they came."""
    lines = listed(record, "LineItems")
    return {
        "sub_total": record.get("SubTotal"),
        "total_tax": record.get("TotalTax"),
        "total": record.get("Total"),
        "line_item_count": len(lines),
        "account_codes": account_codes(lines),
        "updated_at": parse_xero_date(record.get("UpdatedDateUTC")),
    }
