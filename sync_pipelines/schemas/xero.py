"""What every Xero record shares: .NET JSON dates and GUID ids."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# xero.md §2.2: "/Date(<unix-ms>)/" or "/Date(<unix-ms>+0000)/"; the SDK's own regex.
_DOTNET_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{2,4})?\)/$")
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def parse_xero_date(value: object) -> object:
    """A Xero date as an aware UTC datetime; anything unparseable is returned as it came.

    Returning the original lets the pandera contract reject it with the offending value in the reason.
    """
    if not isinstance(value, str):
        return value
    match = _DOTNET_DATE.match(value)
    if match:
        # Entity timestamps are UTC ms; a non-zero offset only says how to render them locally.
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
