"""Which Xero contact a record of another system stands for, read from Xero's staged entities.

Matching order: the cross-reference kept from earlier syncs, then the contact of a record this one became (a
converted lead's person), then Xero's ContactNumber (where the source id is written: Xero's external-reference
field, xero.md §2.5, so a match survives a lost xref table), then email (case-insensitive), then the website's
domain, then the normalised name, then the tax number. Candidates are Xero's contacts as staged, active ones
first; a delivery that matches lists Xero's contacts among what it reads, so they are staged before it runs.
"""

import re

import duckdb
import pandas as pd

from sync_pipelines.lib import staging
from sync_pipelines.lib.targets.xero_mapping import ContactMatch
from sync_pipelines.vendors.xero.contracts.common import website_domain
from sync_pipelines.vendors.xero.entities import CONTACTS, INVOICES


def normalised_name(name: object) -> str | None:
    """Case, punctuation and spacing dropped: "ACME, Ltd." and "Acme Ltd" are one organisation.

    Legal forms are kept: "Lee LLC" and "Lee Inc" are different companies more often than not.
    """
    if not isinstance(name, str):
        return None
    return " ".join(re.sub(r"[^a-z0-9]+", " ", name.lower()).split()) or None


def raised_invoices(conn: duckdb.DuckDBPyConnection, references: list[str]) -> dict[str, str]:
    """Reference -> InvoiceID of the live invoices Xero already has under these references, as staged."""
    if not references or not staging.table_exists(conn, INVOICES.table):
        return {}
    with staging.frame_as(conn, "wanted", pd.DataFrame({"reference": references})):
        rows = conn.execute(
            f"""SELECT i.reference, any_value(i.invoice_id) FROM "{INVOICES.table}" i JOIN wanted w USING (reference)
                WHERE i.status NOT IN ('DELETED', 'VOIDED') GROUP BY i.reference"""
        ).fetchall()
    return dict(rows)


def match_contacts(
    conn: duckdb.DuckDBPyConnection, rows: pd.DataFrame, *, source: str, key: str, match: ContactMatch
) -> dict[str, str]:
    """Source record id -> the Xero ContactID it stands for, by the first rule that finds one."""
    record_ids = rows[key].astype(str)
    found = staging.linked_ids(conn, source_system=source, target_system="xero", source_ids=record_ids.tolist())
    if match.same_as:
        others = dict(zip(record_ids, rows[match.same_as], strict=True))
        shared = staging.linked_ids(
            conn,
            source_system=source,
            target_system="xero",
            source_ids=[o for o in others.values() if isinstance(o, str)],
        )
        found = {r: shared[o] for r, o in others.items() if isinstance(o, str) and o in shared} | found
    if not staging.table_exists(conn, CONTACTS.table):
        return found
    candidates = conn.execute(
        f"""SELECT contact_id, contact_number, lower(email) AS email, name, tax_number, website
            FROM "{CONTACTS.table}" ORDER BY status <> 'ACTIVE', contact_id"""
    ).df()
    candidates["name"] = candidates["name"].map(normalised_name)
    candidates["domain"] = candidates["website"].map(website_domain)
    rules = [("contact_number", record_ids)]
    if match.email:
        rules.append(("email", rows[match.email].str.lower()))
    if match.domain:
        rules.append(("domain", rows[match.domain]))
    if match.name:
        rules.append(("name", rows[match.name].map(normalised_name)))
    if match.tax_number:
        rules.append(("tax_number", rows[match.tax_number]))
    for column, values in rules:
        lookup = candidates.dropna(subset=[column]).drop_duplicates(column).set_index(column)["contact_id"]
        for record_id, value in zip(record_ids, values, strict=True):
            if record_id not in found and isinstance(value, str) and value in lookup.index:
                found[record_id] = lookup[value]
    return found


def staged_ids(conn: duckdb.DuckDBPyConnection, table: str, key: str, ids: list[str]) -> set[str]:
    """The ids among these that are staged in `table`."""
    staged = staging.current_state(conn, table, key, ids)
    return set() if staged.empty else set(staged[key])


def contact_numbers(conn: duckdb.DuckDBPyConnection, contact_ids: list[str]) -> dict[str, str]:
    """ContactID -> its ContactNumber, as staged."""
    if not contact_ids or not staging.table_exists(conn, CONTACTS.table):
        return {}
    with staging.frame_as(conn, "wanted", pd.DataFrame({"contact_id": contact_ids})):
        rows = conn.execute(
            f"""SELECT c.contact_id, c.contact_number FROM "{CONTACTS.table}" c JOIN wanted USING (contact_id)
                WHERE c.contact_number IS NOT NULL"""
        ).fetchall()
    return dict(rows)


def name_holders(conn: duckdb.DuckDBPyConnection) -> dict[str | None, str]:
    """Normalised name -> the ContactID of the active Xero contact that holds it."""
    if not staging.table_exists(conn, CONTACTS.table):
        return {}
    rows = conn.execute(
        f"""SELECT name, contact_id FROM "{CONTACTS.table}" WHERE status = 'ACTIVE' ORDER BY contact_id"""
    )
    return {normalised_name(name): contact_id for name, contact_id in reversed(rows.fetchall())}
