"""Where the real Intercom API answers otherwise than its 2.16 description, the sandbox follows the API
(sync_pipelines/sandbox/intercom/DEVIATIONS.md, with the evidence)."""

from urllib.parse import parse_qs, urlsplit

import requests

from sync_pipelines_tests.sandbox.intercom.conftest import VERSION


def test_a_contact_without_an_email_has_an_empty_email_and_domain(ic, admin):
    seeded = next(
        c
        for c in admin.intercom_records("contacts")
        if c["custom_attributes"].get("sandbox_case") == "lead_without_email"
    )
    created = ic.ok("POST", "/contacts", json={"role": "lead", "name": "No Mail"})
    with_email = ic.ok("POST", "/contacts", json={"role": "lead", "email": "ada@example.org"})

    for contact in (ic.ok("GET", f"/contacts/{seeded['id']}"), created):
        assert (contact["role"], contact["email"], contact["email_domain"]) == ("lead", "", "")
    assert (with_email["email"], with_email["email_domain"]) == ("ada@example.org", "example.org")
    started = admin.intercom_create("conversations", contact_id=created["id"], body="Hello")
    assert started["source"]["author"] == {"type": "lead", "id": created["id"], "name": "No Mail", "email": ""}


def test_a_conversation_never_closed_has_null_close_statistics(ic, admin):
    contact_id = ic.ok("GET", "/contacts", params={"per_page": 1})["data"][0]["id"]
    conversation_id = admin.intercom_create("conversations", contact_id=contact_id, body="Hi")["id"]

    opened = ic.ok("GET", f"/conversations/{conversation_id}")["statistics"]
    admin.intercom_conversation(conversation_id, "state", state="closed")
    closed = ic.ok("GET", f"/conversations/{conversation_id}")["statistics"]

    assert (opened["first_close_at"], opened["last_close_at"]) == (None, None)
    assert isinstance(closed["first_close_at"], int) and closed["last_close_at"] == closed["first_close_at"]


def test_company_lists_link_the_next_page_by_url(ic):
    """GET /companies is followed with GET, POST /companies/list with POST (PostHog/posthog#62131); null ends."""
    headers = ic.headers()
    for method, path in (("GET", "/companies"), ("POST", "/companies/list")):
        page = ic.ok(method, path, params={"per_page": 5})
        seen = [c["id"] for c in page["data"]]
        while page["pages"]["next"] is not None:
            link = page["pages"]["next"]
            assert isinstance(link, str) and parse_qs(urlsplit(link).query)["per_page"] == ["5"]
            following = requests.request(method, link, headers=headers, timeout=60)
            assert following.status_code == 200, following.text
            page = following.json()
            seen += [c["id"] for c in page["data"]]
        assert page["pages"]["page"] == page["pages"]["total_pages"] > 1
        assert len(seen) == len(set(seen)) == page["total_count"]


def test_an_unknown_contact_is_a_404_user_not_found(ic):
    response = ic.request("GET", "/contacts/000000000000000000000000")

    assert response.status_code == 404
    body = response.json()
    assert (body["type"], body["errors"]) == ("error.list", [{"code": "not_found", "message": "User Not Found"}])
    assert body["request_id"] and VERSION == "2.16"
