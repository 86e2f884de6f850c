"""The notifier against the sandbox's Slack lookalike and generic webhook: outcomes per notification."""

from sync_pipelines.vendors.notifier.client import NotifierClient


def _notification(n: int, text: str = "New bill") -> dict:
    return {"type": "notify", "messageId": f"xero:bill:{n}:created:notify", "event": "Bill Created", "text": text}


def test_slack_gets_the_text_and_a_refused_message_is_rejected_not_retried(sandbox, admin):
    client = NotifierClient(f"{sandbox.url}/slack/services/T1/B1/secret")
    report = client.send([_notification(1), _notification(2, text="")])
    assert report.delivered == ["xero:bill:1:created:notify"]
    assert report.rejected == [("xero:bill:2:created:notify", "400: no_text")]
    assert admin.get("/notifications") == [{"channel": "slack", "path": "T1/B1/secret", "body": {"text": "New bill"}}]
    assert client.sent == 1


def test_a_generic_webhook_gets_the_whole_notification(sandbox, admin):
    report = NotifierClient(f"{sandbox.url}/webhook/team", style="generic").send([_notification(3)])
    assert report.delivered == ["xero:bill:3:created:notify"]
    (received,) = admin.get("/notifications")
    assert (received["channel"], received["body"]) == ("generic", _notification(3))


def test_an_unreachable_webhook_fails_for_a_later_retry(sandbox):
    report = NotifierClient("http://127.0.0.1:9/hooks", max_attempts=2).send([_notification(4)])
    assert report.delivered == [] and [m for m, _ in report.failed] == ["xero:bill:4:created:notify"]


def test_with_no_url_there_is_no_one_to_tell(admin):
    report = NotifierClient("").send([_notification(5)])
    assert report.delivered == ["xero:bill:5:created:notify"]
    assert admin.get("/notifications") == []
