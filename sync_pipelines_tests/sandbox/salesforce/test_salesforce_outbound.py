"""Outbound Messages as the org sends them, observed from a real receiver on 127.0.0.1 (salesforce.md §9)."""

from defusedxml.ElementTree import fromstring

from sync_pipelines.sandbox.salesforce.seed import ORG_ID
from sync_pipelines.vendors.salesforce.webhooks import ACK
from sync_pipelines_tests.webhooks.daemon import wait_for

SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
OM = "{http://soap.sforce.com/2005/09/outbound}"
SF = "{urn:sobject.enterprise.soap.sforce.com}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def messages(receiver) -> list[dict]:
    """Every message received, in arrival order: its organisation, and per notification (id, type, fields)."""
    parsed = []
    for body, headers in list(receiver.requests):
        root = fromstring(body, forbid_dtd=True)
        notifications = root.find(f"{SOAP}Body/{OM}notifications")
        parsed.append(
            {
                "content_type": headers["content-type"],
                "organization": notifications.findtext(f"{OM}OrganizationId"),
                "notifications": [
                    (
                        n.findtext(f"{OM}Id"),
                        n.find(f"{OM}sObject").get(XSI_TYPE),
                        {f.tag.removeprefix(SF): f.text for f in n.find(f"{OM}sObject")},
                    )
                    for n in notifications.iterfind(f"{OM}Notification")
                ],
            }
        )
    return parsed


def acknowledged(receiver) -> list[tuple[str, str, dict]]:
    """The notifications of acknowledged messages, first acknowledgement of each notification id, in order."""
    seen: dict[str, tuple[str, str, dict]] = {}
    for message, status in zip(messages(receiver), list(receiver.answered), strict=True):
        if status == 200:
            for notification in message["notifications"]:
                seen.setdefault(notification[0], notification)
    return list(seen.values())


def test_saved_records_are_sent_as_they_are_at_send_time(sf, admin, receiver):
    receiver.answer_body = ACK
    admin.salesforce_outbound(url=receiver.url)
    account = sf.request("POST", "sobjects/Account", json={"Name": "Outbound Ltd"}).json()["id"]
    deal = admin.salesforce_create(
        "Opportunity", Name="Outbound deal", StageName="Prospecting", CloseDate="2026-12-31", AccountId=account
    )
    sf.request("PATCH", f"sobjects/Opportunity/{deal['Id']}", json={"StageName": "Closed Won"})
    refused = sf.request("POST", "sobjects/Account", json={"Name": "Bad", "NoSuchField__c": 1})
    assert refused.status_code == 400  # a write that fails announces nothing
    admin.salesforce_flush_outbound()

    sent = messages(receiver)
    assert {m["organization"] for m in sent} == {ORG_ID}
    assert {m["content_type"] for m in sent} == {"text/xml; charset=utf-8"}
    notifications = acknowledged(receiver)
    assert [(kind, fields["Id"]) for _, kind, fields in notifications] == [
        ("sf:Account", account),
        ("sf:Opportunity", deal["Id"]),
        ("sf:Opportunity", deal["Id"]),
    ]
    assert len({notification_id for notification_id, _, _ in notifications}) == 3
    # Rendered when sent: the deal's creation may already carry the later stage, and never a stage it never had.
    assert notifications[-1][2]["StageName"] == "Closed Won"
    assert notifications[0][2]["Name"] == "Outbound Ltd" and notifications[0][2]["SystemModstamp"].endswith("Z")
    assert all(delivery["delivered"] for delivery in admin.salesforce_outbound_deliveries())


def test_an_unacknowledged_message_is_retried_with_its_ids_while_later_ones_go_first(sf, admin, receiver):
    receiver.answer_body = ACK
    admin.salesforce_outbound(url=receiver.url, backoff_seconds=0.2)
    # The first account's messages fail until one naming the second account has come in.
    receiver.refuse = lambda body: b"First" in body and not any(b"Second" in sent for sent, _ in receiver.requests)
    first = sf.request("POST", "sobjects/Account", json={"Name": "First"}).json()["id"]
    wait_for(lambda: receiver.requests or None, 30, "the first account's message")
    second = sf.request("POST", "sobjects/Account", json={"Name": "Second"}).json()["id"]
    admin.salesforce_flush_outbound()

    assert [fields["Id"] for _, _, fields in acknowledged(receiver)] == [second, first]
    first_sends = [n for m in messages(receiver) for n in m["notifications"] if n[2]["Id"] == first]
    assert len(first_sends) >= 2 and len({notification_id for notification_id, _, _ in first_sends}) == 1


def test_an_unacknowledged_message_is_dropped_when_too_old(sf, admin, receiver):
    # A 200 without <Ack>true</Ack> is not an acknowledgement.
    admin.salesforce_outbound(url=receiver.url, backoff_seconds=0.1, max_backoff_seconds=0.2, max_age_seconds=1)
    account = sf.request("POST", "sobjects/Account", json={"Name": "Never acknowledged"}).json()["id"]
    dropped = wait_for(lambda: admin.salesforce_outbound()["dropped"] or None, 30, "the dropped notification")

    assert [(d["object"], d["record_id"]) for d in dropped] == [("Account", account)]
    assert dropped[0]["tries"] >= 1 and admin.salesforce_outbound()["queued"] == 0
    assert not any(delivery["delivered"] for delivery in admin.salesforce_outbound_deliveries())


def test_a_message_carries_at_most_100_notifications_of_one_object(sf, admin, receiver):
    receiver.answer_body = ACK
    admin.salesforce_outbound(url=receiver.url, objects=["Account"])
    touched = admin.call("POST", "/salesforce/touch", {"object": "Account", "count": 150})["ids"]
    admin.salesforce_create("Lead", LastName="Not watched", Company="Elsewhere")
    admin.salesforce_flush_outbound()

    sent = messages(receiver)
    assert max(len(m["notifications"]) for m in sent) <= 100
    assert {kind for m in sent for _, kind, _ in m["notifications"]} == {"sf:Account"}
    assert sorted(fields["Id"] for _, _, fields in acknowledged(receiver)) == sorted(touched)
