"""Write-ahead delivery of the outbox: each message is owned by one run, recorded before it goes, settled at once.

A run's process claims a chunk of pending messages; before each API call its target marks that call's messages
in flight, and as soon as the vendor answers their outcomes are settled (delivered, failed or rejected). A crash
at any instant leaves at most one call's messages in flight. The next run takes back the claims of a process that
is gone and hands the messages that went out before to the target as `resending`, so a target whose own dedupe
cannot be trusted (Xero past its Idempotency-Key window) finds them at the vendor before writing them again.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import dagster as dg
import psutil

from sync_pipelines.lib import staging
from sync_pipelines.lib.staging import DRY_RUN_TAG, StagingResource
from sync_pipelines.vendors.delivery import Deliveries, DeliveryReport

if TYPE_CHECKING:
    from sync_pipelines.lib.deliveries import Target

# Messages claimed at a time; the target's client splits them into API-sized batches.
DELIVERY_CHUNK = 5_000
# A claim not renewed for this long is taken over even when its process cannot be checked (another machine).
# Every settled API call renews it, and no single call (retries and a 60 s Retry-After included) comes near it.
CLAIM_LEASE = timedelta(minutes=10)
# How often a run that has drained its own claims looks again while another live run still delivers.
OTHERS_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Claimant:
    """Who sends: a run, and the process doing it, named so that another process can tell whether it lives."""

    run_id: str
    owner: str  # host:pid:process start time

    @classmethod
    def this_process(cls, run_id: str) -> Claimant:
        pid = os.getpid()
        return cls(run_id, f"{socket.gethostname()}:{pid}:{psutil.Process(pid).create_time():.3f}")

    def sees_dead(self, run_id: str, owner: str, renewed: datetime, instance: dg.DagsterInstance) -> bool:
        """Whether another claim's process is gone: its lease ran out, its process (on this machine) exited, or
        it is this process on behalf of a run that has finished."""
        if staging.utcnow() - renewed > CLAIM_LEASE:
            return True
        host, pid, started = owner.rsplit(":", 2)
        if host != socket.gethostname():
            return False
        if owner == self.owner:
            run = instance.get_run_by_id(run_id)
            return run_id != self.run_id and (run is None or run.is_finished)
        try:
            process = psutil.Process(int(pid))
            return process.status() == psutil.STATUS_ZOMBIE or f"{process.create_time():.3f}" != started
        except psutil.NoSuchProcess:
            return True


class Journal:
    """Records one delivery's writes in the outbox as the target makes them (see DeliveryReport.sending)."""

    def __init__(self, staging_db: Any, *, flow: str, entity: str, source: str, claimant: Claimant) -> None:
        self._staging_db, self._claimant = staging_db, claimant
        self._flow, self._entity, self._source = flow, entity, source
        self.record_of: dict[str, str | None] = {}
        self.totals: dict[str, DeliveryReport] = {}

    def for_system(self, system: str) -> Callable[[DeliveryReport, Sequence[str]], None]:
        return partial(self, system)

    def __call__(self, system: str, settled: DeliveryReport, sending: Sequence[str]) -> None:
        if not (settled.delivered or settled.failed or settled.rejected or sending):
            return
        where = {"flow": self._flow, "entity": self._entity, "target": system, "run_id": self._claimant.run_id}
        record_of = self.record_of
        with self._staging_db.connect() as conn:
            conn.execute("BEGIN TRANSACTION")
            staging.mark_delivered(conn, delivered=[(m, record_of[m]) for m in settled.delivered], **where)
            staging.link_ids(
                conn, entity=self._entity, source_system=self._source, target_system=system,
                pairs=[(record_of[m], target_id) for m, target_id in settled.target_ids.items()],
            )  # fmt: skip
            staging.remember_own_writes(
                conn, system=system, source=self._source, flow=self._flow,
                writes=[written for versions in settled.versions.values() for written in versions],
            )  # fmt: skip
            for failures, retryable in ((settled.failed, True), (settled.rejected, False)):
                staging.dead_letter(
                    conn, failures=[(m, record_of[m], error) for m, error in failures], retryable=retryable, **where
                )
            staging.mark_in_flight(
                conn, owner=self._claimant.owner, flow=self._flow, entity=self._entity, message_ids=sending
            )
            conn.execute("COMMIT")
        total = self.totals.setdefault(system, DeliveryReport())
        total.delivered += settled.delivered
        total.failed += settled.failed
        total.rejected += settled.rejected


class Rehearsal:
    """Stands in for a target in a dry run: every write succeeds, and a record the target would make is named by
    the target's `rehearsed_id` (a Xero contact "preview:<its ContactNumber>"), so that what a run derives after it
    (a lead matched to the contact a person made, a deal billed to its account's contact) is what the real run
    will derive."""

    def __init__(self, target: Target):
        self.target, self.system = target, target.system

    def deliver(self, resources: SimpleNamespace, payloads: list[dict], deliveries: Deliveries) -> None:
        report = deliveries.report(self.system)
        named = getattr(self.target, "rehearsed_id", lambda payload: None)
        for payload in payloads:
            report.delivered.append(payload["messageId"])
            if (made := named(payload)) is not None:
                report.target_ids[payload["messageId"]] = made

    def figures(self, resources: SimpleNamespace) -> dict[str, int | float]:
        return {}


def deliver_outbox(
    context: dg.AssetExecutionContext,
    resources: SimpleNamespace,
    *,
    flow: str,
    entity: str,
    source: str,
    target: Target,
) -> dict:
    """Send one entity's pending messages (and its due dead letters) to the target; figures for the metadata.

    What fails waits in the dead-letter queue with its error; the rest of the outbox still goes. Ids the target
    assigned (a created record's) are linked to the source ids in `xrefs` with the write's outcome. Messages
    another live run is sending are left to it, and waited for, so the reconciliation that follows counts them
    settled.
    """
    if context.run.tags.get(DRY_RUN_TAG) == "true":
        # A preview (in a scratch copy of the store) sends nothing, whichever asset asks: it rehearses.
        target = Rehearsal(target)
    staging_db = resources.staging_db
    claimant = Claimant.this_process(context.run.run_id)
    journal = Journal(staging_db, flow=flow, entity=entity, source=source, claimant=claimant)
    with staging_db.connect() as conn:
        replayed = staging.requeue_dead_letters(conn, flow=flow, entity=entity)
    taken_back, waited_for = 0, set()
    while True:
        taken_back += _take_back_dead_claims(context, staging_db, claimant, flow=flow, entity=entity)
        _drain(resources, journal, claimant, flow=flow, entity=entity, target=target)
        with staging_db.connect() as conn:
            others = [(run_id, count) for run_id, owner, _, count in staging.claims(conn, flow=flow, entity=entity)]
        if not others:
            break
        if not waited_for.issuperset(run_id for run_id, _ in others):
            context.log.info(f"waiting for other runs still delivering {flow}/{entity}: {others}")
            waited_for.update(run_id for run_id, _ in others)
        time.sleep(OTHERS_POLL_SECONDS)
    for system, report in journal.totals.items():
        if report.failed or report.rejected:
            context.log.warning(f"{system}: {len(report.failed)} failed and {len(report.rejected)} rejected messages")
    return {
        "dagster/row_count": sum(len(r.delivered) for r in journal.totals.values()),
        "failed": sum(len(r.failed) for r in journal.totals.values()),
        "rejected": sum(len(r.rejected) for r in journal.totals.values()),
        "replayed_from_dead_letters": replayed,
        "taken_back_from_dead_runs": taken_back,
        **target.figures(resources),
    }


def _drain(
    resources: SimpleNamespace, journal: Journal, claimant: Claimant, *, flow: str, entity: str, target: Target
) -> None:
    """Claim and send chunks until none is pending; whatever this process leaves unsettled goes back."""
    staging_db = resources.staging_db
    try:
        while True:
            with staging_db.connect() as conn:
                batch = staging.claim_pending(
                    conn, flow=flow, entity=entity, run_id=claimant.run_id, owner=claimant.owner, limit=DELIVERY_CHUNK
                )
            if not batch:
                return
            journal.record_of.update((m.message_id, m.record_id) for m in batch)
            deliveries = Deliveries(
                resending=frozenset(m.message_id for m in batch if m.sends), journal_for=journal.for_system
            )
            try:
                target.deliver(resources, [m.payload for m in batch], deliveries)
            finally:
                deliveries.settle()
    finally:
        with staging_db.connect() as conn:
            staging.release_claims(conn, owner=claimant.owner, flow=flow)


def _take_back_dead_claims(
    context: dg.AssetExecutionContext, staging_db: StagingResource, claimant: Claimant, *, flow: str, entity: str
) -> int:
    """Return the unsettled messages of runs whose process is gone to the queue; how many."""
    taken = 0
    with staging_db.connect() as conn:
        for run_id, owner, renewed, _ in staging.claims(conn, flow=flow, entity=entity):
            if run_id != claimant.run_id and claimant.sees_dead(run_id, owner, renewed, context.instance):
                count = staging.release_claims(conn, owner=owner, flow=flow)
                context.log.warning(f"took back {count} {flow}/{entity} messages claimed by run {run_id}, now dead")
                taken += count
    return taken
