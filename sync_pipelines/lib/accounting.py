"""What accounting knows of a source record, for the source system to show: its invoice's number, link, status,
amount due and paid date, and what its customer owes on all their sales invoices.

Read from staged Xero invoices: a record's invoice is the ACCREC invoice whose Reference is the record's (the key
the mapping's `invoice` raises it under, once ever), and its customer is the Xero contact it is linked to. Xero owns
these values; a value is due to be written when it differs from the one last written (`settled_fields`), so a
rerun writes nothing and the source's own edits elsewhere on the record are never touched.
"""

import math
from datetime import datetime

import duckdb
import pandas as pd

from sync_pipelines.lib import staging
from sync_pipelines.lib.targets.xero_mapping import CONTACT_VALUES, INVOICE_VALUES, XeroMapping, json_value
from sync_pipelines.vendors.xero.entities import INVOICES as XERO_INVOICES

# A link that opens the invoice in the Xero app of the organisation with this ShortCode (the deep link Xero's own
# tools build: https://github.com/XeroAPI/xero-mcp-server, src/consts/deeplinks.ts).
INVOICE_URL = "https://go.xero.com/app/{short_code}/invoicing/view/{invoice_id}"


def _invoices(conn: duckdb.DuckDBPyConnection, source_table: str, reference: str) -> pd.DataFrame:
    """Each live record's invoice, found by the Reference it was raised under (the latest, should there be two)."""
    return conn.execute(
        f"""SELECT s.id AS record_id, i.invoice_id, i.invoice_number, i.status AS invoice_status, i.amount_due,
                   i.amount_paid, i.fully_paid_on_date AS paid_date
            FROM "{source_table}" s JOIN "{XERO_INVOICES.table}" i
              ON i.type = 'ACCREC' AND i.reference = CAST(s."{reference}" AS VARCHAR)
            WHERE NOT s.is_deleted
            QUALIFY row_number() OVER (PARTITION BY s.id ORDER BY i.updated_at DESC) = 1"""
    ).df()


def _balances(conn: duckdb.DuckDBPyConnection, source_table: str, source_system: str) -> pd.DataFrame:
    """What each live, linked record's Xero contact owes on its approved sales invoices (zero when nothing)."""
    return conn.execute(
        f"""WITH links AS (
                SELECT source_id, target_id FROM xrefs WHERE source_system = ? AND target_system = 'xero'
                QUALIFY row_number() OVER (PARTITION BY source_id ORDER BY updated_at DESC) = 1)
            SELECT s.id AS record_id,
                   coalesce(sum(i.amount_due) FILTER (WHERE i.status = 'AUTHORISED'), 0) AS balance
            FROM "{source_table}" s JOIN links x ON x.source_id = s.id
            LEFT JOIN "{XERO_INVOICES.table}" i ON i.contact_id = x.target_id AND i.type = 'ACCREC'
            WHERE NOT s.is_deleted GROUP BY s.id""",
        [source_system],
    ).df()


def _salesforce_value(value: object) -> object:
    """A staged value as the source's field takes it: money to the cent, a moment as its date, text as is."""
    value = json_value(value)
    if value is pd.NaT:
        return None
    if isinstance(value, datetime | pd.Timestamp):
        return pd.Timestamp(value).date().isoformat()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 2)
    return value


def due_values(
    conn: duckdb.DuckDBPyConnection,
    *,
    entity: str,
    source_table: str,
    source_system: str,
    mapping: XeroMapping,
    short_code: str | None,
) -> dict[str, dict[str, object]]:
    """record id -> {source field: value} for the values that changed since they were last written.

    A balance of zero never written before is not written: an empty field says as much, and every customer
    without invoices would otherwise cost a write. `short_code` None leaves links out (no organisation read yet).
    """
    if not (staging.table_exists(conn, source_table) and staging.table_exists(conn, XERO_INVOICES.table)):
        return {}
    wanted = {field: value for field, value in mapping.accounting.items() if value != "invoice_url" or short_code}
    frames = []
    if mapping.invoice and any(value in INVOICE_VALUES for value in wanted.values()):
        invoices = _invoices(conn, source_table, mapping.invoice.reference)
        invoices["invoice_url"] = [
            INVOICE_URL.format(short_code=short_code, invoice_id=invoice_id) for invoice_id in invoices["invoice_id"]
        ]
        frames.append(invoices.set_index("record_id"))
    if mapping.contact and any(value in CONTACT_VALUES for value in wanted.values()):
        frames.append(_balances(conn, source_table, source_system).set_index("record_id"))
    if not frames:
        return {}
    known = staging.settled_fields(conn, entity)
    due: dict[str, dict[str, object]] = {}
    for record_id, row in pd.concat(frames, axis=1).iterrows():
        for field, name in wanted.items():
            value = _salesforce_value(row.get(name))
            text = _text(value)
            if (record_id, field) in known:
                if known[(record_id, field)] == text:
                    continue
            elif text is None or (name in CONTACT_VALUES and value == 0):
                continue
            due.setdefault(str(record_id), {})[field] = value
    return due


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def as_settled(due: dict[str, dict[str, object]]) -> list[tuple[str, str, str | None]]:
    """Due values as `settled_fields` keeps them, once they are queued to be written: (record id, field, text)."""
    return [(record_id, field, _text(value)) for record_id, values in due.items() for field, value in values.items()]
