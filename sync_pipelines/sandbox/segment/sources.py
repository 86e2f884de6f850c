"""The workspace's sources, and a message completed as its library sends it and Segment passes it on.

A destination receives what the library put in (type, messageId, timestamp, sentAt, context.library) plus what
Segment's servers add (receivedAt, originalTimestamp, a clock-corrected timestamp, channel, projectId: the source's
id, version 2, integrations), as the partner spec's examples show (https://segment.com/docs/partners/spec/) and
the common fields define (https://segment.com/docs/connections/spec/common/#timestamps):

- originalTimestamp: the message's `timestamp` (when the call was made; a server library lets the caller set it),
  or the moment of emission;
- sentAt: the message's `sentAt` (the device clock when the request left), or the moment of emission;
- receivedAt: Segment's clock on arrival, the moment of emission;
- timestamp: receivedAt - (sentAt - originalTimestamp), so with no `sentAt` given it equals originalTimestamp,
  and a `sentAt` ahead of the real clock shifts it back as Segment's skew correction does.

All four are ISO-8601 in UTC with milliseconds and "Z". A message without messageId gets one in its library's
format (analytics.js "ajs-next-<hex>", analytics-ios an upper-case UUID, analytics-python a UUID4, the HTTP API
"api-<id>") from a random UUID (a seeded history draws its own: seed.py); channel is "client" for analytics.js
(partner spec) and "server" otherwise, the HTTP API's messages carry context.library {"name": "unknown",
"version": "unknown"} (the message in segmentio/action-destinations' README,
https://github.com/segmentio/action-destinations#test-actions-locally); Segment's servers add context.ip to
client-side messages only (common fields, "Context fields automatically collected"). The rest of the context a
library collects (page, userAgent, device, os...) is the caller's to give.

The fifth source, "Xero (sync_pipelines)", is an HTTP API source that owns the sandbox's write key: what our
product sends to the Tracking API (app.py) arrives through it, and goes on to the destination like any source's.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sync_pipelines.sandbox.segment.spec import SINGLE_LIMIT, drop_reason
from sync_pipelines.sandbox.store import dumps

SPEC_VERSION = 2
CLIENT_IP = "127.0.0.1"  # the sandbox's sources all run on this machine
_ID_FIELDS = ("userId", "anonymousId", "groupId", "previousId")  # numbers are sent as strings (segment.md §3)


class Dropped(ValueError):
    """A message Segment would discard, with its reason (the codes of sandbox/segment/spec.py)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Source:
    """A source of the workspace (as the Public API lists it, segment.md §8) and the library sending for it."""

    id: str
    slug: str
    name: str
    catalog: str  # the catalog entry it was created from: metadata.slug in the Public API
    library: dict[str, str]
    channel: str
    client_side: bool
    message_id: Callable[[uuid.UUID], str] = field(repr=False)  # a UUID in the library's messageId format

    def new_message_id(self) -> str:
        return self.message_id(uuid.uuid4())

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "enabled": True,
            "metadata": {"slug": self.catalog},
            "library": self.library,
            "channel": self.channel,
        }


_HTTP_API_LIBRARY = {"name": "unknown", "version": "unknown"}
# The source the sandbox's write key (SandboxSettings.write_key) belongs to: what our product sends.
TRACKING_API_SOURCE = Source("Kq4Ztr7XeV2mNw8bLc5sYd", "xero-sync", "Xero (sync_pipelines)", "http-api",
                             _HTTP_API_LIBRARY, "server", False, lambda value: f"api-{value.hex}")  # fmt: skip
SOURCES = (
    Source("e8TeW6t8xWVp9uNMB5VZ2g", "web", "Web", "javascript", {"name": "analytics.js", "version": "next-1.39.1"},
           "client", True, lambda value: f"ajs-next-{value.hex}"),
    Source("W4j9zpbQ0WD950S8RIrsx5", "ios", "iOS", "ios", {"name": "analytics-ios", "version": "4.1.6"},
           "server", True, lambda value: str(value).upper()),
    Source("6ShqYokJlyTHn6a2gxBkwW", "server", "Server", "python", {"name": "analytics-python", "version": "2.3.4"},
           "server", False, str),
    Source("xU9ROdsd2N0Q6dFHlCtMFW", "point-of-sale", "Point of Sale", "http-api", _HTTP_API_LIBRARY, "server", False,
           lambda value: f"api-{value.hex}"),
    TRACKING_API_SOURCE,
)  # fmt: skip


def find_source(key: str) -> Source | None:
    """A source by slug or id."""
    return next((source for source in SOURCES if key in (source.slug, source.id)), None)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now() -> datetime:
    """Segment's clock, to the millisecond its timestamps keep."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _instant(value: Any, default: datetime) -> datetime:
    """An ISO-8601 time given in a message (no zone: UTC, as analytics-python assumes, segment.md §5)."""
    if value is None:
        return default
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise Dropped("invalid_timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def complete(source: Source, message: Any, received: datetime) -> dict[str, Any]:
    """The message as the destination gets it; raises Dropped for one Segment would discard (segment.md §2-§3)."""
    reason = drop_reason(message)
    if reason is not None:
        raise Dropped(reason)
    try:
        size = len(dumps(message).encode())
    except UnicodeEncodeError:  # a lone surrogate: not text Segment could parse
        raise Dropped("invalid_json") from None
    if size > SINGLE_LIMIT:
        raise Dropped("payload_too_large")
    for name in ("context", "integrations"):
        if not isinstance(message.get(name) or {}, dict):
            raise Dropped(f"invalid_{name}")
    original = _instant(message.get("timestamp"), received)
    sent = _instant(message.get("sentAt"), received)
    context = {**(message.get("context") or {}), "library": source.library}
    if source.client_side:
        context.setdefault("ip", CLIENT_IP)
    ids = {name: str(message[name]) for name in _ID_FIELDS if type(message.get(name)) in (int, float)}
    return {
        **message,
        **ids,
        "messageId": str(message.get("messageId") or source.new_message_id()),
        "channel": source.channel,
        "context": context,
        "integrations": message.get("integrations") or {},
        "originalTimestamp": iso(original),
        "sentAt": iso(sent),
        "receivedAt": iso(received),
        "timestamp": iso(received - (sent - original)),
        "projectId": source.id,
        "version": SPEC_VERSION,
    }
