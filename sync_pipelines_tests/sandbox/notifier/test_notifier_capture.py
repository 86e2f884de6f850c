"""Capture of team notifications: the Slack incoming-webhook lookalike and the generic JSON receiver."""

import requests

SLACK_PATH = "T0000/B0000/sandbox"


def test_slack_lookalike_answers_like_slack_and_keeps_what_it_accepts(sandbox, admin):
    hook = f"{sandbox.url}/slack/services/{SLACK_PATH}"
    blocks = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Bill created*"}}]}
    ok = requests.post(hook, json={"text": "Bill SUP-1 created"}, timeout=10)
    assert (ok.status_code, ok.text, ok.headers["content-type"].split(";")[0]) == (200, "ok", "text/plain")
    assert requests.post(hook, json=blocks, timeout=10).text == "ok"
    no_text = requests.post(hook, json={"username": "sync-pipelines", "text": ""}, timeout=10)
    assert (no_text.status_code, no_text.text) == (400, "no_text")
    for bad in (b"{not json", b"[1, 2]", b"\xff"):
        invalid = requests.post(hook, data=bad, headers={"Content-Type": "application/json"}, timeout=10)
        assert (invalid.status_code, invalid.text) == (400, "invalid_payload")

    assert admin.notifications() == [
        {"channel": "slack", "path": SLACK_PATH, "body": {"text": "Bill SUP-1 created"}},
        {"channel": "slack", "path": SLACK_PATH, "body": blocks},
    ]


def test_generic_receiver_takes_any_json_in_arrival_order_until_a_reset(sandbox, admin):
    assert requests.post(f"{sandbox.url}/webhook/ops/alerts", json={"severity": "high"}, timeout=10).status_code == 200
    requests.post(f"{sandbox.url}/slack/services/{SLACK_PATH}", json={"text": "between"}, timeout=10)
    assert requests.post(f"{sandbox.url}/webhook/ops", json=[1, "two"], timeout=10).status_code == 200
    bad = requests.post(f"{sandbox.url}/webhook/ops", data=b"nope", timeout=10)
    assert bad.status_code == 400

    assert [(n["channel"], n["path"], n["body"]) for n in admin.notifications()] == [
        ("generic", "ops/alerts", {"severity": "high"}),
        ("slack", SLACK_PATH, {"text": "between"}),
        ("generic", "ops", [1, "two"]),
    ]
    admin.reset()
    assert admin.notifications() == []
