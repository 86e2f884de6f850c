"""The org's Outbound Messages (salesforce.md §9): a workflow action per object that posts SOAP `notifications`.

A record saved by a user, the API or a roll-up queues one notification (its own `Id`) inside the write's
transaction; a rolled-back write queues nothing. At send time the record's *current* fields are rendered, so
changes in between are lost, as with Salesforce. One message carries up to 100 notifications of one object's
action. Only `<Ack>true</Ack>` in the answer settles them: anything else (an error status, a timeout, a 200 without
the ack) puts them back with a backoff that doubles up to `max_backoff_seconds` (Salesforce: 2 h), while later
notifications go ahead, so delivery can be out of order; `newest_first` makes every message out of order. A
notification older than `max_age_seconds` (Salesforce: 24 h) is dropped unsent.
"""

import sqlite3
import time
import uuid
from typing import Any
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape

import requests
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from sync_pipelines.sandbox.salesforce import ids
from sync_pipelines.sandbox.salesforce.schema import OBJECTS, SObject
from sync_pipelines.sandbox.salesforce.store import SalesforceStore
from sync_pipelines.sandbox.webhooks import TIMEOUT_SECONDS, DeliveryLoop, check_url

SENT_OBJECTS = ("Account", "Contact", "Lead", "Opportunity")  # the objects the org's workflow rules watch
BATCH_SIZE = 100  # salesforce.md §9: up to 100 Notification elements per message
API_VERSION = "62.0"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
ACTION_PREFIX, NOTIFICATION_PREFIX = "04k", "04l"  # key prefixes of workflow outbound messages and notifications


def _soap_value(field_type: str, value: Any) -> str:
    """A stored value as SOAP renders it: true/false, xsd:dateTime with Z, numbers and text as they are."""
    if field_type == "boolean":
        return "true" if value else "false"
    if field_type == "datetime":
        return str(value)[:-5] + "Z"
    return escape(str(value))


def render_sobject(sobject: SObject, row: dict[str, Any]) -> str:
    """The sObject element with every field of the record; a null is xsi:nil, as the WSDL's nillable fields are."""
    fields = "".join(
        f'<sf:{f.name} xsi:nil="true"/>' if row.get(f.name) is None else
        f"<sf:{f.name}>{_soap_value(f.type, row[f.name])}</sf:{f.name}>"
        for f in sobject.fields
    )  # fmt: skip
    return f'<sObject xsi:type="sf:{sobject.name}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">{fields}</sObject>'


def acknowledged(body: bytes) -> bool:
    """Whether an answer is a notificationsResponse with <Ack>true</Ack> (anything else is retried)."""
    try:
        root = fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException):
        return False
    ack = root.findtext(f"{{{SOAP}}}Body/{{{OUTBOUND}}}notificationsResponse/{{{OUTBOUND}}}Ack")
    return (ack or "").strip() == "true"


class OutboundMessages(DeliveryLoop):
    """Every object's Outbound Message action, posting to one endpoint URL (None: no action is active)."""

    def __init__(self, store: SalesforceStore, org_id: str, backoff_seconds: float):
        super().__init__(None, attempts=1, backoff_seconds=backoff_seconds, name="sandbox-salesforce-outbound")
        self.store, self.org_id = store, org_id
        self.objects: frozenset[str] = frozenset(SENT_OBJECTS)
        self.max_backoff_seconds = 7200.0
        self.max_age_seconds = 86400.0
        self.newest_first = False
        self.instance_url = "https://sandbox.my.salesforce.com"  # the server sets it once it listens

    def observe(self, conn: sqlite3.Connection, sobject: SObject, record_id: str) -> None:
        """Queue a notification for a saved record, inside the writer's transaction."""
        if self.url is None or sobject.name not in self.objects:
            return
        self.store.queue_outbound(conn, f"{NOTIFICATION_PREFIX}{uuid.uuid4().hex[:15]}", sobject.name, record_id)
        self.wake()

    def configure(self, url: str | None, objects: list[str] | None = None) -> None:
        """Point every action at an endpoint (None: deactivate them and drop what is queued)."""
        unknown = set(objects or ()) - set(SENT_OBJECTS)
        if unknown:
            raise ValueError(f"Outbound Messages are set up for {list(SENT_OBJECTS)}, not {sorted(unknown)}")
        self.url = check_url(url)
        self.objects = frozenset(objects if objects is not None else self.objects)
        if self.url is None:
            self.store.discard_outbound()
        self.wake()

    def envelope(self, object_name: str, notifications: list[tuple[str, dict[str, Any]]]) -> bytes:
        """The SOAP message of one object's action: the org, the action, the endpoints and each notification."""
        org15 = self.org_id[:15]
        action_id = ids.make_id(ACTION_PREFIX, SENT_OBJECTS.index(object_name) + 1)
        sobject = OBJECTS[object_name]
        body = "".join(
            f"<Notification><Id>{notification_id}</Id>{render_sobject(sobject, row)}</Notification>"
            for notification_id, row in notifications
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<soapenv:Envelope xmlns:soapenv="{SOAP}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
            f'<notifications xmlns="{OUTBOUND}"><OrganizationId>{self.org_id}</OrganizationId>'
            f'<ActionId>{action_id}</ActionId><SessionId xsi:nil="true"/>'
            f"<EnterpriseUrl>{self.instance_url}/services/Soap/c/{API_VERSION}/{org15}</EnterpriseUrl>"
            f"<PartnerUrl>{self.instance_url}/services/Soap/u/{API_VERSION}/{org15}</PartnerUrl>"
            f"{body}</notifications></soapenv:Body></soapenv:Envelope>"
        ).encode()

    # -- the delivery loop's side ---------------------------------------------------------------

    def _claim(self, url: str) -> tuple[int, bytes, dict[str, str]] | None:
        claimed = self.store.claim_outbound(
            time.time(), self.max_age_seconds, BATCH_SIZE, self.newest_first, self.envelope
        )
        if claimed is None:
            return None
        seq, body = claimed
        return seq, body, {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}

    def _send(self, url: str, key: int, body: bytes, headers: dict[str, str]) -> None:
        """One attempt; unacknowledged notifications wait for their backoff while others go ahead."""
        try:
            response = requests.post(url, data=body, headers=headers, timeout=TIMEOUT_SECONDS)
        except requests.RequestException as error:
            self._note(key, type(error).__name__, False)
            return
        self._note(key, response.status_code, response.ok and acknowledged(response.content))

    def _note(self, key: int, outcome: int | str, delivered: bool) -> None:
        self.store.settle_outbound(key, outcome, delivered, time.time(), self.backoff_seconds, self.max_backoff_seconds)

    def queue_length(self) -> int:
        return self.store.outbound_queue_length()

    def seconds_to_next_due(self) -> float | None:
        due = self.store.next_outbound_due()
        return None if due is None else max(0.0, due - time.time())
