"""The workspace as a whole: seed, persistence, admins, conversations and teammate changes (intercom.md §7, §8)."""

from pathlib import Path

import requests

from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines.sandbox.intercom import seed
from sync_pipelines.sandbox.store import dumps
from sync_pipelines_tests.conftest import SandboxAdmin
from sync_pipelines_tests.sandbox.intercom.conftest import IntercomApi


def test_the_same_seed_gives_identical_rows_and_sizes_are_honoured(admin):
    assert dumps(seed.generate(7, 40, 12, 9)) == dumps(seed.generate(7, 40, 12, 9))
    assert dumps(seed.generate(8, 40, 12, 9)) != dumps(seed.generate(7, 40, 12, 9))
    summary = admin.intercom_reset(seed=3, contacts=40, companies=12, conversations=9)
    assert summary["records"]["contacts"] == 40 and summary["records"]["admins"] == 3
    listing = admin.intercom_records("contacts")
    assert len(listing) == 40 and len(admin.intercom_records("conversations")) == 9
    assert admin.intercom_reset(seed=3, contacts=40, companies=12, conversations=9) == summary
    assert admin.intercom_records("contacts") == listing


def test_the_seed_holds_the_deliberate_edge_cases(admin):
    contacts = admin.intercom_records("contacts")
    cases = {c["custom_attributes"]["sandbox_case"]: c for c in contacts if "sandbox_case" in c["custom_attributes"]}
    assert set(cases) == {case[0] for case in seed.EDGE_CASES}
    assert cases["email_case_user"]["email"].casefold() == cases["email_case_lead"]["email"].casefold()
    assert cases["one_word_name"]["name"] == "Cher" and cases["empty_name"]["name"] == ""
    assert {cases[f"non_latin_name_{k}"]["name"] for k in ("ja", "el")} == {"山田太郎", "Ελένη Παπαδοπούλου"}
    assert cases["lead_without_email"]["role"] == "lead" and cases["lead_without_email"]["email"] == ""
    assert cases["lead_without_email"]["name"] is None
    leads = [c for c in contacts if c["role"] == "lead"]
    assert sum(c["email"] == "" for c in leads) >= 3 and all(c["external_id"] is None for c in leads)
    ties = [c["updated_at"] for c in contacts]
    assert len(ties) - len(set(ties)) >= 5  # contacts imported together share updated_at


def test_state_survives_a_restart_and_is_not_reseeded(tmp_path: Path):
    settings = SandboxSettings(state_path=tmp_path / "state.db", intercom_contacts=20, intercom_companies=5)
    with SandboxServer(settings) as server:
        created = IntercomApi(server).ok("POST", "/contacts", json={"email": "survivor@example.org"})
        before = SandboxAdmin(server.url).intercom_records("contacts")
    with SandboxServer(settings) as server:
        api = IntercomApi(server)
        assert SandboxAdmin(server.url).intercom_records("contacts") == before
        assert api.ok("GET", f"/contacts/{created['id']}")["email"] == "survivor@example.org"
        assert len(before) == 21 and api.ok("GET", "/contacts")["total_count"] == 20  # one seeded archived


def test_ten_thousand_contacts_seed_and_page_through_search_in_67_calls(ic, admin):
    summary = admin.intercom_reset(contacts=10_000, companies=300)
    assert summary["records"]["contacts"] == 10_000
    admin.reset_stats()
    everyone = {"field": "updated_at", "operator": ">", "value": 0}
    found = ic.search_all(everyone, per_page=150, sort={"field": "updated_at", "order": "ascending"})
    assert len(found) == len({c["id"] for c in found}) == 9_999  # one archived
    stamps = [c["updated_at"] for c in found]
    assert stamps == sorted(stamps)
    assert admin.count("intercom", "POST /contacts/search") == 67


def test_admins_and_me(ic):
    admins = ic.ok("GET", "/admins")
    assert admins["type"] == "admin.list" and len(admins["admins"]) == 3
    first = admins["admins"][0]
    assert first["type"] == "admin" and first["id"] == "991267401" and first["team_ids"] == []
    assert ic.ok("GET", f"/admins/{first['id']}") == first
    assert ic.ok("GET", "/me")["id"] == first["id"]
    assert [a["away_mode_enabled"] for a in admins["admins"]] == [False, False, True]


def test_conversations_list_newest_first_and_one_carries_its_parts(ic, admin):
    listed = ic.ok("GET", "/conversations", params={"per_page": 25})
    assert listed["type"] == "conversation.list" and listed["total_count"] == 60
    stamps = [c["updated_at"] for c in listed["conversations"]]
    assert stamps == sorted(stamps, reverse=True) and "conversation_parts" not in listed["conversations"][0]
    rest = ic.ok(
        "GET", "/conversations", params={"per_page": 25, "starting_after": listed["pages"]["next"]["starting_after"]}
    )
    assert rest["pages"]["page"] == 2 and rest["conversations"][0]["updated_at"] <= stamps[-1]

    oldest = ic.ok("GET", "/conversations", params={"per_page": 150})["conversations"][-1]
    detail = ic.ok("GET", f"/conversations/{oldest['id']}")
    parts = detail["conversation_parts"]
    assert parts["type"] == "conversation_part.list" and parts["total_count"] == len(parts["conversation_parts"]) >= 1
    assert detail["statistics"]["count_conversation_parts"] == parts["total_count"]
    assert detail["contacts"]["type"] == "contact.list" and detail["tags"]["type"] == "tag.list"

    replied = admin.intercom_conversation(oldest["id"], "reply", author="admin", body="Sorry for the wait")
    assert replied["updated_at"] > oldest["updated_at"] and replied["waiting_since"] is None
    assert replied["statistics"]["count_conversation_parts"] == parts["total_count"] + 1
    assert ic.ok("GET", "/conversations", params={"per_page": 1})["conversations"][0]["id"] == oldest["id"]
    closed = admin.intercom_conversation(oldest["id"], "state", state="closed")
    assert (closed["state"], closed["open"]) == ("closed", False)
    assert closed["conversation_parts"]["conversation_parts"][-1]["part_type"] == "close"
    unassigned = admin.intercom_conversation(oldest["id"], "assign", admin_id=0)
    assert unassigned["admin_assignee_id"] == 0  # 2.16: unassigned reports 0
    tagged = admin.intercom_tag("conversations", oldest["id"], name="VIP")
    assert "VIP" in [t["name"] for t in tagged["tags"]["tags"]] and tagged["updated_at"] >= closed["updated_at"]
    by_tag = ic.search_all({"field": "tag_ids", "operator": "=", "value": "101"}, "conversations")
    assert oldest["id"] in [c["id"] for c in by_tag]


def test_admin_edits_pin_times_touch_contacts_and_refuse_bad_input(admin):
    contact = admin.intercom_records("contacts")[20]
    pinned = admin.intercom_update("contacts", contact["id"], updated_at=1_600_000_000)
    assert pinned["updated_at"] == 1_600_000_000
    touched = admin.intercom_touch(3)
    assert touched[0] == contact["id"]  # the least recently updated
    after = {c["id"]: c for c in admin.intercom_records("contacts")}
    assert all(after[i]["updated_at"] > 1_700_000_000 for i in touched)
    bad = requests.post(f"{admin.url}/intercom/contacts/{contact['id']}", json={"role": "robot"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["code"] == "parameter_invalid"
    missing = requests.post(f"{admin.url}/intercom/contacts/nope", json={}, timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert (
        requests.put(f"{admin.url}/intercom/settings", json={"timezone": "Mars/Olympus"}, timeout=10).status_code == 400
    )
    assert admin.intercom_settings() == {"window_limit": 167, "scroll_ttl": 60.0, "timezone": "UTC"}
