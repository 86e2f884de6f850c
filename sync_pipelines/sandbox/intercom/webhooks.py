"""The Intercom app's webhook subscription on the shared delivery loop (sandbox/webhooks.py), intercom.md §9.

Every notification is one POST of a `notification_event` whose `data.item` is the topic's object as it was when
the change committed, signed `X-Hub-Signature: sha1=<hex HMAC-SHA1 of the raw body, key = client_secret>`. Each
has a unique `id` (receivers dedupe on it: delivery is at least once). A retry resends the same bytes.
"""

import hashlib
import hmac
import sqlite3
import uuid
from collections.abc import Iterable
from typing import Any

from sync_pipelines.sandbox.intercom.store import IntercomStore
from sync_pipelines.sandbox.store import dumps
from sync_pipelines.sandbox.webhooks import DeliveryLoop, accepted, check_url, post

PING = "ping"  # intercom.md §9: always subscribed


def signature(secret: str, body: bytes) -> str:
    """The X-Hub-Signature value: "sha1=" + hex HMAC-SHA1 of the raw body keyed with the client secret."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


class IntercomWebhooks(DeliveryLoop):
    def __init__(
        self,
        store: IntercomStore,
        url: str | None,
        client_secret: str,
        app_id: str,
        attempts: int,
        backoff_seconds: float,
    ):
        super().__init__(url, attempts, backoff_seconds, "sandbox-intercom-webhooks")
        self.store = store
        self.client_secret = client_secret
        self.app_id = app_id
        self.topics: frozenset[str] | None = None  # None: every topic

    def wants(self, topic: str) -> bool:
        """Whether a change to announce under `topic` would be delivered (so the item is worth rendering)."""
        return self.url is not None and (topic == PING or self.topics is None or topic in self.topics)

    def queue(self, conn: sqlite3.Connection, topic: str, item: dict[str, Any], now: int) -> None:
        """Queue inside the writer's transaction: a rolled-back change queues nothing."""
        if not self.wants(topic):
            return
        notification_id = f"notif_{uuid.uuid4()}"
        body = {
            "type": "notification_event",
            "app_id": self.app_id,
            "id": notification_id,
            "topic": topic,
            "created_at": now,
            "delivery_status": "pending",
            "delivery_attempts": 1,
            "delivered_at": 0,
            "first_sent_at": now,
            "self": None,
            "links": {},
            "data": {"type": "notification_event_data", "item": item},
        }
        self.store.queue_notification(conn, notification_id, topic, dumps(body))
        self.wake()

    def subscribe(self, url: str | None, topics: Iterable[str] | None = None) -> None:
        """Point deliveries at a receiver for some topics (None: all); without a URL queued ones are dropped."""
        self.url = check_url(url)
        self.topics = None if topics is None else frozenset(topics)
        if self.url is None:
            self.store.discard_queue()
        self.wake()

    # -- the delivery loop's side ---------------------------------------------------------------

    def _claim(self, url: str) -> tuple[int, bytes, dict[str, str]] | None:
        claimed = self.store.claim_notification(lambda body: signature(self.client_secret, body))
        if claimed is None:
            return None
        seq, body, signed = claimed
        return seq, body, {"X-Hub-Signature": signed}

    def _note(self, key: int, outcome: int | str, delivered: bool) -> None:
        self.store.note_attempt(key, outcome, delivered)

    def queue_length(self) -> int:
        return self.store.queue_length()

    def redeliver(self, seq: int) -> int | str | None:
        """Post a logged notification's exact body and signature again; None if unknown or unsubscribed."""
        logged = self.store.delivery(seq)
        if logged is None or self.url is None:
            return None
        body, signed = logged
        outcome = post(self.url, body, {"X-Hub-Signature": signed})
        self.store.note_attempt(seq, outcome, accepted(outcome))
        return outcome
