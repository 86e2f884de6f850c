"""The instance's REST API under /services/data/vNN.N: query, sObjects, sObject Collections and limits.

Every call passes one gate (`DataApi.gated`): version, session (401 INVALID_SESSION_ID), daily allocation
(403 REQUEST_LIMIT_EXCEEDED), then the handler; every answer carries Sforce-Limit-Info (salesforce.md §2, §5).
Work on the store runs in a worker thread so one large query does not stall the event loop.
"""

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipelines.sandbox.salesforce import ids, soql
from sync_pipelines.sandbox.salesforce.errors import SalesforceError, not_found
from sync_pipelines.sandbox.salesforce.oauth import OAuth
from sync_pipelines.sandbox.salesforce.org import SalesforceOrg, now_ms, now_stamp
from sync_pipelines.sandbox.salesforce.plan import attributes, bind
from sync_pipelines.sandbox.salesforce.schema import OBJECTS, SObject, sobject, to_json
from sync_pipelines.sandbox.store import dumps

DATA = "/services/data/v{version}"
VERSION = re.compile(r"^\d{2}\.\d$")  # salesforce.md §2: any vNN.N is accepted
LISTED_VERSIONS = (("Summer '23", "58.0"), ("Winter '24", "59.0"), ("Spring '24", "60.0"), ("Summer '24", "61.0"))
PINNED_VERSION = ("Winter '25", "62.0")
DEFAULT_BATCH, MIN_BATCH, MAX_BATCH = 2000, 200, 2000  # salesforce.md §3.1
CURSOR_TTL_MS = 2 * 86_400_000  # salesforce.md §3.1: query results are kept 2 days
COLLECTION_LIMIT = 200  # salesforce.md §4.2
UPSERT_BODY_VERSION = 46.0  # salesforce.md §4.1: 200 with a body on update from v46, 204 before
BULK_DAILY_JOBS = 10_000
BULK_STORAGE_MB = 976_562
Handler = Callable[[Request], Awaitable[Response]]


class _RolledBack(Exception):
    """Raised inside a collection's transaction to undo it when allOrNone is set and a record failed."""


def json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise SalesforceError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None


def record_json(sobject_: SObject, row: dict[str, Any], version: str, fields: list[str] | None = None) -> dict:
    """A whole record as GET /sobjects/{Obj}/{Id} renders it: attributes, then fields in describe order."""
    body: dict[str, Any] = {"attributes": attributes(sobject_.name, row["Id"], version)}
    for field in sobject_.fields:
        if fields is None or field.name in fields:
            body[field.name] = to_json(field, row[field.name])
    return body


def save_result(record_id: str | None, error: SalesforceError | None = None, **extra: Any) -> dict[str, Any]:
    """One sObject Collections result; failures carry statusCode errors (salesforce.md §4.2)."""
    result: dict[str, Any] = {"id": record_id} if record_id else {}
    result.update(success=error is None, errors=[error.save_error()] if error else [], **extra)
    return result


def _sobject(name: str) -> SObject:
    found = sobject(name)
    if found is None:
        raise SalesforceError(404, "NOT_FOUND", f"The requested resource does not exist: sObject type '{name}'")
    return found


def _batch_size(request: Request) -> int | None:
    """Sforce-Query-Options: batchSize=N, clamped to 200..2000 (salesforce.md §3.1); None when not asked."""
    options = request.headers.get("sforce-query-options", "")
    match = re.search(r"batchSize\s*=\s*(\d+)", options, re.IGNORECASE)
    return min(MAX_BATCH, max(MIN_BATCH, int(match.group(1)))) if match else None


class DataApi:
    def __init__(self, org: SalesforceOrg, oauth: OAuth):
        self.org, self.oauth = org, oauth
        self.store, self.writer = org.store, org.writer

    def gated(self, handler: Handler) -> Handler:
        """Wrap a handler in the checks every data call gets, in Salesforce's order."""

        async def endpoint(request: Request) -> Response:
            if not VERSION.match(request.path_params.get("version", "")):
                response = not_found().response()
            else:
                try:
                    self.oauth.authenticate(request)
                    allowed, _, _ = self.org.take_call()
                    if not allowed:
                        # salesforce.md §5: the daily allocation is spent; refused calls use nothing.
                        raise SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                    response = await handler(request)
                except SalesforceError as exc:
                    response = exc.response()
            used, limit = self.org.usage()
            response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{limit}"
            return response

        return endpoint

    def routes(self) -> list[Route]:
        g = self.gated
        return [
            Route("/services/data", self.versions, methods=["GET"]),
            Route("/services/data/", self.versions, methods=["GET"]),
            Route(DATA, g(self.resources), methods=["GET"]),
            Route(DATA + "/", g(self.resources), methods=["GET"]),
            Route(DATA + "/limits", g(self.limits), methods=["GET"]),
            Route(DATA + "/limits/", g(self.limits), methods=["GET"]),
            Route(DATA + "/query", g(self.query), methods=["GET"]),
            Route(DATA + "/query/", g(self.query), methods=["GET"]),
            Route(DATA + "/query/{locator}", g(self.more), methods=["GET"]),
            Route(DATA + "/queryAll", g(self.query), methods=["GET"]),
            Route(DATA + "/queryAll/", g(self.query), methods=["GET"]),
            Route(DATA + "/queryAll/{locator}", g(self.more), methods=["GET"]),
            Route(DATA + "/sobjects", g(self.describe_global), methods=["GET"]),
            Route(DATA + "/sobjects/", g(self.describe_global), methods=["GET"]),
            Route(DATA + "/sobjects/{sobject}", g(self.sobject_root), methods=["GET", "POST"]),
            Route(DATA + "/sobjects/{sobject}/", g(self.sobject_root), methods=["GET", "POST"]),
            Route(DATA + "/sobjects/{sobject}/describe", g(self.describe), methods=["GET"]),
            Route(DATA + "/sobjects/{sobject}/describe/", g(self.describe), methods=["GET"]),
            Route(DATA + "/sobjects/{sobject}/{record_id}", g(self.record), methods=["GET", "PATCH", "DELETE"]),
            Route(DATA + "/sobjects/{sobject}/{field}/{value}", g(self.by_external_id), methods=["GET", "PATCH"]),
            Route(DATA + "/composite/sobjects", g(self.collection), methods=["POST", "PATCH", "DELETE"]),
            Route(DATA + "/composite/sobjects/{sobject}", g(self.collection_retrieve), methods=["GET"]),
            Route(DATA + "/composite/sobjects/{sobject}/{field}", g(self.collection_upsert), methods=["PATCH"]),
        ]

    # -- discovery ----------------------------------------------------------------------------

    async def versions(self, request: Request) -> Response:
        """GET /services/data/ needs no session (salesforce.md §2); v62.0 is the version we pin."""
        return JSONResponse(
            [
                {"label": label, "url": f"/services/data/v{version}", "version": version}
                for label, version in (*LISTED_VERSIONS, PINNED_VERSION)
            ]
        )

    async def resources(self, request: Request) -> Response:
        base = f"/services/data/v{request.path_params['version']}"
        names = ("limits", "query", "queryAll", "sobjects", "composite", "jobs")
        return JSONResponse({name: f"{base}/{name}" for name in names})

    async def limits(self, request: Request) -> Response:
        used, limit = self.org.usage()
        with self.store.reading() as conn:
            since = now_ms() - 86_400_000
            jobs = conn.execute("SELECT COUNT(*) FROM sf_jobs WHERE created_ms >= ?", (since,)).fetchone()[0]
        return JSONResponse(
            {
                "DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - used)},
                "DailyBulkV2QueryJobs": {"Max": BULK_DAILY_JOBS, "Remaining": max(0, BULK_DAILY_JOBS - jobs)},
                "DailyBulkV2QueryFileStorageMB": {"Max": BULK_STORAGE_MB, "Remaining": BULK_STORAGE_MB},
            }
        )

    async def describe_global(self, request: Request) -> Response:
        return JSONResponse(
            {
                "encoding": "UTF-8",
                "maxBatchSize": COLLECTION_LIMIT,
                "sobjects": [self._object_summary(s, request.path_params["version"]) for s in OBJECTS.values()],
            }
        )

    @staticmethod
    def _object_summary(sobject_: SObject, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{sobject_.name}"
        return {
            "name": sobject_.name,
            "label": sobject_.name,
            "keyPrefix": sobject_.prefix,
            "queryable": True,
            "createable": sobject_.writable,
            "updateable": sobject_.writable,
            "deletable": sobject_.writable,
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
        }

    async def describe(self, request: Request) -> Response:
        """Field metadata: names, types, write rules, external ids and relationships (salesforce.md §4.1)."""
        sobject_ = _sobject(request.path_params["sobject"])
        fields = [
            {
                "name": f.name,
                "label": f.name,
                "type": f.type,
                "length": f.max_length or 0,
                "nillable": not f.required and f.name not in ("Id", "IsDeleted"),
                "createable": f.createable and sobject_.writable,
                "updateable": f.updateable and sobject_.writable,
                "externalId": f.external_id,
                "unique": f.external_id,
                "filterable": f.filterable,
                "sortable": f.filterable,
                "idLookup": f.name == "Id" or f.external_id,
                "referenceTo": [f.reference_to] if f.reference_to else [],
                "relationshipName": f.relationship,
                "picklistValues": [{"value": v, "label": v, "active": True} for v in f.restricted],
                "restrictedPicklist": bool(f.restricted),
            }
            for f in sobject_.fields
        ]
        return JSONResponse({**self._object_summary(sobject_, request.path_params["version"]), "fields": fields})

    # -- query (salesforce.md §3.1) -----------------------------------------------------------

    async def query(self, request: Request) -> Response:
        include_deleted = request.url.path.rstrip("/").endswith("queryAll")
        text = request.query_params.get("q", "")
        batch = _batch_size(request) or DEFAULT_BATCH
        return await run_in_threadpool(self._query, text, include_deleted, request.path_params["version"], batch)

    def _query(self, text: str, include_deleted: bool, version: str, batch: int) -> Response:
        plan = bind(soql.parse(text), include_deleted)
        with self.store.reading() as conn:
            if plan.count:
                return JSONResponse({"totalSize": plan.count_rows(conn), "done": True, "records": []})
            record_ids = plan.matching_ids(conn)
            if len(record_ids) <= batch:
                rows = plan.rows(conn)
                records = self.store.with_raw(conn, rows, plan.records(rows, version))
                return self._page(len(record_ids), records, None)
        now = now_ms()
        with self.store.transaction() as conn:
            self.store.drop_results(
                conn, "created_ms < ? AND id NOT IN (SELECT id FROM sf_jobs)", (now - CURSOR_TTL_MS,)
            )
            cursor_id = self.store.next_ids(conn, "01g")[0]
            self.store.keep_result(conn, cursor_id, text, include_deleted, record_ids, now, batch)
            rows = plan.stored_rows(conn, cursor_id, 0, batch)
            records = self.store.with_raw(conn, rows, plan.records(rows, version))
        resource = "queryAll" if include_deleted else "query"
        next_url = f"/services/data/v{version}/{resource}/{cursor_id}-{batch}"
        return self._page(len(record_ids), records, next_url)

    async def more(self, request: Request) -> Response:
        """The next batch of a cursor: nextRecordsUrl is `.../query/<cursor id>-<offset>`."""
        locator, version = request.path_params["locator"], request.path_params["version"]
        return await run_in_threadpool(self._more, locator, version, _batch_size(request))

    def _more(self, locator: str, version: str, asked: int | None) -> Response:
        """Pages keep the cursor's batch size unless the call asks for another."""
        cursor_id, _, offset_text = locator.rpartition("-")
        invalid = SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        if not offset_text.isdigit():
            raise invalid
        offset = int(offset_text)
        with self.store.reading() as conn:
            kept = self.store.result(conn, cursor_id)
            if kept is None or kept["created_ms"] < now_ms() - CURSOR_TTL_MS or offset > kept["total"]:
                raise invalid
            plan = bind(soql.parse(kept["soql"]), bool(kept["include_deleted"]))
            batch = asked or kept["batch"]
            rows = plan.stored_rows(conn, cursor_id, offset, offset + batch)
            records = self.store.with_raw(conn, rows, plan.records(rows, version))
        resource = "queryAll" if kept["include_deleted"] else "query"
        end = offset + batch
        next_url = f"/services/data/v{version}/{resource}/{cursor_id}-{end}" if end < kept["total"] else None
        return self._page(kept["total"], records, next_url)

    @staticmethod
    def _page(total: int, records: list[dict], next_url: str | None) -> Response:
        body: dict[str, Any] = {"totalSize": total, "done": next_url is None}
        if next_url:
            body["nextRecordsUrl"] = next_url
        body["records"] = records
        return Response(dumps(body), media_type="application/json")

    # -- single records (salesforce.md §4.1) --------------------------------------------------

    async def sobject_root(self, request: Request) -> Response:
        sobject_ = _sobject(request.path_params["sobject"])
        version = request.path_params["version"]
        if request.method == "GET":
            return JSONResponse({"objectDescribe": self._object_summary(sobject_, version), "recentItems": []})
        body = json_body(await request.body())
        if not isinstance(body, dict):
            raise SalesforceError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from the body")
        return await run_in_threadpool(self._create, sobject_, body)

    def _create(self, sobject_: SObject, body: dict[str, Any]) -> Response:
        with self.store.transaction() as conn:
            row = self.writer.create(conn, sobject_, body, now_stamp())
        return JSONResponse({"id": row["Id"], "success": True, "errors": []}, 201)

    async def record(self, request: Request) -> Response:
        sobject_ = _sobject(request.path_params["sobject"])
        record_id, version = request.path_params["record_id"], request.path_params["version"]
        if request.method == "GET":
            fields = request.query_params.get("fields")
            return await run_in_threadpool(self._read, sobject_, record_id, version, fields)
        body = json_body(await request.body()) if request.method == "PATCH" else None
        return await run_in_threadpool(self._change, sobject_, record_id, request.method, body)

    def _read(self, sobject_: SObject, record_id: str, version: str, fields_param: str | None) -> Response:
        fields = None
        if fields_param:
            fields = []
            for name in (part.strip() for part in fields_param.split(",") if part.strip()):
                field = sobject_.field(name)
                if field is None:
                    raise SalesforceError(
                        400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject_.name}"
                    )
                fields.append(field.name)
        normalized = ids.normalize(record_id)
        with self.store.reading() as conn:
            row = self.store.get(conn, sobject_, normalized) if normalized else None
        if row is None or row["IsDeleted"]:
            raise not_found()  # a record in the recycle bin is not readable here (salesforce.md §5, 404)
        return JSONResponse(record_json(sobject_, row, version, fields))

    def _change(self, sobject_: SObject, record_id: str, method: str, body: Any) -> Response:
        """PATCH updates (204, no body), DELETE moves to the recycle bin (204)."""
        with self.store.transaction() as conn:
            if method == "DELETE":
                self.writer.delete(conn, sobject_, record_id, now_stamp())
            else:
                if not isinstance(body, dict):
                    raise SalesforceError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject")
                self.writer.update(conn, sobject_, record_id, body, now_stamp())
        return Response(status_code=204)

    async def by_external_id(self, request: Request) -> Response:
        """GET reads by an external id; PATCH upserts: 201 created, 200 updated (204 before v46)."""
        sobject_ = _sobject(request.path_params["sobject"])
        field_name, value = request.path_params["field"], request.path_params["value"]
        version = request.path_params["version"]
        if request.method == "GET":
            return await run_in_threadpool(self._read_by_external_id, sobject_, field_name, value, version)
        body = json_body(await request.body())
        if not isinstance(body, dict):
            raise SalesforceError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject")
        return await run_in_threadpool(self._upsert, sobject_, field_name, value, body, version)

    def _read_by_external_id(self, sobject_: SObject, field_name: str, value: str, version: str) -> Response:
        field = sobject_.field(field_name)
        if field is None or not field.external_id:
            raise not_found()
        with self.store.reading() as conn:
            matches = self.store.find(conn, sobject_, field.name, value)
        if not matches:
            raise not_found()
        if len(matches) > 1:  # salesforce.md §4.1: 300 with the matching records' URLs
            urls = [attributes(sobject_.name, row["Id"], version)["url"] for row in matches]
            return JSONResponse(urls, 300)
        return JSONResponse(record_json(sobject_, matches[0], version))

    def _upsert(self, sobject_: SObject, field_name: str, value: str, body: dict, version: str) -> Response:
        with self.store.transaction() as conn:
            row, created = self.writer.upsert(conn, sobject_, field_name, value, body, now_stamp())
        if not created and float(version) < UPSERT_BODY_VERSION:
            return Response(status_code=204)
        return JSONResponse(
            {"id": row["Id"], "success": True, "errors": [], "created": created}, 201 if created else 200
        )

    # -- sObject Collections (salesforce.md §4.2) ---------------------------------------------

    async def collection(self, request: Request) -> Response:
        if request.method == "DELETE":
            params = request.query_params
            record_ids = [part for part in params.get("ids", "").split(",") if part]
            all_or_none = params.get("allOrNone", "false").lower() == "true"
            return await run_in_threadpool(self._collection_delete, record_ids, all_or_none)
        records, all_or_none = self._collection_body(await request.body())
        work = self._collection_create if request.method == "POST" else self._collection_update
        return await run_in_threadpool(work, records, all_or_none)

    @staticmethod
    def _collection_body(raw: bytes) -> tuple[list[dict[str, Any]], bool]:
        body = json_body(raw)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise SalesforceError(400, "JSON_PARSER_ERROR", 'The body must be {"allOrNone": bool, "records": [...]}')
        records = body["records"]
        if len(records) > COLLECTION_LIMIT:
            raise SalesforceError(
                400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
            )
        if not all(isinstance(record, dict) for record in records):
            raise SalesforceError(400, "JSON_PARSER_ERROR", "Every record must be a JSON object")
        return records, bool(body.get("allOrNone", False))

    @staticmethod
    def _record_type(record: dict[str, Any]) -> SObject:
        attrs = record.get("attributes")
        found = sobject(attrs["type"]) if isinstance(attrs, dict) and isinstance(attrs.get("type"), str) else None
        if found is None:
            raise SalesforceError(400, "INVALID_TYPE", "Must send a concrete entity type.", [])
        return found

    def _run_collection(
        self, items: list[Any], save: Callable[[Any, Any, str], dict[str, Any]], all_or_none: bool
    ) -> Response:
        """Save each item under its own savepoint; with allOrNone one failure rolls back all of them."""
        results: list[dict[str, Any] | SalesforceError] = []
        now = now_stamp()
        try:
            with self.store.transaction() as conn:
                for item in items:
                    conn.execute("SAVEPOINT item")
                    try:
                        results.append(save(conn, item, now))
                    except SalesforceError as exc:
                        conn.execute("ROLLBACK TO item")
                        results.append(exc)
                    conn.execute("RELEASE item")
                if all_or_none and any(isinstance(r, SalesforceError) for r in results):
                    raise _RolledBack
        except _RolledBack:
            rolled_back = SalesforceError(
                400,
                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "Record rolled back because not all records were valid and the request was using AllOrNone header",
            )
            return JSONResponse(
                [
                    save_result(_item_id(item), r if isinstance(r, SalesforceError) else rolled_back)
                    for item, r in zip(items, results, strict=True)
                ]
            )
        return JSONResponse(
            [
                save_result(_item_id(item), r) if isinstance(r, SalesforceError) else r
                for item, r in zip(items, results, strict=True)
            ]
        )

    def _collection_create(self, records: list[dict[str, Any]], all_or_none: bool) -> Response:
        def save(conn: Any, record: dict[str, Any], now: str) -> dict[str, Any]:
            if any(key.lower() == "id" for key in record):
                raise SalesforceError(400, "INVALID_FIELD", "Can't specify an Id when creating records", ["Id"])
            row = self.writer.create(conn, self._record_type(record), record, now)
            return save_result(row["Id"])

        return self._run_collection(records, save, all_or_none)

    def _collection_update(self, records: list[dict[str, Any]], all_or_none: bool) -> Response:
        def save(conn: Any, record: dict[str, Any], now: str) -> dict[str, Any]:
            record_id = _item_id(record)
            if not record_id:
                raise SalesforceError(400, "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
            sobject_ = self._record_type(record)
            normalized = ids.normalize(record_id)
            if normalized is None or normalized[:3] != sobject_.prefix:
                raise SalesforceError(400, "MALFORMED_ID", f"malformed id {record_id}", ["Id"])
            row = self.writer.update(conn, sobject_, normalized, record, now)
            return save_result(row["Id"])

        return self._run_collection(records, save, all_or_none)

    def _collection_delete(self, record_ids: list[str], all_or_none: bool) -> Response:
        if len(record_ids) > COLLECTION_LIMIT:
            raise SalesforceError(
                400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
            )

        def save(conn: Any, record_id: str, now: str) -> dict[str, Any]:
            normalized = ids.normalize(record_id)
            sobject_ = next((s for s in OBJECTS.values() if normalized and normalized[:3] == s.prefix), None)
            if sobject_ is None:
                raise SalesforceError(400, "MALFORMED_ID", f"malformed id {record_id}", [])
            row = self.writer.delete(conn, sobject_, normalized, now)
            return save_result(row["Id"])

        return self._run_collection(record_ids, save, all_or_none)

    async def collection_retrieve(self, request: Request) -> Response:
        """GET /composite/sobjects/{Obj}?ids=..&fields=..: records in id order, null where none (up to 2,000)."""
        sobject_ = _sobject(request.path_params["sobject"])
        params = request.query_params
        record_ids = [part for part in params.get("ids", "").split(",") if part]
        names = [part for part in params.get("fields", "").split(",") if part]
        if not record_ids or not names:
            raise SalesforceError(400, "MISSING_ARGUMENT", "The ids and fields parameters are required")
        if len(record_ids) > 2000:
            raise SalesforceError(400, "EXCEEDED_ID_LIMIT", "Maximum number of ids allowed is 2000")
        fields = []
        for name in names:
            field = sobject_.field(name)
            if field is None:
                raise SalesforceError(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject_.name}"
                )
            fields.append(field.name)
        version = request.path_params["version"]

        def read() -> Response:
            records = []
            with self.store.reading() as conn:
                for record_id in record_ids:
                    normalized = ids.normalize(record_id)
                    row = self.store.get(conn, sobject_, normalized) if normalized else None
                    live = row is not None and not row["IsDeleted"]
                    records.append(record_json(sobject_, row, version, fields) if live else None)
            return JSONResponse(records)

        return await run_in_threadpool(read)

    async def collection_upsert(self, request: Request) -> Response:
        """PATCH /composite/sobjects/{Obj}/{ExtIdField}: one object type; results carry `created`."""
        sobject_ = _sobject(request.path_params["sobject"])
        field_name = request.path_params["field"]
        key = sobject_.field(field_name)
        if key is None or not key.external_id:
            raise not_found()
        records, all_or_none = self._collection_body(await request.body())

        def save(conn: Any, record: dict[str, Any], now: str) -> dict[str, Any]:
            if self._record_type(record) is not sobject_:
                raise SalesforceError(400, "INVALID_TYPE", f"Every record must be of type {sobject_.name}", [])
            value = next((v for k, v in record.items() if k.lower() == key.name.lower()), None)
            if value in (None, ""):
                raise SalesforceError(400, "MISSING_ARGUMENT", f"{key.name} not specified", [key.name])
            row, created = self.writer.upsert(conn, sobject_, key.name, str(value), record, now)
            return save_result(row["Id"], created=created)

        return await run_in_threadpool(self._run_collection, records, save, all_or_none)


def _item_id(item: Any) -> str | None:
    """The Id a collection item names: the item itself (deletes) or its Id field (updates)."""
    if isinstance(item, str):
        return item
    return next((v for k, v in item.items() if k.lower() == "id" and isinstance(v, str)), None)
