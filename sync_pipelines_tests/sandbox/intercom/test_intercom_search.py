"""POST /contacts/search and /conversations/search: the query language, day-granular dates, sort and cursors."""

from datetime import UTC, datetime

import pytest

DAY = int(datetime(2024, 3, 10, tzinfo=UTC).timestamp())  # 2024-03-10 00:00:00 UTC
H = 3600
BATCH = {"field": "custom_attributes.batch", "operator": "=", "value": "day"}


def both(*filters: dict) -> dict:
    return {"operator": "AND", "value": [BATCH, *filters]}


@pytest.fixture
def around_the_day(admin) -> dict[str, str]:
    """Contacts updated around 2024-03-10 (UTC): name -> id."""
    stamps = {
        "eve-before": DAY - 1,
        "midnight": DAY,
        "morning": DAY + 9 * H,
        "last-second": DAY + 24 * H - 1,
        "next-day": DAY + 24 * H,
    }
    return {
        name: admin.intercom_create(
            "contacts",
            email=f"{name}@day.example",
            name=name,
            custom_attributes={"batch": "day"},
            created_at=DAY - 30 * 24 * H,
            updated_at=stamp,
        )["id"]
        for name, stamp in stamps.items()
    }


def names(records: list[dict]) -> list[str]:
    return sorted(r["name"] for r in records)


def test_dates_match_by_calendar_day_in_the_workspace_time_zone(ic, admin, around_the_day):
    later = ic.search_all(both({"field": "updated_at", "operator": ">", "value": DAY + 9 * H}))
    assert names(later) == ["next-day"]  # ">" starts at the next day, not at 09:00 (intercom.md §5.1)
    same_day = ic.search_all(both({"field": "updated_at", "operator": "=", "value": DAY + 9 * H}))
    assert names(same_day) == ["last-second", "midnight", "morning"]
    earlier = ic.search_all(both({"field": "updated_at", "operator": "<", "value": DAY + 9 * H}))
    assert names(earlier) == ["eve-before"]
    as_text = ic.search_all(both({"field": "updated_at", "operator": "=", "value": str(DAY)}))
    assert names(as_text) == names(same_day)  # the spec's own example sends digits as a string

    # In Auckland (UTC+13 on that date) 2024-03-10 09:00 UTC is 22:00 local on the 10th, whose day starts at
    # 11:00 UTC on the 9th: every contact but the next-day one falls on it.
    admin.intercom_settings(timezone="Pacific/Auckland")
    auckland = ic.search_all(both({"field": "updated_at", "operator": "=", "value": DAY + 9 * H}))
    assert names(auckland) == ["eve-before", "midnight", "morning"]
    assert ic.ok("GET", "/me")["app"]["timezone"] == "Pacific/Auckland"


def test_operators_follow_the_field_types(ic, around_the_day):
    for field, operator, value in (
        ("updated_at", ">=", DAY),  # dates take only = < >
        ("created_at", "!=", DAY),
        ("created_at", "IN", [DAY]),
        ("tag_id", "IN", ["101"]),  # tag_id takes only = and !=
        ("email", ">", "a"),
        ("created_at", "=", "yesterday"),  # a value of the wrong type fails the query
        ("email", "=", 42),
        ("has_hard_bounced", "=", "false"),
        ("no_such_field", "=", "x"),
        ("email", "IN", "not-a-list"),
    ):
        response = ic.search({"field": field, "operator": operator, "value": value})
        assert ic.error(response) == (400, "parameter_invalid"), (field, operator, value)
    assert ic.error(ic.request("POST", "/contacts/search", json={})) == (400, "parameter_not_found")


def test_string_operators_are_case_insensitive_and_negations_include_missing_values(ic, around_the_day):
    def found(*filters: dict) -> list[str]:
        return names(ic.search_all(both(*filters)))

    assert found({"field": "email", "operator": "=", "value": "MORNING@Day.Example"}) == ["morning"]
    assert found({"field": "name", "operator": "~", "value": "NIGHT"}) == ["midnight"]
    assert found({"field": "name", "operator": "!~", "value": "I"}) == ["eve-before", "last-second", "next-day"]
    assert found({"field": "email", "operator": "^", "value": "next"}) == ["next-day"]
    assert found({"field": "name", "operator": "$", "value": "ND"}) == ["last-second"]
    assert found({"field": "name", "operator": "IN", "value": ["midnight", "MORNING"]}) == ["midnight", "morning"]
    assert found({"field": "name", "operator": "NIN", "value": ["midnight", "morning"]}) == [
        "eve-before",
        "last-second",
        "next-day",
    ]
    # phone is null on all five: != and NIN match them, = null finds them.
    assert len(found({"field": "phone", "operator": "!=", "value": "+1"})) == 5
    assert len(found({"field": "phone", "operator": "=", "value": None})) == 5


def test_non_latin_names_tags_and_custom_attributes_are_searchable(ic, admin):
    assert names(ic.search_all({"field": "name", "operator": "=", "value": "山田太郎"})) == ["山田太郎"]
    assert names(ic.search_all({"field": "name", "operator": "~", "value": "ΠΑΠΑΔΟΠΟΎΛΟΥ"})) == ["Ελένη Παπαδοπούλου"]
    no_email = {"field": "custom_attributes.sandbox_case", "operator": "=", "value": "lead_without_email"}
    assert [(c["email"], c["email_domain"]) for c in ic.search_all(no_email)] == [("", "")]  # DEVIATIONS.md
    tagged = ic.search_all({"field": "tag_id", "operator": "=", "value": "101"})
    assert tagged and all("101" in [t["id"] for t in ic.ok("GET", c["tags"]["url"])["data"]] for c in tagged[:5])
    untagged = ic.search_all({"field": "tag_id", "operator": "!=", "value": "101"})
    assert len(tagged) + len(untagged) == 149
    big = ic.search_all({"field": "custom_attributes.seats", "operator": ">", "value": 45})
    assert big and all(c["custom_attributes"]["seats"] > 45 for c in big)


def test_groups_nest_two_levels_with_at_most_fifteen_filters(ic, around_the_day):
    eq = [{"field": "name", "operator": "=", "value": n} for n in ("midnight", "morning")]
    nested = {"operator": "AND", "value": [BATCH, {"operator": "OR", "value": eq}]}
    assert names(ic.search_all(nested)) == ["midnight", "morning"]
    too_deep = {"operator": "AND", "value": [BATCH, {"operator": "OR", "value": [{"operator": "AND", "value": eq}]}]}
    assert ic.error(ic.search(too_deep)) == (400, "parameter_invalid")
    fifteen = {"operator": "OR", "value": [eq[0]] * 15}
    assert names(ic.search_all(fifteen)) == ["midnight"]
    assert ic.error(ic.search({"operator": "OR", "value": [eq[0]] * 16})) == (400, "parameter_invalid")
    assert ic.error(ic.search({"operator": "XOR", "value": eq})) == (400, "parameter_invalid")


def test_sort_orders_and_the_invalid_sort_order_error(ic, around_the_day):
    ascending = ic.search_all(BATCH, sort={"field": "updated_at", "order": "ascending"})
    assert [c["name"] for c in ascending] == ["eve-before", "midnight", "morning", "last-second", "next-day"]
    default = ic.search_all(BATCH, sort={"field": "updated_at"})
    assert [c["name"] for c in default] == [c["name"] for c in reversed(ascending)]  # descending by default
    wrong = ic.search(BATCH, sort={"field": "updated_at", "order": "desc"})
    assert ic.error(wrong) == (400, "invalid_sort_order")
    assert wrong.json()["errors"][0]["message"] == "Invalid sort order 'desc'. Must be one of: ascending, descending"


def test_the_cursor_lives_in_the_body_and_keyset_pages_lose_nothing(ic, admin):
    everyone = {"field": "role", "operator": "IN", "value": ["user", "lead"]}
    by_update = {"field": "updated_at", "order": "ascending"}
    first = ic.search(everyone, sort=by_update, pagination={"per_page": 7}).json()
    assert first["total_count"] == 149 and first["pages"]["total_pages"] == 22 and first["pages"]["page"] == 1
    cursor = first["pages"]["next"]["starting_after"]
    ignored = ic.request(
        "POST", "/contacts/search", params={"starting_after": cursor}, json={"query": everyone, "sort": by_update}
    )
    assert ignored.json()["data"][0]["id"] == first["data"][0]["id"]  # a query-string cursor is ignored
    second = ic.search(everyone, sort=by_update, pagination={"per_page": 7, "starting_after": cursor}).json()
    assert second["pages"]["page"] == 2 and not {c["id"] for c in second["data"]} & {c["id"] for c in first["data"]}

    # Pages of 7 cross the seed's shared updated_at seconds; a record changed mid-way moves to the end.
    pages, cursor, moved = [], None, None
    while True:
        pagination = {"per_page": 7, **({"starting_after": cursor} if cursor else {})}
        page = ic.search(everyone, sort=by_update, pagination=pagination).json()
        pages.append([c["id"] for c in page["data"]])
        if moved is None:
            moved = ic.search(everyone, sort={"field": "updated_at", "order": "descending"}).json()["data"][-1]
            admin.intercom_update("contacts", moved["id"], name="Moved Mid-Scan")
        cursor = (page["pages"].get("next") or {}).get("starting_after")
        if cursor is None:
            break
    seen = [record_id for page in pages for record_id in page]
    assert len(set(seen)) == 149 and pages[-1][-1] == moved["id"]
    assert ic.error(ic.search(everyone, pagination={"starting_after": "not-a-cursor"})) == (400, "parameter_invalid")


def test_conversation_search_uses_its_own_fields_and_inclusive_instants(ic, admin):
    conversations = admin.intercom_records("conversations")
    sample = conversations[0]
    contact_id = sample["contacts"]["contacts"][0]["id"]
    by_contact = ic.search_all({"field": "contact_ids", "operator": "=", "value": contact_id}, "conversations")
    assert sample["id"] in {c["id"] for c in by_contact}
    assert all(contact_id in [p["id"] for p in c["contacts"]["contacts"]] for c in by_contact)
    at = sample["updated_at"]
    exact = ic.search_all({"field": "updated_at", "operator": ">", "value": at}, "conversations")
    assert sample["id"] in {c["id"] for c in exact}  # "Greater (or equal) than" for conversations
    assert all(c["updated_at"] >= at for c in exact)
    open_ones = ic.search_all({"field": "state", "operator": "=", "value": "open"}, "conversations")
    assert {c["state"] for c in open_ones} == {"open"}
    assert len(open_ones) == sum(c["state"] == "open" for c in conversations)
    unassigned = ic.search_all({"field": "admin_assignee_id", "operator": "=", "value": 0}, "conversations")
    assert unassigned and {c["admin_assignee_id"] for c in unassigned} == {0}  # 2.16: unassigned is 0

    word = sample["source"]["body"].removeprefix("<p>").split()[0].strip(".")
    hits = ic.search_all({"field": "source.body", "operator": "=", "value": word.upper()}, "conversations")
    assert sample["id"] in {c["id"] for c in hits}
    phrase = " ".join(sample["source"]["body"].removeprefix("<p>").split()[:2])
    assert ic.search_all({"field": "source.body", "operator": "=", "value": phrase}, "conversations") == []
    page = ic.search({"field": "state", "operator": "IN", "value": ["open", "closed", "snoozed"]}, "conversations")
    assert page.json()["type"] == "conversation.list" and page.json()["pages"]["per_page"] == 20
    assert "conversation_parts" not in page.json()["conversations"][0]
