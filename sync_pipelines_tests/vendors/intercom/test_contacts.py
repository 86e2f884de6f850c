"""Contacts: cursor pages in the search body, the day-granular incremental read, and a contact's sub-resources."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from sync_pipelines_tests.vendors.intercom.conftest import (
    contact_with_case,
    flatten,
    sandbox_calls,
    searchable_contacts,
)

SEARCH = "POST /contacts/search"
# Noon UTC on a day inside the seed's year of history (the seed's times lie before 2025-06-01).
CURSOR = int(dt.datetime(2025, 3, 10, 12, tzinfo=dt.UTC).timestamp())


def test_a_full_read_pages_every_searchable_contact_once_oldest_first(admin, intercom):
    expected = searchable_contacts(admin)
    admin.reset_stats()
    client = intercom(per_page=20)

    pages = list(client.search_contacts_since(None))

    delivered = flatten(pages)
    assert sorted(c["id"] for c in delivered) == sorted(c["id"] for c in expected)
    assert len({c["id"] for c in delivered}) == len(delivered)  # the seed's updated_at ties do not double rows
    stamps = [c["updated_at"] for c in delivered]
    assert stamps == sorted(stamps)
    assert max(len(page) for page in pages) == 20
    # intercom.md §4: the cursor travels in the body; no extra call after the last page.
    assert client.stats.calls == sandbox_calls(admin, SEARCH) == math.ceil(len(expected) / 20)


@pytest.mark.parametrize("timezone", ["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_the_overlap_catches_a_contact_changed_later_on_the_cursor_s_day(admin, intercom, timezone):
    # intercom.md §5.1: a date filter matches by calendar day in the workspace's zone (UTC+14 and UTC-11 here).
    admin.intercom_settings(timezone=timezone)
    before, at, later = [c["id"] for c in searchable_contacts(admin)[:3]]
    admin.intercom_update("contacts", before, updated_at=CURSOR - 3600)
    admin.intercom_update("contacts", at, updated_at=CURSOR)
    admin.intercom_update("contacts", later, updated_at=CURSOR + 3600)
    expected = {c["id"] for c in searchable_contacts(admin) if c["updated_at"] >= CURSOR}
    client = intercom()

    delivered = flatten(list(client.search_contacts_since(CURSOR)))
    naive = flatten(list(client.search_contacts({"field": "updated_at", "operator": ">", "value": CURSOR})))

    assert {c["id"] for c in delivered} == expected
    assert {at, later} <= expected and before not in expected
    assert all(c["updated_at"] >= CURSOR for c in delivered)
    # `updated_at > CURSOR` alone starts at the next day and misses the contact changed an hour after it.
    assert later not in {c["id"] for c in naive}


def test_a_contact_changed_during_the_read_comes_again_only_with_its_change(admin, intercom):
    client = intercom(per_page=20)
    pages = client.search_contacts_since(None)
    first = next(pages)
    moved = first[0]["id"]
    pending = min({c["id"] for c in searchable_contacts(admin)} - {c["id"] for c in first})
    admin.intercom_update("contacts", moved, name="Moved Midway")
    admin.intercom_update("contacts", pending, name="Changed Before Its Turn")

    delivered = first + flatten(list(pages))

    pairs = [(c["id"], c["updated_at"]) for c in delivered]
    assert len(pairs) == len(set(pairs))
    assert [c["name"] for c in delivered if c["id"] == moved][-1] == "Moved Midway"
    assert [c["name"] for c in delivered if c["id"] == pending] == ["Changed Before Its Turn"]
    latest = {c["id"]: c["updated_at"] for c in delivered}
    assert latest == {c["id"]: c["updated_at"] for c in searchable_contacts(admin)}


def test_one_contact_and_its_tags_segments_and_companies_beyond_the_ten_embedded(admin, intercom):
    client = intercom()
    tagged = contact_with_case(admin, "many_tags")
    board = contact_with_case(admin, "many_companies")

    tags = client.contact_tags(tagged["id"])
    companies = client.contact_companies(board["id"])

    # intercom.md §5, §10: a contact embeds at most 10 of each; the sub-resources hold them all.
    assert len(tagged["tags"]["data"]) == 10 and len(tags) == 12
    assert {t["id"] for t in tagged["tags"]["data"]} <= {t["id"] for t in tags}
    assert len(board["companies"]["data"]) == 10 and len(companies) == 11
    assert {c["id"] for c in board["companies"]["data"]} <= {c["id"] for c in companies}

    segments = admin.intercom_records("segments")
    member = next(contact for segment in segments for contact in segment["contacts"])
    assert {s["id"] for s in client.contact_segments(member)} == {s["id"] for s in segments if member in s["contacts"]}
    assert client.get_contact(board["id"]) == {k: v for k, v in board.items() if k != "_archived"}


def test_a_company_s_contacts_across_pages(admin, intercom):
    members: dict[str, set[str]] = {}
    for contact in searchable_contacts(admin):
        # A contact embeds 10 companies at most; the one with more is read whole (tested above).
        embedded = contact["companies"]
        companies = intercom().contact_companies(contact["id"]) if embedded["has_more"] else embedded["data"]
        for company in companies:
            members.setdefault(company["id"], set()).add(contact["id"])
    busiest = max(members, key=lambda company_id: len(members[company_id]))
    client = intercom(per_page=5)

    attached = client.company_contacts(busiest)

    assert {c["id"] for c in attached} == members[busiest]
    assert len(attached) == len(members[busiest]) > 5
    assert client.stats.calls == math.ceil(len(attached) / 5)
