"""Segment as a target: staged record changes become track and identify calls.

The mapping is data (`TrackMapping`); the rules live here once.

A record's first sighting is its "created" event; a move into a status with an event of its own (paid,
voided, ...) is that event; any other change to a tracked field is the "updated" event. Each message id is
derived from the record and the version that caused it, so a replay can never double an event
(segment.md §4: Segment dedupes on messageId only).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from sync_pipelines.lib import staging
from sync_pipelines.lib.entity_sync import DeliveryReport, Totals
from sync_pipelines.lib.staging import OutboxMessage, content_hash, row_versions
from sync_pipelines.vendors.segment.resource import SegmentResource

# segment.md §2: a messageId may be at most 100 characters.
MAX_MESSAGE_ID = 100


def json_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns as JSON values: times as ISO-8601 UTC with milliseconds (segment.md §3), missing as None."""
    columns = {}
    for name, column in frame.items():
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            column = column.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
        columns[name] = column.astype(object).where(column.notna(), None)
    return pd.DataFrame(columns, index=frame.index)


@dataclass(frozen=True)
class TrackMapping:
    """Declarative Segment mapping for one entity (segment.md §6: "Object Action" names, snake_case props)."""

    object_name: str  # "Invoice" -> "Invoice Created", "Invoice Paid", ...
    user_id: str  # the contract column holding the Segment userId
    timestamp: str  # the contract column saying when the change happened
    properties: Mapping[str, str]  # Segment property -> contract column
    status_column: str = "status"
    status_events: Mapping[str, str] = field(default_factory=dict)  # status -> action, e.g. PAID -> "Paid"
    revenue_column: str | None = None  # sent as the reserved `revenue` property on these status events
    currency_column: str | None = None
    amount_property: str | None = None  # the property reconciliation totals per currency, e.g. "total"
    traits: Mapping[str, str] = field(default_factory=dict)  # identify trait -> contract column

    def event_name(self, action: str) -> str:
        return f"{self.object_name} {action}"

    @property
    def _money_columns(self) -> list[str]:
        return [c for c in (self.revenue_column, self.currency_column) if c]

    def _properties(self, rows: pd.DataFrame) -> pd.DataFrame:
        ready = json_ready(rows)
        return pd.DataFrame({name: ready[column] for name, column in self.properties.items()}, index=rows.index)

    def track_messages(
        self, changed: pd.DataFrame, previous: pd.DataFrame, *, key: str, source: str
    ) -> list[OutboxMessage]:
        """One track call per real state change: first sight, a status with an event, or changed properties."""
        if changed.empty:
            return []
        properties = self._properties(changed)
        versions = row_versions(properties)
        before: dict[str, tuple[object, str]] = {}
        if not previous.empty:
            old = previous.set_index(key, drop=False)
            before = dict(
                zip(old.index, zip(old[self.status_column], row_versions(self._properties(old)), strict=True),
                    strict=True)
            )  # fmt: skip
        context = json_ready(
            changed[list(dict.fromkeys([self.user_id, self.timestamp, self.status_column, *self._money_columns]))]
        ).to_dict("records")
        slug = self.object_name.lower().replace(" ", "_")
        messages = []
        rows = zip(changed[key].astype(str), properties.to_dict("records"), versions, context, strict=True)
        for record_id, props, version, row in rows:
            status = row[self.status_column]
            old_status, old_version = before.get(record_id, (None, None))
            actions = []
            if old_version is None:
                actions.append("Created")
            if status in self.status_events and status != old_status:
                actions.append(self.status_events[status])
            elif old_version is not None and version != old_version:
                actions.append("Updated")
            for action in actions:
                # Created happens once per record; every other action once per version of the record.
                suffix = "" if action == "Created" else f":{version}"
                message_id = f"{source}:{slug}:{record_id}:{action.lower()}{suffix}"[:MAX_MESSAGE_ID]
                event_props = dict(props)
                if self.revenue_column and action in self.status_events.values():
                    event_props["revenue"] = row[self.revenue_column]
                if self.currency_column:
                    event_props["currency"] = row[self.currency_column]
                payload = {
                    "type": "track",
                    "messageId": message_id,
                    "userId": str(row[self.user_id]),
                    "event": self.event_name(action),
                    "properties": event_props,
                    "timestamp": row[self.timestamp],
                }
                messages.append(OutboxMessage(message_id, record_id, "track", self.event_name(action), payload))
        return messages

    def identities(self, changed: pd.DataFrame) -> dict[str, dict]:
        """The latest traits of every user a changed row mentions."""
        if not self.traits or changed.empty:
            return {}
        latest = changed.sort_values(self.timestamp).drop_duplicates(self.user_id, keep="last")
        traits = json_ready(latest[list(self.traits.values())])
        return {
            str(user_id): {trait: row[column] for trait, column in self.traits.items() if row[column] is not None}
            for user_id, row in zip(latest[self.user_id], traits.to_dict("records"), strict=True)
        }

    def identify_messages(self, identities: Mapping[str, dict], *, source: str) -> list[OutboxMessage]:
        """One identify per user whose traits changed; the traits' hash makes the id."""
        messages = []
        for user_id, traits in identities.items():
            message_id = f"{source}:identify:{user_id}:{content_hash(traits)[:16]}"[:MAX_MESSAGE_ID]
            messages.append(
                OutboxMessage(
                    message_id,
                    user_id,
                    "identify",
                    None,
                    {"type": "identify", "messageId": message_id, "userId": user_id, "traits": traits},
                )  # fmt: skip
            )
        return messages


@dataclass(frozen=True)
class SegmentTarget:
    """A Segment source, written through its Tracking API (segment.md §1-§4)."""

    mapping: TrackMapping
    system: str = "segment"

    @property
    def totals(self) -> Totals | None:
        mapping = self.mapping
        if mapping.amount_property is None or mapping.currency_column is None:
            return None
        return Totals(
            f"$.properties.{mapping.amount_property}",
            mapping.properties[mapping.amount_property],
            mapping.currency_column,
        )

    def stage_changes(
        self, conn: duckdb.DuckDBPyConnection, *, source: str, key: str, changed: pd.DataFrame, previous: pd.DataFrame
    ) -> list[OutboxMessage]:
        """Track calls for the changes, and an identify for each user whose traits differ from the last sent."""
        identities = staging.changed_identities(conn, source, self.mapping.identities(changed))
        staging.remember_identities(conn, source, identities)
        # The Segment userId of a record's owner is its id in the source (segment.md §3: a stable id of ours).
        staging.link_ids(
            conn, entity="users", source_system=source, target_system=self.system,
            pairs=[(user_id, user_id) for user_id in identities],
        )  # fmt: skip
        return self.mapping.identify_messages(identities, source=source) + self.mapping.track_messages(
            changed, previous, key=key, source=source
        )

    def deliver(self, segment: SegmentResource, payloads: list[dict]) -> DeliveryReport:
        return segment.get_client().send(payloads)

    def figures(self, segment: SegmentResource) -> dict[str, int | float]:
        stats = segment.get_client().stats
        return {"api_calls": stats.calls, "api_retries": stats.retries, "bytes_sent": stats.bytes_sent}
