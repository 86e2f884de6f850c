"""Intercom's webhook signatures (intercom.md §9), as the sandbox signs its deliveries."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from sync_pipelines.vendors.intercom.webhooks import signature_valid
from sync_pipelines_tests.sandbox.conftest import Receiver
from sync_pipelines_tests.vendors.intercom.conftest import CLIENT_SECRET, searchable_contacts


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_webhook_signatures_verify_on_the_raw_body(admin, receiver):
    admin.intercom_webhooks(url=receiver.url)
    contact = searchable_contacts(admin)[0]
    admin.intercom_update("contacts", contact["id"], name="Signed Change")
    admin.intercom_flush_webhooks()

    deliveries = [(body, headers) for body, headers in receiver.requests if "x-hub-signature" in headers]

    assert deliveries
    for body, headers in deliveries:
        assert signature_valid(body, headers["x-hub-signature"], CLIENT_SECRET)
        assert not signature_valid(body + b" ", headers["x-hub-signature"], CLIENT_SECRET)
        assert not signature_valid(body, headers["x-hub-signature"], "another-secret")
    assert not signature_valid(deliveries[0][0], None, CLIENT_SECRET)
    topics = [json.loads(body)["topic"] for body, _ in deliveries]
    assert f"contact.{contact['role']}.updated" in topics
