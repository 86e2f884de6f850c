"""SandboxServer: one Starlette app (Xero, Segment, Salesforce, Intercom, admin) served by uvicorn on loopback.

Tests start it on port 0 in a background thread; the CLI calls run_sandbox() to serve in the foreground.
"""

import ipaddress

from starlette.applications import Starlette
from starlette.routing import Mount

from sync_pipelines.lib.serving import BackgroundServer
from sync_pipelines.sandbox.admin import AdminApi
from sync_pipelines.sandbox.faults import FaultInjector
from sync_pipelines.sandbox.intercom.admin import IntercomAdmin
from sync_pipelines.sandbox.intercom.app import intercom_app
from sync_pipelines.sandbox.notifier.app import NotificationCapture
from sync_pipelines.sandbox.runtime import Runtime, SandboxSettings
from sync_pipelines.sandbox.salesforce.admin import SalesforceAdmin
from sync_pipelines.sandbox.salesforce.app import salesforce_app
from sync_pipelines.sandbox.segment.admin import SegmentAdmin
from sync_pipelines.sandbox.segment.app import SegmentSandbox
from sync_pipelines.sandbox.segment.profiles import ProfileApiSandbox
from sync_pipelines.sandbox.segment.public_api import PublicApiSandbox
from sync_pipelines.sandbox.store import Store
from sync_pipelines.sandbox.tls import local_tls
from sync_pipelines.sandbox.xero.admin import XeroAdmin
from sync_pipelines.sandbox.xero.app import XeroSandbox

__all__ = ["SandboxServer", "SandboxSettings", "build_app", "run_sandbox"]


def build_app(runtime: Runtime) -> Starlette:
    """The URL layout of DESIGN.md: /xero/{login,identity,api}, /segment, /segmentapis (Segment's Public API),
    /profiles (Segment's Profile API), /salesforce (login host and instance; /salesforce/orgs/<n> for the n-th org
    beyond the first), /intercom, /_admin (with /_admin/<vendor> for each), plus notification capture."""
    salesforce = [  # the first org last: /salesforce would take the others' paths
        route
        for org in reversed(runtime.salesforce_orgs)
        for route in (
            Mount(f"/{org.path}", app=FaultInjector(salesforce_app(org), "salesforce", runtime)),
            Mount(f"/_admin/{org.path}", app=SalesforceAdmin(org).app()),
        )
    ]
    return Starlette(
        routes=[
            *salesforce,
            Mount("/xero", app=FaultInjector(XeroSandbox(runtime).app(), "xero", runtime)),
            Mount("/_admin/xero", app=XeroAdmin(runtime).app()),
            Mount("/segment", app=FaultInjector(SegmentSandbox(runtime).app(), "segment", runtime)),
            Mount("/_admin/segment", app=SegmentAdmin(runtime.store, runtime.segment).app()),
            Mount("/segmentapis", app=PublicApiSandbox(runtime).app()),
            Mount("/profiles", app=ProfileApiSandbox(runtime).app()),
            Mount("/intercom", app=intercom_app(runtime)),
            Mount("/_admin/intercom", app=IntercomAdmin(runtime.intercom).app()),
            Mount("/_admin", app=AdminApi(runtime).app()),
            *NotificationCapture(runtime).routes(),
        ]
    )


def _loopback(host: str) -> str:
    """The sandbox has no auth on /_admin, so it refuses to listen anywhere but loopback."""
    address = "127.0.0.1" if host == "localhost" else host
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"the sandbox only binds loopback addresses, not {host!r}")
    return address


class SandboxServer(BackgroundServer):
    """A running sandbox; state lives in settings.state_path and is seeded only when that file is new."""

    def __init__(self, settings: SandboxSettings, host: str = "127.0.0.1", port: int = 0, https: bool = False):
        """With `https`, serve TLS under a local CA whose certificate, `ca_cert`, sits next to the state file."""
        self.settings = settings
        address = _loopback(host)
        tls = local_tls(settings.state_path.parent, address) if https else None
        self.ca_cert = tls.ca_cert if tls else None
        self._store = Store(settings.state_path)
        self.runtime = Runtime(settings, self._store)
        super().__init__(
            self._app,
            address,
            port,
            name="sandbox",
            started=self.runtime.start_webhooks,
            stopped=self._close,
            tls=tls.server_pem if tls else None,
        )

    @property
    def tenant_id(self) -> str:
        """The first Xero organisation's tenant ID (GET /connections lists every one)."""
        return self.runtime.tenant_id

    @property
    def salesforce_urls(self) -> dict[str, str]:
        """Every Salesforce org's My Domain (its login host and instance) by OrganizationId, the first first."""
        return {org.org_id: f"{self.url}/{org.path}" for org in self.runtime.salesforce_orgs}

    @property
    def tenant_ids(self) -> list[str]:
        """Every Xero organisation's tenant ID, the first first."""
        return [organisation.tenant_id for organisation in self.runtime.organisations]

    def _app(self, url: str) -> Starlette:
        # Webhook events carry resource URLs under the address the sandbox really listens on.
        for organisation in self.runtime.organisations:
            organisation.webhooks.base_url = url
        for org in self.runtime.salesforce_orgs:
            org.outbound.instance_url = f"{url}/{org.path}"
        return build_app(self.runtime)

    def _close(self) -> None:
        self.runtime.stop_webhooks()
        self.runtime.close()
        self._store.close()


def run_sandbox(settings: SandboxSettings, host: str = "127.0.0.1", port: int = 8765, https: bool = False) -> None:
    """Serve until interrupted, as `sync-pipelines sandbox` does."""
    SandboxServer(settings, host, port, https).serve_forever()
