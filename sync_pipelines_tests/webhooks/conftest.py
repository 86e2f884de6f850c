"""Deliveries shaped and signed the way Xero (xero.md §6) and Intercom (intercom.md §9) send them, and a receiver;
bare-socket posts for bodies that promise more than they send, and a flood from many senders at once."""

import hashlib
import hmac
import json
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from sync_pipelines.sandbox.intercom.webhooks import signature
from sync_pipelines.vendors.salesforce.webhooks import OUTBOUND, SOAP
from sync_pipelines.vendors.xero.webhooks import sign
from sync_pipelines.webhooks.receiver import WebhookReceiver

KEY = "test-webhook-key"
TENANT_ID = "c2cc9b6e-9458-4c7d-93cc-f02b81b0594f"
INTERCOM_SECRET = "test-intercom-client-secret"
APP_ID = "ecahpwf5"
SALESFORCE_ORGANIZATION_ID = "00D5g000004ABCDEAU"


def xero_event(category: str = "INVOICE", event_type: str = "UPDATE", resource_id: str | None = None) -> dict:
    """One event with all seven fields; eventDateUtc has no Z (xero.md §6)."""
    resource_id = resource_id or str(uuid.uuid4())
    collection = {"INVOICE": "Invoices", "CONTACT": "Contacts", "CREDITNOTE": "CreditNotes"}[category]
    return {
        "resourceUrl": f"https://api.xero.com/api.xro/2.0/{collection}/{resource_id}",
        "resourceId": resource_id,
        "eventDateUtc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        "eventType": event_type,
        "eventCategory": category,
        "tenantId": TENANT_ID,
        "tenantType": "ORGANISATION",
    }


def delivery_body(events: list[dict], first: int = 1) -> bytes:
    """The raw body of one delivery; an empty list makes an Intent-to-Receive probe (sequences 0)."""
    payload = {
        "events": events,
        "firstEventSequence": first if events else 0,
        "lastEventSequence": first + len(events) - 1 if events else 0,
        "entropy": uuid.uuid4().hex.upper()[:20],
    }
    return json.dumps(payload).encode()


def post(url: str, body: bytes, signature: str | None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["x-xero-signature"] = signature
    return requests.post(url, data=body, headers=headers, timeout=5)


def deliver(url: str, body: bytes, key: str = KEY) -> requests.Response:
    """POST a body with the signature Xero would put on it."""
    return post(url, body, sign(key, body))


def intercom_notification(topic: str = "contact.user.updated", item: dict | None = None, **fields) -> dict:
    """A notification_event as in intercom.md §9's example, about a new contact unless an item is given."""
    now = int(time.time())
    return {
        "type": "notification_event", "app_id": APP_ID, "id": f"notif_{uuid.uuid4()}", "topic": topic,
        "created_at": now, "delivery_status": "pending", "delivery_attempts": 1, "delivered_at": 0,
        "first_sent_at": now, "self": None, "links": {},
        "data": {"type": "notification_event_data", "item": item or {"type": "contact", "id": uuid.uuid4().hex[:24]}},
        **fields,
    }  # fmt: skip


def notify(url: str, notification: dict | bytes, secret: str = INTERCOM_SECRET) -> requests.Response:
    """POST a notification (or raw body) signed as Intercom signs it, by the sandbox's own signer."""
    body = notification if isinstance(notification, bytes) else json.dumps(notification).encode()
    return post_intercom(url, body, signature(secret, body))


def post_intercom(url: str, body: bytes, hub_signature: str | None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if hub_signature is not None:
        headers["X-Hub-Signature"] = hub_signature
    return requests.post(url, data=body, headers=headers, timeout=5)


@contextmanager
def raw_post(url: str, headers: dict[str, str], parts: list[bytes]) -> Iterator[socket.socket]:
    """A bare socket that has sent a POST's head and then each part as given, maybe far less than the head promises.

    The socket's timeout only keeps a server that waits for more from hanging the test; it measures nothing.
    """
    address = urlsplit(url)
    head = f"POST {address.path} HTTP/1.1\r\nHost: {address.netloc}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        # The head goes with the first part, so a server that answers early has still read all that was sent
        # (closing on unread bytes would reset the connection, and the response could be lost).
        for part in [head.encode() + parts[0], *parts[1:]]:
            sock.sendall(part)
        yield sock


def response_head(sock: socket.socket) -> bytes:
    """The response's status line and headers (the receiver's responses have no body)."""
    head = b""
    while b"\r\n\r\n" not in head:
        received = sock.recv(65536)
        if not received:
            break
        head += received
    return head


def takes_no_more(sock: socket.socket, chunks: int = 256) -> bool:
    """Whether the server has closed the connection: sending fails within `chunks` more 64 KiB chunks, where a
    server still reading would take them all (and drop them)."""
    try:
        for _ in range(chunks):
            sock.sendall(b"10000\r\n%s\r\n" % (b" " * 65536))
    except (BrokenPipeError, ConnectionResetError):
        return True
    return False


def chunked(body: bytes, end: bool) -> list[bytes]:
    """`body` as chunks of 64 KiB, its last byte in a chunk of its own (a server that stops at that byte has read
    everything sent), then the terminating chunk only if `end`: otherwise the stream never says it is over."""
    head, size = body[:-1], 65536
    parts = [b"%x\r\n%s\r\n" % (len(head[i : i + size]), head[i : i + size]) for i in range(0, len(head), size)]
    return [*parts, b"1\r\n%s\r\n" % body[-1:], *([b"0\r\n\r\n"] if end else [])]


def flood(url: str, deliveries: list[tuple[bytes, dict[str, str]]], senders: int = 32) -> list[int]:
    """Post every (body, headers) from `senders` threads at once, each on its own kept-alive session: the statuses."""

    def send(share: list[tuple[bytes, dict[str, str]]]) -> list[int]:
        with requests.Session() as session:
            return [session.post(url, data=body, headers=headers, timeout=60).status_code for body, headers in share]

    with ThreadPoolExecutor(senders) as pool:
        shares = pool.map(send, [deliveries[i::senders] for i in range(senders)])
    return [status for share in shares for status in share]


SEGMENT_SECRET = "segment-shared-secret"


def identify(user_id: str, **traits) -> dict:
    """A Segment identify call as analytics.js sends it."""
    return {
        "type": "identify", "userId": user_id, "traits": traits, "messageId": f"ajs-{uuid.uuid4()}",
        "timestamp": "2026-03-01T10:00:00.000Z", "context": {"library": {"name": "analytics.js", "version": "2.11.1"}},
    }  # fmt: skip


def body_of(*messages: dict) -> bytes:
    """One message alone, or several as a batch: compact JSON, as the destination sends it."""
    compact = [json.dumps(m, separators=(",", ":")).encode() for m in messages]
    return compact[0] if len(compact) == 1 else b"[" + b",".join(compact) + b"]"


def signed(part: bytes, secret: str = SEGMENT_SECRET) -> dict[str, str]:
    """Segment's X-Signature: hex HMAC-SHA1 of the signed part with the shared secret."""
    return {"X-Signature": hmac.new(secret.encode(), part, hashlib.sha1).hexdigest()}


def post_segment(receiver: WebhookReceiver, body: bytes, headers: dict[str, str]) -> int:
    """Post as Segment's Webhooks destination does; the status."""
    headers = {"Content-Type": "application/json", "User-Agent": "Segment.io/1.0", **headers}
    return requests.post(receiver.url_for("segment"), data=body, headers=headers, timeout=30).status_code


def salesforce_notification(sobject: str, record_id: str, changed: datetime, notification_id: str | None = None) -> str:
    """One Notification with an sObject's selected fields, as an Outbound Message carries it."""
    notification_id = notification_id or f"04l5g{uuid.uuid4().hex[:13].upper()}"
    stamp = changed.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return (
        f"<Notification><Id>{notification_id}</Id>"
        f'<sObject xsi:type="sf:{sobject}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>{record_id}</sf:Id><sf:StageName>Closed Won</sf:StageName>"
        f"<sf:SystemModstamp>{stamp}</sf:SystemModstamp></sObject></Notification>"
    )


def outbound_message(*notifications: str, organization_id: str = SALESFORCE_ORGANIZATION_ID) -> bytes:
    """A SOAP `notifications` message as Salesforce posts it (salesforce.md §9)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        f'<notifications xmlns="{OUTBOUND}"><OrganizationId>{organization_id}</OrganizationId>'
        '<ActionId>04k5g000000ABCDAA0</ActionId><SessionId xsi:nil="true"/>'
        "<EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/62.0/00D5g000004ABCD</EnterpriseUrl>"
        "<PartnerUrl>https://example.my.salesforce.com/services/Soap/u/62.0/00D5g000004ABCD</PartnerUrl>"
        + "".join(notifications)
        + "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def stored_events(inbox_path: Path) -> list[dict]:
    """What the inbox table holds, oldest first (empty when the receiver never created it)."""
    if not inbox_path.exists():
        return []
    with sqlite3.connect(inbox_path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM webhook_events ORDER BY seq")]


@pytest.fixture
def inbox_path(tmp_path: Path) -> Path:
    return tmp_path / "inbox" / "webhook_inbox.sqlite"


@pytest.fixture
def receiver(inbox_path: Path) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(inbox_path, {"xero": KEY, "intercom": INTERCOM_SECRET}) as running:
        yield running
