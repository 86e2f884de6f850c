"""What goes back to Salesforce: each record's Xero ContactID, the two-way fields kept equal with Xero, and what
accounting knows of it (a deal's invoice, a customer's balance).

Each is an asset of a delivery into Xero whose records are Salesforce's (built by its flow).
"""

import json
import time
from dataclasses import dataclass
from types import SimpleNamespace

import dagster as dg
import pandas as pd

from sync_pipelines.lib import staging
from sync_pipelines.lib.accounting import as_settled, due_values
from sync_pipelines.lib.deliveries import Delivery
from sync_pipelines.lib.outbox import deliver_outbox
from sync_pipelines.lib.staging import OutboxMessage, StagingResource
from sync_pipelines.lib.targets.xero_mapping import contact_element
from sync_pipelines.lib.two_way import settle
from sync_pipelines.vendors.delivery import Deliveries
from sync_pipelines.vendors.salesforce.client import SalesforceQuotaBudgetReached
from sync_pipelines.vendors.salesforce.resource import SalesforceResource
from sync_pipelines.vendors.xero.entities import CONTACTS as XERO_CONTACTS
from sync_pipelines.vendors.xero.entities import INVOICES as XERO_INVOICES
from sync_pipelines.vendors.xero.resource import XeroResource
from sync_pipelines.vendors.xero.writes import write_contacts

# salesforce.md §8: a converted lead cannot be edited (CANNOT_UPDATE_CONVERTED_LEAD); its person holds the link.
NOT_WRITABLE = {"leads": "s.is_converted"}


def _unlinked(conn, delivery: Delivery) -> pd.DataFrame:
    """Staged live records whose Xero_Contact_ID__c differs from the Xero contact they are linked to."""
    table = delivery.entity.table
    if not staging.table_exists(conn, table):
        return pd.DataFrame(columns=["Id", "Xero_Contact_ID__c"])
    return conn.execute(
        f"""SELECT s.id AS "Id", x.target_id AS "Xero_Contact_ID__c" FROM "{table}" s
            JOIN xrefs x ON x.source_system = 'salesforce' AND x.target_system = 'xero' AND x.source_id = s.id
            WHERE NOT s.is_deleted AND NOT ({NOT_WRITABLE.get(delivery.entity.name, "false")})
              AND s.xero_contact_id IS DISTINCT FROM x.target_id ORDER BY s.id"""
    ).df()


def xero_id_write_back(delivery: Delivery) -> dg.AssetsDefinition:
    """Stores each record's Xero ContactID in Salesforce, so people and other tools see the link there.

    Setting a field to the value it should hold is idempotent, and what fails is tried again next run, as it
    still differs. The write changes SystemModstamp, so the record is read again; its Xero contact does not
    change, so nothing goes back to Xero (no echo).
    """

    @dg.asset(
        key=["salesforce", f"{delivery.entity.label}_xero_ids"],
        deps=[delivery.key],
        group_name=delivery.flow,
        kinds={"salesforce"},
        description=f"{delivery.entity.description}: the Xero ContactID written to Xero_Contact_ID__c in Salesforce.",
    )
    def write_back(
        context: dg.AssetExecutionContext, salesforce: SalesforceResource, staging_db: StagingResource
    ) -> dg.MaterializeResult:
        started = time.monotonic()
        with staging_db.connect() as conn:
            pending = _unlinked(conn, delivery)
        client = salesforce.get_client()
        quota_exhausted = False
        try:
            results = client.collection_update(delivery.entity.source.sobject, pending.to_dict("records"))
        except SalesforceQuotaBudgetReached:
            # salesforce.md §5: the day's budget is spent; what is still unlinked is written next run.
            quota_exhausted, results = True, []
            context.log.warning("Salesforce quota budget reached; the Xero ids are written back next run")
        failed = [(r.id, r.errors) for r in results if not r.success]
        if failed:
            context.log.warning(f"{len(failed)} Xero ids not written back; the next run retries: {failed[:5]}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(results) - len(failed),
                "failed": len(failed),
                "quota_exhausted": quota_exhausted,
                "seconds": round(time.monotonic() - started, 3),
            }
        )

    return write_back


@dataclass(frozen=True)
class FieldWrites:
    """Sets fields: of Xero contacts and of Salesforce records (both idempotent: each sets values rather than
    adding anything)."""

    sobject: str

    def deliver(self, resources, payloads: list[dict], deliveries: Deliveries) -> None:
        to_xero, to_salesforce = deliveries.report("xero"), deliveries.report("salesforce")
        # Each sets the contact it names (ContactID), so a resend cannot make a second one.
        write_contacts(resources.xero.get_client(), [p for p in payloads if p["type"] == "contact"], to_xero)
        records = [p for p in payloads if p["type"] == "record"]
        to_salesforce.sending([p["messageId"] for p in records])
        try:
            results = resources.salesforce.get_client().collection_update(self.sobject, [p["record"] for p in records])
        except SalesforceQuotaBudgetReached as budget:
            to_salesforce.failed += [(p["messageId"], str(budget)) for p in records]
            results = []
        for payload, result in zip(records, results, strict=False):
            if result.success:
                to_salesforce.delivered.append(payload["messageId"])
            else:
                to_salesforce.rejected.append((payload["messageId"], json.dumps(result.errors)))

    def figures(self, resources) -> dict[str, int | float]:
        xero, salesforce = resources.xero.get_client().stats, resources.salesforce.get_client().stats
        return {"xero_api_calls": xero.calls, "salesforce_api_calls": salesforce.rest_calls}


def record_write(message_id: str, record_id: str, values: dict, event: str) -> OutboxMessage:
    """An outbox message that sets fields of one Salesforce record (FieldWrites)."""
    payload = {"type": "record", "messageId": message_id, "record": {"Id": record_id, **values}}
    return OutboxMessage(message_id, record_id, "record", event, payload)


def _deliver_fields(
    context: dg.AssetExecutionContext,
    delivery: Delivery,
    entity: str,
    salesforce: SalesforceResource,
    xero: XeroResource,
    staging_db: StagingResource,
) -> dict:
    """Send the outbox partition `entity` of a delivery's write-backs through FieldWrites; its figures."""
    resources = SimpleNamespace(salesforce=salesforce, xero=xero, staging_db=staging_db)
    return deliver_outbox(
        context, resources, flow=delivery.flow, entity=entity, source=delivery.entity.vendor,
        target=FieldWrites(delivery.entity.source.sobject),
    )  # fmt: skip


def two_way_sync(delivery: Delivery) -> dg.AssetsDefinition:
    """Keeps the mapping's two-way fields equal between each record and its Xero contact (lib/two_way.py)."""
    source = delivery.entity
    mapping, entity = delivery.target.mapping, f"{delivery.partition}_two_way"

    @dg.asset(
        key=["salesforce", f"{source.label}_two_way"],
        deps=[delivery.key, XERO_CONTACTS.staged_key],
        group_name=delivery.flow,
        kinds={"salesforce", "xero"},
        description=(
            f"{source.description}: {', '.join(mapping.two_way.fields)} kept equal with their Xero contacts both ways; "
            "conflicts settled by the mapping's policy, the losing value in the audit log."
        ),
    )
    def two_way(
        context: dg.AssetExecutionContext,
        salesforce: SalesforceResource,
        xero: XeroResource,
        staging_db: StagingResource,
    ) -> dg.MaterializeResult:
        started = time.monotonic()
        with staging_db.connect() as conn:
            conn.execute("BEGIN TRANSACTION")
            settlements = settle(
                conn, entity=source.label, source_system=source.vendor, source_table=source.table,
                source_columns={f: mapping.contact[f] for f in mapping.two_way.fields}, mapping=mapping.two_way,
                skip=staging.undelivered_records(conn, flow=delivery.flow, entity=entity),
            )  # fmt: skip
            # A settlement is decided once: its message ids are stamped with the decision, so a value that comes
            # back later is a new write, and a replay of this one is the same write.
            stamp = staging.utcnow().strftime("%Y%m%dT%H%M%S%f")
            messages = []
            for s in settlements:
                if s.to_xero:
                    message_id = f"two_way:{source.name}:{s.source_id}:xero:{stamp}"
                    body = {"ContactID": s.contact_id, **contact_element(s.to_xero, blank=True)}
                    payload = {"type": "contact", "messageId": message_id, "Contact": body}
                    messages.append(OutboxMessage(message_id, s.source_id, "contact", "two_way", payload))
                if s.to_source:
                    message_id = f"two_way:{source.name}:{s.source_id}:salesforce:{stamp}"
                    messages.append(record_write(message_id, s.source_id, s.to_source, "two_way"))
            staging.enqueue(conn, flow=delivery.flow, entity=entity, messages=messages, run_id=context.run.run_id)
            staging.settle_fields(
                conn, source.label, [(s.source_id, f, v) for s in settlements for f, v in s.agreed.items()]
            )
            conflicts = [(s.source_id, f"kept {c['winner']}", c) for s in settlements for c in s.conflicts]
            staging.audit(
                conn, flow=delivery.flow, entity=entity, action="conflict", target="xero+salesforce", entries=conflicts,
                run_id=context.run.run_id,
            )  # fmt: skip
            conn.execute("COMMIT")
        figures = _deliver_fields(context, delivery, entity, salesforce, xero, staging_db)
        return dg.MaterializeResult(
            metadata={
                **figures,
                "to_xero": sum(bool(s.to_xero) for s in settlements),
                "to_salesforce": sum(bool(s.to_source) for s in settlements),
                "conflicts": len(conflicts),
                "seconds": round(time.monotonic() - started, 3),
            }
        )

    return two_way


def accounting_write_back(delivery: Delivery) -> dg.AssetsDefinition:
    """Writes what accounting knows of each record to the Salesforce fields the mapping's `accounting` names: a won
    deal's invoice number, link, status, amount due and paid date; an account's balance (lib/accounting.py).

    Xero owns those fields, so only a value Xero changed is written, and nothing else on the record. The write
    changes the record, which Salesforce then announces; that read-back changes nothing bound for Xero (no echo).
    """
    source, mapping, entity = delivery.entity, delivery.target.mapping, f"{delivery.partition}_accounting"

    @dg.asset(
        key=accounting_key(delivery),
        deps=[delivery.key, XERO_INVOICES.staged_key],
        group_name=delivery.flow,
        kinds={"salesforce"},
        description=(
            f"{source.description}: what Xero knows of each ({', '.join(sorted(set(mapping.accounting.values())))}) "
            f"written to {', '.join(mapping.accounting)} in Salesforce."
        ),
    )
    def accounting(
        context: dg.AssetExecutionContext,
        salesforce: SalesforceResource,
        xero: XeroResource,
        staging_db: StagingResource,
    ) -> dg.MaterializeResult:
        started = time.monotonic()
        short_code = _short_code(xero) if "invoice_url" in mapping.accounting.values() else None
        with staging_db.connect() as conn:
            conn.execute("BEGIN TRANSACTION")
            due = due_values(
                conn, entity=entity, source_table=source.table, source_system=source.vendor, mapping=mapping,
                short_code=short_code,
            )  # fmt: skip
            stamp = staging.utcnow().strftime("%Y%m%dT%H%M%S%f")
            messages = [
                record_write(f"accounting:{source.name}:{record_id}:{stamp}", record_id, values, "accounting")
                for record_id, values in due.items()
            ]
            staging.enqueue(conn, flow=delivery.flow, entity=entity, messages=messages, run_id=context.run.run_id)
            staging.settle_fields(conn, entity, as_settled(due))
            conn.execute("COMMIT")
        figures = _deliver_fields(context, delivery, entity, salesforce, xero, staging_db)
        return dg.MaterializeResult(
            metadata={**figures, "records_changed": len(due), "seconds": round(time.monotonic() - started, 3)}
        )

    return accounting


def accounting_key(delivery: Delivery) -> dg.AssetKey:
    return dg.AssetKey(["salesforce", f"{delivery.entity.label}_accounting"])


def _short_code(xero: XeroResource) -> str | None:
    """The organisation's ShortCode, which links into the Xero app need (one read of GET /Organisation)."""
    organisations = xero.get_client().read("Organisation", key="Organisations")
    return organisations[0].get("ShortCode") if organisations else None
