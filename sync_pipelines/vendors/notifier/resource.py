"""Dagster resource for team notifications; bind `url` with dg.EnvVar (a Slack webhook URL is a secret)."""

import dagster as dg
from pydantic import PrivateAttr

from sync_pipelines.vendors.notifier.client import NotifierClient


class NotifierResource(dg.ConfigurableResource):
    """Where the team hears about records that need a person (e.g. a new bill); an empty url turns it off."""

    url: str
    style: str = "slack"  # "slack" (incoming webhook) or "generic" (the notification as JSON)

    _client: NotifierClient | None = PrivateAttr(default=None)

    def get_client(self) -> NotifierClient:
        if self._client is None:
            self._client = NotifierClient(self.url, self.style)
        return self._client
