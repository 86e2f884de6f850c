"""Segment Profile API client, read side: a person's audiences and computed traits, which Engage keeps on the
profile rather than sending as messages (segment.md §7, https://segment.com/docs/unify/profile-api/).

A profile is addressed as `user_id:<userId>` in the space's `users` collection; the traits resource filters by
`class` (audience, computed_trait) and, with `verbose=true`, says when each value last changed. Pages follow the
answer's `cursor.next` while `cursor.has_more`.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import requests

from sync_pipelines.lib import json_codec
from sync_pipelines.vendors.segment import settings
from sync_pipelines.vendors.segment.read_api import ReadApi


class SegmentProfileApiError(Exception):
    """A request the Profile API refused (401 bad token, 400 invalid request...) or that kept failing; `code` is
    the answer's error code (authentication_error, not_found, ...), `status` None when no answer came."""

    def __init__(self, description: str, status: int | None = None, code: str | None = None):
        self.status = status
        self.code = code
        super().__init__(description)


class SegmentProfileApi(ReadApi):
    """One Engage space, through its access token; `base_url` selects the region (settings.PROFILE_API_URL or
    PROFILE_API_EU_URL) or the sandbox ("{sandbox}/profiles")."""

    api = "Segment Profile API"

    def __init__(
        self,
        base_url: str,
        space_id: str,
        token: str,
        session: requests.Session | None = None,
        traits_limit: int = settings.PROFILE_TRAITS_MAX_LIMIT,
        timeout: float = 30,
        max_attempts: int = 8,
    ) -> None:
        if not 1 <= traits_limit <= settings.PROFILE_TRAITS_MAX_LIMIT:
            raise ValueError(f"traits_limit must be within 1..{settings.PROFILE_TRAITS_MAX_LIMIT} (segment.md §7)")
        self._traits_limit = traits_limit
        # HTTP Basic: the token is the user name, the password empty (segment.md §7).
        basic = base64.b64encode(f"{token}:".encode()).decode()
        super().__init__(base_url, {"Authorization": f"Basic {basic}"}, session, timeout, max_attempts)
        self._space = quote(space_id, safe="")

    def traits(self, user_id: str, trait_class: str | None = None) -> dict[str, dict] | None:
        """A person's traits, all pages, each as {"value", "source_id", "updated_at"}; only audiences or computed
        traits given `trait_class` ("audience", "computed_trait"). None when the space has no such profile."""
        path = f"/v1/spaces/{self._space}/collections/users/profiles/user_id:{quote(user_id, safe='')}/traits"
        params: dict = {"limit": self._traits_limit, "verbose": "true"}
        if trait_class:
            params["class"] = trait_class
        traits: dict[str, dict] = {}
        while True:
            try:
                page = self._get_json(path, params)
            except SegmentProfileApiError as error:
                if error.status == 404 and error.code == "not_found":
                    return None
                raise
            traits.update(page.get("traits") or {})
            cursor = page.get("cursor") or {}
            if not (cursor.get("has_more") and cursor.get("next")):
                return traits
            params = {**params, "next": cursor["next"]}

    def _refused(self, response: requests.Response, description: str) -> Exception:
        try:
            error = json_codec.response_json(response).get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        code, message = error.get("code"), error.get("message") or response.text[:200]
        return SegmentProfileApiError(f"{description}: {code}: {message}", response.status_code, code)

    def _failed(self, description: str) -> Exception:
        return SegmentProfileApiError(description)
