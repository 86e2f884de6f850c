"""Salesforce REST and Bulk API 2.0 client: SOQL paging, incremental reads, writes, retries and a daily-quota budget."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import itertools
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import quote

import requests
import tenacity

from sync_pipelines.lib import json_codec
from sync_pipelines.vendors.retrying import RetryableResponse, retry_after_seconds, retrying
from sync_pipelines.vendors.salesforce import settings
from sync_pipelines.vendors.salesforce.auth import TokenManager
from sync_pipelines.vendors.token_store import EncryptedTokenStore

log = logging.getLogger(__name__)


class SalesforceApiError(Exception):
    """A request Salesforce refused or that kept failing; `errors` is its error body (salesforce.md §5)."""

    def __init__(self, message: str, status: int | None = None, errors: list[dict] | None = None):
        self.status = status
        self.errors = errors or []
        detail = "; ".join(f"{e.get('errorCode')}: {e.get('message')}" for e in self.errors)
        super().__init__(f"{message}: {detail}" if detail else message)

    @property
    def error_code(self) -> str | None:
        return self.errors[0].get("errorCode") if self.errors else None


class BulkJobFailed(SalesforceApiError):
    """A Bulk API 2.0 query job ended Failed or Aborted, or never finished (salesforce.md §6)."""

    def __init__(self, job_id: str, state: str, error_message: str | None):
        self.job_id = job_id
        self.state = state
        super().__init__(f"Bulk query job {job_id} ended {state}: {error_message or 'no errorMessage'}")


@dataclasses.dataclass(frozen=True)
class Position:
    """Where an ordered read has got to: every row at or before (SystemModstamp, Id) has been delivered.

    salesforce.md §3.2: many rows share one SystemModstamp second, so the Id breaks the tie and a
    resumed read continues exactly after the last delivered row.
    """

    system_modstamp: dt.datetime
    id: str | None = None

    @classmethod
    def of(cls, record: dict) -> Position:
        return cls(_parse_datetime(record[settings.CURSOR_FIELD]), record["Id"])

    def as_dict(self) -> dict[str, str | None]:
        """JSON-ready, for a Dagster cursor."""
        return {"system_modstamp": self.system_modstamp.isoformat(), "id": self.id}

    @classmethod
    def from_dict(cls, value: dict) -> Position:
        return cls(_parse_datetime(value["system_modstamp"]), value.get("id"))


class SalesforceQuotaBudgetReached(Exception):
    """The org has used the share of its daily API requests this client may use (salesforce.md §5).

    Raised before the call that would pass the budget, or when Salesforce refuses a call because the
    daily limit is spent. `position` is where an incremental read stopped (None if nothing was delivered
    or the call was not an incremental read): resume with changed_since(since=position, overlap=0).
    """

    def __init__(self, used: int | None, limit: int | None, budget: int | None, position: Position | None = None):
        self.used = used
        self.limit = limit
        self.budget = budget
        self.position = position
        super().__init__(f"Salesforce daily API budget reached: {used}/{limit} used, budget {budget}")


@dataclasses.dataclass(frozen=True)
class ApiUsage:
    """One Sforce-Limit-Info header (salesforce.md §2): the org's daily usage and, if set, the app's."""

    used: int
    limit: int
    app_name: str | None = None
    app_used: int | None = None
    app_limit: int | None = None


_API_USAGE = re.compile(r"(?:^|;)\s*api-usage=(\d+)/(\d+)")
_APP_USAGE = re.compile(r"per-app-api-usage=(\d+)/(\d+)\(appName=([^)]*)\)")


def parse_limit_info(header: str | None) -> ApiUsage | None:
    """`api-usage=25/5000; per-app-api-usage=17/250(appName=my-app)` -> ApiUsage (salesforce.md §2)."""
    match = _API_USAGE.search(header or "")
    if match is None:
        return None
    app = _APP_USAGE.search(header)
    if app is None:
        return ApiUsage(int(match[1]), int(match[2]))
    return ApiUsage(int(match[1]), int(match[2]), app[3], int(app[1]), int(app[2]))


@dataclasses.dataclass
class SalesforceStats:
    """What this client has spent, for run metadata and for deciding whether to defer work."""

    rest_calls: int = 0
    bulk_calls: int = 0
    bytes_received: int = 0
    retries: int = 0
    session_refreshes: int = 0
    bulk_fallbacks: int = 0
    api_used: int | None = None  # the org's DailyApiRequests used, from the last Sforce-Limit-Info
    api_limit: int | None = None


@dataclasses.dataclass(frozen=True)
class RecordResult:
    """The outcome for one record of a write (salesforce.md §4.1, §4.2); `errors` use `statusCode`."""

    id: str | None
    success: bool
    errors: list[dict] = dataclasses.field(default_factory=list)
    created: bool = False


class SalesforceClient:
    """One org's REST and Bulk 2.0 APIs; safe to share between threads."""

    def __init__(
        self,
        login_url: str,
        client_id: str,
        client_secret: str,
        token_store: EncryptedTokenStore,
        grant: str = "refresh_token",
        api_version: str = settings.API_VERSION,
        batch_size: int = settings.MAX_BATCH_SIZE,
        bulk_threshold: int = settings.BULK_THRESHOLD_ROWS,
        bulk_page_records: int = settings.BULK_PAGE_RECORDS,
        bulk_job_timeout: float = settings.BULK_JOB_TIMEOUT_SECONDS,
        quota_share: float = settings.QUOTA_SHARE,
        timeout: float = 30,
        max_attempts: int = 8,
        organization_id: str | None = None,
    ) -> None:
        if not settings.MIN_BATCH_SIZE <= batch_size <= settings.MAX_BATCH_SIZE:
            raise ValueError(
                f"batch_size must be within {settings.MIN_BATCH_SIZE}..{settings.MAX_BATCH_SIZE} (salesforce.md §3.1)"
            )
        if not 0 < quota_share <= 1:
            raise ValueError("quota_share must be within (0, 1]")
        self._auth = TokenManager(
            login_url, client_id, client_secret, token_store, grant, timeout, organization_id=organization_id
        )
        self._data_path = f"/services/data/v{api_version}"
        self._batch_size = batch_size
        self._bulk_threshold = bulk_threshold
        self._bulk_page_records = bulk_page_records
        self._bulk_job_timeout = bulk_job_timeout
        self._quota_share = quota_share
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._session = requests.Session()
        # salesforce.md §2: names this client in the org's API usage reports.
        self._session.headers["Sforce-Call-Options"] = settings.CALL_OPTIONS
        self._stats = SalesforceStats()
        self._stats_lock = threading.Lock()
        self._describes: dict[str, dict[str, str]] = {}

    @property
    def stats(self) -> SalesforceStats:
        with self._stats_lock:
            return dataclasses.replace(self._stats)

    # ---- reads -------------------------------------------------------------------------------------------

    def query_pages(self, soql: str) -> Iterator[list[dict]]:
        """Live rows of a SOQL query, page by page, following nextRecordsUrl (salesforce.md §3.1)."""
        return self._pages("query", soql)

    def query_all_pages(self, soql: str) -> Iterator[list[dict]]:
        """Like query_pages, including soft-deleted rows (IsDeleted = true) from the Recycle Bin (§3.1)."""
        return self._pages("queryAll", soql)

    def changed_since(
        self,
        sobject: str,
        fields: Sequence[str],
        since: Position | None = None,
        overlap: dt.timedelta = settings.INCREMENTAL_OVERLAP,
        include_deleted: bool = False,
        where: str | None = None,
        until: dt.datetime | None = None,
    ) -> Iterator[list[dict]]:
        """Rows changed at or after `since` minus `overlap` (and before `until`), in pages ordered by
        (SystemModstamp, Id).

        salesforce.md §3.2: `>=` on SystemModstamp plus an overlap re-reads rows committed late, which
        are deduplicated downstream; with overlap=0 a Position resumes exactly after its row. The first
        REST page's totalSize picks the API: above `bulk_threshold` rows the rest is read by a Bulk job
        (§6), and if that job fails the read goes on over REST from the last delivered row, so no row
        is lost. Records are plain field dicts (no `attributes`) whichever API served them.
        """
        fields = _with_fields(fields, ["Id", settings.CURSOR_FIELD] + (["IsDeleted"] if include_deleted else []))
        resource = "queryAll" if include_deleted else "query"
        if until is not None:
            before = f"{settings.CURSOR_FIELD} < {_literal(until)}"
            where = f"({where}) AND {before}" if where else before
        last: Position | None = None
        try:
            bodies = self._query_bodies(resource, _soql(sobject, fields, where, _lower_bound(since, overlap)))
            first = next(bodies)
            bulk = not first["done"] and first["totalSize"] > self._bulk_threshold
            for body in itertools.chain([first], () if bulk else bodies):
                if body["records"]:
                    yield body["records"]
                    last = Position.of(body["records"][-1])
            if not bulk:
                return
            bodies.close()
            try:
                # Kept ordered, unlike §6's advice, so the position stays resumable; the range is on the
                # indexed SystemModstamp (§3.2).
                for rows in self.bulk_query(_soql(sobject, fields, where, _after(last)), include_deleted):
                    yield rows
                    last = Position.of(rows[-1])
                return
            except SalesforceApiError as exc:
                with self._stats_lock:
                    self._stats.bulk_fallbacks += 1
                log.warning("Bulk read of %s failed (%s); reading on over REST after %s", sobject, exc, last)
            for records in self._pages(resource, _soql(sobject, fields, where, _after(last))):
                yield records
                last = Position.of(records[-1])
        except SalesforceQuotaBudgetReached as exc:
            exc.position = last
            raise

    def bulk_query(self, soql: str, include_deleted: bool = False) -> Iterator[list[dict]]:
        """Run a Bulk API 2.0 query job and yield its CSV result pages as dicts (salesforce.md §6).

        Values are typed back to what REST returns, using the object's describe (empty is null);
        raises BulkJobFailed when the job ends Failed or Aborted or outlives `bulk_job_timeout`.
        """
        jobs = f"{self._data_path}/jobs/query"
        created = self._request(
            "POST",
            jobs,
            json={
                "operation": "queryAll" if include_deleted else "query",
                "query": soql,
                "contentType": "CSV",
                "columnDelimiter": "COMMA",
                "lineEnding": "LF",
            },
        )
        job = json_codec.response_json(created)
        self._await_job(f"{jobs}/{job['id']}")
        # salesforce.md §6: the job info names the queried object, whose describe types the CSV columns.
        types = self._field_types(job["object"])
        locator = None
        while True:
            params = {"maxRecords": self._bulk_page_records, **({"locator": locator} if locator else {})}
            response = self._request(
                "GET", f"{jobs}/{job['id']}/results", params=params, headers={"Accept": "text/csv"}
            )
            rows = _csv_rows(response.content, types)
            if rows:
                yield rows
            locator = response.headers.get("Sforce-Locator")
            # salesforce.md §6: the literal string "null" (or no header) marks the last page.
            if not locator or locator == "null":
                return

    # ---- writes ------------------------------------------------------------------------------------------

    def update(self, sobject: str, record_id: str, fields: dict) -> None:
        """PATCH one record's fields (salesforce.md §4.1: 204, no body)."""
        self._request("PATCH", f"{self._data_path}/sobjects/{sobject}/{record_id}", json=fields)

    def upsert(self, sobject: str, external_field: str, value: str, fields: dict) -> RecordResult:
        """Insert or update the record whose external id is `value` (salesforce.md §4.1).

        201 created, 200 updated; several matches (300) raise SalesforceApiError with status 300.
        """
        # salesforce.md §4.1: the value is a path segment and must be URL-encoded.
        path = f"{self._data_path}/sobjects/{sobject}/{external_field}/{quote(str(value), safe='')}"
        response = self._request("PATCH", path, json=fields)
        body = json_codec.response_json(response) if response.content else {}
        created = bool(body.get("created", response.status_code == 201))
        return RecordResult(body.get("id"), True, body.get("errors", []), created)

    def collection_update(self, sobject: str, records: Iterable[dict], all_or_none: bool = False) -> list[RecordResult]:
        """Update records by Id through sObject Collections, 200 per call, one result per record in order.

        salesforce.md §4.2: the call answers 200 even when some records fail; each result says which.
        """
        records = list(records)
        results: list[RecordResult] = []
        for start in range(0, len(records), settings.COLLECTION_CHUNK):
            chunk = records[start : start + settings.COLLECTION_CHUNK]
            if any(not record.get("Id") for record in chunk):
                raise ValueError("every record of a collection update needs its Id (salesforce.md §4.2)")
            body = {
                "allOrNone": all_or_none,
                "records": [{"attributes": {"type": sobject}, **record} for record in chunk],
            }
            items = json_codec.response_json(self._request("PATCH", f"{self._data_path}/composite/sobjects", json=body))
            results.extend(
                RecordResult(item.get("id") or record["Id"], bool(item.get("success")), item.get("errors", []))
                for record, item in zip(chunk, items, strict=True)
            )
        return results

    # ---- plumbing ----------------------------------------------------------------------------------------

    def _query_bodies(self, resource: str, soql: str) -> Iterator[dict]:
        """Query response bodies, records without `attributes`, following nextRecordsUrl verbatim (§3.1)."""
        # salesforce.md §3.1: a preference; the server may return fewer rows per batch.
        headers = {"Sforce-Query-Options": f"batchSize={self._batch_size}"}
        response = self._request("GET", f"{self._data_path}/{resource}", params={"q": soql}, headers=headers)
        while True:
            body = json_codec.response_json(response)
            body["records"] = [_plain(record) for record in body["records"]]
            yield body
            if body["done"] or not body.get("nextRecordsUrl"):
                return
            response = self._request("GET", body["nextRecordsUrl"], headers=headers)

    def _pages(self, resource: str, soql: str) -> Iterator[list[dict]]:
        for body in self._query_bodies(resource, soql):
            if body["records"]:
                yield body["records"]

    def _field_types(self, sobject: str) -> dict[str, str]:
        """Lower-cased field name -> describe type (salesforce.md §4.1), once per object and client.

        §11: a field added later in the run is missed; its CSV values just stay strings.
        """
        if sobject not in self._describes:
            body = json_codec.response_json(self._request("GET", f"{self._data_path}/sobjects/{sobject}/describe"))
            self._describes[sobject] = {field["name"].lower(): field["type"] for field in body["fields"]}
        return self._describes[sobject]

    def _await_job(self, job_path: str) -> None:
        """Poll a Bulk job with backoff until it ends (salesforce.md §6: 0.5 s growing to 2 s)."""
        poll = tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda job: job["state"] not in settings.BULK_TERMINAL_STATES),
            wait=tenacity.wait_exponential(
                multiplier=settings.BULK_POLL_FIRST_SECONDS,
                min=settings.BULK_POLL_FIRST_SECONDS,
                max=settings.BULK_POLL_MAX_SECONDS,
            ),
            stop=tenacity.stop_after_delay(self._bulk_job_timeout),
            retry_error_callback=lambda state: state.outcome.result(),
        )
        job = poll(lambda: json_codec.response_json(self._request("GET", job_path)))
        if job["state"] == "JobComplete":
            return
        if job["state"] not in settings.BULK_TERMINAL_STATES:
            # salesforce.md §6: abort what we no longer wait for, so the org stops working on it.
            self._request("PATCH", job_path, json={"state": "Aborted"})
        raise BulkJobFailed(job["id"], job["state"], job.get("errorMessage"))

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        """One API call with retries, a single session renewal on 401, and the quota budget checked first."""
        bulk = "/jobs/" in path
        state = {"attempt": 0, "renewed": False}

        def attempt() -> requests.Response:
            state["attempt"] += 1
            if state["attempt"] > 1:
                self._count(retries=1)
            response = self._send(method, path, bulk, kwargs)
            if response.status_code == 401 and _error_code(response) == "INVALID_SESSION_ID" and not state["renewed"]:
                # salesforce.md §5: refresh the session and retry once; a second 401 is final.
                state["renewed"] = True
                self._auth.renew_rejected(response.request.headers["Authorization"].removeprefix("Bearer "))
                self._count(retries=1, session_refreshes=1)
                response = self._send(method, path, bulk, kwargs)
            return self._check(response)

        policy = retrying(
            self._max_attempts,
            before_sleep=lambda rs: log.warning(
                "Salesforce %s %s failed (%s); retrying", method, path, rs.outcome.exception()
            ),
        )
        try:
            return policy(attempt)
        except RetryableResponse as exc:
            raise SalesforceApiError(
                f"Salesforce {method} {path} kept failing", exc.response.status_code, _errors(exc.response)
            ) from None
        except requests.RequestException as exc:
            raise SalesforceApiError(f"Salesforce {method} {path} kept failing: {exc}") from exc

    def _send(self, method: str, path: str, bulk: bool, kwargs: dict) -> requests.Response:
        self._check_budget()
        session = self._auth.session()
        headers = {**kwargs.get("headers", {}), "Authorization": f"Bearer {session.access_token}"}
        response = self._session.request(
            method,
            session.instance_url + path,
            params=kwargs.get("params"),
            json=kwargs.get("json"),
            headers=headers,
            timeout=self._timeout,
        )
        usage = parse_limit_info(response.headers.get("Sforce-Limit-Info"))
        with self._stats_lock:
            if bulk:
                self._stats.bulk_calls += 1
            else:
                self._stats.rest_calls += 1
            self._stats.bytes_received += len(response.content)
            if usage is not None:
                self._stats.api_used, self._stats.api_limit = usage.used, usage.limit
        return response

    def _check_budget(self) -> None:
        with self._stats_lock:
            used, limit = self._stats.api_used, self._stats.api_limit
        if used is None or limit is None:
            return
        budget = int(limit * self._quota_share)
        if used >= budget:
            raise SalesforceQuotaBudgetReached(used, limit, budget)

    def _check(self, response: requests.Response) -> requests.Response:
        status = response.status_code
        # salesforce.md §4.1: 300 is an upsert whose external id matched several records.
        if status < 300:
            return response
        errors = _errors(response)
        code = errors[0].get("errorCode") if errors else None
        if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
            # salesforce.md §5, §11: the daily total means stop for today; concurrent limits clear soon.
            if "TotalRequests" in (errors[0].get("message") or ""):
                with self._stats_lock:
                    used, limit = self._stats.api_used, self._stats.api_limit
                raise SalesforceQuotaBudgetReached(
                    used, limit, None if limit is None else int(limit * self._quota_share)
                )
            raise RetryableResponse(response, retry_after_seconds(response))
        if status == 429 or status >= 500 or code in settings.RETRYABLE_ERROR_CODES:
            raise RetryableResponse(response, retry_after_seconds(response))
        raise SalesforceApiError(
            f"Salesforce {response.request.method} {response.url} answered {status}", status, errors
        )

    def _count(self, retries: int = 0, session_refreshes: int = 0) -> None:
        with self._stats_lock:
            self._stats.retries += retries
            self._stats.session_refreshes += session_refreshes


def _errors(response: requests.Response) -> list[dict]:
    """salesforce.md §5: the error body is a JSON array of {message, errorCode, fields}."""
    try:
        body = json_codec.response_json(response)
    except ValueError:
        return [{"errorCode": None, "message": response.text[:500]}] if response.text else []
    if isinstance(body, list):
        return [item for item in body if isinstance(item, dict)]
    return [body] if isinstance(body, dict) else []


def _error_code(response: requests.Response) -> str | None:
    errors = _errors(response)
    return errors[0].get("errorCode") if errors else None


def _plain(record: dict) -> dict:
    """A REST record without its `attributes` (type and URL), to match a Bulk CSV row (salesforce.md §3.1)."""
    return {name: value for name, value in record.items() if name != "attributes"}


def _csv_rows(content: bytes, types: dict[str, str]) -> list[dict]:
    # salesforce.md §6, §11: results may contain NUL bytes, which the csv module rejects.
    text = content.decode("utf-8").replace("\x00", "")
    return [
        {name: _typed(types.get(name.lower()), value) for name, value in row.items()}
        for row in csv.DictReader(io.StringIO(text, newline=""))
    ]


def _typed(kind: str | None, value: str) -> object:
    # salesforce.md §6: null is an empty field; booleans are true/false.
    if value == "":
        return None
    if kind in settings.BOOLEAN_TYPES:
        return value == "true"
    if kind in settings.INTEGER_TYPES:
        return int(value)
    if kind in settings.NUMBER_TYPES:
        return float(value)
    if kind in settings.DATETIME_TYPES:
        # CSV may write "...Z" where REST writes "...+0000"; one form whichever API served the row.
        return _parse_datetime(value).astimezone(dt.UTC).strftime(settings.DATETIME_FORMAT)
    return value


def _parse_datetime(value: str) -> dt.datetime:
    # salesforce.md §2: "2024-01-15T10:20:30.000+0000"; fromisoformat also takes "Z" and "+00:00".
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _literal(moment: dt.datetime) -> str:
    """salesforce.md §2: SOQL datetime literals are unquoted ISO-8601 with a zone."""
    return moment.astimezone(dt.UTC).strftime(settings.SOQL_DATETIME_FORMAT)


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _lower_bound(since: Position | None, overlap: dt.timedelta) -> str | None:
    if since is None:
        return None
    if since.id is not None and overlap == dt.timedelta(0):
        return _after(since)
    return f"{settings.CURSOR_FIELD} >= {_literal(since.system_modstamp - overlap)}"


def _after(position: Position) -> str:
    """Rows strictly after `position` in (SystemModstamp, Id) order (salesforce.md §3.2's tie-break pattern)."""
    stamp, field = _literal(position.system_modstamp), settings.CURSOR_FIELD
    return f"({field} > {stamp} OR ({field} = {stamp} AND Id > {_quoted(position.id)}))"


def _soql(sobject: str, fields: Sequence[str], where: str | None, bound: str | None) -> str:
    conditions = [f"({where})" if where else None, bound]
    condition = " AND ".join(c for c in conditions if c)
    return (
        f"SELECT {', '.join(fields)} FROM {sobject}"
        + (f" WHERE {condition}" if condition else "")
        + f" ORDER BY {settings.CURSOR_FIELD} ASC, Id ASC"
    )


def _with_fields(fields: Sequence[str], required: list[str]) -> list[str]:
    chosen = list(dict.fromkeys(fields))
    return chosen + [name for name in required if name not in chosen]
