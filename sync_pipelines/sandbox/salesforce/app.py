"""The Salesforce sandbox app, mounted at /salesforce: login host and instance in one (salesforce.md §1, §2).

A production client differs only by base URL: login_url "{base}/salesforce" vs "https://login.salesforce.com",
and the instance_url every token response names ("{base}/salesforce" vs "https://<org>.my.salesforce.com").
"""

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sync_pipelines.sandbox.salesforce.bulk import BulkApi
from sync_pipelines.sandbox.salesforce.errors import SalesforceError, not_found
from sync_pipelines.sandbox.salesforce.oauth import OAuth
from sync_pipelines.sandbox.salesforce.org import SalesforceOrg
from sync_pipelines.sandbox.salesforce.rest import DataApi


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer with Salesforce's error array, not Starlette's plain text."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return SalesforceError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed").response()
    return not_found().response()


class SeedOnFirstUse:
    """Seed the org before the first request that reaches it (see org.py)."""

    def __init__(self, app: ASGIApp, org: SalesforceOrg):
        self.app, self.org = app, org

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.org.ensure_seeded()
        await self.app(scope, receive, send)


def salesforce_app(org: SalesforceOrg) -> ASGIApp:
    oauth = OAuth(org)
    data = DataApi(org, oauth)
    app = Starlette(
        routes=[*oauth.routes(), *data.routes(), *BulkApi(org, data).routes()],
        middleware=[Middleware(GZipMiddleware, minimum_size=1000)],  # salesforce.md §2: Accept-Encoding: gzip
        exception_handlers={404: _http_error, 405: _http_error},
    )
    return SeedOnFirstUse(app, org)
