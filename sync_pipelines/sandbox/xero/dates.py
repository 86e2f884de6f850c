"""Date formats the Xero API speaks, so every sandbox module renders and parses them the same way."""

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# xero.md §2.2: the SDK's regex for .NET JSON dates.
_NET_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{2,4})?\)/$")
_DAY_MS = 86_400_000


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def net(ms: int, offset: bool = True) -> str:
    """Entity timestamps carry +0000, the envelope DateTimeUTC does not (xero.md §2.2)."""
    return f"/Date({ms}+0000)/" if offset else f"/Date({ms})/"


def parse_net(value: str) -> int:
    """Milliseconds since the epoch from "/Date(ms±hhmm)/", applying any non-zero offset."""
    match = _NET_DATE.match(value)
    if not match:
        raise ValueError(f"not a .NET date: {value!r}")
    ms = int(match.group(1))
    zone = match.group(2)
    if zone and int(zone[1:]):
        hours, minutes = int(zone[1:3]), int(zone[3:5] or 0)
        sign = 1 if zone[0] == "+" else -1
        ms -= sign * (hours * 3600 + minutes * 60) * 1000
    return ms


def day_start(ms: int) -> int:
    return ms - ms % _DAY_MS


def add_days(ms: int, days: int) -> int:
    return ms + days * _DAY_MS


def parse_date_input(value: object) -> int:
    """Calendar dates on writes: "YYYY-MM-DD", "/Date(ms)/" or an ISO datetime (xero.md §2.1)."""
    if not isinstance(value, str):
        raise ValueError(f"not a date: {value!r}")
    if value.startswith("/Date("):
        return day_start(parse_net(value))
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    midnight = datetime.combine(parsed.date(), datetime.min.time(), UTC)
    return int(midnight.timestamp() * 1000)


def parse_http_timestamp(value: str) -> int:
    """If-Modified-Since: ISO with or without offset (naive = UTC), or an RFC 1123 HTTP-date (xero.md §3.2)."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        parsed = parsedate_to_datetime(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def datetime_literal(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """The where-clause DateTime(y, m, d[, h, mi, s]) constructor, read as UTC."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


def date_string(ms: int) -> str:
    """DateString / DueDateString helpers: "2018-10-20T00:00:00"."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def utc_string(ms: int) -> str:
    """UpdatedDateUTCString: "2018-11-02T16:31:30Z" (xero.md §2.2)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def connection_string(ms: int) -> str:
    """/connections timestamps: no zone, 7 fractional digits (xero.md §1.6), as in xero-identity.yaml's own example,
    though its schema says format date-time, which wants a zone."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0"


def expiry_string(ms: int) -> str:
    """The "token expired at MM/DD/YYYY HH:MM:SS" detail of a 401 (xero.md §1.9)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%m/%d/%Y %H:%M:%S")


def event_date_string(ms: int) -> str:
    """Webhook eventDateUtc: milliseconds and no zone suffix, "2024-06-21T01:15:39.902" (xero.md §6)."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


class DateTexts:
    """net() and date_string() of day starts, and utc_string(), for many records at once: each day's texts are
    made once, as a million seeded records fall on a few hundred days and strftime costs more than the rest."""

    def __init__(self) -> None:
        self._days: dict[int, tuple[str, str]] = {}

    def day(self, ms: int) -> tuple[str, str]:
        """(net(ms), date_string(ms)) of a day's start."""
        texts = self._days.get(ms)
        if texts is None:
            texts = self._days[ms] = (net(ms), date_string(ms))
        return texts

    def utc_string(self, ms: int) -> str:
        seconds = ms % _DAY_MS // 1000
        day = self.day(ms - ms % _DAY_MS)[1][:10]
        return f"{day}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"
