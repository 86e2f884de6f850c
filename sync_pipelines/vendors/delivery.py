"""What a write-only vendor client reports back: per message id, so the outbox can settle each one."""

import dataclasses


@dataclasses.dataclass
class DeliveryReport:
    """Outcome per message id; a client never raises for a delivery failure, it reports it here."""

    delivered: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # worth retrying later
    rejected: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # would be refused again
    # message id -> the id the target gave the record, for targets that assign ids (e.g. a new Xero ContactID)
    target_ids: dict[str, str] = dataclasses.field(default_factory=dict)
