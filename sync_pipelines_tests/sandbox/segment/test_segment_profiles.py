"""The Segment Profile API sandbox under /profiles: profiles resolved from what the workspace received, read with
the space's token over HTTP Basic and paged by limit and next (sandbox/segment/profiles.py)."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from sync_pipelines.sandbox import SandboxServer, SandboxSettings
from sync_pipelines.sandbox.segment.profiles import ENGAGE_SOURCE_ID
from sync_pipelines_tests.conftest import SandboxAdmin

SPACE = "spa_sandbox8Qw3Rt5Yu7Io9P"
TOKEN = "sandbox-segment-profile-token"
NOT_FOUND = {"error": {"code": "not_found", "message": "Profile was not found."}}
EVENT_FIELDS = {
    "external_ids", "context", "type", "message_id", "source_id", "timestamp", "properties", "event", "related",
}  # fmt: skip
EXTERNAL_ID_FIELDS = {"source_id", "collection", "id", "type", "created_at", "encoding", "first_message_id"}


class ProfileApi:
    """Raw GETs against the sandbox's Profile API, with the space's token unless told otherwise."""

    def __init__(self, base_url: str) -> None:
        self.url = f"{base_url}/profiles"

    def path(self, collection: str, identifier: str, resource: str, space: str = SPACE) -> str:
        return f"/v1/spaces/{space}/collections/{collection}/profiles/{quote(identifier, safe=':@')}/{resource}"

    def get(
        self, collection: str, identifier: str, resource: str, auth=(TOKEN, ""), space: str = SPACE, **params
    ) -> requests.Response:
        url = self.url + self.path(collection, identifier, resource, space)
        return requests.get(url, params=params, auth=auth, timeout=30)

    def json(self, collection: str, identifier: str, resource: str, **params) -> dict:
        response = self.get(collection, identifier, resource, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def traits(self, identifier: str, collection: str = "users", **params) -> dict:
        return self.json(collection, identifier, "traits", limit=200, **params)["traits"]


@pytest.fixture
def api(sandbox) -> ProfileApi:
    return ProfileApi(sandbox.url)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Shop:
    """Ada (u-1) browses anonymously, signs up, changes plan, joins Harbour Co and orders three times (once more than
    14 days ago), then gets part of an order refunded; Bob (u-2) joins Harbour Co too."""

    def __init__(self, admin: SandboxAdmin) -> None:
        self.now = datetime.now(UTC)
        self.sources = {source["slug"]: source["id"] for source in admin.segment_sources()}
        (self.page,) = admin.segment_emit(
            "web", {"type": "page", "anonymousId": "anon-1", "name": "Shop", "timestamp": self.at(6)}
        )
        traits = {"email": "Ada@Example.com", "name": "Ada", "plan": "free", "newsletter_opt_in": True}
        admin.segment_emit(
            "web",
            {"type": "identify", "userId": "u-1", "anonymousId": "anon-1", "timestamp": self.at(5), "traits": traits},
        )
        admin.segment_emit(
            "server",
            {"type": "identify", "userId": "u-1", "timestamp": self.at(4), "traits": {"plan": "pro"}},
            {"type": "group", "userId": "u-1", "groupId": "acct-1", "timestamp": self.at(4),
             "traits": {"name": "Harbour Co", "employees": 10}},
            self.order("u-1", 30, "O-0", revenue=10, total=10),
            {"type": "track", "userId": "u-1", "event": "Product Viewed", "timestamp": self.at(20)},
        )  # fmt: skip
        (self.online,) = admin.segment_emit(
            "web", {**self.order("u-1", 3, "W-1", revenue=150, total=160), "anonymousId": "anon-1"}
        )
        (self.in_store,) = admin.segment_emit("point-of-sale", self.order("u-1", 2, "P-1", total=120))
        (self.refund,) = admin.segment_emit("server", self.refunded("u-1", 1, "P-1", total=40))
        admin.segment_emit(
            "server",
            {"type": "identify", "userId": "u-2", "timestamp": self.at(3), "traits": {"email": "bob@example.com"}},
            {"type": "group", "userId": "u-2", "groupId": "acct-1", "timestamp": self.at(2),
             "traits": {"employees": 12}},
        )  # fmt: skip

    def at(self, days_ago: float) -> str:
        return iso(self.now - timedelta(days=days_ago))

    def order(self, user: str, days_ago: float, order_id: str, **amounts: float) -> dict:
        properties = {"order_id": order_id, "currency": "USD", **amounts}
        return {"type": "track", "userId": user, "event": "Order Completed", "timestamp": self.at(days_ago),
                "properties": properties}  # fmt: skip

    def refunded(self, user: str, days_ago: float, order_id: str, **amounts: float) -> dict:
        properties = {"order_id": order_id, **amounts}
        return {"type": "track", "userId": user, "event": "Order Refunded", "timestamp": self.at(days_ago),
                "properties": properties}  # fmt: skip


@pytest.fixture
def shop(admin) -> Shop:
    return Shop(admin)


def test_traits_merge_identify_calls_with_the_spaces_computed_traits_and_audiences(api, shop):
    answer = api.json("users", "user_id:u-1", "traits", limit=200)
    assert answer["traits"] == {
        "email": "Ada@Example.com",
        "name": "Ada",
        "plan": "pro",  # the later identify wins
        "newsletter_opt_in": True,
        "orders_completed": 3,  # all history, not only the events window
        "lifetime_revenue": 240.0,  # 10 + 150 (revenue) + 120 (no revenue: total) - 40 refunded
        "last_order_at": shop.at(2),
        "repeat_buyers": True,
        "high_value_customers": False,  # 280 after the in-store order, 240 after the refund: it left
        "newsletter_subscribers": True,
    }
    path = api.path("users", "user_id:u-1", "traits")
    assert answer["cursor"] == {"url": f"{path}?limit=200", "has_more": False, "next": "", "limit": 200}

    assert api.traits("user_id:u-1", **{"class": "audience"}) == {
        "repeat_buyers": True,
        "high_value_customers": False,
        "newsletter_subscribers": True,
    }
    assert api.traits("user_id:u-1", **{"class": "computed_trait"}) == {
        "orders_completed": 3,
        "lifetime_revenue": 240.0,
        "last_order_at": shop.at(2),
    }
    assert api.traits("user_id:u-1", include="plan,orders_completed,nothing") == {"plan": "pro", "orders_completed": 3}
    # Bob never ordered nor was in an audience: counts of zero, no last_order_at, no audience traits.
    assert api.traits("user_id:u-2", **{"class": "computed_trait"}) == {"orders_completed": 0, "lifetime_revenue": 0.0}
    assert api.traits("user_id:u-2", **{"class": "audience"}) == {}
    assert api.get("users", "user_id:u-1", "traits", **{"class": "segment"}).json()["error"]["code"] == (
        "invalid_request_error"
    )


def test_verbose_traits_say_which_message_last_changed_them(api, shop):
    traits = api.traits("user_id:u-1", verbose="true")
    assert traits["plan"] == {"value": "pro", "source_id": shop.sources["server"], "updated_at": shop.at(4)}
    assert traits["email"] == {"value": "Ada@Example.com", "source_id": shop.sources["web"], "updated_at": shop.at(5)}
    assert traits["high_value_customers"] == {"value": False, "source_id": ENGAGE_SOURCE_ID, "updated_at": shop.at(1)}
    assert traits["repeat_buyers"] == {"value": True, "source_id": ENGAGE_SOURCE_ID, "updated_at": shop.at(3)}
    assert traits["lifetime_revenue"] == {"value": 240.0, "source_id": ENGAGE_SOURCE_ID, "updated_at": shop.at(1)}
    assert all(set(trait) == {"value", "source_id", "updated_at"} for trait in traits.values())


def test_an_audience_stays_on_the_profile_as_false_once_the_user_leaves_it(admin, api, shop):
    def audiences() -> dict:
        return api.traits("user_id:u-3", **{"class": "audience"})

    admin.segment_emit("server", shop.order("u-3", 5, "A-1", revenue=300, total=305))
    assert audiences() == {"high_value_customers": True}
    admin.segment_emit("server", shop.refunded("u-3", 4, "A-1", total=100))
    assert audiences() == {"high_value_customers": False}  # 200: out, but it was in
    admin.segment_emit("server", shop.order("u-3", 3, "A-2", revenue=80))
    assert audiences() == {"high_value_customers": True, "repeat_buyers": True}  # 280: back in
    admin.segment_emit("server", shop.refunded("u-3", 2, "A-2"))  # the whole order, no total named
    assert audiences() == {"high_value_customers": False, "repeat_buyers": True}
    assert api.traits("user_id:u-3", include="lifetime_revenue") == {"lifetime_revenue": 200.0}


@pytest.mark.parametrize("limit", [1, 3, 4])
def test_limit_and_next_walk_every_trait_exactly_once(api, shop, limit):
    expected = sorted(api.traits("user_id:u-1"))
    seen, pages, after = [], 0, None
    while True:
        params = {"limit": limit, **({"next": after} if after else {})}
        answer = api.json("users", "user_id:u-1", "traits", **params)
        pages += 1
        assert len(answer["traits"]) <= limit and answer["cursor"]["limit"] == limit
        seen.extend(answer["traits"])
        if not answer["cursor"]["has_more"]:
            assert answer["cursor"]["next"] == ""
            break
        after = answer["cursor"]["next"]
        assert after
    assert seen == expected
    assert pages == -(-len(expected) // limit)


@pytest.mark.parametrize("limit", ["0", "201", "ten"])
def test_a_limit_out_of_range_is_an_invalid_request(api, shop, limit):
    response = api.get("users", "user_id:u-1", "traits", limit=limit)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request_error"


def test_events_are_the_last_14_days_of_track_calls_newest_first(api, shop):
    def events(**params) -> list[str]:
        data = api.json("users", "user_id:u-1", "events", **params)["data"]
        return [event["message_id"] for event in data]

    refund, in_store, online = shop.refund["messageId"], shop.in_store["messageId"], shop.online["messageId"]
    # The order 30 days ago and the product viewed 20 days ago are older than the window.
    assert events() == [refund, in_store, online]
    assert events(sort="asc") == [online, in_store, refund]
    assert events(include="Order Completed") == [in_store, online]
    assert events(exclude="Order Completed,Product Viewed") == [refund]
    assert events(start=shop.at(2.5)) == [refund, in_store]
    assert events(end=shop.at(1.5), sort="asc") == [online, in_store]

    answer = api.json("users", "user_id:u-1", "events")
    event = answer["data"][-1]
    assert set(event) == EVENT_FIELDS
    assert event["type"] == "track" and event["event"] == "Order Completed"
    assert event["source_id"] == shop.sources["web"] and event["timestamp"] == shop.at(3)
    assert event["properties"] == {"order_id": "W-1", "currency": "USD", "revenue": 150, "total": 160}
    assert event["external_ids"] == [
        {"collection": "users", "type": "user_id", "id": "u-1", "encoding": "none"},
        {"collection": "users", "type": "anonymous_id", "id": "anon-1", "encoding": "none"},
    ]
    assert event["context"]["library"]["name"] == "analytics.js"
    assert event["related"]["users"].startswith("use_")
    assert answer["cursor"] == {
        "url": api.path("users", "user_id:u-1", "events"),
        "has_more": False,
        "next": "",
        "limit": 10,
    }

    walked, after = [], None
    while True:
        page = api.json("users", "user_id:u-1", "events", limit=1, **({"next": after} if after else {}))
        walked.extend(event["message_id"] for event in page["data"])
        if not page["cursor"]["has_more"]:
            break
        after = page["cursor"]["next"]
    assert walked == [refund, in_store, online]
    assert api.get("users", "user_id:u-1", "events", sort="newest").status_code == 400
    assert api.get("users", "user_id:u-1", "events", start="last week").status_code == 400


def test_external_ids_are_every_id_the_profile_was_seen_with(api, shop):
    data = api.json("users", "user_id:u-1", "external_ids")["data"]
    assert [(item["type"], item["id"]) for item in data] == [
        ("anonymous_id", "anon-1"),  # first seen on the anonymous page view
        ("user_id", "u-1"),
        ("email", "Ada@Example.com"),
    ]
    assert all(set(item) == EXTERNAL_ID_FIELDS for item in data)
    assert all(item["collection"] == "users" and item["encoding"] == "none" for item in data)
    anonymous = data[0]
    assert anonymous["first_message_id"] == shop.page["messageId"]
    assert anonymous["source_id"] == shop.sources["web"]
    assert anonymous["created_at"] == shop.page["receivedAt"]
    only_email = api.json("users", "user_id:u-1", "external_ids", include="email")["data"]
    assert [item["id"] for item in only_email] == ["Ada@Example.com"]
    first = api.json("users", "user_id:u-1", "external_ids", limit=2)
    assert first["cursor"]["has_more"] is True and len(first["data"]) == 2
    rest = api.json("users", "user_id:u-1", "external_ids", limit=2, next=first["cursor"]["next"])
    assert first["data"] + rest["data"] == data and rest["cursor"]["has_more"] is False


def test_an_anonymous_id_or_an_email_reaches_the_same_profile(api, shop):
    by_user_id = api.traits("user_id:u-1")
    assert api.traits("anonymous_id:anon-1") == by_user_id
    assert api.traits("email:ada@EXAMPLE.com") == by_user_id
    assert api.traits("email:bob@example.com")["email"] == "bob@example.com"
    for collection, identifier in [
        ("users", "user_id:nobody"),
        ("users", "anonymous_id:nobody"),
        ("users", "email:nobody@example.com"),
        ("users", "phone:+15550100"),
        ("accounts", "user_id:u-1"),
        ("accounts", "group_id:acct-404"),
    ]:
        response = api.get(collection, identifier, "traits")
        assert response.status_code == 404, identifier
        assert response.json() == NOT_FOUND


def test_metadata_names_the_first_and_last_message_received(api, shop):
    metadata = api.json("users", "user_id:u-1", "metadata")["metadata"]
    assert metadata == {
        "created_at": shop.page["receivedAt"],
        "updated_at": shop.refund["receivedAt"],
        "expires_at": None,
        "first_message_id": shop.page["messageId"],
        "first_source_id": shop.sources["web"],
        "last_message_id": shop.refund["messageId"],
        "last_source_id": shop.sources["server"],
    }


def test_accounts_merge_group_traits_and_link_to_their_users(api, shop):
    assert api.traits("group_id:acct-1", collection="accounts") == {"name": "Harbour Co", "employees": 12}
    assert api.traits("group_id:acct-1", collection="accounts", **{"class": "audience"}) == {}

    links = api.json("accounts", "group_id:acct-1", "links")
    assert [link["to_collection"] for link in links["data"]] == ["users", "users"]
    people = [{(i["type"], i["id"]) for i in link["external_ids"]} for link in links["data"]]
    assert people == [
        {("user_id", "u-1"), ("anonymous_id", "anon-1"), ("email", "Ada@Example.com")},
        {("user_id", "u-2"), ("email", "bob@example.com")},
    ]
    assert links["cursor"]["has_more"] is False

    (account,) = api.json("users", "user_id:u-1", "links")["data"]
    (group_id,) = account["external_ids"]
    assert account["to_collection"] == "accounts"
    assert {k: group_id[k] for k in ("id", "type", "collection", "encoding", "source_id")} == {
        "id": "acct-1",
        "type": "group_id",
        "collection": "accounts",
        "encoding": "none",
        "source_id": shop.sources["server"],
    }
    assert api.get("accounts", "group_id:acct-1", "links", limit=21).status_code == 400


def test_what_our_product_sent_to_the_tracking_api_counts_too(sandbox, admin, api):
    write_key = (sandbox.settings.write_key, "")
    for call, message in [
        ("identify", {"userId": "t-1", "traits": {"email": "t@example.com"}}),
        ("track", {"userId": "t-1", "event": "Order Completed", "properties": {"revenue": 260}}),
    ]:
        response = requests.post(f"{sandbox.url}/segment/v1/{call}", json=message, auth=write_key, timeout=30)
        assert response.status_code == 200
    traits = api.traits("user_id:t-1", verbose="true")
    tracking_api = next(source["id"] for source in admin.segment_sources() if source["slug"] == "xero-sync")
    assert traits["email"]["source_id"] == tracking_api
    assert traits["high_value_customers"]["value"] is True


def test_a_reset_forgets_every_profile(admin, api, shop):
    assert api.get("users", "user_id:u-1", "traits").status_code == 200
    admin.reset()
    assert api.get("users", "user_id:u-1", "traits").json() == NOT_FOUND


@pytest.mark.parametrize(
    "auth",
    [None, ("not-the-token", ""), (TOKEN, "a-password"), ("", TOKEN)],
    ids=["none", "wrong-token", "with-password", "token-as-password"],
)
def test_a_request_without_the_space_token_is_refused(api, shop, auth):
    response = api.get("users", "user_id:u-1", "traits", auth=auth)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_error"
    assert response.headers["Request-Id"]


def test_a_bearer_token_is_refused(sandbox, shop):
    url = ProfileApi(sandbox.url).url + ProfileApi(sandbox.url).path("users", "user_id:u-1", "traits")
    response = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 401 and response.json()["error"]["code"] == "authentication_error"


def test_every_answer_has_its_own_request_id(api, shop):
    answers = [
        api.get("users", "user_id:u-1", "traits"),
        api.get("users", "user_id:u-1", "traits"),
        api.get("users", "user_id:nobody", "traits"),
        api.get("users", "user_id:u-1", "friends"),
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 404, 404]
    ids = [answer.headers["Request-Id"] for answer in answers]
    assert all(ids) and len(set(ids)) == len(ids)


def test_malformed_requests_name_what_is_wrong(api, shop):
    unknown_space = api.get("users", "user_id:u-1", "traits", space="spa_other")
    assert unknown_space.status_code == 404 and unknown_space.json()["error"]["code"] == "not_found"
    for collection, identifier in [("orders", "user_id:u-1"), ("users", "u-1"), ("users", "user_id:")]:
        response = api.get(collection, identifier, "traits")
        assert response.status_code == 400, (collection, identifier)
        assert response.json()["error"]["code"] == "validation_error"
    bad_cursor = api.get("users", "user_id:u-1", "external_ids", next="not-a-cursor")
    assert bad_cursor.status_code == 400 and bad_cursor.json()["error"]["code"] == "invalid_request_error"


@pytest.fixture
def slow_space(tmp_path: Path) -> Iterator[SandboxServer]:
    """A sandbox whose space allows 3 requests an hour, so the fourth is refused however slowly they run."""
    settings = SandboxSettings(
        state_path=tmp_path / "sandbox.db",
        segment_profile_requests_per_second=3,
        segment_profile_rate_window_seconds=3600,
    )
    with SandboxServer(settings) as server:
        yield server


def test_requests_over_the_spaces_rate_limit_are_refused(slow_space):
    SandboxAdmin(slow_space.url).segment_emit("server", {"type": "identify", "userId": "u-1", "traits": {}})
    api = ProfileApi(slow_space.url)
    answers = [api.get("users", "user_id:u-1", "traits") for _ in range(5)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429, 429]
    refused = answers[3]
    assert refused.json() == {
        "error": {"code": "rate_limit_error", "message": "Too many requests hit the API too quickly."}
    }
    assert refused.headers["Request-Id"]


def test_fault_knobs_answer_in_the_profile_apis_error_shape(admin, api, shop):
    admin.faults(segment={"rate_limit_rate": 1.0})
    limited = api.get("users", "user_id:u-1", "traits")
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit_error"
    assert limited.headers["Request-Id"]
    admin.faults(segment={"rate_limit_rate": 0.0, "error_rate": 1.0})
    failed = api.get("users", "user_id:u-1", "traits")
    assert failed.status_code == 500 and set(failed.json()["error"]) == {"code", "message"}
    admin.faults(segment={"error_rate": 0.0})
    assert api.get("users", "user_id:u-1", "traits").status_code == 200


def test_a_plus_sign_in_an_identifier_is_sent_as_2b(api, admin):
    """The docs: "insert the escape characters %2B in place of the plus sign" (ProfileApi.path quotes it)."""
    admin.segment_emit("server", {"type": "identify", "userId": "+15550100", "traits": {"email": "a+b@example.com"}})
    assert "%2B15550100" in api.path("users", "user_id:+15550100", "traits")
    assert api.traits("user_id:+15550100") == api.traits("email:A+B@example.com")
    assert api.traits("user_id:+15550100")["email"] == "a+b@example.com"
