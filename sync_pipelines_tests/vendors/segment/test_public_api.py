"""SegmentPublicApi against the sandbox's Public API: every source in as few pages as possible, their names, clear
errors for what cannot succeed, and retries for what can."""

import pytest

from sync_pipelines.vendors.segment import settings
from sync_pipelines.vendors.segment.public_api import SegmentPublicApi, SegmentPublicApiError
from sync_pipelines.vendors.segment.workspace import SegmentWorkspaceResource

TOKEN = "sandbox-segment-public-api-token"


@pytest.fixture
def base_url(sandbox) -> str:
    return f"{sandbox.url}/segmentapis"


@pytest.fixture
def client(base_url) -> SegmentPublicApi:
    return SegmentPublicApi(base_url, TOKEN)


def test_every_source_comes_in_one_page_of_the_largest_size(admin, client):
    admin.reset_stats()
    sources = client.sources()
    assert [(s["id"], s["slug"], s["name"]) for s in sources] == [
        (s["id"], s["slug"], s["name"]) for s in admin.segment_sources()
    ]
    assert admin.count("segment", "GET /sources") == 1
    assert (client.stats.calls, client.stats.retries) == (1, 0)


def test_small_pages_are_followed_to_the_end(admin, base_url):
    client = SegmentPublicApi(base_url, TOKEN, page_size=1)
    assert [s["id"] for s in client.sources()] == [s["id"] for s in admin.segment_sources()]
    assert client.stats.calls == len(admin.segment_sources())


def test_source_names_name_every_message_source(admin, client):
    names = client.source_names()
    assert names == {s["id"]: s["name"] for s in admin.segment_sources()}
    (message,) = admin.segment_emit("point-of-sale", {"type": "track", "userId": "u-1", "event": "Order Completed"})
    assert names[message["projectId"]] == "Point of Sale"


def test_one_source_and_its_connected_destinations(admin, client):
    web = admin.segment_sources()[0]
    assert client.source(web["id"])["name"] == "Web"
    admin.segment_destination(url="http://127.0.0.1:9/segment/webhooks")  # nothing is emitted, so nothing posted
    (destination,) = client.connected_destinations(web["id"])
    assert destination["metadata"]["name"] == "Webhooks" and destination["enabled"] is True
    assert destination["sourceId"] == web["id"]


def test_an_unknown_source_raises_not_found(client):
    with pytest.raises(SegmentPublicApiError) as raised:
        client.source("nope")
    assert raised.value.status == 404 and raised.value.errors
    assert client.stats.calls == 1


def test_a_wrong_token_raises_unauthorized_without_retrying(base_url):
    client = SegmentPublicApi(base_url, "not-the-token")
    with pytest.raises(SegmentPublicApiError) as raised:
        client.sources()
    assert raised.value.status == 401
    assert (client.stats.calls, client.stats.retries) == (1, 0)


def test_page_size_is_bounded_by_the_api(base_url):
    with pytest.raises(ValueError):
        SegmentPublicApi(base_url, TOKEN, page_size=settings.PUBLIC_API_MAX_PAGE_SIZE + 1)


def test_rate_limited_calls_are_retried_after_the_wait_the_429_names(admin, client):
    # The sandbox's 429 names its wait in data.msBeforeNext and X-RateLimit-Reset: here none at all.
    admin.faults(segment={"rate_limit_rate": 0.5, "retry_after_seconds": 0})
    expected = {s["id"]: s["name"] for s in admin.segment_sources()}
    rounds = 0
    while client.stats.rate_limited == 0 and rounds < 50:
        rounds += 1
        assert client.source_names() == expected
    stats = client.stats
    assert stats.rate_limited > 0 and stats.retries == stats.rate_limited
    assert stats.calls == rounds + stats.retries


def test_server_errors_are_retried(admin, client):
    admin.faults(segment={"error_rate": 0.5})
    web = admin.segment_sources()[0]
    rounds = 0
    while client.stats.retries == 0 and rounds < 50:
        rounds += 1
        assert client.source(web["id"])["name"] == "Web"
    assert client.stats.retries > 0 and client.stats.rate_limited == 0


def test_a_call_that_keeps_failing_raises_with_the_last_answer(admin, base_url):
    admin.faults(segment={"rate_limit_rate": 1, "retry_after_seconds": 0})
    client = SegmentPublicApi(base_url, TOKEN, max_attempts=3)
    with pytest.raises(SegmentPublicApiError) as raised:
        client.sources()
    assert raised.value.status == 429 and raised.value.errors[0]["data"]["msBeforeNext"] == 0
    assert (client.stats.calls, client.stats.rate_limited) == (3, 3)


def test_the_workspace_resource_names_sources_through_the_public_api_when_it_has_one(admin, base_url, tmp_path):
    inbox = str(tmp_path / "inbox.sqlite")
    named = SegmentWorkspaceResource(inbox_path=inbox, public_api_url=base_url, public_api_token=TOKEN)
    assert named.source_names() == {s["id"]: s["name"] for s in admin.segment_sources()}
    assert SegmentWorkspaceResource(inbox_path=inbox).source_names() == {}
