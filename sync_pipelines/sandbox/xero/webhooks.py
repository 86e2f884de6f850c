"""The Xero app's webhook subscription on the shared delivery loop (sandbox/webhooks.py), xero.md §6.

Xero's deliveries are signed batches of INVOICE, CONTACT and CREDITNOTE events; the queue's sqlite sequence numbers
are the firstEventSequence and lastEventSequence a payload carries.
"""

import base64
import hashlib
import hmac
import secrets
import sqlite3
from typing import Any

from sync_pipelines.sandbox.store import COLLECTIONS, Store, dumps
from sync_pipelines.sandbox.webhooks import DeliveryLoop, accepted, check_url, post
from sync_pipelines.sandbox.xero.dates import event_date_string, parse_net

# xero.md §6: Invoices, Contacts and CreditNotes have webhook categories; Payments, BankTransactions and Items none.
CATEGORIES = {"Invoices": "INVOICE", "Contacts": "CONTACT", "CreditNotes": "CREDITNOTE"}
_COLLECTION_OF = {category: collection for collection, category in CATEGORIES.items()}
# xero.md §3.2: derived contact flags change without the contact being edited, so they are not a change.
_DERIVED = {"Contacts": ("IsCustomer", "IsSupplier")}
BATCH_SIZE = 100
ITR_PROBES = 4  # half signed correctly, half mis-signed


def sign(key: str, body: bytes) -> str:
    """Base64 HMAC-SHA256 of the raw body, keyed with the key string's UTF-8 bytes (xero.md §6)."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def _visible(collection: str, record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in _DERIVED.get(collection, ())}


class WebhookEmitter(DeliveryLoop):
    """The Xero app's one webhook subscription: a delivery URL (None: not subscribed) and a signing key."""

    def __init__(
        self,
        store: Store,
        url: str | None,
        key: str,
        attempts: int,
        backoff_seconds: float,
    ):
        super().__init__(url, attempts, backoff_seconds, "sandbox-webhooks")
        self.store = store
        self.key = key
        self.base_url: str | None = None  # the server sets it once it listens; resourceUrls point back at it

    # -- queueing (called by the ledger inside the writer's transaction) ---------------------

    def observe(self, conn: sqlite3.Connection, collection: str, record: dict) -> None:
        """CREATE for a new record, UPDATE for a visible change to one; archive, void and delete are UPDATEs too
        (xero.md §6, §7). eventDateUtc is the record's new UpdatedDateUTC. A credit note's event also carries its
        Type and Status as they are now (xero-webhooks.yaml CreditNoteWebhookEvent, required `data`)."""
        category = CATEGORIES.get(collection)
        if category is None or self.url is None:
            return
        record_id = record[COLLECTIONS[collection][1]]
        previous = self.store.get(collection, record_id, conn)
        if previous is not None and _visible(collection, previous) == _visible(collection, record):
            return
        event_type = "CREATE" if previous is None else "UPDATE"
        data = {"Type": record["Type"], "Status": record["Status"]} if category == "CREDITNOTE" else None
        self.store.queue_event(conn, category, record_id, event_type, parse_net(record["UpdatedDateUTC"]), data)
        self.wake()

    def subscribe(self, url: str | None) -> None:
        """Point deliveries at a receiver; with none there is no subscription and queued events are dropped."""
        self.url = check_url(url)
        if self.url is None:
            self.store.discard_queue()
        self.wake()

    # -- the delivery loop's side ---------------------------------------------------------------

    def _claim(self, url: str) -> tuple[int, bytes, dict[str, str]] | None:
        """Everything queued, up to 100 events, as one signed payload keyed by its firstEventSequence."""
        rows = self.store.queued_events(BATCH_SIZE)
        if not rows:
            return None
        first, last = rows[0][0], rows[-1][0]
        tenant_id = self.store.meta_get("tenant_id")
        payload = {
            "events": [self._event(tenant_id, *row) for row in rows],
            "firstEventSequence": first,
            "lastEventSequence": last,
            "entropy": secrets.token_urlsafe(15),
        }
        # Compact JSON: a receiver that re-serialises before checking the HMAC fails, as with Xero.
        body = dumps(payload).encode()
        signature = sign(self.key, body)
        self.store.log_delivery(first, last, len(rows), body, signature)
        return first, body, {"x-xero-signature": signature}

    def _note(self, key: int, outcome: int | str, delivered: bool) -> None:
        self.store.note_attempt(key, outcome, delivered)

    def queue_length(self) -> int:
        return self.store.queue_length()

    def _event(
        self,
        tenant_id: str,
        sequence: int,
        category: str,
        resource_id: str,
        event_type: str,
        event_ms: int,
        data: dict | None,
    ) -> dict:
        """The seven fields of an event, in the order of Xero's example (xero.md §6), and data when it has some."""
        event = {
            "resourceUrl": f"{self.base_url}/xero/api/api.xro/2.0/{_COLLECTION_OF[category]}/{resource_id}",
            "resourceId": resource_id,
            "eventDateUtc": event_date_string(event_ms),
            "eventType": event_type,
            "eventCategory": category,
            "tenantId": tenant_id,
            "tenantType": "ORGANISATION",
        }
        return event if data is None else {**event, "data": data}

    # -- admin operations ---------------------------------------------------------------------

    def redeliver(self, first: int) -> int | str | None:
        """Post a logged delivery's exact body and signature again, like a Xero replay; None if unknown."""
        logged = self.store.delivery(first)
        if logged is None or self.url is None:
            return None
        body, signature = logged
        outcome = post(self.url, body, {"x-xero-signature": signature})
        self.store.note_attempt(first, outcome, accepted(outcome))
        return outcome

    def intent_to_receive(self) -> dict[str, Any]:
        """Empty-event probes in random order, some signed with the key and some with another; the receiver
        passes with 200 for every good signature and 401 for every bad one (xero.md §6)."""
        if self.url is None:
            raise ValueError("no webhook url is configured")
        signed = [True, False] * (ITR_PROBES // 2)
        secrets.SystemRandom().shuffle(signed)
        probes = []
        for good in signed:
            payload = {
                "events": [],
                "firstEventSequence": 0,
                "lastEventSequence": 0,
                "entropy": secrets.token_urlsafe(15),
            }
            body = dumps(payload).encode()
            key = self.key if good else secrets.token_urlsafe(24)
            probes.append({"signed": good, "status": post(self.url, body, {"x-xero-signature": sign(key, body)})})
        passed = all(probe["status"] == (200 if probe["signed"] else 401) for probe in probes)
        return {"passed": passed, "probes": probes}
