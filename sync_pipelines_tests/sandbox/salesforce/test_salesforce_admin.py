"""The org's seed, persistence, admin record changes, injected faults and request stats."""

from pathlib import Path

import requests

from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines.sandbox.salesforce import ids, seed
from sync_pipelines.sandbox.store import dumps
from sync_pipelines_tests.sandbox.salesforce.conftest import VERSION, SalesforceApi, token


def test_ids_carry_the_case_checksum():
    # salesforce.md §7: the 18-char form of the fact sheet's example id.
    assert ids.normalize("001D000000IRFma") == "001D000000IRFmaIAH"
    assert ids.normalize("001d000000irfmaiah") == "001D000000IRFmaIAH"
    assert ids.normalize("001D000000IRFm") is None and ids.normalize("001D000000IRFmaIA!") is None
    assert ids.make_id("001", 3) < ids.make_id("001", 62) < ids.make_id("001", 63)  # creation order sorts


def test_the_same_seed_gives_identical_rows_and_sizes_are_honoured(admin):
    assert dumps(seed.generate(7, 40, 2, 10, 15)) == dumps(seed.generate(7, 40, 2, 10, 15))
    assert dumps(seed.generate(8, 40, 2, 10, 15)) != dumps(seed.generate(7, 40, 2, 10, 15))
    summary = admin.salesforce_reset(seed=3, accounts=120, contacts_per_account=3, leads=40, opportunities=50)
    listing = admin.salesforce_records("Account")
    assert len(listing) == 120 and summary["records"]["Account"] + summary["deleted"]["Account"] == 120
    assert len(admin.salesforce_records("Contact")) == 360 and len(admin.salesforce_records("Lead")) == 40
    assert admin.salesforce_reset(seed=3, accounts=120, contacts_per_account=3, leads=40, opportunities=50) == summary
    assert admin.salesforce_records("Account") == listing
    opportunities = admin.salesforce_records("Opportunity")
    assert {o["StageName"] for o in opportunities} >= {"Closed Won", "Closed Lost", "Prospecting"}
    assert all(o["IsWon"] == (o["StageName"] == "Closed Won") for o in opportunities)


def test_state_survives_a_restart_and_is_not_reseeded(tmp_path: Path):
    settings = SandboxSettings(state_path=tmp_path / "state.db", salesforce_accounts=30)
    with SandboxServer(settings) as server:
        api = SalesforceApi(server)
        created = api.request("POST", "sobjects/Account", json={"Name": "Survivor"}).json()["id"]
        before = requests.get(f"{server.url}/_admin/salesforce/records/Account", timeout=10).json()
    with SandboxServer(settings) as server:
        after = requests.get(f"{server.url}/_admin/salesforce/records/Account", timeout=10).json()
        assert after == before and created in {r["Id"] for r in after}
        # The session issued before the restart is still valid (on the new port).
        record = requests.get(
            f"{server.url}/salesforce/services/data/v{VERSION}/sobjects/Account/{created}",
            headers=api.headers(),
            timeout=10,
        )
        assert record.json()["Name"] == "Survivor"


def test_admin_edits_are_user_edits_and_touches_are_system_changes(sf, admin):
    [account] = admin.salesforce_records("Account", deleted=False)[:1]
    edited = admin.salesforce_update("Account", account["Id"], Phone="555-0000")
    assert edited["Phone"] == "555-0000" and edited["LastModifiedDate"] == edited["SystemModstamp"]
    assert edited["SystemModstamp"] > account["SystemModstamp"]
    pinned = admin.salesforce_update("Account", account["Id"], SystemModstamp="2024-06-01T00:00:00Z")
    assert pinned["SystemModstamp"] == "2024-06-01T00:00:00.000+0000"
    touched = admin.call("POST", f"/salesforce/records/Account/{account['Id']}/touch")
    assert (
        touched["LastModifiedDate"] == edited["LastModifiedDate"]
        and touched["SystemModstamp"] > pinned["SystemModstamp"]
    )
    [row] = sf.records(f"SELECT SystemModstamp, LastModifiedDate FROM Account WHERE Id = '{account['Id']}'")
    assert (row["SystemModstamp"], row["LastModifiedDate"]) == (touched["SystemModstamp"], touched["LastModifiedDate"])

    bulk = admin.call("POST", "/salesforce/touch", {"object": "Contact", "count": 5})
    assert bulk["touched"] == 5
    changed = sf.records(f"SELECT Id FROM Contact WHERE SystemModstamp >= {touched['SystemModstamp'][:19]}Z")
    assert set(bulk["ids"]) <= {r["Id"] for r in changed}

    refused = requests.post(f"{admin.url}/salesforce/records/Account", json={"Phone": "1"}, timeout=10)
    assert refused.status_code == 400 and refused.json()["errorCode"] == "REQUIRED_FIELD_MISSING"
    missing = requests.post(f"{admin.url}/salesforce/records/Account/0015g00000zzzzzAAA", json={}, timeout=10)
    assert missing.status_code == 404


def test_injected_faults_look_like_salesforce_and_stats_count_calls(sf, admin, sandbox):
    admin.reset_stats()
    admin.faults(salesforce={"error_rate": 1})
    failures = [sf.request("GET", "limits") for _ in range(6)]
    assert {f.status_code for f in failures} <= {500, 503}
    assert {f.json()[0]["errorCode"] for f in failures} <= {"UNKNOWN_EXCEPTION", "SERVER_UNAVAILABLE"}
    admin.faults(salesforce={"error_rate": 0, "rate_limit_rate": 1})
    limited = sf.request("GET", "limits")
    assert limited.status_code == 403 and "ConcurrentRequests" in limited.json()[0]["message"]
    assert token(sandbox.url, grant_type="client_credentials").status_code == 403  # the login host too
    admin.faults(salesforce={"rate_limit_rate": 0})
    assert sf.request("GET", "limits").status_code == 200
    assert admin.salesforce_limits()["used"] >= 0  # admin is never faulted
    stats = admin.stats()
    assert stats["salesforce"]["GET /services/data/v62.0/limits"] == 8 and stats["faults_injected"] == 8
