"""The one place where endpoints and secrets are bound: all from the environment.

`sync-pipelines demo|dev` point these at the embedded sandbox; set them yourself for the real APIs (README).
"""

import os

import dagster as dg

from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.vendors.intercom.resource import IntercomResource
from sync_pipelines.vendors.notifier.resource import NotifierResource
from sync_pipelines.vendors.salesforce.resource import SalesforceResource
from sync_pipelines.vendors.segment.resource import SegmentResource
from sync_pipelines.vendors.segment.workspace import SegmentWorkspaceResource
from sync_pipelines.vendors.xero import settings
from sync_pipelines.vendors.xero.resource import XeroResource
from sync_pipelines.webhooks.inbox import WebhookInboxResource


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "staging_db": StagingResource(database=dg.EnvVar("SYNC_PIPELINES_DUCKDB")),
            "xero": XeroResource(
                api_url=dg.EnvVar("XERO_API_URL"),
                identity_url=dg.EnvVar("XERO_IDENTITY_URL"),
                client_id=dg.EnvVar("XERO_CLIENT_ID"),
                client_secret=dg.EnvVar("XERO_CLIENT_SECRET"),
                token_path=dg.EnvVar("XERO_TOKEN_PATH"),
                token_key=dg.EnvVar("SYNC_PIPELINES_TOKEN_KEY"),
                # Which organisation, when the app is connected to more than one (GET /connections lists them:
                # https://developer.xero.com/documentation/guides/oauth2/tenants); unset, the only one connected.
                tenant_id=os.environ.get("XERO_TENANT_ID") or None,
                # Xero's limit is 60 a minute (https://developer.xero.com/documentation/guides/oauth2/limits/);
                # a sandbox set to allow more (a migration rehearsed at speed) says so here.
                calls_per_minute=int(os.environ.get("XERO_CALLS_PER_MINUTE", settings.CALLS_PER_MINUTE)),
            ),
            "salesforce": SalesforceResource(
                login_url=dg.EnvVar("SALESFORCE_LOGIN_URL"),
                client_id=dg.EnvVar("SALESFORCE_CLIENT_ID"),
                client_secret=dg.EnvVar("SALESFORCE_CLIENT_SECRET"),
                token_path=dg.EnvVar("SALESFORCE_TOKEN_PATH"),
                token_key=dg.EnvVar("SYNC_PIPELINES_TOKEN_KEY"),
            ),
            "intercom": IntercomResource(
                base_url=dg.EnvVar("INTERCOM_API_URL"), access_token=dg.EnvVar("INTERCOM_ACCESS_TOKEN")
            ),
            "segment": SegmentResource(api_url=dg.EnvVar("SEGMENT_API_URL"), write_key=dg.EnvVar("SEGMENT_WRITE_KEY")),
            # A webhook sensor's tick listens 4 of the 5 s between the daemon's visits (its sensors run in threads,
            # the CLI's dagster.yaml): a change starts its run within a fraction of a second, not up to 5 s later.
            "webhook_inbox": WebhookInboxResource(path=dg.EnvVar("SYNC_PIPELINES_WEBHOOK_INBOX"), listen_seconds=4.0),
            "segment_workspace": SegmentWorkspaceResource(
                inbox_path=dg.EnvVar("SYNC_PIPELINES_WEBHOOK_INBOX"),
                public_api_url=dg.EnvVar("SEGMENT_PUBLIC_API_URL"),
                public_api_token=dg.EnvVar("SEGMENT_PUBLIC_API_TOKEN"),
                profile_api_url=dg.EnvVar("SEGMENT_PROFILE_API_URL"),
                space_id=dg.EnvVar("SEGMENT_SPACE_ID"),
                profile_api_token=dg.EnvVar("SEGMENT_PROFILE_API_TOKEN"),
            ),
            # Set to "" to turn team notifications off.
            "notifier": NotifierResource(url=dg.EnvVar("SYNC_PIPELINES_NOTIFY_URL")),
        }
    )
