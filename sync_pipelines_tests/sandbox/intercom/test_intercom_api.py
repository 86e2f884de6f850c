"""Transport rules every Intercom call meets: bearer auth, the version header, error.list, 10-second windows."""

import time
from collections import Counter

import requests

from sync_pipelines_tests.sandbox.intercom.conftest import TOKEN


def test_a_bad_or_missing_token_is_unauthorized_without_rate_limit_headers(ic):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
        response = ic.request("GET", "/contacts", headers=headers)
        assert ic.error(response) == (401, "unauthorized")
        assert response.json()["errors"][0]["message"] == "Access Token Invalid"
        assert "x-ratelimit-limit" not in response.headers  # intercom.md §3
    response = ic.request("GET", "/me")
    assert response.status_code == 200 and response.json()["type"] == "admin"
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(response.headers)
    assert response.json()["app"]["id_code"] == "sandboxapp"


def test_the_version_header_is_optional_but_must_name_a_version(ic):
    plain = {"Authorization": f"Bearer {TOKEN}"}
    assert ic.request("GET", "/admins", headers=plain).status_code == 200  # omitted: the app's 2.16
    assert ic.request("GET", "/admins", headers={**plain, "Intercom-Version": "2.11"}).status_code == 200
    response = ic.request("GET", "/admins", headers={**plain, "Intercom-Version": "9.9"})
    assert ic.error(response) == (400, "intercom_version_invalid")


def test_unknown_records_and_paths_answer_with_error_lists(ic):
    assert ic.error(ic.request("GET", "/contacts/000000000000000000000000")) == (404, "not_found")
    assert ic.error(ic.request("GET", "/companies/000000000000000000000000")) == (404, "company_not_found")
    assert ic.error(ic.request("GET", "/conversations/1")) == (404, "not_found")
    assert ic.error(ic.request("GET", "/admins/1")) == (404, "admin_not_found")
    assert ic.error(ic.request("GET", "/no/such/path")) == (404, "not_found")
    malformed = ic.request("POST", "/contacts", data=b"{not json", headers=ic.headers(**{"Content-Type": "x"}))
    assert ic.error(malformed) == (400, "bad_request")
    error = ic.request("POST", "/companies", json={"company_id": "x", "test": "invalid"}).json()
    assert error["errors"] == [{"code": "bad_request", "message": "bad 'test' parameter", "field": "test"}]
    assert error["request_id"]


def test_each_ten_second_window_allows_the_limit_then_429s_until_it_resets(ic, admin):
    admin.intercom_settings(window_limit=4)
    answers: list[tuple[int, int, int]] = []  # (status, remaining, reset)
    deadline = time.monotonic() + 30
    while not any(status == 429 for status, _, _ in answers):
        assert time.monotonic() < deadline, answers
        response = ic.request("GET", "/tags")
        headers = response.headers
        answers.append((response.status_code, int(headers["x-ratelimit-remaining"]), int(headers["x-ratelimit-reset"])))
        if response.status_code == 429:
            assert ic.error(response) == (429, "rate_limit_exceeded")
            assert response.json()["errors"][0]["message"] == "Exceeded rate limit of 4 in 10_seconds"
            assert headers["x-ratelimit-limit"] == "4" and headers["x-ratelimit-remaining"] == "0"
    reset = answers[-1][2]
    in_window = [(status, remaining) for status, remaining, r in answers if r == reset]
    assert [s for s, _ in in_window].count(200) == 4  # a window boundary mid-loop starts a fresh count
    assert [r for s, r in in_window if s == 200] == [3, 2, 1, 0]
    assert reset % 10 == 0 and reset > time.time() - 1

    while time.time() < reset:  # the next window serves again
        time.sleep(0.05)
    assert ic.request("GET", "/tags").status_code == 200


def test_injected_faults_have_intercom_shapes_and_are_counted(ic, admin):
    admin.reset_stats()
    admin.faults(intercom={"rate_limit_rate": 1.0, "retry_after_seconds": 3})
    limited = ic.request("GET", "/contacts")
    assert ic.error(limited) == (429, "rate_limit_exceeded")
    assert int(limited.headers["x-ratelimit-reset"]) >= int(time.time()) + 2
    admin.faults(intercom={"rate_limit_rate": 0.0, "error_rate": 1.0})
    assert ic.error(ic.request("GET", "/contacts")) == (500, "server_error")
    admin.faults(intercom={"error_rate": 0.0})
    assert ic.request("GET", "/contacts").status_code == 200
    stats = admin.stats()
    assert stats["intercom"] == {"GET /contacts": 3} and stats["faults_injected"] == 2
    # The admin API is never faulted or limited.
    assert requests.get(f"{admin.url}/intercom/settings", timeout=10).status_code == 200


def test_pages_of_the_contact_list_follow_the_cursor_in_the_query_string(ic):
    first = ic.ok("GET", "/contacts", params={"per_page": 60})
    seen = [c["id"] for c in first["data"]]
    page = first
    while page["pages"].get("next"):
        page = ic.ok(
            "GET", "/contacts", params={"per_page": 60, "starting_after": page["pages"]["next"]["starting_after"]}
        )
        seen.extend(c["id"] for c in page["data"])
    assert page["pages"]["page"] == page["pages"]["total_pages"] == 3
    assert len(seen) == len(set(seen)) == first["total_count"] == 149  # 150 seeded, one archived
    assert seen == sorted(seen)  # ids start with the creation second
    assert ic.error(ic.request("GET", "/contacts", params={"per_page": 151})) == (400, "parameter_invalid")
    assert Counter(c["role"] for c in ic.ok("GET", "/contacts", params={"per_page": 150})["data"]).keys() == {
        "user",
        "lead",
    }
