"""Several Salesforce orgs in one sandbox: each at its own My Domain with its own ids, records, sessions and
allocation, as separate orgs are at Salesforce."""

import pytest
import requests

from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines_tests.sandbox.salesforce.conftest import CLIENT, VERSION


@pytest.fixture
def orgs(tmp_path):
    with SandboxServer(SandboxSettings(state_path=tmp_path / "sandbox.db", salesforce_orgs=2)) as server:
        yield server


def _session(my_domain: str) -> dict:
    form = {"grant_type": "client_credentials"}
    response = requests.post(f"{my_domain}/services/oauth2/token", data=form, auth=CLIENT, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _accounts(session: dict) -> list[dict]:
    response = requests.get(
        f"{session['instance_url']}/services/data/v{VERSION}/query",
        params={"q": "SELECT Id, Name FROM Account ORDER BY Id"},
        headers={"Authorization": f"Bearer {session['access_token']}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["records"]


def test_each_org_serves_its_own_records_under_its_own_ids_and_sessions(orgs: SandboxServer):
    (first, first_url), (second, second_url) = orgs.salesforce_urls.items()
    assert first_url == f"{orgs.url}/salesforce" and second_url == f"{orgs.url}/salesforce/orgs/2"
    sessions = {org: _session(url) for org, url in orgs.salesforce_urls.items()}
    for org, url in orgs.salesforce_urls.items():
        # The token response names the org's own instance and identity (salesforce.md §1.5).
        assert sessions[org]["instance_url"] == url
        assert sessions[org]["id"].startswith(f"{url}/id/{org}/")
    accounts = {org: _accounts(session) for org, session in sessions.items()}
    ids = {org: {account["Id"] for account in found} for org, found in accounts.items()}
    names = {org: {account["Name"] for account in found} for org, found in accounts.items()}
    assert ids[first] and ids[second]  # seeded alike (less the accounts each seed put in the recycle bin) ...
    assert not ids[first] & ids[second]  # ... under ids no other org has (salesforce.md §7) ...
    assert names[first] != names[second]  # ... from a random stream of its own

    # One org's session opens nothing in another.
    stranger = requests.get(
        f"{second_url}/services/data/v{VERSION}/limits",
        headers={"Authorization": f"Bearer {sessions[first]['access_token']}"},
        timeout=10,
    )
    assert stranger.status_code == 401 and stranger.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_each_org_has_its_own_daily_allocation_and_admin(orgs: SandboxServer):
    first_url, second_url = orgs.salesforce_urls.values()
    second_admin = second_url.replace("/salesforce", "/_admin/salesforce", 1)
    assert requests.put(f"{second_admin}/limits", json={"used": 15_000}, timeout=10).status_code == 200
    exhausted = _session(second_url)
    refused = requests.get(
        f"{second_url}/services/data/v{VERSION}/limits",
        headers={"Authorization": f"Bearer {exhausted['access_token']}"},
        timeout=10,
    )
    assert refused.status_code == 403 and refused.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert _accounts(_session(first_url))  # the first org's allocation is untouched

    created = requests.post(f"{second_admin}/records/Account", json={"Name": "Only In The Second"}, timeout=10)
    assert created.status_code == 200, created.text
    second_names = {a["Name"] for a in requests.get(f"{second_admin}/records/Account", timeout=10).json()}
    first_names = {a["Name"] for a in requests.get(f"{orgs.url}/_admin/salesforce/records/Account", timeout=10).json()}
    assert "Only In The Second" in second_names and "Only In The Second" not in first_names
