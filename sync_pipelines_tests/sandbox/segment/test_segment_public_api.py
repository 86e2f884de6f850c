"""The Segment Public API sandbox under /segmentapis: the workspace's sources and its Webhooks destination, read
with a Bearer token and paged by pagination.count and cursor (sandbox/segment/public_api.py)."""

import pytest
import requests

TOKEN = "sandbox-segment-public-api-token"


class PublicApi:
    """Raw GETs against the sandbox's Public API, with or without the workspace token."""

    def __init__(self, base_url: str) -> None:
        self.url = f"{base_url}/segmentapis"

    def get(self, path: str, token: str | None = TOKEN, **params) -> requests.Response:
        headers = {"Accept": "application/vnd.segment.v1+json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.get(self.url + path, params=params, headers=headers, timeout=10)

    def data(self, path: str, **params) -> dict:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()["data"]


@pytest.fixture
def api(sandbox) -> PublicApi:
    return PublicApi(sandbox.url)


def count_param(count: int | str) -> dict:
    return {"pagination.count": count}


def test_small_pages_walk_every_source_exactly_once(admin, api):
    expected = [(s["id"], s["slug"], s["name"]) for s in admin.segment_sources()]
    for count in (1, 3, 4):
        seen, pages, cursor = [], [], None
        while True:
            params = {**count_param(count), **({"pagination.cursor": cursor} if cursor else {})}
            page = api.data("/sources", **params)
            pages.append(page["pagination"])
            seen.extend((s["id"], s["slug"], s["name"]) for s in page["sources"])
            cursor = page["pagination"].get("next")
            if cursor is None:
                break
        assert seen == expected
        assert len(pages) == -(-len(expected) // count)
        assert pages[0]["previous"] is None and "next" not in pages[-1]
        assert all(p["totalEntries"] == len(expected) for p in pages)
        assert [p["current"] for p in pages[1:]] == [p["next"] for p in pages[:-1]]


def test_a_source_has_the_public_api_fields(admin, api):
    pos = next(s for s in admin.segment_sources() if s["slug"] == "point-of-sale")
    data = api.data(f"/sources/{pos['id']}")
    assert data["trackingPlanId"] is None
    source = data["source"]
    assert {k: source[k] for k in ("id", "slug", "name", "enabled", "writeKeys", "settings", "labels")} == {
        "id": pos["id"],
        "slug": "point-of-sale",
        "name": "Point of Sale",
        "enabled": True,
        "writeKeys": [],
        "settings": {},
        "labels": [],
    }
    assert source["metadata"]["slug"] == "http-api" and source["metadata"]["name"] == "HTTP API"
    assert source["workspaceId"] and source in api.data("/sources", **count_param(1000))["sources"]


@pytest.mark.parametrize("token", [None, "not-the-token", ""])
def test_a_request_without_the_workspace_token_is_refused(api, token):
    response = api.get("/sources", token=token, **count_param(10))
    assert response.status_code == 401
    (error,) = response.json()["errors"]
    assert error["type"] and error["message"] and "data" not in response.json()


@pytest.mark.parametrize("count", [None, 0, 1001, "ten", "2.5", "-1", "²"])
def test_a_list_call_needs_a_count_from_1_to_1000(api, count):
    params = {} if count is None else count_param(count)
    for path in ("/sources", "/destinations", "/sources/e8TeW6t8xWVp9uNMB5VZ2g/connected-destinations"):
        response = api.get(path, **params)
        assert response.status_code == 422, path
        (error,) = response.json()["errors"]
        assert error["type"] == "input-validation" and error["field"] == "pagination.count", path
        assert '"count"' in error["message"]


def test_a_cursor_not_from_a_page_is_refused(api):
    response = api.get("/sources", **count_param(2), **{"pagination.cursor": "not a cursor"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "pagination.cursor"


def test_unknown_ids_are_not_found(api):
    for path in ("/sources/nope", "/destinations/nope"):
        response = api.get(path)
        assert response.status_code == 404 and response.json()["errors"][0]["message"], path
    assert api.get("/sources/nope/connected-destinations", **count_param(10)).status_code == 404
    # Sources are addressed by id, not by slug.
    assert api.get("/sources/web").status_code == 404


def test_connected_destinations_follow_the_admin_configured_webhooks_destination(admin, api, endpoint):
    sources = admin.segment_sources()

    def connected(source_id: str) -> dict:
        (destination,) = api.data(f"/sources/{source_id}/connected-destinations", **count_param(10))["destinations"]
        return destination

    off = [connected(s["id"]) for s in sources]
    assert [d["enabled"] for d in off] == [False] * len(sources)
    assert all(d["settings"] == {"hooks": [], "sharedSecret": ""} for d in off)

    admin.segment_destination(url=endpoint.url, secret="s3cret")
    on = [connected(s["id"]) for s in sources]
    for source, destination in zip(sources, on, strict=True):
        assert destination["sourceId"] == source["id"] and destination["enabled"] is True
        assert destination["name"] == "Webhooks" and destination["metadata"]["name"] == "Webhooks"
        assert destination["settings"]["hooks"] == [{"hook": endpoint.url, "headers": []}]
        assert destination["settings"]["sharedSecret"] not in ("", "s3cret")
        assert api.data(f"/destinations/{destination['id']}") == {"destination": destination}
    assert [d["id"] for d in on] == [d["id"] for d in off] and len({d["id"] for d in on}) == len(sources)
    assert api.data("/destinations", **count_param(1000))["destinations"] == on

    admin.segment_destination(url=None)
    assert not any(connected(s["id"])["enabled"] for s in sources)


def test_unknown_paths_and_methods_answer_in_the_error_envelope(api):
    response = api.get("/warehouses", **count_param(10))
    assert response.status_code == 404 and "errors" in response.json()
    response = requests.post(f"{api.url}/sources", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 405 and "errors" in response.json()


def test_requests_are_counted_under_segment(admin, api):
    admin.reset_stats()
    api.data("/sources", **count_param(2))
    api.get("/sources")
    assert admin.count("segment", "GET /sources") == 2
