"""SegmentProfileApi against the sandbox's Profile API: a person's audiences and computed traits in full, however
they are paged; None for a person Engage does not know; clear errors for what cannot succeed, retries for what
can."""

import pytest

from sync_pipelines.vendors.segment.profiles import SegmentProfileApi, SegmentProfileApiError
from sync_pipelines.vendors.segment.workspace import SegmentWorkspaceResource

SPACE, TOKEN = "spa_sandbox8Qw3Rt5Yu7Io9P", "sandbox-segment-profile-token"


@pytest.fixture
def base_url(sandbox) -> str:
    return f"{sandbox.url}/profiles"


@pytest.fixture
def buyer(admin) -> str:
    """A person with two orders of 150 and the newsletter: in every audience of the sandbox's space."""
    traits = {"email": "b@example.test", "newsletter_opt_in": True}
    identify = {"type": "identify", "userId": "u-buyer", "traits": traits}
    orders = [
        {"type": "track", "userId": "u-buyer", "event": "Order Completed",
         "properties": {"order_id": f"o-{n}", "total": 150, "revenue": 150, "currency": "USD"}}
        for n in (1, 2)
    ]  # fmt: skip
    admin.segment_emit("server", identify, *orders)
    return "u-buyer"


def test_audiences_and_computed_traits_come_verbose_with_when_each_changed(base_url, buyer):
    api = SegmentProfileApi(base_url, SPACE, TOKEN)
    audiences = api.traits(buyer, "audience")
    assert {name: trait["value"] for name, trait in audiences.items()} == {
        "repeat_buyers": True, "high_value_customers": True, "newsletter_subscribers": True
    }  # fmt: skip
    assert all(trait["updated_at"] for trait in audiences.values())
    computed = api.traits(buyer, "computed_trait")
    assert (computed["orders_completed"]["value"], computed["lifetime_revenue"]["value"]) == (2, 300)
    assert api.stats.calls == 2


def test_small_pages_are_followed_to_the_end(base_url, buyer):
    whole = SegmentProfileApi(base_url, SPACE, TOKEN).traits(buyer)
    paged = SegmentProfileApi(base_url, SPACE, TOKEN, traits_limit=1)
    assert paged.traits(buyer) == whole
    assert paged.stats.calls == len(whole)


def test_a_person_engage_does_not_know_is_none(base_url, buyer):
    assert SegmentProfileApi(base_url, SPACE, TOKEN).traits("u-nobody", "audience") is None


def test_a_wrong_token_raises_unauthorized_without_retrying(base_url, buyer):
    api = SegmentProfileApi(base_url, SPACE, "not-the-token")
    with pytest.raises(SegmentProfileApiError) as raised:
        api.traits(buyer)
    assert (raised.value.status, raised.value.code) == (401, "authentication_error")
    assert (api.stats.calls, api.stats.retries) == (1, 0)


def test_rate_limits_and_server_errors_are_retried(admin, base_url, buyer):
    admin.faults(segment={"rate_limit_rate": 0.4, "error_rate": 0.3, "retry_after_seconds": 0})
    api, rounds = SegmentProfileApi(base_url, SPACE, TOKEN), 0
    while (api.stats.rate_limited == 0 or api.stats.retries == api.stats.rate_limited) and rounds < 100:
        rounds += 1
        assert api.traits(buyer, "audience")["repeat_buyers"]["value"] is True
    stats = api.stats
    assert stats.rate_limited > 0 and stats.retries > stats.rate_limited  # some were 5xx
    assert stats.calls == rounds + stats.retries


def test_a_call_that_keeps_failing_raises_with_the_last_answer(admin, base_url, buyer):
    admin.faults(segment={"rate_limit_rate": 1, "retry_after_seconds": 0})
    api = SegmentProfileApi(base_url, SPACE, TOKEN, max_attempts=3)
    with pytest.raises(SegmentProfileApiError) as raised:
        api.traits(buyer)
    assert (raised.value.status, raised.value.code, api.stats.calls) == (429, "rate_limit_error", 3)


def test_the_workspace_resource_reads_profiles_only_with_a_profile_api(base_url, tmp_path):
    inbox = str(tmp_path / "inbox.sqlite")
    assert SegmentWorkspaceResource(inbox_path=inbox).profile_api() is None
    engaged = SegmentWorkspaceResource(
        inbox_path=inbox, profile_api_url=base_url, space_id=SPACE, profile_api_token=TOKEN
    )
    assert engaged.profile_api() is engaged.profile_api()
