"""What differs between vendors' webhooks; each vendor package describes its own (vendors/<vendor>/webhooks.py)."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sync_pipelines.webhooks.inbox import InboxEvent


@dataclass(frozen=True)
class Vendor:
    """What differs between vendors' webhooks."""

    name: str  # the inbox's source
    path: str
    # (secret, raw body, headers) -> whether the delivery is the vendor's: signed with the secret, in constant time
    # (Salesforce, which does not sign, names the configured organisation); ValueError if not the vendor's format.
    signed: Callable[[str, bytes, Mapping[str, str]], bool]
    # The raw body's events for the inbox (none for a probe or a ping); ValueError (pydantic's ValidationError is
    # one) if not the vendor's format.
    events: Callable[[bytes], list[InboxEvent]]
    # Larger than the vendor ever sends (its settings say why): refused with 413 before it is read in full.
    max_body_bytes: int
    # What a stored delivery is answered with, beside the 200 (Salesforce's SOAP acknowledgement).
    ack: bytes = b""
    ack_media_type: str | None = None
