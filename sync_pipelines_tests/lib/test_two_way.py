"""The two-way merge on a real DuckDB file: each side's change goes to the other, conflicts follow the policy."""

from datetime import UTC, datetime

import pandas as pd

from sync_pipelines.lib import staging
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.lib.targets.xero_mapping import TwoWayMapping, XeroMapping
from sync_pipelines.lib.two_way import settle
from sync_pipelines.vendors.xero.entities import CONTACTS as XERO_CONTACTS

SOURCE_AT, XERO_AT = datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)  # the source is newer
FIELDS = {"EmailAddress": "Email", "Phone": "Phone", "City": "MailingCity"}
COLUMNS = {"EmailAddress": "email", "Phone": "phone", "City": "city"}


def _stage(conn, source: dict, xero: dict) -> None:
    staging.upsert_state(
        conn, "stg_people", "id",
        pd.DataFrame([{"id": "003A", "is_deleted": False, "updated_at": SOURCE_AT, **source}]),
    )  # fmt: skip
    staging.upsert_state(
        conn, XERO_CONTACTS.table, "contact_id",
        pd.DataFrame([{"contact_id": "c-1", "contact_number": "003A", "status": "ACTIVE", "updated_at": XERO_AT,
                       "address_line1": "1 Main St", **xero}]),
    )  # fmt: skip


def _settle(conn, mapping: TwoWayMapping):
    return settle(
        conn, entity="people", source_system="salesforce", source_table="stg_people", source_columns=COLUMNS,
        mapping=mapping, skip=set(),
    )  # fmt: skip


def test_one_sided_changes_cross_over_and_conflicts_follow_the_policy_per_field(tmp_path):
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        staging.link_ids(
            conn, entity="people", source_system="salesforce", target_system="xero", pairs=[("003A", "c-1")]
        )
        agreed = {"EmailAddress": "a@x.test", "Phone": "1", "City": "Oslo"}
        staging.settle_fields(conn, "people", [("003A", field, value) for field, value in agreed.items()])
        # Email changed only in Xero, the phone on both sides, the city only in the source.
        _stage(conn, {"email": "a@x.test", "phone": "2", "city": "Bergen"}, {"email": "b@x.test", "phone": "3",
                                                                             "city": "Oslo"})  # fmt: skip
        mapping = TwoWayMapping(fields=FIELDS, conflicts="newest", field_conflicts={"Phone": "xero"})

        (settlement,) = _settle(conn, mapping)

        assert settlement.to_source == {"Email": "b@x.test", "Phone": "3"}  # Xero's email; the phone: xero wins
        assert settlement.to_xero == {"City": "Bergen"}
        assert [(c["field"], c["kept"], c["lost"], c["policy"]) for c in settlement.conflicts] == [
            ("Phone", "3", "2", "xero")
        ]
        assert settlement.agreed == {"EmailAddress": "b@x.test", "Phone": "3", "City": "Bergen"}

        # Without the per-field rule the newest side (the source) wins the phone.
        (newest,) = _settle(conn, TwoWayMapping(fields=FIELDS))
        assert newest.to_xero == {"City": "Bergen", "Phone": "2"} and newest.conflicts[0]["kept"] == "2"

        # Once both sides hold what was agreed, nothing is due.
        staging.settle_fields(conn, "people", [("003A", f, v) for f, v in settlement.agreed.items()])
        _stage(conn, {"email": "b@x.test", "phone": "3", "city": "Bergen"}, {"email": "b@x.test", "phone": "3",
                                                                             "city": "Bergen"})  # fmt: skip
        assert _settle(conn, mapping) == []


def test_a_two_way_field_must_be_mapped_and_known():
    problems = XeroMapping(
        contact={"Name": "name", "Phone": "phone"},
        two_way={
            "fields": {"Phone": "Phone", "EmailAddress": "Email", "Name": "Name"},
            "field_conflicts": {"Fax": "xero"},
        },
    ).check({"name", "phone"}, "People")
    assert sorted(problems) == [
        "two_way.field_conflicts.Fax: not one of two_way.fields",
        "two_way.fields.EmailAddress: needs contact.EmailAddress (the column it is read from)",
        "two_way.fields.Name: not a field the two-way sync keeps (EmailAddress, Phone, Street, City, Region, "
        "PostalCode, Country, Website)",
    ]
