"""Contacts and what hangs off them: writes, archive, tags, companies and segments (intercom.md §5, §7)."""

import time


def seeded(admin, case: str) -> dict:
    """The seeded contact carrying custom_attributes.sandbox_case == case."""
    return next(c for c in admin.intercom_records("contacts") if c["custom_attributes"].get("sandbox_case") == case)


def test_create_read_update_delete_a_contact(ic):
    before = int(time.time())
    created = ic.ok("POST", "/contacts", json={"email": "ada@example.org", "name": "Ada", "owner_id": 991267402})
    assert created["type"] == "contact" and created["role"] == "user"  # the default role
    assert len(created["id"]) == 24 and int(created["id"][:8], 16) >= before
    assert created["owner_id"] == "991267402"  # a string from 2.16 on (intercom.md §1)
    assert created["email_domain"] == "example.org" and created["created_at"] == created["updated_at"] >= before
    assert ic.ok("GET", f"/contacts/{created['id']}") == created
    external = ic.ok("PUT", f"/contacts/{created['id']}", json={"external_id": "ada-1"})
    assert ic.ok("GET", "/contacts/find_by_external_id/ada-1") == external

    updated = ic.ok(
        "PUT", f"/contacts/{created['id']}", json={"phone": "+353 1 555 0100", "custom_attributes": {"tier": 2}}
    )
    assert updated["phone"] == "+353 1 555 0100" and updated["custom_attributes"] == {"tier": 2}
    assert updated["updated_at"] >= created["updated_at"]
    merged = ic.ok("PUT", f"/contacts/{created['id']}", json={"custom_attributes": {"vip": True}})
    assert merged["custom_attributes"] == {"tier": 2, "vip": True}  # custom attributes merge

    deleted = ic.ok("DELETE", f"/contacts/{created['id']}")
    assert deleted == {"id": created["id"], "external_id": "ada-1", "type": "contact", "deleted": True}
    assert ic.error(ic.request("GET", f"/contacts/{created['id']}")) == (404, "not_found")


def test_contact_writes_are_validated(ic, admin):
    assert ic.error(ic.request("POST", "/contacts", json={"name": "Nobody"})) == (400, "parameter_invalid")
    assert ic.error(ic.request("POST", "/contacts", json={"role": "visitor"})) == (400, "parameter_invalid")
    assert ic.error(ic.request("POST", "/contacts", json={"email": "x@y.z", "owner_id": 1})) == (
        400,
        "parameter_invalid",
    )
    assert ic.error(ic.request("POST", "/contacts", json={"email": "x@y.z", "colour": "red"})) == (400, "bad_request")
    user = seeded(admin, "email_case_user")
    # A user's email is unique regardless of case; an external_id is unique across contacts.
    clash = ic.request("POST", "/contacts", json={"role": "user", "email": user["email"].upper()})
    assert ic.error(clash) == (409, "conflict") and user["id"] in clash.json()["errors"][0]["message"]
    assert ic.error(ic.request("POST", "/contacts", json={"external_id": user["external_id"]})) == (409, "conflict")
    # Leads may share an email with a user: the seed has one, and its signing up as a user would clash.
    lead = seeded(admin, "email_case_lead")
    assert lead["email"].casefold() == user["email"].casefold() and lead["email"] != user["email"]
    assert ic.error(ic.request("PUT", f"/contacts/{lead['id']}", json={"role": "user"})) == (409, "conflict")
    assert ic.ok("POST", "/contacts", json={"role": "lead", "email": user["email"]})["role"] == "lead"


def test_archived_contacts_leave_lists_and_search_until_unarchived(ic, admin):
    archived = seeded(admin, "archived")
    assert archived["_archived"] is True
    listed = {c["id"] for c in ic.search_all({"field": "role", "operator": "IN", "value": ["user", "lead"]})}
    assert archived["id"] not in listed and len(listed) == 149
    assert ic.error(ic.request("GET", f"/contacts/{archived['id']}")) == (404, "not_found")
    answer = ic.ok("POST", f"/contacts/{archived['id']}/unarchive")
    assert answer == {
        "id": archived["id"],
        "external_id": archived["external_id"],
        "type": "contact",
        "archived": False,
    }
    assert ic.ok("GET", f"/contacts/{archived['id']}")["updated_at"] > archived["updated_at"]
    assert ic.ok("POST", f"/contacts/{archived['id']}/archive")["archived"] is True
    assert archived["id"] not in {c["id"] for c in ic.ok("GET", "/contacts", params={"per_page": 150})["data"]}


def test_embedded_lists_show_ten_and_link_to_the_rest(ic, admin):
    tagged = seeded(admin, "many_tags")
    assert tagged["tags"]["total_count"] == 12 and tagged["tags"]["has_more"] is True
    assert len(tagged["tags"]["data"]) == 10 and tagged["tags"]["url"] == f"/contacts/{tagged['id']}/tags"
    assert tagged["tags"]["data"][0] == {"type": "tag", "id": tagged["tags"]["data"][0]["id"], "url": "/tags/101"}
    full = ic.ok("GET", tagged["tags"]["url"])
    assert full["type"] == "list" and len(full["data"]) == 12
    assert all(t["applied_by"]["type"] == "admin" and t["applied_at"] for t in full["data"])

    member = seeded(admin, "many_companies")
    assert member["companies"]["total_count"] == 11 and len(member["companies"]["data"]) == 10
    companies = ic.ok("GET", member["companies"]["url"])
    assert companies["total_count"] == 11 and [c["type"] for c in companies["data"]] == ["company"] * 11


def test_tagging_and_company_links_move_updated_at(ic, admin):
    contact = ic.ok("POST", "/contacts", json={"email": "grace@example.org"})
    vip = next(t for t in ic.ok("GET", "/tags")["data"] if t["name"] == "VIP")
    admin.intercom_update("contacts", contact["id"], updated_at=1_700_000_000)

    applied = ic.ok("POST", f"/contacts/{contact['id']}/tags", json={"id": vip["id"]})
    assert applied["id"] == vip["id"] and applied["applied_by"] == {"type": "admin", "id": "991267401"}
    after_tag = ic.ok("GET", f"/contacts/{contact['id']}")
    assert after_tag["updated_at"] > 1_700_000_000 and after_tag["tags"]["data"][0]["id"] == vip["id"]
    assert ic.ok("DELETE", f"/contacts/{contact['id']}/tags/{vip['id']}")["id"] == vip["id"]
    assert ic.ok("GET", f"/contacts/{contact['id']}/tags")["data"] == []
    assert ic.error(ic.request("POST", f"/contacts/{contact['id']}/tags", json={"id": "999"})) == (404, "not_found")

    company = ic.ok("POST", "/companies", json={"company_id": "graces", "name": "Grace's"})
    admin.intercom_update("companies", company["id"], updated_at=1_700_000_000)
    attached = ic.ok("POST", f"/contacts/{contact['id']}/companies", json={"id": company["id"]})
    assert attached["user_count"] == 1 and attached["updated_at"] > 1_700_000_000
    assert ic.ok("GET", f"/companies/{company['id']}/contacts")["data"][0]["id"] == contact["id"]
    assert ic.error(ic.request("POST", f"/contacts/{contact['id']}/companies", json={})) == (400, "parameter_not_found")
    missing = ic.request("POST", f"/contacts/{contact['id']}/companies", json={"id": "123"})
    assert ic.error(missing) == (404, "company_not_found")
    assert ic.ok("DELETE", f"/contacts/{contact['id']}/companies/{company['id']}")["user_count"] == 0


def test_segments_are_listed_counted_and_set_by_the_admin(ic, admin):
    listing = ic.ok("GET", "/segments", params={"include_count": "true"})
    assert listing["type"] == "segment.list"
    by_name = {s["name"]: s for s in listing["segments"]}
    assert {s["person_type"] for s in listing["segments"]} == {"user", "contact"}
    active = by_name["Active users"]
    members = next(s for s in admin.intercom_records("segments") if s["id"] == active["id"])["contacts"]
    assert active["count"] == len(members) > 0
    assert "count" not in ic.ok("GET", "/segments")["segments"][0]
    assert ic.ok("GET", f"/segments/{active['id']}") == {k: v for k, v in active.items() if k != "count"}

    contact = ic.ok("POST", "/contacts", json={"email": "segmented@example.org"})
    assert ic.ok("GET", f"/contacts/{contact['id']}/segments") == {"type": "list", "data": []}
    admin.intercom_members(active["id"], contacts=[contact["id"]])
    assert [s["id"] for s in ic.ok("GET", f"/contacts/{contact['id']}/segments")["data"]] == [active["id"]]
    searched = ic.search_all({"field": "segment_id", "operator": "=", "value": active["id"]})
    assert [c["id"] for c in searched] == [contact["id"]]
