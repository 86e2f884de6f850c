"""Two-way field sync between a source system's records and the Xero contacts they are linked to.

A three-way merge per linked record and field: the source's value, Xero's value, and the value both last agreed
on (`settled_fields`). Only the side that changed is copied to the other; when both changed, the mapping's
policy picks the winner and the loser is kept in the audit log. A write the sync made reads back as the agreed
value on both sides, so it is never picked up as a new change (no echo loops), and a second sync with no new
human change writes nothing.
"""

from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pandas as pd

from sync_pipelines.lib import staging
from sync_pipelines.lib.targets.xero_mapping import ADDRESS_FIELDS, TWO_WAY_XERO_COLUMNS, TwoWayMapping, field_text
from sync_pipelines.vendors.xero.entities import CONTACTS as XERO_CONTACTS


@dataclass
class Settlement:
    """What one linked record needs: values to write to each side, and the conflicts settled on the way."""

    source_id: str
    contact_id: str
    to_xero: dict[str, str | None] = field(default_factory=dict)  # Xero field -> value
    to_source: dict[str, str | None] = field(default_factory=dict)  # source API field -> value
    conflicts: list[dict] = field(default_factory=list)
    agreed: dict[str, str | None] = field(default_factory=dict)  # Xero field -> the value now agreed


def settle(
    conn: duckdb.DuckDBPyConnection,
    *,
    entity: str,
    source_system: str,
    source_table: str,
    source_columns: dict[str, str],
    mapping: TwoWayMapping,
    skip: set[str],
) -> list[Settlement]:
    """The settlements due for every linked, live record of `source_table` whose Xero contact is staged.

    `source_columns` maps each Xero field to the staged source column holding it; records in `skip` (a write
    still on its way) wait, so a value in flight is never mistaken for a change.
    """
    if not (staging.table_exists(conn, source_table) and staging.table_exists(conn, XERO_CONTACTS.table)):
        return []
    fields = list(mapping.fields)
    selected = ", ".join(
        f's."{source_columns[f]}" AS "source:{f}", c."{TWO_WAY_XERO_COLUMNS[f]}" AS "xero:{f}"' for f in fields
    )
    # Only the contact a record owns (its ContactNumber is the record's id, or none yet when it was matched
    # this run): a contact shared with another record (a converted lead's) follows its owner alone, so two
    # records never fight over one contact.
    pairs = conn.execute(
        f"""SELECT s.id AS source_id, c.contact_id, s.updated_at AS source_at, c.updated_at AS xero_at, {selected}
            FROM "{source_table}" s
            JOIN xrefs x ON x.source_system = ? AND x.target_system = 'xero' AND x.source_id = s.id
            JOIN "{XERO_CONTACTS.table}" c ON c.contact_id = x.target_id AND coalesce(c.contact_number, s.id) = s.id
            WHERE NOT s.is_deleted AND c.status = 'ACTIVE'
            QUALIFY row_number() OVER (PARTITION BY s.id ORDER BY x.updated_at DESC) = 1""",
        [source_system],
    ).df()
    base = staging.settled_fields(conn, entity)
    settlements = []
    for row in pairs.to_dict("records"):
        if row["source_id"] in skip:
            continue
        settlement = Settlement(row["source_id"], row["contact_id"])
        for name in fields:
            ours, theirs = field_text(row[f"source:{name}"]), field_text(row[f"xero:{name}"])
            known, agreed = (row["source_id"], name) in base, base.get((row["source_id"], name))
            if ours == theirs:
                if not known or agreed != ours:
                    settlement.agreed[name] = ours
                continue
            # Never agreed before (first link of two existing records): both count as changed.
            source_changed, xero_changed = not known or ours != agreed, not known or theirs != agreed
            winner = "source" if not xero_changed else "xero" if not source_changed else None
            if winner is None:
                winner = _policy_winner(mapping.policy(name), row["source_at"], row["xero_at"])
                loser = "xero" if winner == "source" else "source"
                settlement.conflicts.append(
                    {"field": name, "winner": winner, "kept": ours if winner == "source" else theirs,
                     "loser": loser, "lost": theirs if winner == "source" else ours, "agreed_before": agreed,
                     "source_updated_at": row["source_at"], "xero_updated_at": row["xero_at"],
                     "policy": mapping.policy(name)}
                )  # fmt: skip
            if winner == "source":
                settlement.to_xero[name] = ours
            else:
                settlement.to_source[mapping.fields[name]] = theirs
            settlement.agreed[name] = ours if winner == "source" else theirs
        if settlement.to_xero.keys() & ADDRESS_FIELDS.keys():
            # xero.md §2.5: an address is written whole, so its unchanged parts go with the changed ones.
            settlement.to_xero = {
                **{f: field_text(row[f"xero:{f}"]) for f in fields if f in ADDRESS_FIELDS},
                **settlement.to_xero,
            }
        if settlement.agreed:
            settlements.append(settlement)
    return settlements


def _policy_winner(policy: str, source_at: datetime, xero_at: datetime) -> str:
    """newest: the later change wins (the source on a tie: it is the system of record for CRM data)."""
    if policy != "newest":
        return policy
    return "xero" if pd.Timestamp(xero_at) > pd.Timestamp(source_at) else "source"
