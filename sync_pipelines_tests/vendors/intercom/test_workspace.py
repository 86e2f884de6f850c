"""Tags, segments, admins, conversations, the error.list shape and the Dagster resource."""

from __future__ import annotations

import time

import pytest

from sync_pipelines.vendors.intercom.client import IntercomApiError
from sync_pipelines.vendors.intercom.resource import IntercomResource
from sync_pipelines_tests.vendors.intercom.conftest import TOKEN, flatten


def test_tags_segments_and_admins_of_the_workspace(admin, intercom):
    client = intercom()

    assert client.tags() == admin.intercom_records("tags")
    segments = client.segments()
    assert {s["id"]: s["name"] for s in segments} == {s["id"]: s["name"] for s in admin.intercom_records("segments")}
    assert all(isinstance(s["count"], int) for s in segments)  # asked for with include_count (intercom.md §7)
    assert client.admins() == admin.intercom_records("admins")


def test_conversations_changed_since_a_cursor_and_one_with_its_parts(admin, intercom):
    conversation = admin.intercom_records("conversations")[0]
    agent = admin.intercom_records("admins")[0]
    cursor = int(time.time()) - 1
    admin.intercom_conversation(conversation["id"], "reply", author="admin", admin_id=agent["id"], body="Sorted.")
    expected = {c["id"] for c in admin.intercom_records("conversations") if c["updated_at"] >= cursor}
    client = intercom()

    changed = flatten(list(client.search_conversations_since(cursor)))
    everything = flatten(list(client.search_conversations_since(None)))
    detail = client.get_conversation(conversation["id"])

    assert {c["id"] for c in changed} == expected and conversation["id"] in expected
    assert len(everything) == len(admin.intercom_records("conversations"))
    # intercom.md §8: parts come only with the single conversation.
    assert "conversation_parts" not in changed[0]
    parts = detail["conversation_parts"]["conversation_parts"]
    assert "Sorted." in parts[-1]["body"]
    assert len(parts) == len(conversation["conversation_parts"]["conversation_parts"]) + 1


def test_refusals_come_back_as_intercom_api_errors(admin, intercom):
    with pytest.raises(IntercomApiError) as unauthorized:
        intercom(access_token="not-the-token").tags()
    with pytest.raises(IntercomApiError) as missing:
        intercom().get_contact("0" * 24)
    with pytest.raises(IntercomApiError) as bad_sort:
        query = {"field": "role", "operator": "=", "value": "user"}
        list(intercom().search_contacts(query, sort={"field": "updated_at", "order": "upwards"}))
    with pytest.raises(IntercomApiError) as bad_version:
        intercom(api_version="9.9").admins()

    # intercom.md §2: status, the first error's code and message, and the request id.
    error = unauthorized.value
    assert (error.status, error.code, error.message) == (401, "unauthorized", "Access Token Invalid")
    assert error.request_id
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert (bad_sort.value.status, bad_sort.value.code) == (400, "invalid_sort_order")
    assert (bad_version.value.status, bad_version.value.code) == (400, "intercom_version_invalid")


def test_refusals_are_not_retried(admin, intercom):
    client = intercom(access_token="not-the-token")
    admin.reset_stats()

    with pytest.raises(IntercomApiError):
        client.tags()

    assert (client.stats.calls, client.stats.retries) == (1, 0)
    assert client.stats.rate_limit is None  # intercom.md §3: no rate-limit headers without valid credentials


def test_the_resource_shares_one_client(sandbox):
    resource = IntercomResource(base_url=f"{sandbox.url}/intercom", access_token=TOKEN)

    client = resource.get_client()
    client.admins()

    assert resource.get_client() is client
    assert resource.get_client().stats.calls == 1
