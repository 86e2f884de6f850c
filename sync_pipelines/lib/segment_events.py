"""How staged record changes become Segment calls: the mapping is data, the rules live here once.

A record's first sighting is its "created" event; a move into a status with an event of its own (paid,
voided, ...) is that event; any other change to a tracked field is the "updated" event. Each message id is
derived from the record and the version that caused it, so a replay can never double an event
(segment.md §4: Segment dedupes on messageId only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from sync_pipelines.lib.staging import OutboxMessage, content_hash

# segment.md §2: a messageId may be at most 100 characters.
MAX_MESSAGE_ID = 100


def _json_value(value: object) -> object:
    if isinstance(value, pd.Timestamp | datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT:
        return None
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class TrackMapping:
    """Declarative Segment mapping for one entity (segment.md §6: "Object Action" names, snake_case props)."""

    object_name: str  # "Invoice" -> "Invoice Created", "Invoice Paid", ...
    key: str  # the contract column that identifies the record
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

    def track_messages(self, changed: pd.DataFrame, previous: pd.DataFrame) -> list[OutboxMessage]:
        """One track call per real state change of each changed row."""
        before = previous.set_index(self.key).to_dict("index") if not previous.empty else {}
        slug = self.object_name.lower().replace(" ", "_")
        messages = []
        for row in changed.to_dict("records"):
            record_id = str(row[self.key])
            old = before.get(record_id)
            status = row.get(self.status_column)
            actions = []
            if old is None:
                actions.append("Created")
            if status in self.status_events and (old is None or old.get(self.status_column) != status):
                actions.append(self.status_events[status])
            elif old is not None:
                actions.append("Updated")
            version = content_hash({p: _json_value(row[c]) for p, c in self.properties.items()})[:16]
            for action in actions:
                # Created happens once per record; every other action once per version of the record.
                suffix = "" if action == "Created" else f":{version}"
                message_id = f"xero:{slug}:{record_id}:{action.lower()}{suffix}"[:MAX_MESSAGE_ID]
                messages.append(
                    OutboxMessage(
                        message_id=message_id,
                        record_id=record_id,
                        kind="track",
                        event=self.event_name(action),
                        payload=self._track(row, action, message_id),
                    )
                )
        return messages

    def _track(self, row: dict, action: str, message_id: str) -> dict:
        properties = {name: _json_value(row[column]) for name, column in self.properties.items()}
        if self.revenue_column and action in self.status_events.values():
            properties["revenue"] = _json_value(row[self.revenue_column])
        if self.currency_column:
            properties["currency"] = _json_value(row[self.currency_column])
        return {
            "type": "track",
            "messageId": message_id,
            "userId": str(row[self.user_id]),
            "event": self.event_name(action),
            "properties": properties,
            "timestamp": _json_value(row[self.timestamp]),
        }

    def identities(self, changed: pd.DataFrame) -> dict[str, dict]:
        """The latest traits of every user a changed row mentions."""
        if not self.traits or changed.empty:
            return {}
        latest = changed.sort_values(self.timestamp).drop_duplicates(self.user_id, keep="last")
        return {
            str(row[self.user_id]): {
                trait: _json_value(row[column]) for trait, column in self.traits.items() if row[column] is not None
            }
            for row in latest.to_dict("records")
        }

    def identify_messages(self, identities: Mapping[str, dict]) -> list[OutboxMessage]:
        """One identify per user whose traits changed; the traits' hash makes the id."""
        messages = []
        for user_id, traits in identities.items():
            message_id = f"xero:identify:{user_id}:{content_hash(traits)[:16]}"[:MAX_MESSAGE_ID]
            messages.append(
                OutboxMessage(
                    message_id=message_id,
                    record_id=user_id,
                    kind="identify",
                    event=None,
                    payload={"type": "identify", "messageId": message_id, "userId": user_id, "traits": traits},
                )
            )
        return messages
