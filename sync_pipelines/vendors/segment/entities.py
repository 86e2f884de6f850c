"""What is extracted from Segment, as data. Segment pushes rather than being read: the Webhooks destination posts
every message to the receiver, the inbox keeps them, and each entity lands its messages from there, by the
inbox's arrival order (a cursor on its seq).

A person's identify calls each carry some traits (https://segment.com/docs/connections/spec/identify/): the record
landed for a person is every identify the inbox holds for them merged in timestamp order, so a later call's trait
wins and a call that arrives late never overwrites a newer value.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sync_pipelines.lib.entities import Entity
from sync_pipelines.vendors.segment.contracts import SegmentUser, flatten_user, parse_timestamp
from sync_pipelines.webhooks.inbox import WebhookInboxResource

# Messages read from the inbox at a time (and people merged per landed page).
PAGE_SIZE = 500


def merged_profile(user_id: str, identifies: list[dict]) -> dict:
    """One person from their identify calls: traits merged oldest first, the newest timestamp as its change time."""
    ordered = sorted(identifies, key=lambda message: (str(parse_timestamp(message["timestamp"])), message["messageId"]))
    traits: dict = {}
    for message in ordered:
        traits.update(message.get("traits") or {})
    return {
        "userId": user_id,
        "traits": traits,
        "timestamp": ordered[-1]["timestamp"],
        "first_seen_at": ordered[0]["timestamp"],
        "messageIds": [message["messageId"] for message in ordered],
    }


@dataclass(frozen=True)
class SegmentPeople:
    """People whose identify calls arrived since the cursor, each merged from every identify the inbox keeps."""

    id_field: str = "userId"
    webhook_category: str = "identify"

    def read(self, webhook_inbox: WebhookInboxResource, cursor: dict | None) -> Iterator[list[dict]]:
        inbox, after = webhook_inbox.get_inbox(), (cursor or {}).get("seq", 0)
        while page := inbox.events("segment", self.webhook_category, after, PAGE_SIZE):
            after = page[-1][0]
            # An anonymous visitor's identify (no userId) has no person to land yet.
            people = sorted({str(message["userId"]) for _, message in page if message.get("userId")})
            history: dict[str, list[dict]] = {}
            for message in inbox.history("segment", self.webhook_category, people):
                history.setdefault(str(message["userId"]), []).append(message)
            # Each person carries the page's last seq, the cursor once the page has landed (a page of anonymous
            # calls alone lands nothing and leaves the cursor: the next run reads past it again).
            yield [{**merged_profile(user_id, history[user_id]), "seq": after} for user_id in people]

    def updated_at(self, record: dict) -> datetime | None:
        stamp = parse_timestamp(record.get("timestamp"))
        return stamp if isinstance(stamp, datetime) else None

    def checkpoint(self, cursor: dict | None, page: list[dict]) -> dict | None:
        return {"seq": page[-1]["seq"]} if page else None

    def figures(self, webhook_inbox: WebhookInboxResource) -> dict[str, int | float]:
        return {}


USERS = Entity(
    "segment", "users", "People identified in Segment, their traits merged", SegmentPeople(), SegmentUser, "user_id",
    flatten_user,
)  # fmt: skip
ENTITIES = (USERS,)
