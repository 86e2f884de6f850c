"""Posts notifications one at a time, retrying what may succeed later and reporting each outcome.

Slack incoming webhooks (docs.slack.dev "Sending messages using incoming webhooks"): POST JSON with `text`;
200 `ok` on success, 4xx with a reason (`invalid_payload`, `no_text`, `channel_is_archived`, ...) that a resend
cannot fix, 429 with Retry-After past about one message a second. A generic webhook gets the whole
notification as JSON and an `Idempotency-Key` header, so a receiver that honours it never shows one twice.
"""

import requests

from sync_pipelines.vendors.delivery import DeliveryReport
from sync_pipelines.vendors.retrying import RetryableResponse, retry_after_seconds, retrying

STYLES = ("slack", "generic")


class NotifierClient:
    def __init__(self, url: str, style: str = "slack", timeout: float = 10, max_attempts: int = 5) -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}")
        self._url, self._style, self._timeout, self._max_attempts = url, style, timeout, max_attempts
        self._session = requests.Session()
        self.sent = 0

    def send(self, notifications: list[dict], report: DeliveryReport | None = None) -> DeliveryReport:
        """Each notification is {"messageId", "text", ...}; with no URL configured there is no one to tell.

        One at a time, each recorded as in flight before it is posted: a crash re-sends at most that one.
        """
        report = DeliveryReport() if report is None else report
        for notification in notifications:
            message_id = notification["messageId"]
            if not self._url:
                report.delivered.append(message_id)
                continue
            report.sending([message_id])
            try:
                retrying(self._max_attempts)(self._post, notification)
            except RetryableResponse as error:
                report.failed.append((message_id, str(error)))
            except requests.HTTPError as error:
                report.rejected.append((message_id, str(error)))
            except requests.RequestException as error:
                report.failed.append((message_id, str(error)))
            else:
                report.delivered.append(message_id)
        report.settle()
        return report

    def _post(self, notification: dict) -> None:
        if self._style == "slack":
            body, headers = {"text": notification["text"]}, {}
        else:
            body, headers = notification, {"Idempotency-Key": notification["messageId"]}
        response = self._session.post(self._url, json=body, headers=headers, timeout=self._timeout)
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableResponse(response, retry_after_seconds(response))
        if response.status_code >= 400:
            raise requests.HTTPError(f"{response.status_code}: {response.text[:200]}")
        self.sent += 1
