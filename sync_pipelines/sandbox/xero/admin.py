"""Admin routes under /_admin/xero: direct record changes, contact groups, history, raw records and webhooks.

Record changes go through the ledger, as the Accounting API's writes do, so they render and announce webhooks the
same way; raw records are stored exactly as given.
"""

import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sync_pipelines.sandbox.admin import _bad, _json, _only, _value_error
from sync_pipelines.sandbox.runtime import Runtime
from sync_pipelines.sandbox.store import Store, dumps
from sync_pipelines.sandbox.webhooks import check_url
from sync_pipelines.sandbox.xero.accounting import (
    BANK_ACCOUNT,
    BANK_ACCOUNT_ID,
    Invalid,
    Ledger,
    PostDataInvalid,
    default_account,
    group_summary,
    set_date,
    stamp,
)
from sync_pipelines.sandbox.xero.dates import add_days, now_ms, parse_net

_WEBHOOK_OPTIONS = {"url", "key", "attempts", "backoff_seconds"}
# Admin path segment -> the API collection: records that keep a history (xero.md §2.7), or are stored raw.
_COLLECTIONS = {
    "contacts": "Contacts",
    "invoices": "Invoices",
    "bank-transactions": "BankTransactions",
    "payments": "Payments",
    "items": "Items",
    "credit-notes": "CreditNotes",
}


def _ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"expected a list of ContactIDs, got {value!r}")
    return value


class XeroAdmin:
    """Routes act on the first organisation, or on the one whose tenant id the query's `tenant` names."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @property
    def store(self) -> Store:
        return self.runtime.xero.store

    @property
    def ledger(self) -> Ledger:
        return self.runtime.xero.ledger

    def app(self) -> ASGIApp:
        return _ForOrganisation(self._routes(), self.runtime)

    def _routes(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/invoices", self.invoices, methods=["GET", "POST"]),
                Route("/invoices/{invoice_id}", self.update_invoice, methods=["POST"]),
                Route("/invoices/{invoice_id}/pay", self.pay_invoice, methods=["POST"]),
                Route("/invoices/{invoice_id}/void", self.void_invoice, methods=["POST"]),
                Route("/contacts", self.contacts, methods=["GET", "POST"]),
                Route("/contacts/{contact_id}", self.update_contact, methods=["POST"]),
                Route("/contacts/{contact_id}/archive", self.archive_contact, methods=["POST"]),
                Route("/payments", self.payments, methods=["GET"]),
                Route("/payments/{payment_id}/delete", self.delete_payment, methods=["POST"]),
                Route("/bank-transactions", self.bank_transactions, methods=["GET", "POST"]),
                Route("/bank-transactions/{transaction_id}/delete", self.delete_bank_transaction, methods=["POST"]),
                Route("/bank-transactions/{transaction_id}/void", self.void_bank_transaction, methods=["POST"]),
                Route("/touch", self.touch, methods=["POST"]),
                Route("/contact-groups", self.contact_groups, methods=["GET", "POST"]),
                Route("/contact-groups/{group_id}", self.update_contact_group, methods=["POST"]),
                Route("/contact-groups/{group_id}/members", self.group_members, methods=["POST"]),
                Route("/{kind}/{record_id}/history", self.history, methods=["GET"]),
                Route("/raw/{kind}", self.raw_records, methods=["POST"]),
                Route("/webhooks", self.webhooks, methods=["GET", "PUT"]),
                Route("/webhooks/deliveries", self.webhook_deliveries, methods=["GET"]),
                Route("/webhooks/redeliver", self.redeliver, methods=["POST"]),
                Route("/webhooks/itr", self.intent_to_receive, methods=["POST"]),
                Route("/webhooks/flush", self.flush_webhooks, methods=["POST"]),
            ],
            exception_handlers={ValueError: _value_error},
        )

    async def invoices(self, request: Request) -> Response:
        if request.method == "GET":
            return self._listing("Invoices")
        body = await _json(request)
        return self._ledger_write(
            lambda conn, now: self.ledger.write_invoice(conn, self._new_invoice(conn, body), now, create_only=True)
        )

    def _new_invoice(self, conn: Any, body: dict) -> dict:
        """Fill the defaults a demo wants: an active contact, one line and AUTHORISED."""
        element = {
            k: v
            for k, v in body.items()
            if k in ("Type", "Status", "LineItems", "CurrencyCode", "Date", "DueDate", "Reference")
        }
        element.setdefault("Type", "ACCREC")
        element.setdefault("Status", "AUTHORISED")
        element.setdefault("LineItems", [{"Description": "Sandbox services", "Quantity": 1, "UnitAmount": 100}])
        if body.get("ContactID"):
            element["Contact"] = {"ContactID": body["ContactID"]}
        else:
            contact = json.loads(self.store.find("Contacts", "status = 'ACTIVE'", limit=1, conn=conn)[0][0])
            element["Contact"] = {"ContactID": contact["ContactID"]}
        return element

    async def update_invoice(self, request: Request) -> Response:
        body = await _json(request)
        invoice_id = request.path_params["invoice_id"]
        return self._ledger_write(
            lambda conn, now: self.ledger.write_invoice(conn, body, now, target_id=invoice_id), invoice_id
        )

    async def pay_invoice(self, request: Request) -> Response:
        body = await _json(request)
        invoice_id = request.path_params["invoice_id"]
        payment = {"Invoice": {"InvoiceID": invoice_id}, "Account": {"Code": BANK_ACCOUNT}}
        for field in ("Amount", "Date"):
            if body.get(field) is not None:
                payment[field] = body[field]
        return self._ledger_write(lambda conn, now: self.ledger.create_payment(conn, payment, now)[1], invoice_id)

    async def void_invoice(self, request: Request) -> Response:
        invoice_id = request.path_params["invoice_id"]
        return self._ledger_write(
            lambda conn, now: self.ledger.void_invoice(conn, self.store.get("Invoices", invoice_id, conn), now),
            invoice_id,
        )

    async def contacts(self, request: Request) -> Response:
        if request.method == "GET":
            return self._listing("Contacts")
        body = await _json(request)
        return self._ledger_write(
            lambda conn, now: self.ledger.write_contact(conn, body, now, create_only=True), collection="Contacts"
        )

    async def update_contact(self, request: Request) -> Response:
        body = await _json(request)
        contact_id = request.path_params["contact_id"]
        return self._ledger_write(
            lambda conn, now: self.ledger.write_contact(conn, body, now, target_id=contact_id),
            contact_id,
            collection="Contacts",
        )

    async def archive_contact(self, request: Request) -> Response:
        contact_id = request.path_params["contact_id"]
        return self._ledger_write(
            lambda conn, now: self.ledger.write_contact(conn, {"ContactStatus": "ARCHIVED"}, now, target_id=contact_id),
            contact_id,
            collection="Contacts",
        )

    async def payments(self, request: Request) -> Response:
        return self._listing("Payments")

    async def delete_payment(self, request: Request) -> Response:
        """Reverses the payment and reopens its invoice (xero.md §2.9), which announces an INVOICE UPDATE."""
        payment_id = request.path_params["payment_id"]
        return self._ledger_write(
            lambda conn, now: self.ledger.delete_payment(conn, self.store.get("Payments", payment_id, conn), now),
            payment_id,
            collection="Payments",
        )

    async def bank_transactions(self, request: Request) -> Response:
        if request.method == "GET":
            return self._listing("BankTransactions")
        body = await _json(request)
        return self._ledger_write(
            lambda conn, now: self.ledger.write_bank_transaction(
                conn, self._new_bank_transaction(body), now, create_only=True
            ),
            collection="BankTransactions",
        )

    @staticmethod
    def _new_bank_transaction(body: dict) -> dict:
        """Fill the defaults a demo wants: the bank account and one line on 200 (RECEIVE) or 429 (SPEND)."""
        element = {k: v for k, v in body.items() if k in ("Type", "LineItems", "CurrencyCode", "Date", "Reference")}
        element["BankAccount"] = {"AccountID": BANK_ACCOUNT_ID, "Code": BANK_ACCOUNT}
        if isinstance(body.get("Type"), str):
            element.setdefault(
                "LineItems",
                [
                    {
                        "Description": "Sandbox bank transaction",
                        "Quantity": 1,
                        "UnitAmount": 100,
                        "AccountCode": default_account(body["Type"]),
                    }
                ],
            )
        if body.get("ContactID"):
            element["Contact"] = {"ContactID": body["ContactID"]}
        return element

    async def delete_bank_transaction(self, request: Request) -> Response:
        return self._end_bank_transaction(request, "DELETED")

    async def void_bank_transaction(self, request: Request) -> Response:
        return self._end_bank_transaction(request, "VOIDED")

    def _end_bank_transaction(self, request: Request, status: str) -> Response:
        """Bank transactions are removed by status, never deleted outright (xero.md §2.8, §7)."""
        transaction_id = request.path_params["transaction_id"]
        return self._ledger_write(
            lambda conn, now: self.ledger.write_bank_transaction(
                conn, {"Status": status}, now, target_id=transaction_id
            ),
            transaction_id,
            collection="BankTransactions",
        )

    async def touch(self, request: Request) -> Response:
        """Bump UpdatedDateUTC (and move DueDate a day) on the n least recently updated well-formed invoices."""
        count = int((await _json(request)).get("count", 1))
        now = now_ms()
        touched = []
        with self.store.transaction() as conn:
            rows = self.store.find(
                "Invoices", "malformed IS NULL AND status NOT IN ('VOIDED', 'DELETED')", limit=count, conn=conn
            )
            for offset, (body, _) in enumerate(rows):
                invoice = json.loads(body)
                set_date(invoice, "DueDate", add_days(parse_net(invoice["DueDate"]), 1))
                stamp(invoice, now + offset)
                self.ledger.save(conn, "Invoices", invoice)
                touched.append(invoice["InvoiceID"])
        return JSONResponse({"touched": len(touched), "ids": touched})

    def _listing(self, collection: str) -> Response:
        """Every record as the API renders it; malformed invoices carry "_malformed": "<why>"."""
        parts = []
        for body, malformed in self.store.find(collection):
            parts.append(body if malformed is None else body[:-1] + "," + dumps({"_malformed": malformed})[1:])
        return Response("[" + ",".join(parts) + "]", media_type="application/json")

    def _ledger_write(self, write: Any, record_id: str | None = None, collection: str = "Invoices") -> Response:
        if record_id is not None and self.store.get(collection, record_id) is None:
            return _bad(f"{collection[:-1].lower()} {record_id} not found", 404)
        try:
            with self.store.transaction() as conn:
                record = write(conn, now_ms())
        except (Invalid, PostDataInvalid) as exc:
            return _bad(str(exc))
        return JSONResponse(record)

    # -- Xero contact groups and history (xero.md §2.6, §2.7) ----------------------------------

    async def contact_groups(self, request: Request) -> Response:
        """GET: every group, DELETED ones included, with its members; POST {"Name", "ContactIDs"?}: a new group,
        as if made in the Xero UI (membership never bumps a contact's UpdatedDateUTC, see Ledger)."""
        if request.method == "GET":
            return JSONResponse([self._group_with_members(g) for g in self.store.contact_groups(status=None)])
        body = _only(await _json(request), {"Name", "ContactIDs"})
        members = _ids(body.pop("ContactIDs", []))

        def create(conn: Any) -> str:
            group_id = self.ledger.write_contact_group(conn, body, create_only=True)["ContactGroupID"]
            for contact_id in members:
                self.ledger.add_group_member(conn, group_id, {"ContactID": contact_id})
            return group_id

        return self._group_write(create)

    async def update_contact_group(self, request: Request) -> Response:
        """{"Name"?, "Status"?}: rename, or delete with Status DELETED (members are removed)."""
        body = _only(await _json(request), {"Name", "Status"})
        group_id = request.path_params["group_id"]
        return self._group_write(
            lambda conn: self.ledger.write_contact_group(conn, body, target_id=group_id)["ContactGroupID"], group_id
        )

    async def group_members(self, request: Request) -> Response:
        """{"add"?: [ContactID...], "remove"?: [ContactID...]} on an ACTIVE group."""
        body = _only(await _json(request), {"add", "remove"})
        group_id = request.path_params["group_id"]
        added, removed = _ids(body.get("add", [])), _ids(body.get("remove", []))

        def change(conn: Any) -> str:
            status = self.store.contact_group(group_id, conn)["Status"]
            if status != "ACTIVE":
                raise Invalid(f"contact group {group_id} is {status}")
            for contact_id in added:
                self.ledger.add_group_member(conn, group_id, {"ContactID": contact_id})
            for contact_id in removed:
                self.ledger.remove_group_members(conn, group_id, contact_id)
            return group_id

        return self._group_write(change, group_id)

    def _group_write(self, write: Any, group_id: str | None = None) -> Response:
        if group_id is not None and self.store.contact_group(group_id) is None:
            return _bad(f"contact group {group_id} not found", 404)
        try:
            with self.store.transaction() as conn:
                group_id = write(conn)
        except (Invalid, PostDataInvalid) as exc:
            return _bad(str(exc))
        return JSONResponse(self._group_with_members(self.store.contact_group(group_id)))

    def _group_with_members(self, group: dict) -> dict:
        members = [
            self.store.get("Contacts", contact_id) for contact_id in self.store.group_members(group["ContactGroupID"])
        ]
        return group_summary(group, [{"ContactID": c["ContactID"], "Name": c["Name"]} for c in members])

    async def history(self, request: Request) -> Response:
        """A record's history and notes, newest first, as GET /{collection}/{id}/History returns them."""
        collection = _COLLECTIONS.get(request.path_params["kind"])
        record_id = request.path_params["record_id"]
        if collection is None or self.store.get(collection, record_id) is None:
            return _bad(f"{request.path_params['kind']} {record_id} not found", 404)
        return JSONResponse(self.store.history(collection, record_id))

    async def raw_records(self, request: Request) -> Response:
        """{"records": ["<JSON object text>", ...]}: records as a broken or hostile source would hold them (wrong
        types, NaN, out-of-range dates, 200 kB strings, duplicated or missing ids), served verbatim by the list
        endpoints in the order of their UpdatedDateUTC (else now); answers {"ids": their row ids}."""
        collection = _COLLECTIONS.get(request.path_params["kind"])
        if collection is None:
            return _bad(f"no collection {request.path_params['kind']!r}; use one of {sorted(_COLLECTIONS)}", 404)
        records = _only(await _json(request), {"records"}).get("records")
        if not isinstance(records, list) or not all(isinstance(text, str) for text in records):
            return _bad('"records" is a list of JSON object texts')
        return JSONResponse({"ids": self.store.add_raw(collection, records, now_ms())})

    # -- Xero webhooks (xero.md §6) -----------------------------------------------------------

    async def webhooks(self, request: Request) -> Response:
        """The app's one subscription, every organisation's events: {"url", "key", "attempts", "backoff_seconds"};
        PUT changes any of them."""
        emitter = self.runtime.xero.webhooks
        if request.method == "PUT":
            body = await _json(request)
            if set(body) - _WEBHOOK_OPTIONS:
                return _bad(f"webhook options are {sorted(_WEBHOOK_OPTIONS)}")
            if "url" in body:
                check_url(body["url"])
            if "key" in body and not (isinstance(body["key"], str) and body["key"]):
                return _bad("key must be a non-empty string")
            attempts = int(body.get("attempts", emitter.attempts))
            backoff = float(body.get("backoff_seconds", emitter.backoff_seconds))
            if attempts < 1 or backoff < 0:
                return _bad("attempts must be at least 1 and backoff_seconds not negative")
            key = body.get("key", emitter.key)
            for organisation in self.runtime.organisations:
                organisation.webhooks.key, organisation.webhooks.attempts = key, attempts
                organisation.webhooks.backoff_seconds = backoff
                if "url" in body:
                    organisation.webhooks.subscribe(body["url"])
        return JSONResponse(
            {
                "url": emitter.url,
                "key": emitter.key,
                "attempts": emitter.attempts,
                "backoff_seconds": emitter.backoff_seconds,
                "queued": self.store.queue_length(),
            }
        )

    async def webhook_deliveries(self, request: Request) -> Response:
        return JSONResponse(self.store.deliveries())

    async def redeliver(self, request: Request) -> Response:
        first = (await _json(request)).get("first")
        if not isinstance(first, int):
            return _bad('"first" must be the firstEventSequence of a logged delivery')
        if self.runtime.xero.webhooks.url is None:
            return _bad("no webhook url is configured")
        outcome = await run_in_threadpool(self.runtime.xero.webhooks.redeliver, first)
        if outcome is None:
            return _bad(f"no delivery starts at sequence {first}", 404)
        return JSONResponse({"first": first, "status": outcome})

    async def intent_to_receive(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self.runtime.xero.webhooks.intent_to_receive))

    async def flush_webhooks(self, request: Request) -> Response:
        """Wait (in a worker thread: the receiver may be this very server) until every organisation's queued event
        went out."""
        deadline = time.monotonic() + float((await _json(request)).get("timeout", 30))

        def wait_all() -> bool:
            return all(o.webhooks.wait_idle(max(0.0, deadline - time.monotonic())) for o in self.runtime.organisations)

        idle = await run_in_threadpool(wait_all)
        return JSONResponse({"idle": idle, "queued": self.store.queue_length()}, 200 if idle else 504)


class _ForOrganisation:
    """Serve each admin request for the organisation its `tenant` query parameter names (the first without one)."""

    def __init__(self, app: ASGIApp, runtime: Runtime):
        self.app, self.runtime = app, runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant = QueryParams(scope.get("query_string", b"")).get("tenant") if scope["type"] == "http" else None
        if tenant is None:
            await self.app(scope, receive, send)
            return
        organisation = self.runtime.organisation(tenant)
        if organisation is None:
            await _bad(f"no organisation has tenant id {tenant}", 404)(scope, receive, send)
            return
        with self.runtime.serving(organisation):
            await self.app(scope, receive, send)
