"""Salesforce -> Xero against the sandbox: every account has exactly one Xero contact, linked both ways."""

from collections import Counter

from sync_pipelines.definitions import defs

CRM_JOB = "salesforce_to_xero_sync"


def _crm_assets() -> list:
    return list(defs().resolve_job_def(CRM_JOB).asset_layer.executable_asset_keys)


def _writes(admin) -> dict[str, int]:
    """Writes either system received since the stats were last reset."""
    stats = admin.stats()
    return {
        "xero": sum(n for call, n in stats["xero"].items() if call.startswith(("POST", "PUT"))),
        "salesforce": sum(n for call, n in stats.get("salesforce", {}).items() if call.startswith(("POST", "PATCH"))
                          and "/query" not in call and "/oauth2/" not in call),
    }  # fmt: skip


def test_every_account_and_contact_has_exactly_one_xero_contact_linked_both_ways_and_reruns_write_nothing(
    admin, run_sync
):
    admin.salesforce_reset(accounts=120, contacts_per_account=1, leads=10, opportunities=10)
    records = {sobject: admin.salesforce_records(sobject) for sobject in ("Account", "Contact")}
    live = {sobject: [r for r in rows if not r["IsDeleted"]] for sobject, rows in records.items()}
    # A Xero contact that already stands for one of the accounts, under a differently written name; and one
    # that is someone else with the same name as one of the people.
    existing = admin.post("/xero/contacts", {"Name": live["Account"][0]["Name"].upper() + "."})
    namesake = admin.post("/xero/contacts", {"Name": live["Contact"][0]["Name"], "EmailAddress": "other@else.test"})

    assert run_sync(_crm_assets()).success

    contacts = admin.get("/xero/contacts")
    by_number = Counter(c.get("ContactNumber") for c in contacts)
    for sobject, rows in records.items():
        assert all(by_number[r["Id"]] == 1 for r in live[sobject]), sobject
        assert not any(by_number[r["Id"]] for r in rows if r["IsDeleted"])  # never created just to be archived
    contact_of = {c["ContactNumber"]: c for c in contacts if c.get("ContactNumber")}
    assert contact_of[live["Account"][0]["Id"]]["ContactID"] == existing["ContactID"]  # matched, not duplicated
    person = contact_of[live["Contact"][0]["Id"]]
    assert person["ContactID"] != namesake["ContactID"]  # a namesake is not a match for a person...
    assert person["Name"] == f"{live['Contact'][0]['Name']} ({live['Contact'][0]['Id']})"  # ...and keeps its own
    assert all(contact_of[r["Id"]]["Name"].startswith(r["Name"]) for rows in live.values() for r in rows)
    assert all(contact_of[r["Id"]]["EmailAddress"] == r["Email"] for r in live["Contact"] if r["Email"])
    for sobject in records:
        written_back = {r["Id"]: r["Xero_Contact_ID__c"] for r in admin.salesforce_records(sobject)}
        assert all(written_back[r["Id"]] == contact_of[r["Id"]]["ContactID"] for r in live[sobject]), sobject

    admin.reset_stats()
    assert run_sync(_crm_assets()).success  # reads back our own write-back: an echo, nothing to write
    assert _writes(admin) == {"xero": 0, "salesforce": 0}, admin.stats()


def test_a_salesforce_change_updates_its_xero_contact_and_a_deletion_archives_it(admin, run_sync):
    admin.salesforce_reset(accounts=20, contacts_per_account=1, leads=5, opportunities=5)
    assert run_sync(_crm_assets()).success
    renamed, removed = [a for a in admin.salesforce_records("Account") if not a["IsDeleted"]][:2]
    admin.salesforce_update("Account", renamed["Id"], Phone="(555) 010-2030", BillingCity="Springfield")
    admin.salesforce_delete("Account", removed["Id"])
    admin.reset_stats()

    assert run_sync(_crm_assets()).success

    contact_of = {c["ContactNumber"]: c for c in admin.get("/xero/contacts") if c.get("ContactNumber")}
    updated = contact_of[renamed["Id"]]
    assert {p["PhoneType"]: p["PhoneNumber"] for p in updated["Phones"]}["DEFAULT"] == "(555) 010-2030"
    assert next(a for a in updated["Addresses"] if a["AddressType"] == "STREET")["City"] == "Springfield"
    assert contact_of[removed["Id"]]["ContactStatus"] == "ARCHIVED"
    assert _writes(admin)["xero"] == 1  # both changes in one batch


def test_the_quota_budget_stops_a_run_at_a_checkpoint_and_the_next_run_resumes_from_it(admin, run_sync, sync_env):
    admin.salesforce_reset(accounts=2500, contacts_per_account=0, leads=0, opportunities=0)
    run_sync(_crm_assets())  # connects and syncs; then the org's day is nearly spent
    admin.salesforce_create("Account", Name="Late Arrival Ltd")
    limits = admin.salesforce_limits()
    admin.salesforce_limits(daily_api_limit=limits["used"] + 3)

    stopped = run_sync(_crm_assets())

    assert stopped.success
    extract = next(
        e.step_materialization_data.materialization.metadata
        for e in stopped.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "salesforce/raw/accounts"
    )
    assert extract["quota_exhausted"].value is True
    admin.salesforce_limits(daily_api_limit=15000)  # the next day
    assert run_sync(_crm_assets()).success
    contacts = Counter(c.get("ContactNumber") for c in admin.get("/xero/contacts"))
    live = [a for a in admin.salesforce_records("Account") if not a["IsDeleted"]]
    assert all(contacts[a["Id"]] == 1 for a in live)
