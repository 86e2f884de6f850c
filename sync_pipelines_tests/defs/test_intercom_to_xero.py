"""Intercom -> Xero against the sandbox: one Xero contact per person and company, groups, notes, limits."""

import math
from collections import Counter
from pathlib import Path

import dagster as dg
import requests

from sync_pipelines.defs.intercom_to_xero import NAME as FLOW
from sync_pipelines.lib.flows import synced
from sync_pipelines.sandbox.server import SandboxSettings
from sync_pipelines.vendors.intercom.entities import COMPANIES, CONTACTS
from sync_pipelines_tests.conftest import code_location

TOKEN = SandboxSettings(state_path=Path("unused")).intercom_access_token


def _flow_assets() -> list[dg.AssetKey]:
    """The flow with what it reads from Xero (its contacts, staged), as its schedule runs it."""
    return list(synced(FLOW).resolve(code_location().resolve_asset_graph()))


def _metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    return next(
        e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == key
    )


def _writes(admin) -> int:
    return sum(n for call, n in admin.stats()["xero"].items() if call.startswith(("POST", "PUT", "DELETE")))


def _xero_contact_of(admin) -> dict[str, str]:
    """Intercom id -> the ContactID of the Xero contact that stands for it.

    A contact owns the Xero contact whose ContactNumber is its id; one whose email another contact already has
    (in any case) is that contact's. Intercom's archived contacts are left out: search does not return them.
    """
    xero = [c for c in admin.get("/xero/contacts") if c["ContactStatus"] == "ACTIVE"]
    owned = {c["ContactNumber"]: c["ContactID"] for c in xero if c.get("ContactNumber")}
    by_email = {c["EmailAddress"].lower(): c["ContactID"] for c in xero if c.get("EmailAddress")}
    people = [c for c in admin.intercom_records("contacts") if not c.get("_archived")]
    return {c["id"]: owned.get(c["id"]) or by_email[c["email"].lower()] for c in people}


def _groups(admin) -> dict[str, set[str]]:
    return {g["Name"]: {c["ContactID"] for c in g["Contacts"]} for g in admin.get("/xero/contact-groups")
            if g["Status"] == "ACTIVE"}  # fmt: skip


def _expected_groups(admin, sandbox, contact_of: dict[str, str]) -> dict[str, set[str]]:
    """Each tag and segment with the Xero contacts of its Intercom members."""
    tags = {t["id"]: t["name"] for t in admin.intercom_records("tags")}
    expected: dict[str, set[str]] = {}
    for contact in admin.intercom_records("contacts"):
        if contact["id"] not in contact_of:
            continue
        listed = contact["tags"]["data"]
        if contact["tags"]["has_more"]:  # intercom.md §5: ten embedded; the rest from the contact's tag list
            url = f"{sandbox.url}/intercom/contacts/{contact['id']}/tags"
            listed = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()["data"]
        for tag in listed:
            expected.setdefault(tags[tag["id"]], set()).add(contact_of[contact["id"]])
    for segment in admin.intercom_records("segments"):
        members = {contact_of[c] for c in segment["contacts"] if c in contact_of}
        if members:
            expected.setdefault(segment["name"], set()).update(members)
    return expected


def _company_ids(sandbox, contact: dict) -> set[str]:
    """All of a contact's companies: ten are embedded, the rest come from its companies list (intercom.md §5)."""
    listed = contact["companies"]
    if listed["has_more"]:
        url = f"{sandbox.url}/intercom/contacts/{contact['id']}/companies"
        listed = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    return {c["id"] for c in listed["data"]}


def test_every_contact_and_company_has_one_xero_contact_emails_collapse_and_reruns_write_nothing(
    admin, run_sync, sandbox
):
    admin.intercom_reset(contacts=80, companies=12, conversations=10)
    assert run_sync(_flow_assets()).success

    people = [c for c in admin.intercom_records("contacts") if not c.get("_archived")]
    xero = [c for c in admin.get("/xero/contacts") if c["ContactStatus"] == "ACTIVE"]
    by_number = Counter(c.get("ContactNumber") for c in xero)
    by_email = Counter(c["EmailAddress"].lower() for c in xero if c.get("EmailAddress"))
    assert all(by_email[c["email"].lower()] == 1 for c in people if c.get("email"))
    # The user and the lead whose emails differ only in case are one Xero contact.
    user, lead = (next(c for c in people if c["custom_attributes"].get("sandbox_case") == case)
                  for case in ("email_case_user", "email_case_lead"))  # fmt: skip
    assert user["email"] != lead["email"] and user["email"].lower() == lead["email"].lower()
    assert by_number[user["id"]] + by_number[lead["id"]] == 1
    assert all(by_number[c["id"]] == 1 for c in people if c["id"] not in (user["id"], lead["id"]))
    companies = admin.intercom_records("companies")
    assert all(by_number[c["id"]] == 1 for c in companies)
    # A company's people with an email are its Xero contact's ContactPersons: the first five, by email.
    for company in companies:
        members = sorted(
            (c["email"] for c in people if c.get("email") and company["id"] in _company_ids(sandbox, c)),
            key=str.lower,
        )[:5]
        persons = next(c for c in xero if c.get("ContactNumber") == company["id"]).get("ContactPersons", [])
        assert [p["EmailAddress"] for p in persons] == members
    named = {c["ContactNumber"]: c for c in xero if c.get("ContactNumber")}
    cases = {c["custom_attributes"].get("sandbox_case"): c["id"] for c in people}
    cher = named[cases["one_word_name"]]
    assert cher["FirstName"] == "Cher" and not cher.get("LastName")
    assert named[cases["non_latin_name_ja"]]["Name"] == "山田太郎" and not named[cases["non_latin_name_ja"]].get(
        "FirstName"
    )
    assert named[cases["non_latin_name_el"]]["LastName"] == "Παπαδοπούλου"
    empty = named[cases["empty_name"]]
    assert empty["Name"] == next(c["email"] for c in people if c["id"] == cases["empty_name"])

    admin.reset_stats()
    assert run_sync(_flow_assets()).success
    assert _writes(admin) == 0, admin.stats()["xero"]


def test_contact_groups_follow_tags_and_segments_as_they_are_added_and_removed(admin, run_sync, sandbox):
    admin.intercom_reset(contacts=60, companies=8, conversations=0)
    assert run_sync(_flow_assets()).success
    contact_of = _xero_contact_of(admin)
    assert _groups(admin) == _expected_groups(admin, sandbox, contact_of)

    people = [c for c in admin.intercom_records("contacts") if c["id"] in contact_of]
    tagged = next(c for c in people if c["tags"]["data"])
    untagged = next(c for c in people if not c["tags"]["data"])
    admin.intercom_untag("contacts", tagged["id"], tagged["tags"]["data"][0]["id"])
    admin.intercom_tag("contacts", untagged["id"], name="Renewal due")
    segment = admin.intercom_records("segments")[0]
    admin.intercom_members(segment["id"], contacts=[*segment["contacts"][1:], untagged["id"]])
    assert run_sync(_flow_assets()).success

    groups = _groups(admin)
    assert groups == _expected_groups(admin, sandbox, contact_of)
    assert contact_of[untagged["id"]] in groups["Renewal due"]


def test_one_history_note_per_conversation_change_and_none_on_rerun(admin, run_sync):
    admin.intercom_reset(contacts=30, companies=4, conversations=8)
    assert run_sync(_flow_assets()).success
    contact_of = _xero_contact_of(admin)
    conversations = admin.intercom_records("conversations")

    def notes(conversation: dict) -> list[str]:
        contact = contact_of[conversation["contacts"]["contacts"][0]["id"]]
        history = admin.get(f"/xero/contacts/{contact}/history")
        return [n["Details"] for n in history if n["Details"].endswith(f"/conversation/{conversation['id']}")]

    assert all(len(notes(c)) == 1 for c in conversations)
    changed = conversations[0]
    admin.intercom_conversation(changed["id"], "state", state="open" if changed["state"] == "closed" else "closed")
    assert run_sync(_flow_assets()).success
    assert run_sync(_flow_assets()).success

    assert len(notes(changed)) == 2
    assert all(len(notes(c)) == 1 for c in conversations[1:])


def test_ten_thousand_contacts_meet_no_429_and_cost_at_most_five_percent_over_the_minimum(admin, run_sync):
    admin.intercom_reset(contacts=10_000, companies=5, conversations=0)
    admin.intercom_settings(window_limit=40)  # a tight 10-second window: the client must pace itself
    admin.reset_stats()

    result = run_sync([CONTACTS.raw_key, CONTACTS.staged_key])

    assert result.success
    extract = _metadata(result, CONTACTS.raw_key)
    searchable = [c for c in admin.intercom_records("contacts") if not c.get("_archived")]
    # intercom.md §4, §5, §7: pages of 150 at most, the tag and admin lists once, and the whole tag or company
    # list of a contact whose embedded one (ten at most) says it has more.
    more = sum(c[field]["has_more"] for c in searchable for field in ("tags", "companies"))
    minimum = math.ceil(len(searchable) / 150) + 2 + more
    assert extract["rows_fetched"].value == len(searchable)
    assert extract["rate_limited"].value == 0  # paced by X-RateLimit-Remaining: not one 429 met
    assert extract["api_calls"].value <= 1.05 * minimum, (
        extract["api_calls"].value,
        minimum,
        extract["api_retries"].value,
    )


def test_a_broken_company_scroll_is_restarted_without_losing_or_repeating_companies(admin, run_sync, sync_env):
    admin.intercom_reset(contacts=40, companies=120, conversations=0)
    admin.intercom_settings(scroll_ttl=1)  # the broken scroll expires quickly, so the restart need not wait long
    admin.intercom_fail_scroll(calls=1, after=1)  # the second page's request breaks the scroll midway

    result = run_sync([COMPANIES.raw_key, COMPANIES.staged_key])

    assert result.success
    extract = _metadata(result, COMPANIES.raw_key)
    companies = admin.intercom_records("companies")
    assert extract["scroll_restarts"].value == 1
    assert extract["rows_fetched"].value == len(companies)  # each company once, none lost, none repeated
