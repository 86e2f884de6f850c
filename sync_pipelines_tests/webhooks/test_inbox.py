"""An inbox file written before it held more than Xero's events keeps working: its events, seqs and dedupe; and
stores from many threads at once are each committed, once, before they return."""

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sync_pipelines.webhooks.inbox import MIGRATIONS, InboxEvent, WebhookInbox
from sync_pipelines_tests.webhooks.conftest import stored_events, xero_event

# The file as the Xero-only receiver made it (no user_version), and how it wrote.
VERSION_1 = """CREATE TABLE IF NOT EXISTS webhook_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    category TEXT NOT NULL,
    event_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    event_date TEXT NOT NULL,
    received_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (tenant_id, resource_id, event_date, event_type, category)
)"""
VERSION_1_INSERT = """INSERT OR IGNORE INTO webhook_events
    (tenant_id, category, event_type, resource_id, event_date, received_at, payload) VALUES (?, ?, ?, ?, ?, ?, '{}')"""


def _version_1_row(event: dict, received_at: str = "2099-01-01T00:00:00+00:00") -> tuple:
    return (event["tenantId"], event["eventCategory"], event["eventType"], event["resourceId"], event["eventDateUtc"],
            received_at)  # fmt: skip


def _xero(event: dict) -> InboxEvent:
    return InboxEvent("xero", None, event["tenantId"], event["eventCategory"], event["eventType"],
                      event["resourceId"], event["eventDateUtc"], event)  # fmt: skip


def _intercom(notification_id: str) -> InboxEvent:
    return InboxEvent("intercom", notification_id, "app", "contact", "contact.user.updated", "c1", "t", {})


def test_a_version_1_file_is_migrated_keeping_its_events_and_its_sequence(tmp_path: Path):
    path = tmp_path / "webhook_inbox.sqlite"
    kept, newest = xero_event("INVOICE"), xero_event("CONTACT")
    with sqlite3.connect(path) as conn:
        conn.execute(VERSION_1)
        conn.executemany(VERSION_1_INSERT, [_version_1_row(kept), _version_1_row(newest), _version_1_row(newest)])
        conn.execute("DELETE FROM webhook_events WHERE seq = 2")  # the newest gone: only the counter remembers 2
    conn.close()
    cursor = 2  # a sensor had run both

    inbox = WebhookInbox(path)
    assert inbox.pending("xero", cursor) is None
    fresh = xero_event("INVOICE")
    inbox.store([_xero(kept), _xero(fresh), _intercom("notif_1")])

    rows = stored_events(path)
    assert [(row["source"], row["resource_id"]) for row in rows] == [
        ("xero", kept["resourceId"]),  # migrated as Xero's, and deduplicated against
        ("xero", fresh["resourceId"]),
        ("intercom", "c1"),
    ]
    assert rows[0]["seq"] == 1
    # New seqs continue after the deleted newest, not after the highest left: the cursor skips nothing.
    pending = inbox.pending("xero", cursor)
    assert (pending.first_seq, pending.last_seq, pending.events) == (rows[1]["seq"], rows[1]["seq"], 1)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    conn.close()


def test_a_version_1_receiver_writing_to_a_migrated_file_still_dedupes(tmp_path: Path):
    """During an upgrade the old receiver may still be running: its inserts land as Xero's, once each."""
    path = tmp_path / "webhook_inbox.sqlite"
    WebhookInbox(path).store([_intercom("notif_1")])
    event = xero_event("INVOICE")

    with sqlite3.connect(path) as conn:
        conn.execute(VERSION_1)
        conn.executemany(VERSION_1_INSERT, [_version_1_row(event), _version_1_row(event)])
    conn.close()

    assert [(row["source"], row["resource_id"]) for row in stored_events(path)] == [
        ("intercom", "c1"),
        ("xero", event["resourceId"]),
    ]


def test_pending_is_per_source(tmp_path: Path):
    inbox = WebhookInbox(tmp_path / "webhook_inbox.sqlite")
    inbox.store([_intercom("notif_1"), _xero(xero_event("INVOICE")), _intercom("notif_2"), _intercom("notif_1")])

    xero, intercom = inbox.pending("xero", 0), inbox.pending("intercom", 0)

    assert (xero.first_seq, xero.last_seq, xero.events, xero.categories) == (2, 2, 1, {"INVOICE"})
    assert (intercom.first_seq, intercom.last_seq, intercom.events, intercom.categories) == (1, 3, 2, {"contact"})
    assert inbox.pending("intercom", 3) is None


def test_stores_from_many_threads_at_once_each_return_with_their_events_committed_once(tmp_path: Path):
    """The receiver's threads share group commits: each store returns only once its own events are committed."""
    path = tmp_path / "webhook_inbox.sqlite"
    inbox = WebhookInbox(path)
    threads, stores = 64, 10
    together = threading.Barrier(threads)

    def store(thread: int) -> list[int]:
        together.wait()
        counts = []
        for n in range(stores):
            notification_id = f"notif_{thread}_{n}"
            inbox.store([_intercom(notification_id), _intercom(notification_id)])  # a redelivery in the same call
            with sqlite3.connect(path) as reader:  # another connection: what is committed
                counts.append(reader.execute("SELECT count(*) FROM webhook_events WHERE event_id = ?",
                                             [notification_id]).fetchone()[0])  # fmt: skip
            reader.close()
        return counts

    with ThreadPoolExecutor(threads) as pool:
        counts = [count for thread_counts in pool.map(store, range(threads)) for count in thread_counts]

    assert counts == [1] * threads * stores
    assert sorted(row["event_id"] for row in stored_events(path)) == sorted(
        f"notif_{t}_{n}" for t in range(threads) for n in range(stores)
    )


def test_an_inbox_of_one_tenant_reads_only_its_events_and_pending_splits_by_tenant(tmp_path: Path):
    path = tmp_path / "webhook_inbox.sqlite"

    def identify(source: str, user: str) -> InboxEvent:
        message = {"type": "identify", "userId": user, "projectId": source}
        return InboxEvent("segment", f"{source}-{user}", source, "identify", "identify", user, "2026-12-01", message)

    WebhookInbox(path).store([identify("src-a", "ann"), identify("src-b", "bob"), identify("src-a", "cat")])
    mine = WebhookInbox(path, tenant_id="src-a")

    assert [m["userId"] for _, m in mine.events("segment", "identify", 0, 10)] == ["ann", "cat"]
    assert mine.resource_ids("segment", "identify") == ["ann", "cat"]
    assert mine.history("segment", "identify", ["ann", "bob"]) == [{"type": "identify", "userId": "ann",
                                                                   "projectId": "src-a"}]  # fmt: skip
    assert (mine.pending("segment", 0).first_seq, mine.pending("segment", 0).events) == (1, 2)
    by_tenant = WebhookInbox(path).pending_by_tenant("segment", 1)
    assert {t: (p.first_seq, p.last_seq, p.events) for t, p in by_tenant.items()} == {
        "src-a": (3, 3, 1),
        "src-b": (2, 2, 1),
    }
