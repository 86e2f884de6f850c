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


def test_every_account_has_exactly_one_xero_contact_linked_both_ways_and_reruns_write_nothing(admin, run_sync):
    admin.salesforce_reset(accounts=120, contacts_per_account=1, leads=10, opportunities=10)
    accounts = admin.salesforce_records("Account")
    live = [a for a in accounts if not a["IsDeleted"]]
    # A Xero contact that already stands for one of the accounts, under a differently written name.
    existing = admin.post("/xero/contacts", {"Name": live[0]["Name"].upper() + "."})

    assert run_sync(_crm_assets()).success

    contacts = admin.get("/xero/contacts")
    by_number = Counter(c.get("ContactNumber") for c in contacts)
    assert all(by_number[a["Id"]] == 1 for a in live)
    assert not any(by_number[a["Id"]] for a in accounts if a["IsDeleted"])  # never created just to be archived
    contact_of = {c["ContactNumber"]: c for c in contacts if c.get("ContactNumber")}
    assert contact_of[live[0]["Id"]]["ContactID"] == existing["ContactID"]  # matched by name, not duplicated
    assert all(contact_of[a["Id"]]["Name"] == a["Name"] for a in live)
    written_back = {a["Id"]: a["Xero_Contact_ID__c"] for a in admin.salesforce_records("Account")}
    assert all(written_back[a["Id"]] == contact_of[a["Id"]]["ContactID"] for a in live)

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
