"""The companies scroll (intercom.md §6.1): one per app, a 60 s idle TTL, no resume after a failure."""

from __future__ import annotations

import pytest
import requests

from sync_pipelines.vendors.intercom.client import IntercomApiError
from sync_pipelines_tests.vendors.intercom.conftest import TOKEN, flatten, sandbox_calls

SCROLL = "GET /companies/scroll"
COMPANIES = 120  # the sandbox scrolls 50 per page: three pages and the empty one that ends the scroll


@pytest.fixture
def companies(admin) -> list[str]:
    admin.intercom_reset(companies=COMPANIES)
    admin.reset_stats()
    return sorted(company["id"] for company in admin.intercom_records("companies"))


def open_scroll_elsewhere(sandbox) -> None:
    """Another run's scroll, left open as a crashed run leaves it (intercom.md §11)."""
    response = requests.get(
        f"{sandbox.url}/intercom/companies/scroll", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    assert response.status_code == 200, response.text


def delivered_ids(pages: list[list[dict]]) -> list[str]:
    return [company["id"] for company in flatten(pages)]


def test_a_scroll_delivers_every_company_once(admin, intercom, companies):
    client = intercom()

    pages = list(client.scroll_companies())

    assert sorted(delivered_ids(pages)) == companies
    assert [len(page) for page in pages] == [50, 50, 20]
    assert client.stats.calls == sandbox_calls(admin, SCROLL) == 4
    assert admin.intercom_scroll() is None  # an exhausted scroll is gone


def test_a_scroll_left_open_elsewhere_is_waited_out(admin, intercom, sandbox, companies):
    admin.intercom_settings(scroll_ttl=1)
    open_scroll_elsewhere(sandbox)
    client = intercom(scroll_ttl=2)

    pages = list(client.scroll_companies())

    assert sorted(delivered_ids(pages)) == companies
    assert client.stats.scroll_exists_waits >= 1
    assert client.stats.scroll_restarts == 0


def test_the_wait_for_a_scroll_open_elsewhere_is_bounded(admin, intercom, sandbox, companies):
    open_scroll_elsewhere(sandbox)  # alive for the sandbox's default 60 s
    client = intercom(scroll_ttl=0.6)

    with pytest.raises(IntercomApiError) as raised:
        list(client.scroll_companies())

    assert (raised.value.status, raised.value.code) == (400, "scroll_exists")
    # Polls every TTL/6 for 1.5 TTLs: about ten calls, then the error reaches the caller.
    assert 2 <= sandbox_calls(admin, SCROLL) - 1 <= 12
    assert admin.intercom_scroll()["served"] == 50  # the other run's scroll was left alone


def test_a_scroll_expired_midway_restarts_without_losing_or_repeating_companies(admin, intercom, companies):
    client = intercom()
    pages = client.scroll_companies()
    first = next(pages)
    assert admin.intercom_expire_scroll()  # as if the caller had spent over a minute on the page

    rest = list(pages)

    ids = delivered_ids([first, *rest])
    assert sorted(ids) == companies and len(ids) == len(set(ids))
    assert client.stats.scroll_restarts == 1
    assert client.stats.scroll_exists_waits == 0


def test_a_network_error_midway_restarts_the_scroll_after_the_broken_one_expires(admin, intercom, companies):
    admin.intercom_settings(scroll_ttl=1)
    client = intercom(scroll_ttl=2)
    pages = client.scroll_companies()
    first = next(pages)
    admin.intercom_fail_scroll(calls=1)  # the next page answers the 500 "please restart the scroll"

    rest = list(pages)

    ids = delivered_ids([first, *rest])
    assert sorted(ids) == companies and len(ids) == len(set(ids))
    assert client.stats.scroll_restarts == 1
    # The broken scroll held the app's one scroll until its TTL ran out.
    assert client.stats.scroll_exists_waits >= 1


def test_a_company_by_id(admin, intercom, companies):
    company = admin.intercom_records("companies")[0]

    assert intercom().get_company(company["id"]) == company
