"""What a write-only vendor client reports back: per message id, so the outbox can settle each one."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

# (outcomes known since the last call, message ids about to go out): records both durably, in that order.
Journal = Callable[["DeliveryReport", Sequence[str]], None]


@dataclasses.dataclass
class DeliveryReport:
    """Outcome per message id; a client never raises for a delivery failure, it reports it here.

    With a journal (the outbox's write-ahead log), a client calls `sending` before each API call: the outcomes
    known so far are settled and the messages about to go are recorded as in flight, so a crash at any instant
    leaves at most the writes of one API call unsettled. `settle` records what is left once the client is done.
    """

    delivered: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # worth retrying later
    rejected: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # would be refused again
    # message id -> the id the target gave the record, for targets that assign ids (e.g. a new Xero ContactID)
    target_ids: dict[str, str] = dataclasses.field(default_factory=dict)
    # message id -> (record id, version) of each record the write left as it now is at the target, so that the
    # change reading back from the target is known for the write's own echo and not sent back
    versions: dict[str, list[tuple[str, str]]] = dataclasses.field(default_factory=dict)
    journal: Journal | None = dataclasses.field(default=None, repr=False, compare=False)
    _settled: tuple[int, int, int] = dataclasses.field(default=(0, 0, 0), repr=False, compare=False)

    def sending(self, message_ids: Sequence[str]) -> None:
        """Settle what is known, then record these messages as in flight: call right before the API call."""
        if self.journal is not None:
            self.journal(self._unsettled(), list(message_ids))

    def settle(self) -> None:
        """Record the outcomes not recorded yet."""
        if self.journal is not None:
            self.journal(self._unsettled(), [])

    def _unsettled(self) -> DeliveryReport:
        delivered, failed, rejected = self._settled
        self._settled = (len(self.delivered), len(self.failed), len(self.rejected))
        fresh = self.delivered[delivered:]
        return DeliveryReport(
            delivered=fresh,
            failed=self.failed[failed:],
            rejected=self.rejected[rejected:],
            target_ids={m: self.target_ids[m] for m in fresh if m in self.target_ids},
            versions={m: self.versions[m] for m in fresh if m in self.versions},
        )


@dataclasses.dataclass
class Deliveries:
    """One delivery's reports, one per destination system, each journaled when a journal is given.

    `resending` names messages that went out before without a recorded outcome (a crash, a timeout): a target
    whose own dedupe cannot be trusted looks for them at the vendor before sending them again.
    """

    resending: frozenset[str] = frozenset()
    journal_for: Callable[[str], Journal | None] = dataclasses.field(default=lambda system: None, repr=False)
    reports: dict[str, DeliveryReport] = dataclasses.field(default_factory=dict)

    def report(self, system: str) -> DeliveryReport:
        if system not in self.reports:
            self.reports[system] = DeliveryReport(journal=self.journal_for(system))
        return self.reports[system]

    def settle(self) -> None:
        for report in self.reports.values():
            report.settle()
