"""Rate-limit windows (intercom.md §3), retries of 429/5xx/dropped connections, and the cost of a large read."""

from __future__ import annotations

import math
import time
from collections import Counter

import pytest
import requests

from sync_pipelines_tests.vendors.intercom.conftest import TOKEN, flatten, sandbox_calls, searchable_contacts

SEARCH = "POST /contacts/search"
WINDOW_SECONDS = 10  # intercom.md §3


def await_late_in_a_window(left: float = 2.0) -> None:
    """Return when `left` to `left` + 1 seconds of a 10-second window remain: a few calls certainly share it, and its
    reset comes soon (the sandbox's windows are aligned to the epoch, as X-RateLimit-Reset shows)."""
    deadline = time.time() + WINDOW_SECONDS + 1
    while not WINDOW_SECONDS - left - 1 <= time.time() % WINDOW_SECONDS <= WINDOW_SECONDS - left:
        assert time.time() < deadline
        time.sleep(0.05)


def sandbox_window_counts(sandbox, monkeypatch: pytest.MonkeyPatch) -> tuple[Counter, Counter]:
    """The sandbox's own tally from here on: (calls that reached its limiter, calls it refused with a 429), each by
    10-second window (keyed by the window's X-RateLimit-Reset)."""
    limiter = sandbox.runtime.intercom.limiter
    take = limiter.take
    arrived, refused = Counter(), Counter()

    def counted() -> tuple[bool, dict[str, str]]:
        allowed, headers = take()
        window = int(headers["X-RateLimit-Reset"])
        arrived[window] += 1
        if not allowed:
            refused[window] += 1
        return allowed, headers

    monkeypatch.setattr(limiter, "take", counted)
    return arrived, refused


def test_ten_thousand_contacts_in_the_minimum_calls_without_meeting_a_429(admin, intercom, sandbox, monkeypatch):
    admin.intercom_reset(contacts=10_000)
    expected = sorted(c["id"] for c in searchable_contacts(admin))
    # 67 calls against 30 per 10-second window: more than one window allows, so the budget binds on any machine.
    # (How often the client had to wait for a reset depends on the machine's speed, so that is not the claim.)
    admin.intercom_settings(window_limit=30)
    admin.reset_stats()
    arrived, refused = sandbox_window_counts(sandbox, monkeypatch)
    client = intercom()

    pages = list(client.search_contacts_since(None))

    assert sorted(c["id"] for c in flatten(pages)) == expected
    minimum = math.ceil(10_000 / 150)
    assert client.stats.calls == sandbox_calls(admin, SEARCH) <= 1.05 * minimum
    assert client.stats.rate_limited == 0 and client.stats.retries == 0
    # As the sandbox counted: no window was sent more calls than it allows, so none was refused.
    assert sum(arrived.values()) == client.stats.calls
    assert max(arrived.values()) <= 30
    assert not refused


def test_a_window_spent_by_another_caller_costs_one_429_and_a_wait_for_its_reset(admin, intercom, sandbox):
    admin.intercom_settings(window_limit=3)
    await_late_in_a_window()
    # Another process of the same app spends the window (intercom.md §3: the budget is per app).
    for _ in range(4):
        spent = requests.get(f"{sandbox.url}/intercom/tags", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert spent.status_code == 429, spent.text
    client = intercom()

    tags = client.tags()

    assert {t["id"] for t in tags} == {t["id"] for t in admin.intercom_records("tags")}
    assert (client.stats.rate_limited, client.stats.retries) == (1, 1)
    assert client.stats.rate_limit == 3


def test_server_errors_and_dropped_connections_are_retried_until_every_contact_is_read(admin, intercom):
    expected = sorted(c["id"] for c in searchable_contacts(admin))
    admin.faults(intercom={"error_rate": 0.3, "drop_rate": 0.1})
    admin.reset_stats()
    client = intercom(per_page=10)

    pages = list(client.search_contacts_since(None))

    assert sorted(c["id"] for c in flatten(pages)) == expected
    faults = admin.stats()["faults_injected"]
    assert faults > 0
    assert client.stats.retries == faults
    assert client.stats.calls == sandbox_calls(admin, SEARCH) == math.ceil(len(expected) / 10) + faults
