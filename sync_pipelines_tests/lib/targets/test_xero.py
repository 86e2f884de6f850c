"""Xero as a target: other systems' records matched to Xero contacts, then written, against the sandbox."""

from types import SimpleNamespace

import pandas as pd

from sync_pipelines.lib import staging
from sync_pipelines.lib.deliveries import Changes
from sync_pipelines.lib.entities import Entity
from sync_pipelines.lib.matching import match_contacts, normalised_name
from sync_pipelines.lib.staging import StagingResource, row_versions
from sync_pipelines.lib.targets.xero import XeroTarget
from sync_pipelines.lib.targets.xero_mapping import ContactMatch, XeroMapping
from sync_pipelines.vendors.delivery import Deliveries, DeliveryReport
from sync_pipelines.vendors.notifier.resource import NotifierResource
from sync_pipelines.vendors.xero.entities import CONTACTS as XERO_CONTACTS
from sync_pipelines_tests.conftest import xero_resource

MAPPING = XeroMapping(
    contact={"Name": "name", "EmailAddress": "email", "TaxNumber": "tax_number", "Phone": "phone"},
    match=ContactMatch(email="email", name="name", tax_number="tax_number"),
)
TARGET = XeroTarget(MAPPING)


def _crm(entity: str) -> Entity:
    """Another system's entity whose rows the tests make by hand (nothing extracts or validates them)."""
    return Entity("crm", entity, entity, source=None, contract=None, key="id", flatten=None)


def _deliver(
    target: XeroTarget, resources, messages, resending: frozenset[str] = frozenset()
) -> dict[str, DeliveryReport]:
    deliveries = Deliveries(resending=resending)
    target.deliver(resources, [m.payload for m in messages], deliveries)
    return deliveries.reports


def test_names_are_normalised_for_matching_but_keep_their_legal_form():
    assert normalised_name("ACME, Ltd.") == normalised_name("Acme  Ltd") == "acme ltd"
    assert normalised_name("Lee LLC") != normalised_name("Lee Inc")
    assert normalised_name(None) is None and normalised_name("--") is None


def test_the_mapping_writes_phones_and_addresses_in_xeros_shape_and_leaves_empty_values_out():
    mapping = XeroMapping(contact={"Name": "name", "Phone": "phone", "City": "city", "Street": "street"})
    body = mapping.contact_body({"name": "Acme", "phone": "(555) 010-2030", "city": "Springfield", "street": None})
    assert body == {
        "Name": "Acme",
        "Phones": [{"PhoneType": "DEFAULT", "PhoneNumber": "(555) 010-2030"}],
        "Addresses": [{"AddressType": "STREET", "City": "Springfield"}],
    }
    problems = mapping.check({"name", "phone", "city"}, "Accounts")
    assert problems == ["contact.Street: 'street' is not a column of Accounts"]


def test_records_match_by_email_name_and_tax_number_and_the_rest_are_created(admin, run_sync, sync_env):
    admin.reset(invoices=0, contacts=6)
    contacts = [c for c in admin.get("/xero/contacts") if c["ContactStatus"] == "ACTIVE"]
    by_email, by_name, by_tax = contacts[:3]
    admin.post(f"/xero/contacts/{by_tax['ContactID']}", {"TaxNumber": "GB123456789"})
    assert run_sync([XERO_CONTACTS.raw_key, XERO_CONTACTS.staged_key]).success  # Xero's contacts, staged
    rows = pd.DataFrame(
        {
            "id": ["001A", "001B", "001C", "001D"],
            "name": ["Someone Else", by_name["Name"].upper() + ".", "Taxed Elsewhere", "Brand New Co"],
            "email": [by_email["EmailAddress"].upper(), "sales@other.test", None, "hello@brandnew.test"],
            "tax_number": [None, None, "GB123456789", None],
            "phone": [None, None, None, "(555) 010-2030"],
        }
    )
    rows = rows.assign(content_hash=row_versions(rows))
    staging_db = StagingResource(database=sync_env["SYNC_PIPELINES_DUCKDB"])

    with staging_db.connect() as conn:
        messages = TARGET.messages_for(conn, Changes(_crm("accounts"), rows, pd.DataFrame(), "crm_accounts"))
    expected = {"001A": by_email["ContactID"], "001B": by_name["ContactID"], "001C": by_tax["ContactID"]}
    assert {m.record_id: m.payload["Contact"].get("ContactID") for m in messages} == {**expected, "001D": None}

    resources = SimpleNamespace(xero=xero_resource(sync_env))
    report = _deliver(TARGET, resources, messages)["xero"]
    assert sorted(report.delivered) == sorted(m.message_id for m in messages) and not report.rejected
    written = {m.record_id: report.target_ids[m.message_id] for m in messages}
    assert {k: v for k, v in written.items() if k in expected} == expected
    after = {c["ContactID"]: c for c in admin.get("/xero/contacts")}
    assert len(after) == 7  # one created, three updated in place
    assert after[written["001D"]]["Name"] == "Brand New Co"
    assert {after[contact_id]["ContactNumber"] for contact_id in written.values()} == set(written)

    # Once linked, the cross-reference wins over every other rule, even when the email changes.
    with staging_db.connect() as conn:
        staging.link_ids(
            conn, entity="accounts", source_system="crm", target_system="xero", pairs=list(written.items())
        )
        moved = rows.assign(email=["moved@elsewhere.test"] * 4)
        assert match_contacts(conn, moved, source="crm", key="id", match=MAPPING.match) == written

        # A change the Xero contact does not carry (here: none at all, as after our own write-back) sends nothing.
        touched = rows.assign(content_hash="touched")
        again = TARGET.messages_for(conn, Changes(_crm("accounts"), touched, pd.DataFrame(), "crm_accounts"))
    assert again == []  # not even the new contact, whose ContactID is now known: its body is what Xero holds


def test_a_retried_batch_is_answered_from_xeros_idempotency_cache(admin, sync_env):
    rows = pd.DataFrame(
        {"id": ["001Z"], "name": ["Only Once Ltd"], "email": ["once@only.test"], "tax_number": [None], "phone": [None]}
    )
    rows = rows.assign(content_hash=row_versions(rows))
    with StagingResource(database=sync_env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        messages = TARGET.messages_for(conn, Changes(_crm("accounts"), rows, pd.DataFrame(), "crm_accounts"))
    resources = SimpleNamespace(xero=xero_resource(sync_env))
    first = _deliver(TARGET, resources, messages)["xero"]
    again = _deliver(TARGET, resources, messages)["xero"]
    assert first.target_ids == again.target_ids
    assert [c["Name"] for c in admin.get("/xero/contacts")].count("Only Once Ltd") == 1


def test_the_optional_new_lead_rule_raises_one_draft_invoice_to_the_leads_own_contact(admin, sync_env):
    mapping = XeroMapping(
        contact={"Name": "name", "EmailAddress": "email"},
        match={"email": "email"},
        invoice={"when": {"column": "is_prospect"}, "contact": "id", "status": "DRAFT", "date": "created",
                 "reference": "id", "description": "Onboarding for {name}", "amount": 500},
        notify={"invoice": "Draft invoice for new lead {name}"},
    )  # fmt: skip
    target = XeroTarget(mapping)
    rows = pd.DataFrame(
        {"id": ["00QA", "00QB"], "name": ["Prospect Co", "Lost Co"], "email": ["hi@prospect.test", None],
         "is_prospect": [True, False], "created": ["2026-03-01", "2026-03-02"]}
    )  # fmt: skip
    rows = rows.assign(content_hash=row_versions(rows))
    with StagingResource(database=sync_env["SYNC_PIPELINES_DUCKDB"]).connect() as conn:
        messages = target.messages_for(conn, Changes(_crm("leads"), rows, pd.DataFrame(), "crm_leads"))
    assert sorted((m.kind, m.record_id) for m in messages) == [
        ("contact", "00QA"), ("contact", "00QB"), ("invoice", "00QA"), ("notify", "00QA")
    ]  # fmt: skip

    resources = SimpleNamespace(
        xero=xero_resource(sync_env), notifier=NotifierResource(url=sync_env["SYNC_PIPELINES_NOTIFY_URL"])
    )
    reports = _deliver(target, resources, messages)
    assert not reports["xero"].failed and not reports["xero"].rejected and len(reports["notifier"].delivered) == 1
    # The invoice replayed (as after a crash before it was marked delivered): Xero answers from its cache.
    _deliver(target, resources, [m for m in messages if m.kind == "invoice"])
    (invoice,) = [i for i in admin.get("/xero/invoices") if i.get("Reference") == "00QA"]
    prospect = next(c for c in admin.get("/xero/contacts") if c.get("ContactNumber") == "00QA")
    assert invoice["Status"] == "DRAFT" and invoice["Contact"]["ContactID"] == prospect["ContactID"]
    assert [(li["Description"], li["UnitAmount"]) for li in invoice["LineItems"]] == [
        ("Onboarding for Prospect Co", 500)
    ]
    assert [n["body"]["text"] for n in admin.notifications()] == ["Draft invoice for new lead Prospect Co"]
