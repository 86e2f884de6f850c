"""What is extracted from Segment, as data. Segment pushes rather than being read: the Webhooks destination posts
every message to the receiver, the inbox keeps them, and each entity lands its messages from there, by the
inbox's arrival order (a cursor on its seq).

A person's identify calls each carry some traits (https://segment.com/docs/connections/spec/identify/): the record
landed for a person is every identify the inbox holds for them merged in timestamp order, so a later call's trait
wins and a call that arrives late never overwrites a newer value.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sync_pipelines.lib.entities import Entity
from sync_pipelines.vendors.intercom.contracts import split_name
from sync_pipelines.vendors.segment.contracts import (
    RESOLVED,
    SegmentGroup,
    SegmentOrder,
    SegmentProfile,
    SegmentRefund,
    SegmentTrack,
    SegmentUser,
    flatten_group,
    flatten_order,
    flatten_profile,
    flatten_refund,
    flatten_track,
    flatten_user,
    parse_timestamp,
    trait,
)
from sync_pipelines.vendors.segment.profiles import SegmentProfileApi
from sync_pipelines.vendors.segment.workspace import SegmentWorkspaceResource

# Messages read from the inbox at a time (and people merged per landed page).
PAGE_SIZE = 500


def merged_profile(user_id: str, identifies: list[dict], id_field: str = "userId") -> dict:
    """One person (or organisation) from their identify (group) calls: traits merged oldest first, the newest
    timestamp as its change time."""
    ordered = sorted(identifies, key=lambda message: (str(parse_timestamp(message["timestamp"])), message["messageId"]))
    traits: dict = {}
    for message in ordered:
        traits.update(message.get("traits") or {})
    return {
        id_field: user_id,
        "traits": traits,
        "timestamp": ordered[-1]["timestamp"],
        "first_seen_at": ordered[0]["timestamp"],
        "messageIds": [message["messageId"] for message in ordered],
    }


def contact_person(traits: dict) -> dict | None:
    """A person's merged traits as a Xero ContactPerson, or None without an email (Xero keys them by it)."""
    email = trait(traits, "email")
    if email is None:
        return None
    first, last = trait(traits, "firstName", "first_name"), trait(traits, "lastName", "last_name")
    if not (first or last) and (name := trait(traits, "name")):
        first, last = split_name(name)
    return {"FirstName": first or "", "LastName": last or "", "EmailAddress": email, "IncludeInEmails": True}


class Page(list):
    """A page of records and the inbox seq it reads up to: the cursor moves past messages that land nothing (an
    anonymous identify, another event) as well. `cursor` is what else the cursor holds once the page has landed."""

    def __init__(self, records: list[dict], seq: int, **cursor):
        super().__init__(records)
        self.seq = seq
        self.cursor = cursor


class _Segment:
    """What every Segment source shares: the change time is the message's timestamp, the cursor the inbox's seq."""

    def updated_at(self, record: dict) -> datetime | None:
        stamp = parse_timestamp(record.get("timestamp"))
        return stamp if isinstance(stamp, datetime) else None

    def checkpoint(self, cursor: dict | None, page: Page, stamps: list[datetime | None]) -> dict | None:
        return {**(cursor or {}), "seq": page.seq, **page.cursor}

    def figures(self, workspace: SegmentWorkspaceResource) -> dict[str, int | float]:
        return {}


@dataclass(frozen=True)
class SegmentPeople(_Segment):
    """People whose identify calls arrived since the cursor, each merged from every identify the inbox keeps."""

    id_field: str = "userId"
    webhook_category: str = "identify"

    def read(self, workspace: SegmentWorkspaceResource, cursor: dict | None) -> Iterator[list[dict]]:
        inbox, after = workspace.get_inbox(), (cursor or {}).get("seq", 0)
        while page := inbox.events("segment", self.webhook_category, after, PAGE_SIZE):
            after = page[-1][0]
            # An anonymous visitor's identify (no userId) has no person to land yet.
            people = sorted({str(message["userId"]) for _, message in page if message.get("userId")})
            history: dict[str, list[dict]] = {}
            for message in inbox.history("segment", self.webhook_category, people):
                history.setdefault(str(message["userId"]), []).append(message)
            yield Page([merged_profile(user_id, history[user_id]) for user_id in people], after)


@dataclass(frozen=True)
class SegmentOrganisations(_Segment):
    """Organisations whose group calls arrived since the cursor, each merged from every group call the inbox keeps,
    with the people who joined it (their identify traits merged) as its contact persons."""

    id_field: str = "groupId"
    webhook_category: str = "group"

    def read(self, workspace: SegmentWorkspaceResource, cursor: dict | None) -> Iterator[list[dict]]:
        inbox, after = workspace.get_inbox(), (cursor or {}).get("seq", 0)
        while page := inbox.events("segment", self.webhook_category, after, PAGE_SIZE):
            after = page[-1][0]
            groups = sorted({str(message["groupId"]) for _, message in page if message.get("groupId")})
            calls: dict[str, list[dict]] = {}
            for message in inbox.history("segment", self.webhook_category, groups):
                calls.setdefault(str(message["groupId"]), []).append(message)
            members = {g: sorted({str(m["userId"]) for m in calls[g] if m.get("userId")}) for g in groups}
            identifies: dict[str, list[dict]] = {}
            for message in inbox.history("segment", "identify", sorted(set().union(*members.values()))):
                identifies.setdefault(str(message["userId"]), []).append(message)
            organisations = []
            for group_id in groups:
                people = [merged_profile(u, identifies[u])["traits"] for u in members[group_id] if u in identifies]
                persons = sorted((p for p in map(contact_person, people) if p), key=lambda p: p["EmailAddress"].lower())
                # Xero keeps at most five contact persons on a contact (xero.md §2.5).
                merged = merged_profile(group_id, calls[group_id], id_field="groupId")
                organisations.append({**merged, "persons": persons[:5]})
            yield Page(organisations, after)


@dataclass(frozen=True)
class SegmentEvents(_Segment):
    """Track events' messages as they arrived since the cursor, each with its source's name: one event by name, or,
    with `event` None, every event a person sent but those in `others` (the events with entities of their own)."""

    event: str | None
    others: frozenset[str] = frozenset()
    id_field: str = "messageId"
    webhook_category: str = "track"

    def wanted(self, message: dict) -> bool:
        if self.event is not None:
            return message.get("event") == self.event
        # An anonymous visitor's event has no person, so no Xero contact, to land on.
        return bool(message.get("userId")) and message.get("event") not in self.others

    def read(self, workspace: SegmentWorkspaceResource, cursor: dict | None) -> Iterator[list[dict]]:
        inbox, after = workspace.get_inbox(), (cursor or {}).get("seq", 0)
        names = workspace.source_names()
        while page := inbox.events("segment", self.webhook_category, after, PAGE_SIZE):
            after = page[-1][0]
            events = [message for _, message in page if self.wanted(message)]
            resolved = [{**m, RESOLVED: {"source_name": names.get(str(m.get("projectId")))}} for m in events]
            yield Page(resolved, after)


@dataclass(frozen=True)
class SegmentProfiles(_Segment):
    """People's audiences and computed traits, from the Profile API: Engage computes them from every message, so
    they change when a person does something (read for the people whose messages arrived since the cursor) and as
    time passes (an audience of "ordered in the last 30 days"; so every identified person is read again once a day).

    Engage computes asynchronously, so this is read on the flow's schedule rather than straight after a webhook.
    """

    id_field: str = "userId"
    webhook_category: str | None = None

    def read(self, workspace: SegmentWorkspaceResource, cursor: dict | None) -> Iterator[list[dict]]:
        api = workspace.profile_api()
        if api is None:
            return
        inbox, after = workspace.get_inbox(), (cursor or {}).get("seq", 0)
        today = datetime.now(UTC).date().isoformat()
        if (cursor or {}).get("swept") != today:
            pending = inbox.pending("segment", after)
            last = pending.last_seq if pending else after
            people = inbox.resource_ids("segment", "identify")
            for start in range(0, len(people), PAGE_SIZE):
                batch = people[start : start + PAGE_SIZE]
                # The cursor moves once the sweep is whole: one cut short starts again.
                done = start + PAGE_SIZE >= len(people)
                yield Page(_profiles(api, batch), last if done else after, **({"swept": today} if done else {}))
            if not people:
                yield Page([], last, swept=today)
            return
        while page := inbox.events("segment", None, after, PAGE_SIZE):
            after = page[-1][0]
            yield Page(_profiles(api, sorted({str(m["userId"]) for _, m in page if m.get("userId")})), after)

    def figures(self, workspace: SegmentWorkspaceResource) -> dict[str, int | float]:
        api = workspace.profile_api()
        return {"profile_api_calls": api.stats.calls, "profile_api_retries": api.stats.retries} if api else {}


def _profiles(api: SegmentProfileApi, user_ids: list[str]) -> list[dict]:
    """Each person's audiences and computed traits (verbose: with when each last changed); one Engage has no
    profile for yet, or who has neither, lands nothing."""
    profiles = []
    for user_id in user_ids:
        audiences = api.traits(user_id, "audience")
        computed = api.traits(user_id, "computed_trait") if audiences is not None else None
        if audiences or computed:
            profiles.append({"userId": user_id, "audiences": audiences or {}, "computed_traits": computed or {}})
    return profiles


USERS = Entity(
    "segment", "users", "People identified in Segment, their traits merged", SegmentPeople(), SegmentUser, "user_id",
    flatten_user, version="message_id",
)  # fmt: skip
ORDERS = Entity(
    "segment", "orders", "Orders completed, from any source (web, app, point of sale)",
    SegmentEvents("Order Completed"), SegmentOrder, "order_id", flatten_order,
)  # fmt: skip
GROUPS = Entity(
    "segment", "groups", "Organisations named by group calls, their traits merged, with their people",
    SegmentOrganisations(), SegmentGroup, "group_id", flatten_group, version="message_id",
)  # fmt: skip
REFUNDS = Entity(
    "segment", "refunds", "Orders refunded, whole or in part", SegmentEvents("Order Refunded"), SegmentRefund,
    "order_id", flatten_refund,
)  # fmt: skip
EVENTS = Entity(
    "segment", "events", "What people did besides ordering (signed up, started a trial, ...), one row per event",
    SegmentEvents(None, frozenset({"Order Completed", "Order Refunded"})), SegmentTrack, "message_id", flatten_track,
)  # fmt: skip
PROFILES = Entity(
    "segment", "profiles", "People's audiences and computed traits, as Engage keeps them on their profiles",
    SegmentProfiles(), SegmentProfile, "user_id", flatten_profile,
)  # fmt: skip
ENTITIES = (USERS, GROUPS, ORDERS, REFUNDS, EVENTS, PROFILES)
