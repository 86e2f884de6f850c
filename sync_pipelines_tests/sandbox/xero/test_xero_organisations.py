"""One app connected to several Xero organisations: each its own tenant, records, limits and connection."""

from collections.abc import Iterator

import pytest
import requests

from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines.sandbox.xero.seed import tenant_id
from sync_pipelines_tests.conftest import SandboxAdmin
from sync_pipelines_tests.sandbox.conftest import XeroApi

ORGANISATIONS = 3


@pytest.fixture
def sandbox(tmp_path) -> Iterator[SandboxServer]:
    settings = SandboxSettings(state_path=tmp_path / "sandbox.db", xero_organisations=ORGANISATIONS, invoices=30)
    with SandboxServer(settings) as server:
        yield server


@pytest.fixture
def api(sandbox) -> XeroApi:
    return XeroApi(sandbox)


def _as(api: XeroApi, tenant: str) -> dict[str, str]:
    return {**api.headers(), "xero-tenant-id": tenant}


def _connections(api: XeroApi) -> list[dict]:
    headers = {"Authorization": f"Bearer {api.tokens['access_token']}"}
    return requests.get(f"{api.base}/xero/api/connections", headers=headers, timeout=10).json()


def test_one_consent_connects_every_organisation_each_with_its_own_records(sandbox, api):
    connections = _connections(api)
    assert [c["tenantId"] for c in connections] == sandbox.tenant_ids
    assert sandbox.tenant_ids == [tenant_id(42, number) for number in range(1, ORGANISATIONS + 1)]
    assert len({c["tenantName"] for c in connections}) == ORGANISATIONS
    assert len({c["id"] for c in connections}) == ORGANISATIONS
    assert len({c["authEventId"] for c in connections}) == 1

    invoices = {tenant: api.all_pages("Invoices", headers=_as(api, tenant)) for tenant in sandbox.tenant_ids}
    ids = [{invoice["InvoiceID"] for invoice in listed} for listed in invoices.values()]
    assert all(len(found) == 30 for found in ids)
    assert len(set().union(*ids)) == 30 * ORGANISATIONS  # no record is another organisation's
    for tenant in sandbox.tenant_ids:
        organisation = api.request("GET", "Organisation", headers=_as(api, tenant)).json()["Organisations"][0]
        assert organisation["OrganisationID"] == tenant

    second = sandbox.tenant_ids[1]
    created = api.request("PUT", "Contacts", headers=_as(api, second), json={"Contacts": [{"Name": "Only In Two"}]})
    assert created.status_code == 200, created.text
    named = {
        tenant: {c["Name"] for c in api.all_pages("Contacts", headers=_as(api, tenant))}
        for tenant in sandbox.tenant_ids
    }
    assert [tenant for tenant, names in named.items() if "Only In Two" in names] == [second]

    unknown = api.request("GET", "Invoices", headers=_as(api, "00000000-0000-4000-8000-000000000000"))
    assert unknown.status_code == 403


def test_each_organisation_has_its_own_minute_limit(sandbox, api):
    SandboxAdmin(sandbox.url).call("PUT", "/limits", {"minute_limit": 2})
    first, second = sandbox.tenant_ids[:2]
    statuses = [api.request("GET", "Invoices", headers=_as(api, first)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert api.request("GET", "Invoices", headers=_as(api, second)).status_code == 200
    # The admin API counts each tenant's calls by answer, and the most it had in flight at once.
    counted = SandboxAdmin(sandbox.url).call("GET", "/stats")["xero_tenants"]
    assert counted == {
        first: {"calls": 3, "200": 2, "429": 1, "peak_in_flight": 1},
        second: {"calls": 1, "200": 1, "peak_in_flight": 1},
    }


def test_removing_one_connection_leaves_the_others(sandbox, api):
    connections = _connections(api)
    gone = connections[1]
    headers = {"Authorization": f"Bearer {api.tokens['access_token']}"}
    removed = requests.delete(f"{api.base}/xero/api/connections/{gone['id']}", headers=headers, timeout=10)
    assert removed.status_code == 204
    assert [c["tenantId"] for c in _connections(api)] == [t for t in sandbox.tenant_ids if t != gone["tenantId"]]
    assert api.request("GET", "Invoices", headers=_as(api, gone["tenantId"])).status_code == 403
    assert api.request("GET", "Invoices", headers=_as(api, sandbox.tenant_ids[0])).status_code == 200


def test_the_admin_api_acts_on_the_organisation_it_names(sandbox, api):
    admin = SandboxAdmin(sandbox.url)
    second = sandbox.tenant_ids[1]
    listed = {invoice["InvoiceID"] for invoice in admin.call("GET", "/xero/invoices", tenant=second)}
    assert listed == {invoice["InvoiceID"] for invoice in api.all_pages("Invoices", headers=_as(api, second))}
    assert listed.isdisjoint(invoice["InvoiceID"] for invoice in admin.call("GET", "/xero/invoices"))
    unknown = requests.get(f"{admin.url}/xero/invoices", params={"tenant": "nobody"}, timeout=10)
    assert unknown.status_code == 404
