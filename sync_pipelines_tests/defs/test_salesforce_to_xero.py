"""Salesforce -> Xero against the sandbox: every account has exactly one Xero contact, linked both ways."""

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from sync_pipelines.lib.staging import StagingResource
from sync_pipelines_tests.conftest import code_location

CRM_JOB = "salesforce_to_xero_sync"


def _crm_assets() -> list:
    return list(code_location().resolve_job_def(CRM_JOB).asset_layer.executable_asset_keys)


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

    # What Xero made of the first run's writes (the won deals' invoices, their accounts' balances) is read back by
    # the next run and written to Salesforce; the run after that reads back those write-backs: an echo.
    assert run_sync(_crm_assets()).success
    admin.reset_stats()
    assert run_sync(_crm_assets()).success
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
    # The phone and address are the two-way sync's to write, the archiving the contact sync's.
    assert _writes(admin)["xero"] == 2


# Bounds a hung run only, several times what it takes on a loaded 2-core machine (it is no speed claim).
@pytest.mark.timeout(600)
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
        if e.asset_key.to_user_string() == "salesforce/landed_salesforce_accounts"
    )
    assert extract["quota_exhausted"].value is True
    admin.salesforce_limits(daily_api_limit=15000)  # the next day
    assert run_sync(_crm_assets()).success
    contacts = Counter(c.get("ContactNumber") for c in admin.get("/xero/contacts"))
    live = [a for a in admin.salesforce_records("Account") if not a["IsDeleted"]]
    assert all(contacts[a["Id"]] == 1 for a in live)


def _group_members(admin, name: str) -> set[str]:
    groups = [g for g in admin.get("/xero/contact-groups") if g["Name"] == name and g["Status"] == "ACTIVE"]
    assert len(groups) <= 1
    return {c["ContactID"] for g in groups for c in g["Contacts"]}


def test_every_lead_has_one_xero_contact_and_prospects_are_grouped_until_converted(admin, run_sync):
    admin.salesforce_reset(accounts=10, contacts_per_account=1, leads=40, opportunities=0)
    leads = admin.salesforce_records("Lead")

    assert run_sync(_crm_assets()).success

    contacts = admin.get("/xero/contacts")
    by_number = Counter(c.get("ContactNumber") for c in contacts)
    contact_of = {c["ContactNumber"]: c for c in contacts if c.get("ContactNumber")}
    live = [lead for lead in leads if not lead["IsDeleted"]]
    converted = [lead for lead in live if lead["IsConverted"]]
    open_leads = [lead for lead in live if not lead["IsConverted"]]
    assert converted and open_leads
    assert all(by_number[lead["Id"]] == 1 for lead in open_leads)
    # A converted lead is the person it became: their one Xero contact, not a second one.
    assert not any(by_number[lead["Id"]] for lead in converted)
    assert all(lead["ConvertedContactId"] in contact_of for lead in converted)
    prospects = {contact_of[lead["Id"]]["ContactID"] for lead in open_leads if not lead["Status"].startswith("Closed")}
    assert prospects and _group_members(admin, "Prospects") == prospects
    written_back = {r["Id"]: r["Xero_Contact_ID__c"] for r in admin.salesforce_records("Lead")}
    assert all(written_back[lead["Id"]] == contact_of[lead["Id"]]["ContactID"] for lead in open_leads)

    prospect = next(lead for lead in open_leads if contact_of[lead["Id"]]["ContactID"] in prospects)
    became = admin.call("POST", f"/salesforce/leads/{prospect['Id']}/convert", {"opportunity": False})
    assert run_sync(_crm_assets()).success

    assert _group_members(admin, "Prospects") == prospects - {contact_of[prospect["Id"]]["ContactID"]}
    person = {c.get("ContactNumber"): c for c in admin.get("/xero/contacts")}[became["contact"]["Id"]]
    assert person["ContactID"] == contact_of[prospect["Id"]]["ContactID"]  # matched by email, not duplicated

    admin.reset_stats()
    assert run_sync(_crm_assets()).success
    assert _writes(admin) == {"xero": 0, "salesforce": 0}, admin.stats()


def _won(admin) -> list[dict]:
    return [o for o in admin.salesforce_records("Opportunity") if o["IsWon"] and not o["IsDeleted"]]


def _invoices_by_reference(admin) -> dict[str, list[dict]]:
    invoices: dict[str, list[dict]] = {}
    for invoice in admin.get("/xero/invoices"):
        if invoice["Type"] == "ACCREC" and invoice.get("Reference"):
            invoices.setdefault(invoice["Reference"], []).append(invoice)
    return invoices


def test_a_won_deal_is_invoiced_once_with_its_products_and_paid_once_at_the_paid_stage(admin, run_sync, sync_env):
    admin.reset(invoices=0, contacts=0)
    admin.salesforce_reset(accounts=15, contacts_per_account=0, leads=0, opportunities=40)
    products = [i for i in admin.salesforce_records("OpportunityLineItem") if not i["IsDeleted"]]

    assert run_sync(_crm_assets()).success

    invoices = _invoices_by_reference(admin)
    won = [o for o in _won(admin) if o["AccountId"]]
    assert won and sorted(invoices) == sorted(o["Id"] for o in won)
    contact_of = {c.get("ContactNumber"): c["ContactID"] for c in admin.get("/xero/contacts")}
    for deal in won:
        (invoice,) = invoices[deal["Id"]]
        assert invoice["Status"] == "AUTHORISED" and invoice["Contact"]["ContactID"] == contact_of[deal["AccountId"]]
        lines = sorted((i["Name"], i["Quantity"], i["UnitPrice"]) for i in products if i["OpportunityId"] == deal["Id"])
        if lines:
            assert sorted((li["Description"], li["Quantity"], li["UnitAmount"]) for li in invoice["LineItems"]) == lines
        assert round(invoice["SubTotal"], 2) == round(deal["Amount"] or 0, 2)

    open_deal = next(o for o in admin.salesforce_records("Opportunity") if not o["IsClosed"] and o["AccountId"])
    announced = []  # what the team was told after each change
    for stage in ("Closed Won", "Paid", "Negotiation/Review", "Paid"):  # back and forth: still one of each
        seen = len(admin.notifications())
        admin.salesforce_update("Opportunity", open_deal["Id"], StageName=stage)
        assert run_sync(_crm_assets()).success
        announced.append([n["body"]["text"] for n in admin.notifications()[seen:]])
    assert announced == [[f"Deal won: {open_deal['Name']}, invoiced in Xero ({open_deal['Amount']})"],
                         [f"Deal paid: {open_deal['Name']} ({open_deal['Amount']})"], [], []]  # fmt: skip

    (invoice,) = _invoices_by_reference(admin)[open_deal["Id"]]
    payments = [p for p in admin.get("/xero/payments") if p["Invoice"]["InvoiceID"] == invoice["InvoiceID"]]
    assert invoice["Status"] == "PAID" and len(payments) == 1 and payments[0]["Amount"] == invoice["Total"]

    # A crash after Xero took the writes but before they were marked delivered: the replay sends them again
    # under the same Idempotency-Keys, and Xero answers from its cache.
    with StagingResource(database=sync_env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        conn.execute("UPDATE outbox SET status = 'pending' WHERE kind IN ('invoice', 'payment')")
    admin.reset_stats()
    assert run_sync(_crm_assets()).success
    assert {ref: len(found) for ref, found in _invoices_by_reference(admin).items()} == {
        deal["Id"]: 1 for deal in [*won, open_deal]
    }
    assert len([p for p in admin.get("/xero/payments") if p["Invoice"]["InvoiceID"] == invoice["InvoiceID"]]) == 1


def _paid_date(invoice: dict) -> str:
    """FullyPaidOnDate ("/Date(ms+0000)/", xero.md §2.2) as the date Salesforce shows."""
    millis = int(invoice["FullyPaidOnDate"].removeprefix("/Date(").split("+")[0].split(")")[0])
    return datetime.fromtimestamp(millis / 1000, UTC).date().isoformat()


def test_what_accounting_knows_goes_back_to_won_deals_and_accounts_and_nothing_echoes(admin, run_sync):
    admin.reset(invoices=0, contacts=0)
    admin.salesforce_reset(accounts=6, contacts_per_account=0, leads=0, opportunities=24)
    assert run_sync(_crm_assets()).success  # raises the won deals' invoices
    assert run_sync(_crm_assets()).success  # reads them back from Xero: what they are goes to Salesforce
    won = [o for o in _won(admin) if o["AccountId"]]
    paid = won[0]
    (invoice,) = _invoices_by_reference(admin)[paid["Id"]]
    admin.post(f"/xero/invoices/{invoice['InvoiceID']}/pay")
    assert run_sync(_crm_assets()).success  # the payment reaches the deal and its account

    invoices = {ref: found for ref, (found,) in _invoices_by_reference(admin).items()}
    deals = {o["Id"]: o for o in admin.salesforce_records("Opportunity")}
    assert invoices[paid["Id"]]["Status"] == "PAID"
    for deal in won:
        shown, invoice = deals[deal["Id"]], invoices[deal["Id"]]
        assert shown["Xero_Invoice_Number__c"] == invoice["InvoiceNumber"]
        assert shown["Xero_Invoice_Status__c"] == invoice["Status"]
        assert shown["Xero_Amount_Due__c"] == invoice["AmountDue"]
        assert shown["Xero_Invoice_URL__c"].startswith("https://go.xero.com/app/!")
        assert shown["Xero_Invoice_URL__c"].endswith(f"/invoicing/view/{invoice['InvoiceID']}")
        assert shown["Xero_Paid_Date__c"] == (_paid_date(invoice) if deal is paid else None)
    assert all(not o.get("Xero_Invoice_Number__c") for o in deals.values() if o["Id"] not in invoices)
    owed: dict[str, float] = {}
    for invoice in admin.get("/xero/invoices"):
        if invoice["Type"] == "ACCREC" and invoice["Status"] == "AUTHORISED":
            owed[invoice["Contact"]["ContactID"]] = owed.get(invoice["Contact"]["ContactID"], 0) + invoice["AmountDue"]
    accounts = [a for a in admin.salesforce_records("Account") if not a["IsDeleted"]]
    assert {a["Id"]: a["Xero_Balance__c"] for a in accounts if a["Xero_Balance__c"] is not None} == {
        a["Id"]: round(owed[a["Xero_Contact_ID__c"]], 2) for a in accounts if a["Xero_Contact_ID__c"] in owed
    }
    assert any(a["Id"] == paid["AccountId"] for a in accounts)

    admin.reset_stats()
    assert run_sync(_crm_assets()).success  # reads back the fields it wrote: an echo, nothing to write
    assert _writes(admin) == {"xero": 0, "salesforce": 0}, admin.stats()


def _contact(admin, number: str) -> dict:
    return next(c for c in admin.get("/xero/contacts") if c.get("ContactNumber") == number)


def _phone(contact: dict) -> str | None:
    return next((p["PhoneNumber"] for p in contact.get("Phones", []) if p["PhoneType"] == "DEFAULT"), None)


def test_contact_fields_flow_both_ways_conflicts_go_to_the_newest_and_nothing_echoes(admin, run_sync, sync_env):
    admin.salesforce_reset(accounts=8, contacts_per_account=1, leads=0, opportunities=0)
    assert run_sync(_crm_assets()).success  # creates the Xero contacts
    assert run_sync(_crm_assets()).success  # Xero's side is staged: both now agree
    people = [c for c in admin.salesforce_records("Contact") if not c["IsDeleted"]]
    from_xero, from_salesforce, both = people[:3]

    # A change in Xero reaches Salesforce; a change in Salesforce reaches Xero.
    new_phone = [{"PhoneType": "DEFAULT", "PhoneNumber": "0400 111 222"}]
    xero_id = _contact(admin, from_xero["Id"])["ContactID"]
    admin.post(f"/xero/contacts/{xero_id}", {"EmailAddress": "new.address@xero.test", "Phones": new_phone})
    admin.salesforce_update("Contact", from_salesforce["Id"], MailingCity="Wellington", Phone="0400 333 444")
    # Both changed the same field: Salesforce first, Xero later, so Xero's is the newest and wins.
    admin.salesforce_update("Contact", both["Id"], Email="crm@salesforce.test")
    admin.post(f"/xero/contacts/{_contact(admin, both['Id'])['ContactID']}", {"EmailAddress": "books@xero.test"})

    assert run_sync(_crm_assets()).success

    salesforce = {r["Id"]: r for r in admin.salesforce_records("Contact")}
    assert salesforce[from_xero["Id"]]["Email"] == "new.address@xero.test"
    assert salesforce[from_xero["Id"]]["Phone"] == "0400 111 222"
    moved = _contact(admin, from_salesforce["Id"])
    assert _phone(moved) == "0400 333 444"
    street = next(a for a in moved["Addresses"] if a["AddressType"] == "STREET")
    assert street["City"] == "Wellington" and street["AddressLine1"] == from_salesforce["MailingStreet"]
    assert salesforce[both["Id"]]["Email"] == "books@xero.test" == _contact(admin, both["Id"])["EmailAddress"]
    with StagingResource(database=sync_env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        audit = conn.execute(
            "SELECT record_id, outcome, detail FROM audit_log WHERE action = 'conflict' ORDER BY id"
        ).fetchall()
    assert [(record_id, outcome) for record_id, outcome, _ in audit] == [(both["Id"], "kept xero")]
    detail = json.loads(audit[0][2])
    assert (detail["field"], detail["kept"], detail["lost"]) == (
        "EmailAddress",
        "books@xero.test",
        "crm@salesforce.test",
    )

    # Each write reads back as the agreed value: two more syncs, and neither system is written again.
    assert run_sync(_crm_assets()).success
    admin.reset_stats()
    assert run_sync(_crm_assets()).success
    assert _writes(admin) == {"xero": 0, "salesforce": 0}, admin.stats()
