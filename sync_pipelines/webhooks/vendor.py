"""What differs between vendors' webhooks; each vendor package describes its own (vendors/<vendor>/webhooks.py)."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sync_pipelines.webhooks.inbox import InboxEvent


@dataclass(frozen=True)
class Vendor:
    """What differs between vendors' webhooks."""

    name: str  # the inbox's source
    path: str
    # (secret, raw body, headers) -> whether the vendor signed this body; constant time.
    signed: Callable[[str, bytes, Mapping[str, str]], bool]
    # The raw body's events for the inbox (none for a probe or a ping); ValidationError if not the vendor's format.
    events: Callable[[bytes], list[InboxEvent]]
    # Larger than the vendor ever sends (its settings say why): refused with 413 before it is read in full.
    max_body_bytes: int
