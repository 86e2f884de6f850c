"""The REST API of https://api.intercom.io, served at {base}/intercom.

Every call passes one gate (`Api.gated`): bearer token (401 `unauthorized`, no rate-limit headers), the
10-second window (429 `rate_limit_exceeded`), the Intercom-Version header, then the handler; every
authenticated answer carries X-RateLimit-Limit/Remaining/Reset (intercom.md §1-§3). Store work runs in a worker
thread so one large page does not stall the event loop.
"""

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sync_pipelines.sandbox.intercom.errors import (
    IntercomError,
    bad_request,
    company_not_found,
    not_found,
    parameter_invalid,
    unauthorized,
)
from sync_pipelines.sandbox.intercom.render import segment_json, tag_json
from sync_pipelines.sandbox.intercom.search import CONTACTS, CONVERSATIONS, Compiler, keyset_page, per_page
from sync_pipelines.sandbox.intercom.workspace import IntercomWorkspace, now_s
from sync_pipelines.sandbox.store import dumps

PINNED_VERSION = "2.16"
# intercom.md §1: the Intercom-Version enum of the 2.16 spec; omitted means the app's version (2.16 here).
VERSIONS = frozenset(["1.0", "1.1", "1.2", "1.3", "1.4"] + [f"2.{minor}" for minor in range(17)])
COMPANIES_PER_PAGE = 15  # intercom.md §6: companies lists default to 15
COMPANIES_LIST_CAP = 10_000  # intercom.md §6: POST /companies/list reaches at most 10,000 companies
Handler = Callable[[Request], Awaitable[Response]]


def json_response(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status, media_type="application/json")


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise bad_request("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def _page_number(value: Any, name: str, default: int, maximum: int | None = None) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise parameter_invalid(f"{name} must be an integer", name) from None
    if number < 1 or (maximum is not None and number > maximum):
        raise parameter_invalid(f"{name} must be at least 1" + (f" and at most {maximum}" if maximum else ""), name)
    return number


class Api:
    def __init__(self, workspace: IntercomWorkspace):
        self.ws = workspace
        self.store, self.renderer, self.writer = workspace.store, workspace.renderer, workspace.writer

    def gated(self, handler: Handler) -> Handler:
        """Wrap a handler in the checks every call gets, in Intercom's order."""

        async def endpoint(request: Request) -> Response:
            if request.headers.get("authorization", "") != f"Bearer {self.ws.access_token}":
                return unauthorized().response()  # intercom.md §3: no rate-limit headers without credentials
            allowed, headers = self.ws.limiter.take()
            try:
                if not allowed:
                    raise IntercomError(
                        429, "rate_limit_exceeded", f"Exceeded rate limit of {self.ws.limiter.limit} in 10_seconds"
                    )
                version = request.headers.get("intercom-version", PINNED_VERSION)
                if version not in VERSIONS:
                    # intercom.md §1: the enum of versions; the code is the spec's, the message unconfirmed.
                    raise IntercomError(400, "intercom_version_invalid", f"Requested version {version!r} is invalid")
                response = await handler(request)
            except IntercomError as exc:
                response = exc.response()
            response.headers.update(headers)
            return response

        return endpoint

    def routes(self) -> list[Route]:
        g = self.gated
        return [
            Route("/me", g(self.me), methods=["GET"]),
            Route("/admins", g(self.admins), methods=["GET"]),
            Route("/admins/{admin_id}", g(self.admin), methods=["GET"]),
            Route("/contacts", g(self.contacts), methods=["GET", "POST"]),
            Route("/contacts/search", g(self.search_contacts), methods=["POST"]),
            Route("/contacts/find_by_external_id/{external_id}", g(self.contact_by_external_id), methods=["GET"]),
            Route("/contacts/{contact_id}", g(self.contact), methods=["GET", "PUT", "DELETE"]),
            Route("/contacts/{contact_id}/archive", g(self.archive), methods=["POST"]),
            Route("/contacts/{contact_id}/unarchive", g(self.unarchive), methods=["POST"]),
            Route("/contacts/{contact_id}/tags", g(self.contact_tags), methods=["GET", "POST"]),
            Route("/contacts/{contact_id}/tags/{tag_id}", g(self.untag_contact), methods=["DELETE"]),
            Route("/contacts/{contact_id}/companies", g(self.contact_companies), methods=["GET", "POST"]),
            Route("/contacts/{contact_id}/companies/{company_id}", g(self.detach_company), methods=["DELETE"]),
            Route("/contacts/{contact_id}/segments", g(self.contact_segments), methods=["GET"]),
            Route("/companies", g(self.companies), methods=["GET", "POST"]),
            Route("/companies/list", g(self.list_companies), methods=["POST"]),
            Route("/companies/scroll", g(self.scroll_companies), methods=["GET"]),
            Route("/companies/{company_id}", g(self.company), methods=["GET", "PUT", "DELETE"]),
            Route("/companies/{company_id}/contacts", g(self.company_contacts), methods=["GET"]),
            Route("/companies/{company_id}/segments", g(self.company_segments), methods=["GET"]),
            Route("/tags", g(self.tags), methods=["GET", "POST"]),
            Route("/tags/{tag_id}", g(self.tag), methods=["GET", "DELETE"]),
            Route("/segments", g(self.segments), methods=["GET"]),
            Route("/segments/{segment_id}", g(self.segment), methods=["GET"]),
            Route("/conversations", g(self.conversations), methods=["GET"]),
            Route("/conversations/search", g(self.search_conversations), methods=["POST"]),
            Route("/conversations/{conversation_id}", g(self.conversation), methods=["GET"]),
        ]

    # -- plumbing -----------------------------------------------------------------------------

    async def read(self, work: Callable[[Any], Any]) -> Any:
        """Run work(conn) on the store in a worker thread."""

        def run() -> Any:
            with self.store.reading() as conn:
                return work(conn)

        return await run_in_threadpool(run)

    async def write(self, work: Callable[[Any, int], Any]) -> Any:
        """Run work(conn, now) in one transaction in a worker thread."""

        def run() -> Any:
            with self.store.transaction() as conn:
                return work(conn, now_s())

        return await run_in_threadpool(run)

    # -- admins (intercom.md §7) --------------------------------------------------------------

    async def me(self, request: Request) -> Response:
        def work(conn: Any) -> dict[str, Any]:
            admin = self.writer.admin_row(conn, self.ws.me)["data"]
            return {
                "type": "admin",
                "id": admin["id"],
                "email": admin["email"],
                "name": admin["name"],
                "email_verified": True,
                "app": {
                    "type": "app",
                    "id_code": self.ws.app_id,
                    "name": "Sandbox workspace",
                    "created_at": 1_700_000_000,
                    "secure": False,
                    "identity_verification": False,
                    "timezone": self.ws.timezone.key,
                    "region": "US",
                },
                "avatar": {"type": "avatar", "image_url": None},
                "has_inbox_seat": admin["has_inbox_seat"],
            }

        return json_response(await self.read(work))

    async def admins(self, request: Request) -> Response:
        def work(conn: Any) -> list[dict[str, Any]]:
            return [row["data"] for row in self.store.dicts(conn.execute("SELECT * FROM ic_admins ORDER BY id"))]

        return json_response({"type": "admin.list", "admins": await self.read(work)})

    async def admin(self, request: Request) -> Response:
        admin_id = request.path_params["admin_id"]
        return json_response(await self.read(lambda conn: self.writer.admin_row(conn, admin_id)["data"]))

    # -- contacts (intercom.md §5) ------------------------------------------------------------

    async def contacts(self, request: Request) -> Response:
        if request.method == "POST":
            body = await json_body(request)
            return json_response(await self.write(lambda conn, now: self._created_contact(conn, body, now)))
        size = per_page(request.query_params.get("per_page"), CONTACTS.default_per_page)
        cursor = request.query_params.get("starting_after")
        return json_response(await self.read(lambda conn: self._contact_page(conn, "c.archived = 0", [], cursor, size)))

    def _created_contact(self, conn: Any, body: dict[str, Any], now: int) -> dict[str, Any]:
        return self.renderer.contact(conn, self.writer.create_contact(conn, body, now))

    def _contact_page(
        self, conn: Any, where: str, params: list[Any], cursor: Any, size: int, sort: tuple[str, bool] = ("c.id", False)
    ) -> dict[str, Any]:
        page = keyset_page(conn, CONTACTS, where, params, sort[0], sort[1], cursor, size)
        return {
            "type": "list",
            "data": self.renderer.contacts(conn, page.rows),
            "total_count": page.total,
            "pages": page.pages,
        }

    async def search_contacts(self, request: Request) -> Response:
        """Query, sort and pagination all come from the JSON body; a query-string starting_after is ignored
        (intercom.md §4)."""
        body = await json_body(request)
        compiler = Compiler(CONTACTS, self.ws.timezone)
        condition, params = compiler.compile(body.get("query"))
        sort = compiler.sort(body.get("sort"))
        pagination = body.get("pagination") or {}
        if not isinstance(pagination, dict):
            raise parameter_invalid("pagination must be an object", "pagination")
        size = per_page(pagination.get("per_page"), CONTACTS.default_per_page)
        where = f"c.archived = 0 AND {condition}"
        return json_response(
            await self.read(
                lambda conn: self._contact_page(conn, where, params, pagination.get("starting_after"), size, sort)
            )
        )

    async def contact_by_external_id(self, request: Request) -> Response:
        external_id = request.path_params["external_id"]

        def work(conn: Any) -> dict[str, Any]:
            row = conn.execute(
                "SELECT id FROM ic_contacts WHERE archived = 0 AND json_extract(data, '$.external_id') = ?",
                (external_id,),
            ).fetchone()
            if row is None:
                raise not_found("User Not Found")
            return self.renderer.contact(conn, row[0])

        return json_response(await self.read(work))

    async def contact(self, request: Request) -> Response:
        contact_id = request.path_params["contact_id"]
        if request.method == "PUT":
            body = await json_body(request)

            def update(conn: Any, now: int) -> dict[str, Any]:
                self._live_contact(conn, contact_id)
                self.writer.update_contact(conn, contact_id, body, now)
                return self.renderer.contact(conn, contact_id)

            return json_response(await self.write(update))
        if request.method == "DELETE":
            return json_response(await self.write(lambda conn, now: self.writer.delete_contact(conn, contact_id, now)))
        return json_response(await self.read(lambda conn: self._live_contact(conn, contact_id)))

    def _live_contact(self, conn: Any, contact_id: str) -> dict[str, Any]:
        """A contact that is not archived (archived contacts are out of reach until unarchived). An unknown one is
        404 not_found "User Not Found", which the 2.16 description's text promises for GET /contacts/{id} and its
        examples show for every /contacts/{id}/... path, though this operation does not declare it (DEVIATIONS.md)."""
        row = self.writer.contact_row(conn, contact_id)
        if row["archived"]:
            raise not_found("User Not Found")
        return self.renderer.contacts(conn, [row])[0]

    async def archive(self, request: Request) -> Response:
        contact_id = request.path_params["contact_id"]
        return json_response(await self.write(lambda conn, now: self.writer.set_archived(conn, contact_id, True, now)))

    async def unarchive(self, request: Request) -> Response:
        contact_id = request.path_params["contact_id"]
        return json_response(await self.write(lambda conn, now: self.writer.set_archived(conn, contact_id, False, now)))

    async def contact_tags(self, request: Request) -> Response:
        contact_id = request.path_params["contact_id"]
        if request.method == "POST":
            body = await json_body(request)
            return json_response(
                await self.write(
                    lambda conn, now: self.writer.tag(conn, "contact", contact_id, body.get("id"), now, self.ws.me)
                )
            )

        def work(conn: Any) -> dict[str, Any]:
            self.writer.contact_row(conn, contact_id)
            rows = conn.execute(
                "SELECT t.id, t.name, g.applied_at, g.applied_by FROM ic_taggings g JOIN ic_tags t ON t.id = g.tag_id "
                "WHERE g.kind = 'contact' AND g.target_id = ? ORDER BY g.applied_at, t.id",
                (contact_id,),
            ).fetchall()
            return {"type": "list", "data": [tag_json(*row) for row in rows]}

        return json_response(await self.read(work))

    async def untag_contact(self, request: Request) -> Response:
        contact_id, tag_id = request.path_params["contact_id"], request.path_params["tag_id"]
        return json_response(
            await self.write(lambda conn, now: self.writer.untag(conn, "contact", contact_id, tag_id, now))
        )

    async def contact_companies(self, request: Request) -> Response:
        contact_id = request.path_params["contact_id"]
        if request.method == "POST":
            body = await json_body(request)

            def attach(conn: Any, now: int) -> dict[str, Any]:
                self.writer.attach(conn, contact_id, body.get("id"), now)
                return self.renderer.company(conn, body["id"])

            return json_response(await self.write(attach))

        def work(conn: Any) -> dict[str, Any]:
            self.writer.contact_row(conn, contact_id)
            rows = self.store.dicts(
                conn.execute(
                    "SELECT c.* FROM ic_links l JOIN ic_companies c ON c.id = l.company_id WHERE l.contact_id = ? "
                    "ORDER BY l.created_at, c.id",
                    (contact_id,),
                )
            )
            # The spec's example answer (its schema says `companies`; the example, recorded, says `data`).
            return {
                "type": "list",
                "data": self.renderer.companies(conn, rows),
                "pages": {"type": "pages", "next": None, "page": 1, "per_page": 50, "total_pages": 1},
                "total_count": len(rows),
            }

        return json_response(await self.read(work))

    async def detach_company(self, request: Request) -> Response:
        contact_id, company_id = request.path_params["contact_id"], request.path_params["company_id"]

        def detach(conn: Any, now: int) -> dict[str, Any]:
            self.writer.detach(conn, contact_id, company_id, now)
            return self.renderer.company(conn, company_id)

        return json_response(await self.write(detach))

    async def contact_segments(self, request: Request) -> Response:
        return await self._segments_of(request, "contact", request.path_params["contact_id"], self.writer.contact_row)

    # -- companies (intercom.md §6) -----------------------------------------------------------

    async def companies(self, request: Request) -> Response:
        """POST: create-or-update by company_id. GET: one by company_id or name (as a list, per the spec's
        schema), else all, optionally by tag_id or segment_id, in pages of `per_page` (default 15)."""
        if request.method == "POST":
            body = await json_body(request)

            def upsert(conn: Any, now: int) -> dict[str, Any]:
                return self.renderer.company(conn, self.writer.upsert_company(conn, body, now))

            return json_response(await self.write(upsert))
        query = request.query_params
        page = _page_number(query.get("page"), "page", 1)
        size = _page_number(query.get("per_page"), "per_page", COMPANIES_PER_PAGE, 150)
        if "company_id" in query or "name" in query:
            column, value = ("company_id", query["company_id"]) if "company_id" in query else ("name", query["name"])
            expression = "company_id" if column == "company_id" else "json_extract(data, '$.name')"

            def one(conn: Any) -> dict[str, Any]:
                rows = self.store.dicts(
                    conn.execute(f"SELECT * FROM ic_companies WHERE {expression} = ? ORDER BY id LIMIT 1", (value,))
                )
                if not rows:
                    raise company_not_found()
                return self._company_list(conn, rows, 1, 1, 1, request)

            return json_response(await self.read(one))
        where, params = "1", []
        if "tag_id" in query:
            where = "id IN (SELECT target_id FROM ic_taggings WHERE kind = 'company' AND tag_id = ?)"
            params = [query["tag_id"]]
        elif "segment_id" in query:
            where = "id IN (SELECT target_id FROM ic_members WHERE kind = 'company' AND segment_id = ?)"
            params = [query["segment_id"]]

        def listing(conn: Any) -> dict[str, Any]:
            total = conn.execute(f"SELECT COUNT(*) FROM ic_companies WHERE {where}", params).fetchone()[0]
            rows = self.store.dicts(
                conn.execute(
                    f"SELECT * FROM ic_companies WHERE {where} ORDER BY id LIMIT ? OFFSET ?",
                    [*params, size, (page - 1) * size],
                )
            )
            return self._company_list(conn, rows, total, page, size, request)

        return json_response(await self.read(listing))

    def _company_list(
        self, conn: Any, rows: list[dict[str, Any]], total: int, page: int, size: int, request: Request
    ) -> dict[str, Any]:
        """A page-number list (intercom.md §4 pattern 2); `next` is the next page's URL, null on the last, as the
        real API answers (PostHog/posthog#62131; the description's own examples show null) where the 2.16
        description's schema says a cursor object (DEVIATIONS.md)."""
        total_pages = math.ceil(total / size)
        next_url = None
        if page < total_pages:
            next_url = str(request.url.include_query_params(page=page + 1, per_page=size))
        return {
            "type": "list",
            "data": self.renderer.companies(conn, rows),
            "pages": {"type": "pages", "next": next_url, "page": page, "per_page": size, "total_pages": total_pages},
            "total_count": total,
        }

    async def list_companies(self, request: Request) -> Response:
        """Companies with at least one contact, by last_request_at (desc by default); paging past the
        10,000th company is a 400 (intercom.md §6, §11)."""
        query = request.query_params
        page = _page_number(query.get("page"), "page", 1)
        size = _page_number(query.get("per_page"), "per_page", COMPANIES_PER_PAGE, 150)
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise parameter_invalid("order must be asc or desc", "order")
        offset = (page - 1) * size
        if offset >= COMPANIES_LIST_CAP:
            # Status per intercom.md §11; code and text unconfirmed.
            raise bad_request(f"page limit reached: at most {COMPANIES_LIST_CAP} companies can be listed; use scroll")
        where = "EXISTS (SELECT 1 FROM ic_links l WHERE l.company_id = ic_companies.id)"
        direction = "DESC" if order == "desc" else "ASC"

        def work(conn: Any) -> dict[str, Any]:
            total = conn.execute(f"SELECT COUNT(*) FROM ic_companies WHERE {where}").fetchone()[0]
            rows = self.store.dicts(
                conn.execute(
                    f"SELECT * FROM ic_companies WHERE {where} "
                    f"ORDER BY coalesce(last_request_at, 0) {direction}, id {direction} LIMIT ? OFFSET ?",
                    (min(size, COMPANIES_LIST_CAP - offset), offset),
                )
            )
            return self._company_list(conn, rows, total, page, size, request)

        return json_response(await self.read(work))

    async def scroll_companies(self, request: Request) -> Response:
        """intercom.md §6.1: the first call opens the app's one scroll; scroll_param continues it; an empty page
        ends it. Every company is included, with or without contacts."""
        param = request.query_params.get("scroll_param")

        def work(conn: Any) -> dict[str, Any]:
            if param:
                scroll, chunk = self.ws.scrolls.advance(param)
            else:
                ids = [row[0] for row in conn.execute("SELECT id FROM ic_companies ORDER BY id")]
                scroll, chunk = self.ws.scrolls.open(ids)
            found = self.store.dicts(
                conn.execute(f"SELECT * FROM ic_companies WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
            )
            by_id = {row["id"]: row for row in found}
            present = [by_id[company_id] for company_id in chunk if company_id in by_id]  # deleted ones drop out
            return {
                "type": "list",
                "data": self.renderer.companies(conn, present),
                "pages": None,
                "total_count": None,
                "scroll_param": scroll.param,
            }

        return json_response(await self.read(work))

    async def company(self, request: Request) -> Response:
        company_id = request.path_params["company_id"]
        if request.method == "PUT":
            body = await json_body(request)

            def update(conn: Any, now: int) -> dict[str, Any]:
                self.writer.update_company(conn, company_id, body, now)
                return self.renderer.company(conn, company_id)

            return json_response(await self.write(update))
        if request.method == "DELETE":
            return json_response(await self.write(lambda conn, now: self.writer.delete_company(conn, company_id, now)))

        def work(conn: Any) -> dict[str, Any]:
            company = self.renderer.company(conn, company_id)
            if company is None:
                raise company_not_found()
            return company

        return json_response(await self.read(work))

    async def company_contacts(self, request: Request) -> Response:
        company_id = request.path_params["company_id"]
        size = per_page(request.query_params.get("per_page"), CONTACTS.default_per_page)
        cursor = request.query_params.get("starting_after")

        def work(conn: Any) -> dict[str, Any]:
            self.writer.company_row(conn, company_id)
            where = "c.archived = 0 AND c.id IN (SELECT contact_id FROM ic_links WHERE company_id = ?)"
            return self._contact_page(conn, where, [company_id], cursor, size)

        return json_response(await self.read(work))

    async def company_segments(self, request: Request) -> Response:
        return await self._segments_of(request, "company", request.path_params["company_id"], self.writer.company_row)

    async def _segments_of(self, request: Request, kind: str, record_id: str, lookup: Any) -> Response:
        """The segments a contact or company is in (intercom.md §7); an unknown record is a 404."""

        def work(conn: Any) -> dict[str, Any]:
            lookup(conn, record_id)
            rows = self.store.dicts(
                conn.execute(
                    "SELECT s.* FROM ic_members m JOIN ic_segments s ON s.id = m.segment_id "
                    "WHERE m.kind = ? AND m.target_id = ? ORDER BY s.id",
                    (kind, record_id),
                )
            )
            return {"type": "list", "data": [segment_json(row) for row in rows]}

        return json_response(await self.read(work))

    # -- tags (intercom.md §7) ----------------------------------------------------------------

    async def tags(self, request: Request) -> Response:
        if request.method == "POST":
            body = await json_body(request)
            return json_response(await self.write(lambda conn, now: self._tag_operation(conn, body, now)))

        def work(conn: Any) -> dict[str, Any]:
            rows = conn.execute("SELECT id, name FROM ic_tags ORDER BY CAST(id AS INTEGER)").fetchall()
            return {"type": "list", "data": [tag_json(*row) for row in rows]}

        return json_response(await self.read(work))

    def _tag_operation(self, conn: Any, body: dict[str, Any], now: int) -> dict[str, Any]:
        """POST /tags multiplexes create, rename, tag/untag companies and tag users (intercom.md §7)."""
        if "companies" in body or "users" in body:
            tag = self.writer.find_or_create_tag(conn, body.get("name"), now)
            result = {**tag_json(tag["id"], tag["name"]), "users": [], "companies": []}
            for item in body.get("companies") or []:
                company_id = self._company_of(conn, item)
                if isinstance(item, dict) and item.get("untag") is True:
                    self.writer.untag(conn, "company", company_id, tag["id"], now)
                    result["companies"].append({"id": company_id, "tagged": False})
                else:
                    self.writer.tag(conn, "company", company_id, tag["id"], now, self.ws.me)
                    result["companies"].append({"id": company_id, "tagged": True})
            for item in body.get("users") or []:
                contact_id = item.get("id") if isinstance(item, dict) else None
                self.writer.tag(conn, "contact", str(contact_id), tag["id"], now, self.ws.me)
                result["users"].append({"id": contact_id, "tagged": True})
            return result
        if body.get("id") is not None:
            tag = self.writer.rename_tag(conn, body["id"], body.get("name"))
        else:
            tag = self.writer.find_or_create_tag(conn, body.get("name"), now)
        return tag_json(tag["id"], tag["name"])

    def _company_of(self, conn: Any, item: Any) -> str:
        """A company named by {"id"} (Intercom's) or {"company_id"} (yours)."""
        if isinstance(item, dict) and item.get("id"):
            return self.writer.company_row(conn, str(item["id"]))["id"]
        if isinstance(item, dict) and item.get("company_id"):
            row = conn.execute(
                "SELECT id FROM ic_companies WHERE company_id = ?", (str(item["company_id"]),)
            ).fetchone()
            if row:
                return row[0]
        raise company_not_found()

    async def tag(self, request: Request) -> Response:
        tag_id = request.path_params["tag_id"]
        if request.method == "DELETE":
            await self.write(lambda conn, now: self.writer.delete_tag(conn, tag_id))
            return Response(status_code=200)
        row = await self.read(lambda conn: self.writer.tag_row(conn, tag_id))
        return json_response(tag_json(row["id"], row["name"]))

    # -- segments (intercom.md §7) ------------------------------------------------------------

    async def segments(self, request: Request) -> Response:
        with_count = request.query_params.get("include_count", "false").lower() == "true"

        def work(conn: Any) -> dict[str, Any]:
            rows = self.store.dicts(conn.execute("SELECT * FROM ic_segments ORDER BY id"))
            counts = dict(
                conn.execute("SELECT segment_id, COUNT(*) FROM ic_members WHERE kind = 'contact' GROUP BY segment_id")
            )
            return {
                "type": "segment.list",
                "segments": [segment_json(row, counts.get(row["id"], 0) if with_count else None) for row in rows],
            }

        return json_response(await self.read(work))

    async def segment(self, request: Request) -> Response:
        segment_id = request.path_params["segment_id"]

        def work(conn: Any) -> dict[str, Any]:
            row = self.store.row(conn, "ic_segments", segment_id)
            if row is None:
                raise not_found()
            return segment_json(row)

        return json_response(await self.read(work))

    # -- conversations (intercom.md §8) -------------------------------------------------------

    def _conversation_page(
        self, conn: Any, where: str, params: list[Any], cursor: Any, size: int, sort: tuple[str, bool]
    ) -> dict[str, Any]:
        page = keyset_page(conn, CONVERSATIONS, where, params, sort[0], sort[1], cursor, size)
        return {
            "type": "conversation.list",
            "pages": page.pages,
            "total_count": page.total,
            "conversations": self.renderer.conversations(conn, page.rows),
        }

    async def conversations(self, request: Request) -> Response:
        """Most recently updated first; cursor in the query string (intercom.md §4)."""
        size = per_page(request.query_params.get("per_page"), CONVERSATIONS.default_per_page)
        cursor = request.query_params.get("starting_after")
        return json_response(
            await self.read(lambda conn: self._conversation_page(conn, "1", [], cursor, size, ("v.updated_at", True)))
        )

    async def search_conversations(self, request: Request) -> Response:
        body = await json_body(request)
        compiler = Compiler(CONVERSATIONS, self.ws.timezone)
        condition, params = compiler.compile(body.get("query"))
        sort = compiler.sort(body.get("sort"))
        pagination = body.get("pagination") or {}
        if not isinstance(pagination, dict):
            raise parameter_invalid("pagination must be an object", "pagination")
        size = per_page(pagination.get("per_page"), CONVERSATIONS.default_per_page)
        return json_response(
            await self.read(
                lambda conn: self._conversation_page(
                    conn, condition, params, pagination.get("starting_after"), size, sort
                )
            )
        )

    async def conversation(self, request: Request) -> Response:
        conversation_id = request.path_params["conversation_id"]

        def work(conn: Any) -> dict[str, Any]:
            conversation = self.renderer.conversation(conn, conversation_id)
            if conversation is None:
                raise not_found()
            return conversation

        return json_response(await self.read(work))
