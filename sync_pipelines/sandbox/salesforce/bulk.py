"""Bulk API 2.0 query jobs under /services/data/vNN.N/jobs/query (salesforce.md §6).

A job snapshots the matching record ids when it is created and reports InProgress until `bulk_job_seconds`
have passed since; the setting is read while the job is in progress, so a test can hold jobs and release them.
It then settles as JobComplete (or Failed, when the admin API asked for a failure) and serves its rows as
CSV pages chained by the Sforce-Locator header, whose last value is the string "null".
"""

import base64
import binascii
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipelines.sandbox.salesforce import soql
from sync_pipelines.sandbox.salesforce.errors import SalesforceError, not_found
from sync_pipelines.sandbox.salesforce.org import SalesforceOrg, now_ms
from sync_pipelines.sandbox.salesforce.plan import bind
from sync_pipelines.sandbox.salesforce.rest import DATA, DataApi, json_body
from sync_pipelines.sandbox.salesforce.schema import datetime_text

DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
# salesforce.md §6 gives no server default page size; the sandbox uses simple-salesforce's 50,000.
DEFAULT_MAX_RECORDS = 50_000
LAST_LOCATOR = "null"  # salesforce.md §6: the literal string "null" means no more pages


def locator(offset: int) -> str:
    """Opaque to clients; here the offset in base64 without padding ("MTAwMDA" is 10000), like Salesforce's."""
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _offset(value: str) -> int | None:
    try:
        text = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _job_error(message: str, status: int = 400, code: str = "INVALIDJOB") -> SalesforceError:
    return SalesforceError(status, code, message)


class BulkApi:
    def __init__(self, org: SalesforceOrg, data: DataApi):
        self.org, self.data, self.store = org, data, org.store

    def routes(self) -> list[Route]:
        g = self.data.gated
        jobs = DATA + "/jobs/query"
        return [
            Route(jobs, g(self.jobs), methods=["GET", "POST"]),
            Route(jobs + "/", g(self.jobs), methods=["GET", "POST"]),
            Route(jobs + "/{job_id}", g(self.job), methods=["GET", "PATCH", "DELETE"]),
            Route(jobs + "/{job_id}/results", g(self.results), methods=["GET"]),
        ]

    # -- job info -----------------------------------------------------------------------------

    def _info(self, job: dict[str, Any], created: bool = False) -> dict[str, Any]:
        """Public job info: the stored job without its private keys, in its current state (salesforce.md §6)."""
        info = {k: v for k, v in job.items() if not k.startswith("_")}
        state = "UploadComplete" if created else self._state(job)
        info["state"] = state
        if created:
            return info
        finished = state in ("JobComplete", "Failed")
        info.update(
            jobType="V2Query",
            numberRecordsProcessed=job["_total"] if state == "JobComplete" else 0,
            retries=0,
            totalProcessingTime=job["_finished_ms"] - job["_created_ms"] if finished else 0,
        )
        if finished:
            info["systemModstamp"] = datetime_text(job["_finished_ms"])
        if state == "Failed":
            info["errorMessage"] = job["_failure"]
        return info

    @staticmethod
    def _state(job: dict[str, Any]) -> str:
        if job["_aborted"]:
            return "Aborted"
        if job["_finished_ms"] is None:
            return "InProgress"
        return "Failed" if job["_failure"] else "JobComplete"

    def _settle(self, conn: Any, job: dict[str, Any]) -> dict[str, Any]:
        """Fix the finish time once the processing time has passed; later setting changes leave it alone."""
        finish = job["_created_ms"] + int(self.org.bulk_job_seconds * 1000)
        if job["_finished_ms"] is None and not job["_aborted"] and now_ms() >= finish:
            job["_finished_ms"] = finish
            self.store.save_job(conn, job, job["_created_ms"])
        return job

    def _load(self, job_id: str) -> dict[str, Any]:
        with self.store.transaction() as conn:
            job = self.store.job(conn, job_id)
            if job is None:
                raise not_found()
            return self._settle(conn, job)

    # -- endpoints ----------------------------------------------------------------------------

    async def jobs(self, request: Request) -> Response:
        if request.method == "GET":
            with self.store.transaction() as conn:
                listed = [self._info(self._settle(conn, job)) for job in self.store.jobs(conn)]
            return JSONResponse({"done": True, "records": listed, "nextRecordsUrl": None})
        body = json_body(await request.body())
        return await run_in_threadpool(self._create, body, request.path_params["version"])

    def _create(self, body: Any, version: str) -> Response:
        """POST /jobs/query: validate, snapshot the matching ids, answer 200 with the job (salesforce.md §6)."""
        if not isinstance(body, dict):
            raise _job_error("The request body must be a JSON object")
        operation = body.get("operation", "query")
        if operation not in ("query", "queryAll"):
            raise _job_error(f"Invalid operation: {operation}; use query or queryAll")
        if body.get("contentType", "CSV") != "CSV":
            raise _job_error("Only contentType CSV is supported")
        delimiter = body.get("columnDelimiter", "COMMA")
        line_ending = body.get("lineEnding", "LF")
        if delimiter not in DELIMITERS or line_ending not in LINE_ENDINGS:
            raise _job_error(f"columnDelimiter must be one of {sorted(DELIMITERS)}, lineEnding LF or CRLF")
        text = body.get("query")
        if not isinstance(text, str):
            raise _job_error("query is required")
        parsed = soql.parse(text)
        plan = bind(parsed, include_deleted=operation == "queryAll")
        if plan.count:
            raise _job_error("Aggregate queries are not supported by Bulk API 2.0 query jobs")
        failure = self.org.take_bulk_failure()
        created_ms = now_ms()
        with self.store.transaction() as conn:
            job_id = self.store.next_ids(conn, "750")[0]
            record_ids = [] if failure else plan.matching_ids(conn)
            job = {
                "id": job_id,
                "operation": operation,
                "object": plan.sobject.name,
                "createdById": self.org.user_id,
                "createdDate": datetime_text(created_ms),
                "systemModstamp": datetime_text(created_ms),
                "state": "UploadComplete",
                "concurrencyMode": "Parallel",
                "contentType": "CSV",
                "apiVersion": float(version),
                "lineEnding": line_ending,
                "columnDelimiter": delimiter,
                "_query": text,
                "_created_ms": created_ms,
                "_finished_ms": None,
                "_failure": failure,
                "_aborted": False,
                "_total": len(record_ids),
            }
            self.store.save_job(conn, job, created_ms)
            if not failure:
                self.store.keep_result(conn, job_id, text, operation == "queryAll", record_ids, created_ms)
        return JSONResponse(self._info(job, created=True))

    async def job(self, request: Request) -> Response:
        job = self._load(request.path_params["job_id"])
        if request.method == "GET":
            return JSONResponse(self._info(job))
        if request.method == "DELETE":
            with self.store.transaction() as conn:
                self.store.delete_job(conn, job["id"])
            return Response(status_code=204)
        body = json_body(await request.body())
        if not isinstance(body, dict) or body.get("state") != "Aborted":
            raise _job_error('A query job can only be changed to {"state": "Aborted"}')
        state = self._state(job)
        if state != "InProgress":
            raise _job_error(f"Cannot abort a job in state {state}", code="INVALIDJOBSTATE")
        job["_aborted"] = True
        with self.store.transaction() as conn:
            self.store.save_job(conn, job, job["_created_ms"])
        return JSONResponse(self._info(job))

    async def results(self, request: Request) -> Response:
        job = self._load(request.path_params["job_id"])
        version = request.path_params["version"]
        if float(version) != job["apiVersion"]:
            raise SalesforceError(
                409, "API_VERSION_MISMATCH", f"Fetch results with the job's API version {job['apiVersion']}"
            )  # salesforce.md §6
        state = self._state(job)
        if state != "JobComplete":
            raise SalesforceError(412, "JOB_NOT_COMPLETE", f"The job is not complete: its state is {state}")
        params = request.query_params
        max_records = params.get("maxRecords", str(DEFAULT_MAX_RECORDS))
        if not max_records.isdigit() or int(max_records) < 1:
            raise _job_error("maxRecords must be a positive integer")
        offset = _offset(params["locator"]) if params.get("locator") else 0
        if offset is None or offset > job["_total"]:
            raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid locator")
        return await run_in_threadpool(self._page, job, offset, int(max_records))

    def _page(self, job: dict[str, Any], offset: int, max_records: int) -> Response:
        """One CSV chunk with its own header row; Sforce-Locator names the next or is "null"."""
        plan = bind(soql.parse(job["_query"]), include_deleted=job["operation"] == "queryAll")
        with self.store.reading() as conn:
            rows = plan.stored_rows(conn, job["id"], offset, offset + max_records)
        end = offset + len(rows)
        text = plan.csv(rows, DELIMITERS[job["columnDelimiter"]], LINE_ENDINGS[job["lineEnding"]])
        headers = {
            "Sforce-NumberOfRecords": str(len(rows)),
            "Sforce-Locator": locator(end) if end < job["_total"] else LAST_LOCATOR,
        }
        return Response(text, media_type="text/csv", headers=headers)
