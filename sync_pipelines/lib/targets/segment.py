"""Segment as a target: staged record changes become track, identify and group calls (and team notifications).

What each entity becomes is data (`EntityMapping`, loaded from YAML); the rules live here once.

A record's first sighting is its "created" event; a move into a status with an event of its own (paid,
voided, ...) is that event; any other change to a tracked property is the "updated" event. Identify and group
calls go out only when the traits differ from the last ones queued. Each message id is derived from the record
and the version that caused it, so a replay can never double a call (segment.md §4: Segment dedupes on
messageId only).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import dagster as dg
import duckdb
import pandas as pd

from sync_pipelines.lib import staging
from sync_pipelines.lib.deliveries import Changes, Totals
from sync_pipelines.lib.staging import OutboxMessage, row_versions
from sync_pipelines.lib.targets.segment_mapping import EntityMapping, NotifyMapping, TrackMapping
from sync_pipelines.vendors.delivery import Deliveries
from sync_pipelines.vendors.notifier.resource import NotifierResource
from sync_pipelines.vendors.segment import settings
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


def _message_id(*parts: str) -> str:
    return ":".join(parts)[:MAX_MESSAGE_ID]


def track_messages(
    track: TrackMapping,
    changed: pd.DataFrame,
    previous: pd.DataFrame,
    *,
    key: str,
    source: str,
    user_ids: Mapping[str, str],
) -> list[OutboxMessage]:
    """One track call per real state change: first sight, a status with an event, or changed properties.

    The user is the row's `user_id`, or the Segment userId it was linked from (`user_ids`). `changed` rows carry
    their staged `content_hash`, which covers UpdatedDateUTC: a change back to earlier values is still a new
    version, so its message id is new too.
    """
    if changed.empty:
        return []

    def properties_of(rows: pd.DataFrame) -> pd.DataFrame:
        ready = json_ready(rows)
        return pd.DataFrame({name: ready[column] for name, column in track.properties.items()}, index=rows.index)

    properties = properties_of(changed)
    versions = row_versions(properties)
    before: dict[str, tuple[object, str]] = {}
    if not previous.empty:
        old = previous.set_index(key, drop=False)
        before = dict(
            zip(old.index, zip(old[track.status_column], row_versions(properties_of(old)), strict=True), strict=True)
        )
    context_columns = [column for part, column in track.columns() if not part.startswith("properties.")]
    context = json_ready(changed[list(dict.fromkeys(context_columns))]).to_dict("records")
    slug = track.object.lower().replace(" ", "_")
    messages = []
    rows = zip(
        changed[key].astype(str), properties.to_dict("records"), versions, changed["content_hash"], context,
        strict=True,
    )  # fmt: skip
    for record_id, props, version, row_version, row in rows:
        status = row[track.status_column]
        old_status, old_version = before.get(record_id, (None, None))
        actions = []
        if old_version is None:
            actions.append(track.created_action(row))
        if status in track.status_events and status != old_status:
            actions.append(track.status_events[status])
        elif old_version is not None and version != old_version:
            actions.append("Updated")
        for action in actions:
            # First sight happens once per record; every other action once per version of the record.
            first_sight = old_version is None and action == actions[0]
            suffix = "" if first_sight else f":{row_version}"
            message_id = _message_id(source, slug, record_id, action.lower() + suffix)
            event_props = dict(props)
            if track.revenue and action in track.status_events.values():
                event_props["revenue"] = row[track.revenue]
            if track.currency:
                event_props["currency"] = row[track.currency]
            payload = {"type": "track", "messageId": message_id, "event": track.event(action)}
            # segment.md §3: a call needs userId or anonymousId; a record with no person (a bank fee) is anonymous.
            if row[track.user_id] is not None or not track.anonymous_id:
                payload["userId"] = user_ids.get(str(row[track.user_id]), str(row[track.user_id]))
            else:
                payload["anonymousId"] = str(row[track.anonymous_id])
            payload.update(properties=event_props, timestamp=row[track.timestamp])
            messages.append(OutboxMessage(message_id, record_id, "track", track.event(action), payload))
    return messages


def latest_traits(
    rows: pd.DataFrame, id_column: str, traits: Mapping[str, str], order_by: str | None = None
) -> dict[str, dict]:
    """The latest traits per id among the rows; traits with no value are left out, not sent as null."""
    if rows.empty:
        return {}
    latest = (rows.sort_values(order_by) if order_by else rows).drop_duplicates(id_column, keep="last")
    latest = latest[latest[id_column].notna()]
    ready = json_ready(latest[list(dict.fromkeys(traits.values()))])
    return {
        str(owner): {trait: row[column] for trait, column in traits.items() if row[column] not in (None, "")}
        for owner, row in zip(latest[id_column], ready.to_dict("records"), strict=True)
    }


def identify_messages(
    identities: Mapping[str, dict], versions: Mapping[str, int], *, namespace: str
) -> list[OutboxMessage]:
    """One identify per user whose traits changed; the identity's version makes the id."""
    messages = []
    for user_id, traits in identities.items():
        message_id = _message_id(namespace, "identify", user_id, f"v{versions[user_id]}")
        payload = {"type": "identify", "messageId": message_id, "userId": user_id, "traits": traits}
        messages.append(OutboxMessage(message_id, user_id, "identify", None, payload))
    return messages


def group_messages(
    groups: Mapping[str, dict], versions: Mapping[str, int], members: Mapping[str, str], *, namespace: str
) -> list[OutboxMessage]:
    """One group call per organisation whose traits changed (segment.md §3: group needs groupId and a user)."""
    messages = []
    for group_id, traits in groups.items():
        message_id = _message_id(namespace, "group", group_id, f"v{versions[group_id]}")
        payload = {
            "type": "group",
            "messageId": message_id,
            "userId": members[group_id],
            "groupId": group_id,
            "traits": traits,
        }
        messages.append(OutboxMessage(message_id, group_id, "group", None, payload))
    return messages


def notify_messages(
    notify: NotifyMapping,
    track: TrackMapping,
    tracks: list[OutboxMessage],
    rows: pd.DataFrame,
    key: str,
    *,
    after: datetime | None = None,
    version: str = "updated_at",
) -> list[OutboxMessage]:
    """A team notification for each track call whose action the mapping notifies on, of a record changed (its
    `version` column) `after` the entity was first synced: the history a first sync or a backfill brings is not
    news, as a Zapier trigger fires only for what arrives once it is on (a new Xero organisation would otherwise
    post a message for every bill it ever had)."""
    by_id = {str(row[key]): row for row in rows.to_dict("records")}
    events = {track.event(action) for action in notify.actions}
    messages = []
    for call in tracks:
        row = by_id[call.record_id]
        if call.event not in events or not _changed_after(row.get(version), after):
            continue
        values = {name: _readable(value) for name, value in row.items()}
        message_id = f"{call.message_id}:notify"
        payload = {"type": "notify", "messageId": message_id, "event": call.event, "text": notify.text.format(**values)}
        messages.append(OutboxMessage(message_id, call.record_id, "notify", call.event, payload))
    return messages


def _changed_after(changed: object, after: datetime | None) -> bool:
    if after is None:
        return True
    if changed is None or pd.isna(changed):
        return False
    return _utc(pd.Timestamp(changed)) > _utc(pd.Timestamp(after))


def _utc(moment: pd.Timestamp) -> pd.Timestamp:
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def _readable(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    return "-" if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)) else value


@dataclass(frozen=True)
class SegmentTarget:
    """A Segment source written through its Tracking API (segment.md §1-§4), plus the team's notifier."""

    mapping: EntityMapping
    system: str = "segment"
    # segment.md §2: Segment keeps no message over 32 KB; a record that would make one is quarantined.
    max_message_bytes: ClassVar[int] = settings.MAX_EVENT_BYTES

    @property
    def resources(self) -> dict[str, type[dg.ConfigurableResource]]:
        notifier = {"notifier": NotifierResource} if self.mapping.notify else {}
        return {"segment": SegmentResource, **notifier}

    @property
    def totals(self) -> Totals | None:
        track = self.mapping.track
        if track is None or track.reconcile_amount is None or track.currency is None:
            return None
        return Totals(
            f"$.properties.{track.reconcile_amount}", track.properties[track.reconcile_amount], track.currency
        )

    def messages_for(self, conn: duckdb.DuckDBPyConnection, changes: Changes) -> list[OutboxMessage]:
        """Identify and group calls for traits that differ from the last queued, then the track calls."""
        entity, changed, previous, namespace = changes.entity, changes.changed, changes.previous, changes.namespace
        mapping, messages, name, source, key = self.mapping, [], namespace, entity.vendor, entity.key
        order_by = mapping.track.timestamp if mapping.track else None
        user_ids = self._segment_user_ids(conn, changes)
        if mapping.identify:
            found = latest_traits(changed, mapping.identify.user_id, mapping.identify.traits, order_by)
            found = {user_ids.get(owner, owner): traits for owner, traits in found.items()}
            identities = staging.changed_identities(conn, name, found)
            versions = staging.remember_identities(conn, name, identities)
            # The Segment userId of a record's owner is its id in the source (segment.md §3: a stable id of ours),
            # or the userId the owner was made from in Segment.
            staging.link_ids(
                conn, entity="users", source_system=source, target_system=self.system,
                pairs=[(owner, user_id) for owner, user_id in ({**{u: u for u in identities}, **user_ids}).items()
                       if user_id in identities],
            )  # fmt: skip
            messages += identify_messages(identities, versions, namespace=name)
        if mapping.group:
            group = mapping.group
            rows = changed[changed[group.when].fillna(False).astype(bool)] if group.when else changed
            found = latest_traits(rows, group.group_id, group.traits, order_by)
            groups = staging.changed_identities(conn, f"{name}:group", found)
            versions = staging.remember_identities(conn, f"{name}:group", groups)
            pairs = zip(rows[group.group_id].astype(str), rows[group.user_id].astype(str), strict=True)
            members = {group_id: user_ids.get(member, member) for group_id, member in pairs}
            messages += group_messages(groups, versions, members, namespace=name)
        if mapping.track:
            tracks = track_messages(mapping.track, changed, previous, key=key, source=source, user_ids=user_ids)
            messages += tracks
            if mapping.notify:
                first = staging.first_staged(conn, entity.feed)
                notified = notify_messages(
                    mapping.notify, mapping.track, tracks, changed, key, after=first, version=entity.version
                )
                messages += notified
        return messages

    def _segment_user_ids(self, conn: duckdb.DuckDBPyConnection, changes: Changes) -> dict[str, str]:
        """The record's people that came from Segment (a Xero contact made of a Segment user) -> their Segment
        userId: what Xero sends about them then lands on the profile they came from."""
        mapping, changed = self.mapping, changes.changed
        columns = {part.user_id for part in (mapping.identify, mapping.group, mapping.track) if part is not None}
        people = sorted({str(value) for column in columns for value in changed[column].dropna()})
        return staging.source_ids(
            conn, source_system=self.system, target_system=changes.entity.vendor, target_ids=people
        )

    def deliver(self, resources, payloads: list[dict], deliveries: Deliveries) -> None:
        """Notifications to the team's webhook, everything else to Segment, whose messageId dedupe makes a resend
        after a crash harmless (segment.md §4). An identify or group call, once delivered, is the version of the
        profile it leaves: coming back through a Segment destination, it is known as our own echo."""
        calls = [p for p in payloads if p["type"] != "notify"]
        notifications = [p for p in payloads if p["type"] == "notify"]
        if calls:
            report = deliveries.report(self.system)
            for call in calls:
                if call["type"] in ("identify", "group"):
                    subject = call["userId"] if call["type"] == "identify" else call["groupId"]
                    report.versions[call["messageId"]] = [(subject, call["messageId"])]
            resources.segment.get_client().send(calls, report)
        if notifications:
            resources.notifier.get_client().send(notifications, deliveries.report("notifier"))

    def figures(self, resources) -> dict[str, int | float]:
        stats = resources.segment.get_client().stats
        figures = {"api_calls": stats.calls, "api_retries": stats.retries, "bytes_sent": stats.bytes_sent}
        if self.mapping.notify:
            figures["notifications_sent"] = resources.notifier.get_client().sent
        return figures
