"""Admin API under /_admin/salesforce: reset, records as a user would change them, limits, sessions, Bulk faults,
Outbound Messages.

Like the rest of /_admin it is unauthenticated, never fault-injected and does not count against the org's
daily API allocation. Record changes go through the same rules as the REST API (records.py); errors come back
as {"error", "errorCode", "fields"} with the status the API would use.
"""

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipelines.sandbox.admin import _bad, _json, _only, _value_error
from sync_pipelines.sandbox.salesforce.app import SeedOnFirstUse
from sync_pipelines.sandbox.salesforce.errors import SalesforceError
from sync_pipelines.sandbox.salesforce.org import SETTING_NAMES, SalesforceOrg, now_ms, now_stamp
from sync_pipelines.sandbox.salesforce.rest import PINNED_VERSION, record_json
from sync_pipelines.sandbox.salesforce.schema import OBJECTS, PREFIXES, SObject, sobject
from sync_pipelines.sandbox.store import dumps
from sync_pipelines.sandbox.webhooks import check_url

_VERSION = PINNED_VERSION[1]
_OUTBOUND_OPTIONS = {"url", "objects", "backoff_seconds", "max_backoff_seconds", "max_age_seconds", "newest_first"}
_OUTBOUND_SECONDS = ("backoff_seconds", "max_backoff_seconds", "max_age_seconds")
DEFAULT_BULK_FAILURE = "InternalServerError: the job failed while processing (sandbox fault)"


async def _salesforce_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SalesforceError)
    return JSONResponse({"error": exc.message, "errorCode": exc.code, "fields": exc.fields or []}, exc.status)


def _object(request: Request) -> SObject:
    found = sobject(request.path_params["object"])
    if found is None:
        raise ValueError(f"unknown object {request.path_params['object']!r}; use one of {', '.join(OBJECTS)}")
    return found


class SalesforceAdmin:
    def __init__(self, org: SalesforceOrg):
        self.org, self.store, self.writer = org, org.store, org.writer

    def app(self) -> SeedOnFirstUse:
        app = Starlette(
            routes=[
                Route("/reset", self.reset, methods=["POST"]),
                Route("/records/{object}", self.records, methods=["GET", "POST"]),
                Route("/records/{object}/{record_id}", self.update, methods=["POST"]),
                Route("/records/{object}/{record_id}/delete", self.delete, methods=["POST"]),
                Route("/records/{object}/{record_id}/touch", self.touch_record, methods=["POST"]),
                Route("/raw/{object}", self.raw_records, methods=["POST"]),
                Route("/leads/{record_id}/convert", self.convert, methods=["POST"]),
                Route("/touch", self.touch, methods=["POST"]),
                Route("/limits", self.limits, methods=["GET", "PUT"]),
                Route("/settings", self.settings, methods=["GET", "PUT"]),
                Route("/tokens/expire", self.expire_tokens, methods=["POST"]),
                Route("/bulk/fail", self.fail_bulk, methods=["POST"]),
                Route("/outbound", self.outbound, methods=["GET", "PUT"]),
                Route("/outbound/deliveries", self.outbound_deliveries, methods=["GET"]),
                Route("/outbound/flush", self.outbound_flush, methods=["POST"]),
            ],
            exception_handlers={ValueError: _value_error, SalesforceError: _salesforce_error},
        )
        return SeedOnFirstUse(app, self.org)

    async def reset(self, request: Request) -> Response:
        """{seed?, accounts?, contacts_per_account?, leads?, opportunities?} -> sizes, org id, record counts."""
        body = await _json(request)
        return JSONResponse(self.org.reset(**{k: int(v) for k, v in body.items()}))

    async def records(self, request: Request) -> Response:
        """GET: every row of an object as the API renders it, deleted ones too unless ?deleted=false.
        POST: create one, as a user would; audit stamps (CreatedDate, LastModifiedDate, SystemModstamp) may be set."""
        sobject_ = _object(request)
        if request.method == "POST":
            body = await _json(request)
            with self.store.transaction() as conn:
                row = self.writer.create(conn, sobject_, body, now_stamp(), admin=True)
            return JSONResponse(record_json(sobject_, row, _VERSION))
        where = '"IsDeleted" = 0' if request.query_params.get("deleted", "true").lower() == "false" else "1"
        with self.store.reading() as conn:
            rows = self.store.rows(conn, sobject_, where)
        return Response(dumps([record_json(sobject_, row, _VERSION) for row in rows]), media_type="application/json")

    async def update(self, request: Request) -> Response:
        """A user edit: the given fields change and LastModifiedDate and SystemModstamp move to now (or to the
        given SystemModstamp)."""
        sobject_ = _object(request)
        body = await _json(request)
        with self.store.transaction() as conn:
            row = self.writer.update(conn, sobject_, request.path_params["record_id"], body, now_stamp(), admin=True)
        return JSONResponse(record_json(sobject_, row, _VERSION))

    async def delete(self, request: Request) -> Response:
        sobject_ = _object(request)
        with self.store.transaction() as conn:
            row = self.writer.delete(conn, sobject_, request.path_params["record_id"], now_stamp())
        return JSONResponse(record_json(sobject_, row, _VERSION))

    async def touch_record(self, request: Request) -> Response:
        """A change by automation: SystemModstamp moves, LastModifiedDate does not (salesforce.md §3.2)."""
        sobject_ = _object(request)
        with self.store.transaction() as conn:
            row = self.writer.touch(conn, sobject_, request.path_params["record_id"], now_stamp())
        return JSONResponse(record_json(sobject_, row, _VERSION))

    async def raw_records(self, request: Request) -> Response:
        """{"records": ["<JSON object text>", ...]}: records as a broken or hostile org would serve them (wrong
        types, NaN, 200 kB strings, junk or duplicated ids), returned by queries of the object as given, each in
        the place of a placeholder row; answers {"ids": the placeholder ids}."""
        records = _only(await _json(request), {"records"}).get("records")
        if not isinstance(records, list) or not all(isinstance(text, str) for text in records):
            return _bad('"records" is a list of JSON object texts')
        return JSONResponse({"ids": self.store.add_raw(_object(request), records, now_stamp())})

    async def convert(self, request: Request) -> Response:
        """Convert a lead: {"opportunity": true} -> {"lead", "account", "contact", "opportunity"?}."""
        body = await _json(request)
        with self.store.transaction() as conn:
            result = self.writer.convert_lead(
                conn, request.path_params["record_id"], now_stamp(), bool(body.get("opportunity", True))
            )
        return JSONResponse({key: record_json(PREFIXES[row["Id"][:3]], row, _VERSION) for key, row in result.items()})

    async def touch(self, request: Request) -> Response:
        """{"object": "Account", "count": n}: a user edit on the n least recently changed live records."""
        body = await _json(request)
        sobject_ = sobject(str(body.get("object", "Account")))
        if sobject_ is None:
            return _bad(f"unknown object {body.get('object')!r}")
        count = int(body.get("count", 1))
        now = now_stamp()
        touched = []
        with self.store.transaction() as conn:
            for row in self.store.rows(conn, sobject_, '"IsDeleted" = 0', limit=count):
                touched.append(self.writer.update(conn, sobject_, row["Id"], {}, now)["Id"])
        return JSONResponse({"touched": len(touched), "ids": touched})

    async def limits(self, request: Request) -> Response:
        """The daily API allocation: {"daily_api_limit", "used", "remaining"}; PUT sets either number."""
        if request.method == "PUT":
            body = await _json(request)
            if set(body) - {"daily_api_limit", "used"} or any(int(v) < 0 for v in body.values()):
                return _bad("limits are non-negative integers named daily_api_limit and used")
            self.org.set_usage(
                used=int(body["used"]) if "used" in body else None,
                daily_api_limit=int(body["daily_api_limit"]) if "daily_api_limit" in body else None,
            )
        used, limit = self.org.usage()
        return JSONResponse({"daily_api_limit": limit, "used": used, "remaining": max(0, limit - used)})

    async def settings(self, request: Request) -> Response:
        """{access_token_ttl (s), refresh_token_rotation (bool), bulk_job_seconds}; PUT changes any of them."""
        if request.method == "PUT":
            body = await _json(request)
            if set(body) - set(SETTING_NAMES):
                return _bad(f"settings are {', '.join(SETTING_NAMES)}")
            if "access_token_ttl" in body:
                self.org.access_token_ttl = int(body["access_token_ttl"])
            if "refresh_token_rotation" in body:
                self.org.refresh_token_rotation = bool(body["refresh_token_rotation"])
            if "bulk_job_seconds" in body:
                self.org.bulk_job_seconds = float(body["bulk_job_seconds"])
        return JSONResponse({name: getattr(self.org, name) for name in SETTING_NAMES})

    async def expire_tokens(self, request: Request) -> Response:
        """Every access token issued so far expires: the next call with one gets 401 INVALID_SESSION_ID."""
        return JSONResponse({"expired": self.store.expire_access_tokens(now_ms())})

    async def fail_bulk(self, request: Request) -> Response:
        """{"jobs": n, "message"?}: the next n Bulk query jobs end Failed with that errorMessage."""
        body = await _json(request)
        jobs = int(body.get("jobs", 1))
        if jobs < 1:
            return _bad("jobs must be at least 1")
        pending = self.org.fail_next_bulk_jobs(jobs, str(body.get("message", DEFAULT_BULK_FAILURE)))
        return JSONResponse({"pending": pending})

    # -- Outbound Messages (salesforce.md §9) -------------------------------------------------

    async def outbound(self, request: Request) -> Response:
        """The actions' endpoint and delivery settings {url, objects, backoff_seconds, max_backoff_seconds,
        max_age_seconds, newest_first, queued, dropped}; PUT changes any of them (url null: actions off)."""
        outbound = self.org.outbound
        if request.method == "PUT":
            body = await _json(request)
            if set(body) - _OUTBOUND_OPTIONS:
                return _bad(f"Outbound Message options are {sorted(_OUTBOUND_OPTIONS)}")
            seconds = {name: float(body.get(name, getattr(outbound, name))) for name in _OUTBOUND_SECONDS}
            if any(value < 0 for value in seconds.values()):
                return _bad(f"{', '.join(_OUTBOUND_SECONDS)} must not be negative")
            url = check_url(body["url"]) if "url" in body else outbound.url
            for name, value in seconds.items():
                setattr(outbound, name, value)
            outbound.newest_first = bool(body.get("newest_first", outbound.newest_first))
            outbound.configure(url, body.get("objects"))
        return JSONResponse(
            {
                "url": outbound.url,
                "objects": sorted(outbound.objects),
                **{name: getattr(outbound, name) for name in _OUTBOUND_SECONDS},
                "newest_first": outbound.newest_first,
                "queued": await run_in_threadpool(outbound.queue_length),
                "dropped": await run_in_threadpool(self.store.outbound_dropped),
            }
        )

    async def outbound_deliveries(self, request: Request) -> Response:
        """[{seq, object, notifications, attempts: [status or error name], delivered}], oldest first."""
        return JSONResponse(await run_in_threadpool(self.store.outbound_deliveries))

    async def outbound_flush(self, request: Request) -> Response:
        """Wait (in a worker thread: the receiver may be this very server) until nothing is queued or retried."""
        timeout = float((await _json(request)).get("timeout", 30))
        idle = await run_in_threadpool(self.org.outbound.wait_idle, timeout)
        queued = await run_in_threadpool(self.org.outbound.queue_length)
        return JSONResponse({"idle": idle, "queued": queued}, 200 if idle else 504)
