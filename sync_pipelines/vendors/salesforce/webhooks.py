"""Salesforce's Outbound Messages (salesforce.md §9): the SOAP `notifications` message, whose organisation it is,
and its notifications for the inbox.

An Outbound Message is not signed: a delivery is accepted when it names the configured organisation (compared in
constant time) and is refused otherwise. Put the receiver behind HTTPS and, for more, a secret path segment or
mutual TLS at the proxy (Salesforce can present its client certificate). The XML comes from outside: it is parsed
with defusedxml, which refuses DTDs and so every entity-expansion bomb, before anything else reads it.
"""

import hmac
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from sync_pipelines.vendors.salesforce import settings
from sync_pipelines.webhooks.inbox import InboxEvent
from sync_pipelines.webhooks.vendor import Vendor

log = logging.getLogger(__name__)

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
# salesforce.md §9: anything but this answer makes Salesforce send the message again.
ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP}"><soapenv:Body>'
    f'<notificationsResponse xmlns="{OUTBOUND}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
).encode()


def _notifications(body: bytes) -> Element:
    """The message's `notifications` element; ValueError for anything else (not XML, a DTD, another message)."""
    try:
        root = fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException) as error:
        raise ValueError(f"not an Outbound Message: {type(error).__name__}") from error
    found = root.find(f"{{{SOAP}}}Body/{{{OUTBOUND}}}notifications")
    if root.tag != f"{{{SOAP}}}Envelope" or found is None:
        raise ValueError("not an Outbound Message: no soapenv:Body/notifications")
    return found


def _organisation(notifications: Element) -> str:
    return notifications.findtext(f"{{{OUTBOUND}}}OrganizationId", "").strip()


def _from_organisation(organization_ids: str, body: bytes, headers: Mapping[str, str]) -> bool:
    """Whether the message names a configured organisation: `organization_ids` is one id (15 or 18 characters, as
    configured), or several separated by commas, one per connection's org."""
    given = _organisation(_notifications(body))
    expected = [org.strip().encode() for org in organization_ids.split(",") if org.strip()]
    return given.isascii() and any([hmac.compare_digest(given.encode(), org) for org in expected])


def _fields(sobject: Element) -> dict[str, str | None]:
    """The sObject's selected fields by name; a nil field (xsi:nil) is None."""
    return {child.tag.rsplit("}", 1)[-1]: child.text for child in sobject}


def _events(body: bytes) -> list[InboxEvent]:
    """One event per notification, by its notification Id (Salesforce delivers at least once). A notification whose
    record changed more than 24 h ago is dropped: Salesforce itself gives up on a message by then, so it is a
    replay."""
    notifications = _notifications(body)
    organisation = _organisation(notifications)
    oldest = datetime.now(UTC) - timedelta(hours=settings.OUTBOUND_MESSAGE_MAX_AGE_HOURS)
    events = []
    for notification in notifications.iterfind(f"{{{OUTBOUND}}}Notification"):
        notification_id = notification.findtext(f"{{{OUTBOUND}}}Id", "").strip()
        sobject = notification.find(f"{{{OUTBOUND}}}sObject")
        if not notification_id or sobject is None:
            raise ValueError("not an Outbound Message: a Notification without its Id or sObject")
        sobject_type = sobject.get(XSI_TYPE, "").rsplit(":", 1)[-1]
        fields = _fields(sobject)
        changed = _changed_at(fields)
        if changed is not None and changed < oldest:
            log.warning(f"Outbound Message notification {notification_id} dropped: its record changed at {changed}")
            continue
        events.append(
            InboxEvent(
                source="salesforce", event_id=notification_id, tenant_id=organisation, category=sobject_type,
                event_type="outbound_message", resource_id=fields.get("Id") or "",
                event_date=(changed or datetime.now(UTC)).isoformat(), payload={"type": sobject_type, **fields},
            )
        )  # fmt: skip
    return events


def _changed_at(fields: Mapping[str, str | None]) -> datetime | None:
    """When the record last changed, from the fields the message carries (SystemModstamp, else LastModifiedDate)."""
    text = fields.get("SystemModstamp") or fields.get("LastModifiedDate")
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError as error:
        raise ValueError(f"not an Outbound Message: a timestamp {text!r}") from error


WEBHOOKS = Vendor(
    "salesforce", "/salesforce/outbound", _from_organisation, _events, settings.MAX_WEBHOOK_BODY_BYTES,
    ack=ACK, ack_media_type="text/xml; charset=utf-8",
)  # fmt: skip
