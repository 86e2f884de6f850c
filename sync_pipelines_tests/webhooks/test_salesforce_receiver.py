"""The receiver keeps Salesforce's Outbound Message contract (salesforce.md §9): a message from the configured
organisation is stored once per notification Id and acknowledged with the SOAP Ack; anything else is refused or
dropped, and no XML reaches a parser that would expand it."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from defusedxml.ElementTree import fromstring

from sync_pipelines.vendors.salesforce.webhooks import OUTBOUND, SOAP
from sync_pipelines.webhooks.receiver import WebhookReceiver
from sync_pipelines_tests.webhooks.conftest import (
    SALESFORCE_ORGANIZATION_ID,
    outbound_message,
    salesforce_notification,
    stored_events,
)


def _post(receiver: WebhookReceiver, body: bytes) -> requests.Response:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    return requests.post(receiver.url_for("salesforce"), data=body, headers=headers, timeout=30)


def _acknowledged(response: requests.Response) -> bool:
    """Whether the answer is the notificationsResponse whose Ack is true: anything else, Salesforce sends again."""
    if response.status_code != 200:
        return False
    ack = fromstring(response.content).find(f"{{{SOAP}}}Body/{{{OUTBOUND}}}notificationsResponse/{{{OUTBOUND}}}Ack")
    return ack is not None and ack.text == "true"


@pytest.fixture
def receiver(inbox_path: Path) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(inbox_path, {"salesforce": SALESFORCE_ORGANIZATION_ID}) as running:
        yield running


def test_each_notification_is_stored_once_by_its_id_and_the_message_acknowledged(receiver, inbox_path):
    now = datetime.now(UTC)
    won = salesforce_notification("Opportunity", "0065g00000AbCdEAAV", now)
    message = outbound_message(won, salesforce_notification("Account", "0015g00000XyZaBAAV", now))

    first, again = _post(receiver, message), _post(receiver, message)  # Salesforce sends at least once

    assert _acknowledged(first) and _acknowledged(again)
    rows = stored_events(inbox_path)
    assert [(r["source"], r["tenant_id"], r["category"], r["resource_id"]) for r in rows] == [
        ("salesforce", SALESFORCE_ORGANIZATION_ID, "Opportunity", "0065g00000AbCdEAAV"),
        ("salesforce", SALESFORCE_ORGANIZATION_ID, "Account", "0015g00000XyZaBAAV"),
    ]
    assert json.loads(rows[0]["payload"])["StageName"] == "Closed Won"


def test_a_message_of_another_organisation_is_refused_and_nothing_stored(receiver, inbox_path):
    message = outbound_message(
        salesforce_notification("Account", "0015g00000XyZaBAAV", datetime.now(UTC)), organization_id="00D000000000001"
    )

    response = _post(receiver, message)

    assert response.status_code == 401 and not _acknowledged(response)
    assert stored_events(inbox_path) == []


def test_each_configured_organisation_is_accepted_and_its_events_carry_its_id(inbox_path):
    """One receiver for every connection's org (ids comma-separated); the sensor routes each event by its org."""
    other = "00D5g100000001AAAA"
    changed = datetime.now(UTC)
    with WebhookReceiver(inbox_path, {"salesforce": f"{SALESFORCE_ORGANIZATION_ID}, {other}"}) as receiver:
        for org, record in ((SALESFORCE_ORGANIZATION_ID, "0015g00000XyZaBAAV"), (other, "0015g10000000001AA")):
            message = outbound_message(salesforce_notification("Account", record, changed), organization_id=org)
            assert _acknowledged(_post(receiver, message))
        stranger = outbound_message(
            salesforce_notification("Account", "0015g20000000001AA", changed), organization_id="00D5g200000001AAAA"
        )
        assert _post(receiver, stranger).status_code == 401

    assert [(r["tenant_id"], r["resource_id"]) for r in stored_events(inbox_path)] == [
        (SALESFORCE_ORGANIZATION_ID, "0015g00000XyZaBAAV"),
        (other, "0015g10000000001AA"),
    ]


BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (n, (b"&lol%d;" % (n - 1) if n > 1 else b"&lol;") * 10) for n in range(1, 10))
    + b']><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
    + b'<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>&lol9;</OrganizationId>'
    + b"</notifications></soapenv:Body></soapenv:Envelope>"
)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<soapenv:Envelope><notifications>", id="malformed XML"),
        pytest.param(b'{"OrganizationId": "00D5g000004ABCDEAU"}', id="not XML"),
        pytest.param(BOMB, id="entity expansion bomb"),
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/passwd">]><x>&ext;</x>',
            id="external entity",
        ),
        pytest.param(
            outbound_message("<Notification><Id>04l5g0000000001AAA</Id></Notification>"),
            id="notification without sObject",
        ),
    ],
)
def test_a_body_that_is_not_an_outbound_message_is_refused_unparsed_and_nothing_stored(receiver, inbox_path, body):
    response = _post(receiver, body)

    assert response.status_code == 400 and not _acknowledged(response)
    assert stored_events(inbox_path) == []


def test_a_replay_of_a_change_older_than_a_day_is_acknowledged_and_dropped(receiver, inbox_path):
    fresh = salesforce_notification("Contact", "0035g00000FrEsHAAV", datetime.now(UTC))
    stale = salesforce_notification("Contact", "0035g00000StAlEAAV", datetime.now(UTC) - timedelta(hours=25))

    response = _post(receiver, outbound_message(stale, fresh))

    assert _acknowledged(response)  # Salesforce would send it again otherwise
    assert [row["resource_id"] for row in stored_events(inbox_path)] == ["0035g00000FrEsHAAV"]
