"""Alerts: what a person has to hear about, told through the team notifier once each, with a link to the UI.

The `alerts` sensor raises them from Dagster's event log (a failed run, a check that starts failing, a freshness
policy failing) and from the staging store (a dead letter that used up its attempts); an extract stopped by a
vendor's day limit raises its own. Each is recorded in the `alerts` table, keyed by what it is about, before the
sensor sends it: a second tick or a restart never tells it twice, and a send that failed is tried again.
"""

import os
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
import duckdb

from sync_pipelines.lib.staging import utcnow

KINDS = ("run_failed", "check_failed", "dead_letter_exhausted", "freshness_failed", "day_limit")


def ui_url() -> str:
    """Where the team opens the Dagster UI, for the links in alerts."""
    return os.environ.get("SYNC_PIPELINES_UI_URL", "http://127.0.0.1:3000").rstrip("/")


@dataclass(frozen=True)
class Alert:
    alert_id: str  # what it is about: the same failure raised twice is one alert
    kind: str  # one of KINDS
    flow: str | None  # the flow it belongs to, when it belongs to one (its alert settings apply)
    text: str
    link: str


def raise_alerts(conn: duckdb.DuckDBPyConnection, alerts: list[Alert]) -> int:
    """Record the alerts not raised before; returns how many were new."""
    new = 0
    for alert in alerts:
        inserted = conn.execute(
            """INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT DO NOTHING RETURNING alert_id""",
            [alert.alert_id, alert.kind, alert.flow, alert.text, alert.link, utcnow()],
        ).fetchall()
        new += len(inserted)
    return new


def unsent(conn: duckdb.DuckDBPyConnection) -> list[dict]:
    """The recorded alerts not sent yet, oldest first, as notifications."""
    rows = conn.execute(
        "SELECT alert_id, kind, flow, text, link FROM alerts WHERE sent_at IS NULL ORDER BY raised_at, alert_id"
    ).fetchall()
    return [
        {"messageId": alert_id, "kind": kind, "flow": flow, "text": f"{text} <{link}|Open in Dagster>", "link": link}
        for alert_id, kind, flow, text, link in rows
    ]


def mark_sent(conn: duckdb.DuckDBPyConnection, alert_ids: list[str]) -> None:
    if alert_ids:
        conn.execute("UPDATE alerts SET sent_at = ? WHERE alert_id IN (SELECT unnest(?))", [utcnow(), alert_ids])


def asset_link(key: dg.AssetKey, view: str | None = None) -> str:
    return f"{ui_url()}/assets/{'/'.join(key.path)}" + (f"?view={view}" if view else "")


def day_limit_stop(vendor: str, key: dg.AssetKey, retry_after: float | None) -> Alert:
    """A vendor's day limit stopped an extract at its checkpoint: told once a day per vendor."""
    resumes = f" (in about {int(retry_after)} s)" if retry_after else ""
    return Alert(
        f"day_limit:{vendor}:{utcnow().date().isoformat()}", "day_limit", None,
        f"{vendor}'s day limit stopped {key.to_user_string()} at its checkpoint; the sync resumes from there once the "
        f"limit resets{resumes}.",
        asset_link(key),
    )  # fmt: skip


def exhausted_dead_letters(
    conn: duckdb.DuckDBPyConnection, delivered: dict[tuple[str, str], dg.AssetKey]
) -> list[Alert]:
    """A dead letter that used up its attempts (or that no retry can fix) waits for a person; the link is to its
    delivery's asset."""
    rows = conn.execute(
        """SELECT flow, entity, message_id, error, attempts, first_failed_at FROM dead_letters
           WHERE status = 'exhausted' ORDER BY last_failed_at"""
    ).fetchall()
    return [
        Alert(
            f"dead_letter_exhausted:{flow}:{entity}:{message_id}:{_stamp(first_failed)}",
            "dead_letter_exhausted",
            flow,
            f"{flow} / {entity}: the write {message_id} failed {attempts} time(s) and waits for a person: {error[:300]}"
            " (`sync-pipelines dead-letters`, then `sync-pipelines replay --all`).",
            asset_link(delivered[(flow, entity)]) if (flow, entity) in delivered else ui_url(),
        )
        for flow, entity, message_id, error, attempts, first_failed in rows
    ]


def _stamp(value: datetime) -> str:
    return value.isoformat(timespec="seconds")
