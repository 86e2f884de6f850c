"""Admin API under /_admin/intercom: reset, records as a teammate would change them, settings, scroll and webhooks.

Like the rest of /_admin it is unauthenticated, never fault-injected and not rate-limited. Changes go through the
same write rules as the API (records.py), so they bump updated_at and notify webhooks; admin writes may also pin
created_at/updated_at. Errors come back as {"error", "code"} with the status the API would use.
"""

from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipelines.sandbox.admin import _bad, _json, _only, _value_error
from sync_pipelines.sandbox.intercom.api import json_response
from sync_pipelines.sandbox.intercom.app import SeedOnFirstUse
from sync_pipelines.sandbox.intercom.errors import IntercomError
from sync_pipelines.sandbox.intercom.render import segment_json, tag_json
from sync_pipelines.sandbox.intercom.webhooks import PING
from sync_pipelines.sandbox.intercom.workspace import SETTING_NAMES, IntercomWorkspace, now_s
from sync_pipelines.sandbox.webhooks import check_url

_WEBHOOK_OPTIONS = {"url", "topics", "client_secret", "attempts", "backoff_seconds"}
_KINDS = {"contacts": "contact", "companies": "company", "conversations": "conversation"}


async def _intercom_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IntercomError)
    return JSONResponse({"error": exc.message, "code": exc.code}, exc.status)


class IntercomAdmin:
    def __init__(self, workspace: IntercomWorkspace):
        self.ws = workspace
        self.store, self.writer, self.renderer = workspace.store, workspace.writer, workspace.renderer

    def app(self) -> SeedOnFirstUse:
        app = Starlette(
            routes=[
                Route("/reset", self.reset, methods=["POST"]),
                Route("/settings", self.settings, methods=["GET", "PUT"]),
                Route("/admins", self.admins, methods=["GET"]),
                Route("/contacts", self.contacts, methods=["GET", "POST"]),
                Route("/contacts/raw", self.raw_contacts, methods=["POST"]),
                Route("/contacts/{record_id}", self.update_contact, methods=["POST"]),
                Route("/contacts/{record_id}/delete", self.delete_contact, methods=["POST"]),
                Route("/contacts/{record_id}/archive", self.archive, methods=["POST"]),
                Route("/contacts/{record_id}/unarchive", self.unarchive, methods=["POST"]),
                Route("/contacts/{record_id}/companies", self.attach, methods=["POST"]),
                Route("/contacts/{record_id}/companies/{company_id}/delete", self.detach, methods=["POST"]),
                Route("/companies", self.companies, methods=["GET", "POST"]),
                Route("/companies/{record_id}", self.update_company, methods=["POST"]),
                Route("/companies/{record_id}/delete", self.delete_company, methods=["POST"]),
                Route("/{kind:str}/{record_id}/tags", self.tag, methods=["POST"]),
                Route("/{kind:str}/{record_id}/tags/{tag_id}/delete", self.untag, methods=["POST"]),
                Route("/tags", self.tags, methods=["GET"]),
                Route("/segments", self.segments, methods=["GET"]),
                Route("/segments/{segment_id}/members", self.members, methods=["PUT"]),
                Route("/conversations", self.conversations, methods=["GET", "POST"]),
                Route("/conversations/{record_id}/reply", self.reply, methods=["POST"]),
                Route("/conversations/{record_id}/state", self.state, methods=["POST"]),
                Route("/conversations/{record_id}/assign", self.assign, methods=["POST"]),
                Route("/touch", self.touch, methods=["POST"]),
                Route("/scroll", self.scroll, methods=["GET"]),
                Route("/scroll/fail", self.fail_scroll, methods=["POST"]),
                Route("/scroll/expire", self.expire_scroll, methods=["POST"]),
                Route("/webhooks", self.webhooks, methods=["GET", "PUT"]),
                Route("/webhooks/deliveries", self.deliveries, methods=["GET"]),
                Route("/webhooks/flush", self.flush, methods=["POST"]),
                Route("/webhooks/redeliver", self.redeliver, methods=["POST"]),
                Route("/webhooks/ping", self.ping, methods=["POST"]),
            ],
            exception_handlers={ValueError: _value_error, IntercomError: _intercom_error},
        )
        return SeedOnFirstUse(app, self.ws)

    # -- plumbing -----------------------------------------------------------------------------

    async def _read(self, work: Any) -> Any:
        def run() -> Any:
            with self.store.reading() as conn:
                return work(conn)

        return await run_in_threadpool(run)

    async def _write(self, work: Any) -> Any:
        def run() -> Any:
            with self.store.transaction() as conn:
                return work(conn, now_s())

        return await run_in_threadpool(run)

    def _contact(self, conn: Any, contact_id: str) -> dict[str, Any]:
        row = self.writer.contact_row(conn, contact_id)
        return {**self.renderer.contacts(conn, [row])[0], **({"_archived": True} if row["archived"] else {})}

    # -- reset and settings -------------------------------------------------------------------

    async def reset(self, request: Request) -> Response:
        """{seed?, contacts?, companies?, conversations?} -> sizes, app id and record counts."""
        body = await _json(request)
        return JSONResponse(await run_in_threadpool(self.ws.reset, **body))

    async def settings(self, request: Request) -> Response:
        """{window_limit (requests per 10 s), scroll_ttl (s), timezone (IANA)}; PUT changes any of them."""
        if request.method == "PUT":
            body = await _json(request)
            if set(body) - set(SETTING_NAMES):
                return _bad(f"settings are {', '.join(SETTING_NAMES)}")
            self.ws.configure(**body)
        return JSONResponse(self.ws.settings_snapshot())

    # -- listings -----------------------------------------------------------------------------

    async def admins(self, request: Request) -> Response:
        return json_response(
            await self._read(
                lambda conn: [r["data"] for r in self.store.dicts(conn.execute("SELECT * FROM ic_admins"))]
            )
        )

    async def contacts(self, request: Request) -> Response:
        """GET: every contact as the API renders it, archived ones flagged "_archived": true. POST: create one."""
        if request.method == "POST":
            body = await _json(request)
            return json_response(
                await self._write(
                    lambda conn, now: self._contact(conn, self.writer.create_contact(conn, body, now, True))
                )
            )

        def work(conn: Any) -> list[dict[str, Any]]:
            rows = self.store.dicts(conn.execute("SELECT * FROM ic_contacts ORDER BY id"))
            rendered = self.renderer.contacts(conn, rows)
            return [{**c, "_archived": True} if r["archived"] else c for c, r in zip(rendered, rows, strict=True)]

        return json_response(await self._read(work))

    async def raw_contacts(self, request: Request) -> Response:
        """{"records": ["<JSON object text>", ...]}: contacts as a broken or hostile workspace would serve them
        (wrong types, NaN, 200 kB strings, junk or duplicated ids), returned by search and listings as given, each
        in the place of a placeholder contact; answers {"ids": the placeholder ids}."""
        records = _only(await _json(request), {"records"}).get("records")
        if not isinstance(records, list) or not all(isinstance(text, str) for text in records):
            return _bad('"records" is a list of JSON object texts')
        return JSONResponse({"ids": await run_in_threadpool(self.store.add_raw_contacts, records, now_s())})

    async def companies(self, request: Request) -> Response:
        """GET: every company as the API renders it. POST: create-or-update by company_id, as POST /companies."""
        if request.method == "POST":
            body = await _json(request)
            return json_response(
                await self._write(
                    lambda conn, now: self.renderer.company(conn, self.writer.upsert_company(conn, body, now, True))
                )
            )
        return json_response(
            await self._read(
                lambda conn: self.renderer.companies(
                    conn, self.store.dicts(conn.execute("SELECT * FROM ic_companies ORDER BY id"))
                )
            )
        )

    async def tags(self, request: Request) -> Response:
        def work(conn: Any) -> list[dict[str, Any]]:
            return [tag_json(*row) for row in conn.execute("SELECT id, name FROM ic_tags ORDER BY CAST(id AS INT)")]

        return json_response(await self._read(work))

    async def segments(self, request: Request) -> Response:
        """Segments with their members: {"contacts": [ids], "companies": [ids]} added to each."""

        def work(conn: Any) -> list[dict[str, Any]]:
            members = self.store.grouped(
                conn,
                "SELECT segment_id, kind, target_id FROM ic_members WHERE segment_id IN ({ids}) ORDER BY target_id",
                [row[0] for row in conn.execute("SELECT id FROM ic_segments")],
            )
            return [
                {
                    **segment_json(row),
                    "contacts": [t for kind, t in members[row["id"]] if kind == "contact"],
                    "companies": [t for kind, t in members[row["id"]] if kind == "company"],
                }
                for row in self.store.dicts(conn.execute("SELECT * FROM ic_segments ORDER BY id"))
            ]

        return json_response(await self._read(work))

    async def conversations(self, request: Request) -> Response:
        """GET: every conversation with its parts. POST {contact_id, body?, subject?}: a contact starts one."""
        if request.method == "POST":
            body = await _json(request)
            return json_response(
                await self._write(
                    lambda conn, now: self.renderer.conversation(conn, self.writer.create_conversation(conn, body, now))
                )
            )

        def work(conn: Any) -> list[dict[str, Any]]:
            rows = self.store.dicts(conn.execute("SELECT * FROM ic_conversations ORDER BY CAST(id AS INT)"))
            return self.renderer.conversations(conn, rows, with_parts=True)

        return json_response(await self._read(work))

    # -- contacts and companies as a teammate changes them -------------------------------------

    async def update_contact(self, request: Request) -> Response:
        """The given fields change and updated_at moves to now, or to the updated_at given."""
        record_id, body = request.path_params["record_id"], await _json(request)

        def work(conn: Any, now: int) -> dict[str, Any]:
            self.writer.update_contact(conn, record_id, body, now, admin=True)
            return self._contact(conn, record_id)

        return json_response(await self._write(work))

    async def delete_contact(self, request: Request) -> Response:
        record_id = request.path_params["record_id"]
        return json_response(await self._write(lambda conn, now: self.writer.delete_contact(conn, record_id, now)))

    async def archive(self, request: Request) -> Response:
        record_id = request.path_params["record_id"]
        return json_response(await self._write(lambda conn, now: self.writer.set_archived(conn, record_id, True, now)))

    async def unarchive(self, request: Request) -> Response:
        record_id = request.path_params["record_id"]
        return json_response(await self._write(lambda conn, now: self.writer.set_archived(conn, record_id, False, now)))

    async def attach(self, request: Request) -> Response:
        """{"id": <company id>}: attach the contact to the company."""
        record_id, body = request.path_params["record_id"], await _json(request)

        def work(conn: Any, now: int) -> dict[str, Any]:
            self.writer.attach(conn, record_id, body.get("id"), now)
            return self._contact(conn, record_id)

        return json_response(await self._write(work))

    async def detach(self, request: Request) -> Response:
        record_id, company_id = request.path_params["record_id"], request.path_params["company_id"]

        def work(conn: Any, now: int) -> dict[str, Any]:
            self.writer.detach(conn, record_id, company_id, now)
            return self._contact(conn, record_id)

        return json_response(await self._write(work))

    async def update_company(self, request: Request) -> Response:
        record_id, body = request.path_params["record_id"], await _json(request)

        def work(conn: Any, now: int) -> dict[str, Any]:
            self.writer.update_company(conn, record_id, body, now, admin=True)
            return self.renderer.company(conn, record_id)

        return json_response(await self._write(work))

    async def delete_company(self, request: Request) -> Response:
        record_id = request.path_params["record_id"]
        return json_response(await self._write(lambda conn, now: self.writer.delete_company(conn, record_id, now)))

    async def tag(self, request: Request) -> Response:
        """/{contacts|companies|conversations}/{id}/tags {"id"} or {"name"} (created when new): apply a tag."""
        kind = _KINDS.get(request.path_params["kind"])
        if kind is None:
            return _bad("tags apply to contacts, companies or conversations", 404)
        record_id, body = request.path_params["record_id"], await _json(request)

        def work(conn: Any, now: int) -> dict[str, Any]:
            tag_id = body.get("id") or self.writer.find_or_create_tag(conn, body.get("name"), now)["id"]
            if kind == "conversation":
                self.writer.tag_conversation(conn, record_id, tag_id, now, self.ws.me)
                return self.renderer.conversation(conn, record_id)
            self.writer.tag(conn, kind, record_id, tag_id, now, self.ws.me)
            return self._contact(conn, record_id) if kind == "contact" else self.renderer.company(conn, record_id)

        return json_response(await self._write(work))

    async def untag(self, request: Request) -> Response:
        kind = _KINDS.get(request.path_params["kind"])
        if kind not in ("contact", "company"):
            return _bad("tags are removed from contacts or companies", 404)
        record_id, tag_id = request.path_params["record_id"], request.path_params["tag_id"]

        def work(conn: Any, now: int) -> dict[str, Any]:
            self.writer.untag(conn, kind, record_id, tag_id, now)
            return self._contact(conn, record_id) if kind == "contact" else self.renderer.company(conn, record_id)

        return json_response(await self._write(work))

    async def members(self, request: Request) -> Response:
        """{"contacts"?: [ids], "companies"?: [ids]}: replace the segment's members of each kind given."""
        segment_id, body = request.path_params["segment_id"], await _json(request)
        lists = {name: body.get(name) for name in ("contacts", "companies")}
        if set(body) - set(lists) or any(v is not None and not isinstance(v, list) for v in lists.values()):
            return _bad('members are {"contacts": [ids], "companies": [ids]}')
        await self._write(
            lambda conn, now: self.writer.set_members(conn, segment_id, lists["contacts"], lists["companies"], now)
        )
        return json_response({"segment_id": segment_id, **{k: v for k, v in lists.items() if v is not None}})

    # -- conversations ------------------------------------------------------------------------

    async def reply(self, request: Request) -> Response:
        """{"author": "admin"|"contact", "admin_id"|"contact_id", "body", "part_type": "comment"|"note"}."""
        record_id, body = request.path_params["record_id"], await _json(request)

        def work(conn: Any, now: int) -> dict[str, Any]:
            self.writer.reply(conn, record_id, body, now)
            return self.renderer.conversation(conn, record_id)

        return json_response(await self._write(work))

    async def state(self, request: Request) -> Response:
        """{"state": "open"|"closed"|"snoozed", "admin_id"?, "snoozed_until"?}."""
        record_id, body = request.path_params["record_id"], await _json(request)

        def work(conn: Any, now: int) -> dict[str, Any]:
            self.writer.set_state(conn, record_id, body, now)
            return self.renderer.conversation(conn, record_id)

        return json_response(await self._write(work))

    async def assign(self, request: Request) -> Response:
        """{"admin_id": id, or 0 to unassign}."""
        record_id, body = request.path_params["record_id"], await _json(request)

        def work(conn: Any, now: int) -> dict[str, Any]:
            self.writer.assign(conn, record_id, body.get("admin_id"), now)
            return self.renderer.conversation(conn, record_id)

        return json_response(await self._write(work))

    async def touch(self, request: Request) -> Response:
        """{"count": n}: a teammate edit on the n least recently updated contacts (benchmarks)."""
        count = int((await _json(request)).get("count", 1))
        ids = await self._write(lambda conn, now: self.writer.touch_contacts(conn, count, now))
        return JSONResponse({"touched": len(ids), "ids": ids})

    # -- the companies scroll (intercom.md §6.1) ----------------------------------------------

    async def scroll(self, request: Request) -> Response:
        """The open scroll {scroll_param, served, remaining, idle_seconds, broken}, or null."""
        return JSONResponse(self.ws.scrolls.state())

    async def fail_scroll(self, request: Request) -> Response:
        """{"calls": n, "after": k}: after k more pages are served, the next n scroll calls fail with the
        network-error 500 and break the scroll, whose lock then holds until it expires (intercom.md §6.1)."""
        body = await _json(request)
        calls, after = int(body.get("calls", 1)), int(body.get("after", 0))
        if calls < 1 or after < 0:
            return _bad("calls must be at least 1 and after at least 0")
        return JSONResponse({"pending": self.ws.scrolls.fail_next(calls, after)})

    async def expire_scroll(self, request: Request) -> Response:
        """Expire the open scroll now, as if it had been idle for the TTL."""
        return JSONResponse({"expired": self.ws.scrolls.expire()})

    # -- webhooks (intercom.md §9) ------------------------------------------------------------

    async def webhooks(self, request: Request) -> Response:
        """The subscription {url, topics (null: all), client_secret, attempts, backoff_seconds, queued};
        PUT changes any of them."""
        hooks = self.ws.webhooks
        if request.method == "PUT":
            body = await _json(request)
            if set(body) - _WEBHOOK_OPTIONS:
                return _bad(f"webhook options are {sorted(_WEBHOOK_OPTIONS)}")
            url = check_url(body["url"]) if "url" in body else hooks.url
            topics = body.get("topics", None if hooks.topics is None else sorted(hooks.topics))
            if topics is not None and not (isinstance(topics, list) and all(isinstance(t, str) for t in topics)):
                return _bad("topics is a list of topic names, or null for every topic")
            secret = body.get("client_secret", hooks.client_secret)
            if not (isinstance(secret, str) and secret):
                return _bad("client_secret must be a non-empty string")
            attempts = int(body.get("attempts", hooks.attempts))
            backoff = float(body.get("backoff_seconds", hooks.backoff_seconds))
            if attempts < 1 or backoff < 0:
                return _bad("attempts must be at least 1 and backoff_seconds not negative")
            hooks.client_secret, hooks.attempts, hooks.backoff_seconds = secret, attempts, backoff
            hooks.subscribe(url, topics)
        return JSONResponse(
            {
                "url": hooks.url,
                "topics": None if hooks.topics is None else sorted(hooks.topics),
                "client_secret": hooks.client_secret,
                "attempts": hooks.attempts,
                "backoff_seconds": hooks.backoff_seconds,
                "queued": await run_in_threadpool(hooks.queue_length),
            }
        )

    async def deliveries(self, request: Request) -> Response:
        """[{seq, id, topic, attempts: [status or error name], delivered}] in queue order."""
        return JSONResponse(await run_in_threadpool(self.store.deliveries))

    async def flush(self, request: Request) -> Response:
        """Wait (in a worker thread: the receiver may be this very server) until every queued one went out."""
        timeout = float((await _json(request)).get("timeout", 30))
        idle = await run_in_threadpool(self.ws.webhooks.wait_idle, timeout)
        queued = await run_in_threadpool(self.ws.webhooks.queue_length)
        return JSONResponse({"idle": idle, "queued": queued}, 200 if idle else 504)

    async def redeliver(self, request: Request) -> Response:
        seq = (await _json(request)).get("seq")
        if not isinstance(seq, int):
            return _bad('"seq" must be the seq of a logged delivery')
        if self.ws.webhooks.url is None:
            return _bad("no webhook url is configured")
        outcome = await run_in_threadpool(self.ws.webhooks.redeliver, seq)
        if outcome is None:
            return _bad(f"no delivery has seq {seq}", 404)
        return JSONResponse({"seq": seq, "status": outcome})

    async def ping(self, request: Request) -> Response:
        """Queue a `ping` notification, as the Developer Hub's test button sends (intercom.md §9)."""
        if self.ws.webhooks.url is None:
            return _bad("no webhook url is configured")

        def work(conn: Any, now: int) -> dict[str, Any]:
            self.ws.webhooks.queue(conn, PING, {"type": "ping", "message": "something something interzen"}, now)
            return {"queued": PING}

        return JSONResponse(await self._write(work))
