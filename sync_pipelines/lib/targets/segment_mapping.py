"""What each entity becomes in Segment, as data (`sync_pipelines/mappings/xero_to_segment.yaml`)."""

import string
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import Field

from sync_pipelines.lib.mapping import StrictModel


class CreatedBy(StrictModel):
    """The first-sight action read from a column, e.g. a payment is "Received" or "Made" by its type."""

    by: str
    actions: dict[str, str]
    default: str = "Created"


class TrackMapping(StrictModel):
    object: str = Field(min_length=1)
    user_id: str
    anonymous_id: str | None = None
    timestamp: str
    created: str | CreatedBy = "Created"
    status_column: str = "status"
    status_events: dict[str, str] = {}
    properties: dict[str, str]
    revenue: str | None = None
    currency: str | None = None
    reconcile_amount: str | None = None

    def columns(self) -> Iterable[tuple[str, str]]:
        yield "user_id", self.user_id
        if self.anonymous_id:
            yield "anonymous_id", self.anonymous_id
        yield "timestamp", self.timestamp
        yield "status_column", self.status_column
        if isinstance(self.created, CreatedBy):
            yield "created.by", self.created.by
        yield from ((f"properties.{name}", column) for name, column in self.properties.items())
        for name in ("revenue", "currency"):
            if getattr(self, name):
                yield name, getattr(self, name)

    def event(self, action: str) -> str:
        return f"{self.object} {action}"

    def actions(self) -> set[str]:
        """Every action this mapping can send: first sight, the status events, and Updated."""
        created = (
            {self.created} if isinstance(self.created, str) else {*self.created.actions.values(), self.created.default}
        )
        return created | set(self.status_events.values()) | {"Updated"}

    def created_action(self, row: Mapping[str, Any]) -> str:
        if isinstance(self.created, str):
            return self.created
        return self.created.actions.get(row[self.created.by], self.created.default)


class IdentifyMapping(StrictModel):
    user_id: str
    traits: dict[str, str]

    def columns(self) -> Iterable[tuple[str, str]]:
        yield "user_id", self.user_id
        yield from ((f"traits.{name}", column) for name, column in self.traits.items())


class GroupMapping(IdentifyMapping):
    when: str | None = None  # a boolean column: only these rows are groups
    group_id: str

    def columns(self) -> Iterable[tuple[str, str]]:
        yield from super().columns()
        yield "group_id", self.group_id
        if self.when:
            yield "when", self.when


class NotifyMapping(StrictModel):
    actions: list[str] = Field(min_length=1)  # track actions, e.g. ["Created"] (YAML reads a bare `on` as true)
    text: str

    def columns(self) -> Iterable[tuple[str, str]]:
        yield from (("text", name) for _, name, _, _ in string.Formatter().parse(self.text) if name)


class EntityMapping(StrictModel):
    """What one entity becomes in Segment."""

    track: TrackMapping | None = None
    identify: IdentifyMapping | None = None
    group: GroupMapping | None = None
    notify: NotifyMapping | None = None

    def check(self, columns: set[str], contract: str) -> list[str]:
        """Problems as "<part>.<field>: why", empty when every referenced column exists."""
        problems = []
        for part in ("track", "identify", "group", "notify"):
            section = getattr(self, part)
            for where, column in section.columns() if section else ():
                if column not in columns:
                    problems.append(f"{part}.{where}: {column!r} is not a column of {contract}")
        if self.notify and not self.track:
            problems.append("notify: needs a track section whose actions it follows")
        elif self.notify:
            unknown = sorted(set(self.notify.actions) - self.track.actions())
            if unknown:
                problems.append(f"notify.actions: {unknown} are not actions of the track section")
        if self.track and self.track.reconcile_amount and self.track.reconcile_amount not in self.track.properties:
            problems.append(f"track.reconcile_amount: {self.track.reconcile_amount!r} is not one of the properties")
        if not (self.track or self.identify or self.group):
            problems.append("needs at least one of track, identify, group")
        return problems
