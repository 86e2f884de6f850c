"""Companies (create-or-update, lists, the one-per-app scroll) and the POST /tags multiplexer (intercom.md §6, §7)."""

import time


def scroll_all(ic) -> list[dict]:
    """Every company through one scroll: pages until an empty one (intercom.md §6.1)."""
    companies, param = [], None
    while True:
        page = ic.ok("GET", "/companies/scroll", params={"scroll_param": param} if param else None)
        assert page["pages"] is None and page["total_count"] is None
        if not page["data"]:
            return companies
        companies.extend(page["data"])
        param = page["scroll_param"]


def test_post_creates_or_updates_by_company_id(ic):
    created = ic.ok(
        "POST",
        "/companies",
        json={"company_id": "acme-1", "name": "Acme", "plan": "Growth", "monthly_spend": 155.98, "website": "acme"},
    )
    assert created["type"] == "company" and created["company_id"] == "acme-1" and len(created["id"]) == 24
    assert created["monthly_spend"] == 155  # floats are truncated
    assert created["plan"]["type"] == "plan" and created["plan"]["name"] == "Growth"
    assert created["website"] == "acme" and created["user_count"] == 0
    assert created["tags"] == {"type": "tag.list", "tags": []}
    again = ic.ok("POST", "/companies", json={"company_id": "acme-1", "custom_attributes": {"tax_number": "GB1"}})
    assert again["id"] == created["id"] and again["name"] == "Acme"
    assert again["custom_attributes"] == {"tax_number": "GB1"}
    renamed = ic.ok("PUT", f"/companies/{created['id']}", json={"name": "Acme Ltd", "update_last_request_at": True})
    assert renamed["name"] == "Acme Ltd" and renamed["last_request_at"] >= created["created_at"]
    assert ic.error(ic.request("PUT", f"/companies/{created['id']}", json={"company_id": "x"})) == (400, "bad_request")
    assert ic.error(ic.request("POST", "/companies", json={"name": "No id"})) == (400, "parameter_not_found")
    too_much = ic.request("POST", "/companies", json={"company_id": "big", "monthly_spend": 2**31})
    assert ic.error(too_much) == (400, "parameter_invalid")

    by_key = ic.ok("GET", "/companies", params={"company_id": "acme-1"})
    assert [c["id"] for c in by_key["data"]] == [created["id"]] and by_key["total_count"] == 1
    assert ic.ok("GET", "/companies", params={"name": "Acme Ltd"})["data"][0]["id"] == created["id"]
    assert ic.error(ic.request("GET", "/companies", params={"company_id": "nope"})) == (404, "company_not_found")
    deleted = ic.ok("DELETE", f"/companies/{created['id']}")
    assert deleted == {"id": created["id"], "object": "company", "deleted": True}
    assert ic.error(ic.request("GET", f"/companies/{created['id']}")) == (404, "company_not_found")


def test_seeded_companies_carry_the_deliberate_variety(admin):
    companies = admin.intercom_records("companies")
    assert len(companies) == 30 and len({c["company_id"] for c in companies}) == 30
    assert companies[0]["name"] == companies[1]["name"]  # one name, two companies
    assert sum("tax_number" in c["custom_attributes"] for c in companies) >= 5
    websites = [c["website"] for c in companies if "website" in c]
    assert any(w.startswith("https://") for w in websites) and any("://" not in w for w in websites)
    assert [c["user_count"] for c in companies[-2:]] == [0, 0]


def test_the_company_list_omits_companies_without_contacts_and_stops_at_ten_thousand(ic, admin):
    with_contacts = [c for c in admin.intercom_records("companies") if c["user_count"] > 0]
    assert 0 < len(with_contacts) <= 28  # 30 seeded, the last 2 without contacts
    listed = ic.ok("POST", "/companies/list", params={"per_page": 10})
    assert listed["total_count"] == len(with_contacts)
    assert listed["pages"]["total_pages"] == -(-len(with_contacts) // 10)
    assert listed["pages"]["next"].endswith("page=2&per_page=10")
    pages = [listed] + [
        ic.ok("POST", "/companies/list", params={"per_page": 10, "page": page})
        for page in range(2, listed["pages"]["total_pages"] + 1)
    ]
    assert pages[-1]["pages"]["next"] is None
    walked = [c for page in pages for c in page["data"]]
    assert sorted(c["id"] for c in walked) == sorted(c["id"] for c in with_contacts)
    stamps = [c.get("last_request_at", 0) for c in walked]
    assert stamps == sorted(stamps, reverse=True)  # most recently requested first
    beyond = ic.request("POST", "/companies/list", params={"per_page": 50, "page": 201})  # offset 10,000
    assert ic.error(beyond) == (400, "bad_request")
    tagged = ic.ok("GET", "/companies", params={"tag_id": "105"})  # Enterprise
    assert all("105" in [t["id"] for t in c["tags"]["tags"]] for c in tagged["data"])


def test_one_scroll_per_app_walks_every_company_and_ends_with_an_empty_page(ic, admin):
    first = ic.ok("GET", "/companies/scroll")
    assert len(first["data"]) == 30 and first["scroll_param"]
    assert admin.intercom_scroll()["remaining"] == 0
    second = ic.request("GET", "/companies/scroll")
    assert ic.error(second) == (400, "scroll_exists")
    assert second.json()["errors"][0]["message"] == "scroll already exists for this app"
    end = ic.ok("GET", "/companies/scroll", params={"scroll_param": first["scroll_param"]})
    assert end["data"] == [] and admin.intercom_scroll() is None  # the end releases the scroll
    stale = ic.request("GET", "/companies/scroll", params={"scroll_param": first["scroll_param"]})
    assert ic.error(stale) == (404, "not_found")

    ic.ok("POST", "/companies", json={"company_id": "bulk-0", "name": "Extra"})
    for n in range(1, 80):
        admin.intercom_create("companies", company_id=f"bulk-{n}", name=f"Extra {n}")
    walked = scroll_all(ic)
    assert len(walked) == 110 and len({c["id"] for c in walked}) == 110  # pages of 50: 50, 50, 10, then []


def test_an_idle_scroll_expires_after_its_ttl(ic, admin):
    admin.intercom_settings(scroll_ttl=0.3)
    opened = ic.ok("GET", "/companies/scroll")
    assert ic.error(ic.request("GET", "/companies/scroll")) == (400, "scroll_exists")
    deadline = time.monotonic() + 10
    while admin.intercom_scroll() is not None:  # poll until the sandbox lets the idle scroll go
        assert time.monotonic() < deadline
        time.sleep(0.05)
    expired = ic.request("GET", "/companies/scroll", params={"scroll_param": opened["scroll_param"]})
    assert ic.error(expired) == (404, "not_found")
    assert len(ic.ok("GET", "/companies/scroll")["data"]) == 30


def test_a_network_error_breaks_the_scroll_which_keeps_its_lock_until_it_expires(ic, admin):
    opened = ic.ok("GET", "/companies/scroll", params=None)
    admin.intercom_fail_scroll()
    failed = ic.request("GET", "/companies/scroll", params={"scroll_param": opened["scroll_param"]})
    assert ic.error(failed) == (500, "server_error")
    assert failed.json()["errors"][0]["message"] == (
        "Request failed due to an internal network error. Please restart the scroll operation."
    )
    retry = ic.request("GET", "/companies/scroll", params={"scroll_param": opened["scroll_param"]})
    assert ic.error(retry) == (404, "not_found")  # no resume
    assert ic.error(ic.request("GET", "/companies/scroll")) == (400, "scroll_exists")
    assert admin.intercom_scroll()["broken"] is True
    assert admin.intercom_expire_scroll() is True
    assert len(scroll_all(ic)) == 30


def test_post_tags_creates_renames_and_tags_companies_and_users(ic, admin):
    vip = ic.ok("POST", "/tags", json={"name": "vip"})
    assert vip == {"type": "tag", "id": "101", "name": "VIP"}  # names are case-insensitive
    new = ic.ok("POST", "/tags", json={"name": "Sandbox tag"})
    assert new["id"] == "113" and new in ic.ok("GET", "/tags")["data"]  # seeded tags are 101..112
    assert ic.ok("POST", "/tags", json={"id": new["id"], "name": "Renamed"})["name"] == "Renamed"
    assert ic.ok("GET", f"/tags/{new['id']}") == {"type": "tag", "id": new["id"], "name": "Renamed"}

    first, second = admin.intercom_records("companies")[:2]
    tagged = ic.ok(
        "POST",
        "/tags",
        json={"name": "Key account", "companies": [{"id": first["id"]}, {"company_id": second["company_id"]}]},
    )
    assert tagged["companies"] == [{"id": first["id"], "tagged": True}, {"id": second["id"], "tagged": True}]
    assert "Key account" in [t["name"] for t in ic.ok("GET", f"/companies/{first['id']}")["tags"]["tags"]]
    untagged = ic.ok("POST", "/tags", json={"name": "Key account", "companies": [{"id": first["id"], "untag": True}]})
    assert untagged["companies"] == [{"id": first["id"], "tagged": False}]
    missing = ic.request("POST", "/tags", json={"name": "x", "companies": [{"company_id": "123"}]})
    assert ic.error(missing) == (404, "company_not_found")

    contact = admin.intercom_records("contacts")[5]
    users = ic.ok("POST", "/tags", json={"name": "Key account", "users": [{"id": contact["id"]}]})
    assert users["users"] == [{"id": contact["id"], "tagged": True}]
    assert tagged["id"] in [t["id"] for t in ic.ok("GET", f"/contacts/{contact['id']}/tags")["data"]]
    assert ic.error(ic.request("POST", "/tags", json={"test": "invalid"})) == (400, "parameter_invalid")

    assert ic.request("DELETE", f"/tags/{tagged['id']}").status_code == 200
    assert tagged["id"] not in [t["id"] for t in ic.ok("GET", f"/contacts/{contact['id']}/tags")["data"]]
    assert ic.error(ic.request("GET", f"/tags/{tagged['id']}")) == (404, "not_found")


def test_deleting_a_company_detaches_its_contacts(ic, admin):
    member = next(c for c in admin.intercom_records("contacts") if c["companies"]["total_count"] == 1)
    company_id = member["companies"]["data"][0]["id"]
    assert member["id"] in [c["id"] for c in ic.ok("GET", f"/companies/{company_id}/contacts")["data"]]
    ic.ok("DELETE", f"/companies/{company_id}")
    after = ic.ok("GET", f"/contacts/{member['id']}")
    assert after["companies"]["total_count"] == 0 and after["updated_at"] > member["updated_at"]
