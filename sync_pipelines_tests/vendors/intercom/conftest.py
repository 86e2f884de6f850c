"""Fixtures for the Intercom client: clients of the sandbox's workspace, and what the sandbox holds and saw."""

from __future__ import annotations

import pytest

from sync_pipelines.vendors.intercom.client import IntercomClient

TOKEN = "sandbox-intercom-token"
CLIENT_SECRET = "sandbox-intercom-client-secret"


@pytest.fixture
def intercom(sandbox):
    """Factory: a client of {base}/intercom, the sandbox's https://api.intercom.io, with test overrides."""

    def make(**overrides) -> IntercomClient:
        return IntercomClient(**{"base_url": f"{sandbox.url}/intercom", "access_token": TOKEN, **overrides})

    return make


def searchable_contacts(admin) -> list[dict]:
    """The contacts a search can return: archived ones are left out."""
    return [contact for contact in admin.intercom_records("contacts") if not contact.get("_archived")]


def sandbox_calls(admin, route: str) -> int:
    """Requests the sandbox saw on one Intercom "<METHOD> <path>" route."""
    return admin.stats()["intercom"].get(route, 0)


def flatten(pages: list[list[dict]]) -> list[dict]:
    return [record for page in pages for record in page]


def contact_with_case(admin, case: str) -> dict:
    """One of the seed's deliberate contacts, by its custom_attributes.sandbox_case."""
    return next(c for c in admin.intercom_records("contacts") if c["custom_attributes"].get("sandbox_case") == case)
