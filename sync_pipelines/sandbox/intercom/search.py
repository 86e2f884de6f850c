"""The search query language of POST /contacts/search and /conversations/search, compiled to SQL.

A query is a single filter {field, operator, value} or a compound {operator: AND|OR, value: [...]}, nested at
most 2 levels with at most 15 filters per group (intercom.md §5.1). Which operators a field accepts depends on
its type. Contact date fields are matched by calendar day in the workspace's time zone: `=` is the whole day,
`>` starts at the next day, `<` ends before the day (2.16 spec text). Conversation dates compare whole seconds
and `>`/`<` include the instant given ("Greater (or equal) than" in the conversations search table). A query
the language does not allow answers 400 `parameter_invalid` (the spec's code for bad parameters; the search
endpoints document only invalid_sort_order, so the code for the rest is unconfirmed).

Pages are keyset cursors: `starting_after` is base64 JSON [sort key, id, page] of the last row served, the shape
of Intercom's own cursors ("WzE3..." = "[17..."), so records changed between pages move rather than vanish.
"""

import base64
import binascii
import json
import math
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sync_pipelines.sandbox.intercom.errors import IntercomError, parameter_invalid, parameter_not_found
from sync_pipelines.sandbox.intercom.store import fold
from sync_pipelines.sandbox.store import dumps

MAX_NESTING = 2  # intercom.md §5.1
MAX_GROUP = 15
MAX_PER_PAGE = 150  # intercom.md §4
SORT_ORDERS = ("ascending", "descending")


@dataclass(frozen=True)
class Field:
    """A searchable field: its type and SQL (an expression, or for relations a template with {alias})."""

    type: str  # string | integer | boolean | date | tag | segment | list | words
    sql: str


@dataclass(frozen=True)
class Schema:
    """One searchable collection: table alias, fields, operators per type and how dates compare."""

    table: str
    alias: str
    fields: dict[str, Field]
    operators: dict[str, frozenset[str]]
    day_granular: bool
    default_per_page: int
    custom_attributes: bool = False

    def field(self, name: Any) -> Field:
        if isinstance(name, str) and name in self.fields:
            return self.fields[name]
        if self.custom_attributes and isinstance(name, str) and name.startswith("custom_attributes."):
            attribute = name.removeprefix("custom_attributes.")
            if attribute and not set(attribute) & set("'\"\\"):  # it is quoted into SQL and a JSON path
                return Field("custom", f"json_extract({self.alias}.data, '$.custom_attributes.\"{attribute}\"')")
        raise parameter_invalid(f"{name!r} is not a searchable field", "query")


def _json(alias: str, path: str) -> str:
    return f"json_extract({alias}.data, '$.{path}')"


_ALL = frozenset({"=", "!=", "IN", "NIN"})
_STRING_OPS = _ALL | {"~", "!~", "^", "$"}

CONTACT_STRINGS = (
    "name owner_id email email_domain phone external_id language_override browser browser_language os "
    "ios_app_version ios_device ios_app_device ios_os_version ios_app_name ios_sdk_version android_app_version "
    "android_device android_app_name android_sdk_version"
).split()
CONTACT_DATES = (
    "signed_up_at last_seen_at last_contacted_at last_replied_at last_email_opened_at last_email_clicked_at "
    "ios_last_seen_at android_last_seen_at"
).split()

CONTACTS = Schema(
    table="ic_contacts",
    alias="c",
    fields={
        "id": Field("string", "c.id"),
        **{name: Field("string", _json("c", name)) for name in CONTACT_STRINGS},
        "role": Field("string", "c.role"),
        "avatar": Field("string", _json("c", "avatar.image_url")),
        "formatted_phone": Field("string", _json("c", "phone")),
        "created_at": Field("date", "c.created_at"),
        "updated_at": Field("date", "c.updated_at"),
        **{name: Field("date", _json("c", name)) for name in CONTACT_DATES},
        **{
            f"location.{part}": Field("string", _json("c", f"location.{part}"))
            for part in ("country", "region", "city")
        },
        **{
            name: Field("boolean", _json("c", name))
            for name in ("unsubscribed_from_emails", "marked_email_as_spam", "has_hard_bounced")
        },
        "tag_id": Field(
            "tag",
            "EXISTS (SELECT 1 FROM ic_taggings t WHERE t.kind = 'contact' AND t.target_id = c.id AND t.tag_id = ?)",
        ),
        "segment_id": Field(
            "segment",
            "EXISTS (SELECT 1 FROM ic_members m WHERE m.kind = 'contact' AND m.target_id = c.id AND m.segment_id = ?)",
        ),
    },
    operators={
        "string": _STRING_OPS,
        "boolean": _ALL,
        "integer": _ALL | {"<", ">", "<=", ">="},
        "date": frozenset({"=", "<", ">"}),  # intercom.md §5.1: != <= >= IN NIN are errors on dates
        "tag": frozenset({"=", "!="}),
        "segment": _ALL,
    },
    day_granular=True,
    default_per_page=50,
    custom_attributes=True,
)

CONVERSATIONS = Schema(
    table="ic_conversations",
    alias="v",
    fields={
        "id": Field("string", "v.id"),
        "created_at": Field("date", "v.created_at"),
        "updated_at": Field("date", "v.updated_at"),
        **{
            f"source.{path}": Field("string", _json("v", f"source.{path}"))
            for path in ("type", "id", "delivered_as", "subject", "url", "author.id", "author.type", "author.name")
        },
        "source.author.email": Field("string", _json("v", "source.author.email")),
        "source.body": Field("words", _json("v", "source.body")),
        "contact_ids": Field("list", "EXISTS (SELECT 1 FROM json_each(v.data, '$.contacts') j WHERE j.value = ?)"),
        "teammate_ids": Field("list", "EXISTS (SELECT 1 FROM json_each(v.data, '$.teammates') j WHERE j.value = ?)"),
        "tag_ids": Field(
            "list",
            "EXISTS (SELECT 1 FROM ic_taggings t WHERE t.kind = 'conversation' AND t.target_id = v.id "
            "AND t.tag_id = ?)",
        ),
        "admin_assignee_id": Field("integer", _json("v", "admin_assignee_id")),
        "team_assignee_id": Field("integer", _json("v", "team_assignee_id")),
        "channel_initiated": Field("string", _json("v", "source.delivered_as")),
        "open": Field("boolean", _json("v", "open")),
        "read": Field("boolean", _json("v", "read")),
        "state": Field("string", _json("v", "state")),
        "priority": Field("string", _json("v", "priority")),
        "waiting_since": Field("date", _json("v", "waiting_since")),
        "snoozed_until": Field("date", _json("v", "snoozed_until")),
        **{
            f"statistics.{name}": Field("integer", _json("v", f"statistics.{name}"))
            for name in ("count_reopens", "count_assignments", "count_conversation_parts")
        },
        **{
            f"statistics.{name}": Field("date", _json("v", f"statistics.{name}"))
            for name in ("first_contact_reply_at", "last_contact_reply_at", "last_admin_reply_at", "last_close_at")
        },
    },
    operators={
        "string": _STRING_OPS,
        "words": _STRING_OPS,
        "boolean": _ALL,
        "integer": _ALL | {"<", ">"},
        "date": _ALL | {"<", ">"},
        "list": _ALL,
    },
    day_granular=False,
    default_per_page=20,
)


class Compiler:
    """Turns a query into (SQL condition, parameters) for one schema and workspace time zone."""

    def __init__(self, schema: Schema, timezone: ZoneInfo):
        self.schema, self.timezone = schema, timezone

    def compile(self, query: Any) -> tuple[str, list[Any]]:
        if query is None:
            raise parameter_not_found("query not specified", "query")
        params: list[Any] = []
        return self._node(query, 0, params), params

    def _node(self, node: Any, depth: int, params: list[Any]) -> str:
        if not isinstance(node, dict):
            raise parameter_invalid("a query is a filter object or an AND/OR group", "query")
        if "field" in node:
            return self._filter(node, params)
        operator = node.get("operator")
        if operator not in ("AND", "OR"):
            raise parameter_invalid(f"operator {operator!r} cannot combine filters; use AND or OR", "query")
        values = node.get("value")
        if not isinstance(values, list) or not values:
            raise parameter_invalid(f"{operator} needs a list of filters", "query")
        if depth >= MAX_NESTING:
            raise parameter_invalid(f"queries nest at most {MAX_NESTING} levels", "query")
        if len(values) > MAX_GROUP:
            raise parameter_invalid(f"an {operator} group holds at most {MAX_GROUP} filters", "query")
        return "(" + f" {operator} ".join(self._node(child, depth + 1, params) for child in values) + ")"

    def _filter(self, node: dict[str, Any], params: list[Any]) -> str:
        name, op, value = node.get("field"), node.get("operator"), node.get("value")
        field = self.schema.field(name)
        kind = field.type if field.type != "custom" else _custom_type(value)
        allowed = self.schema.operators.get(kind, frozenset())
        if op not in allowed:
            raise parameter_invalid(f"operator {op!r} is not supported for field {name!r}", "query")
        if op in ("IN", "NIN"):
            if not isinstance(value, list) or not value:
                raise parameter_invalid(f"{op} needs a non-empty list of values for {name!r}", "query")
            values = [self._value(kind, name, item) for item in value]
        else:
            values = [self._value(kind, name, value, nullable=op in ("=", "!="))]
        builders = {
            "string": self._string,
            "words": self._words,
            "integer": self._number,
            "boolean": self._number,
            "date": self._date,
            "tag": self._exists,
            "segment": self._exists,
            "list": self._exists,
        }
        return builders[kind](field.sql, op, values, params)

    def _value(self, kind: str, name: Any, value: Any, nullable: bool = False) -> Any:
        """The value in the field's type; intercom.md §5.1: a value of another type fails the query."""
        if value is None and nullable and kind not in ("tag", "segment", "list"):
            return None
        if kind in ("string", "words"):
            if isinstance(value, str):
                return value
        elif kind in ("tag", "segment", "list"):
            if isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)
        elif kind == "boolean":
            if isinstance(value, bool):
                return value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return value
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)  # the spec's own example sends created_at as a string of digits
        raise parameter_invalid(f"value {value!r} does not match the type of field {name!r}", "query")

    # -- per-type SQL -------------------------------------------------------------------------

    def _string(self, sql: str, op: str, values: list[Any], params: list[Any]) -> str:
        if op in ("=", "!=") and values[0] is None:
            return f"{sql} IS NULL" if op == "=" else f"{sql} IS NOT NULL"
        folded = [fold(v) for v in values]
        if op in ("=", "IN"):
            params.extend(folded)
            return f"ic_fold({sql}) IN ({', '.join('?' * len(folded))})"
        if op in ("!=", "NIN"):
            params.extend(folded)
            return f"({sql} IS NULL OR ic_fold({sql}) NOT IN ({', '.join('?' * len(folded))}))"
        positive = op.removeprefix("!")
        params.extend([positive, folded[0]])
        return f"ic_str(?, {sql}, ?) = 1" if op == positive else f"ic_str(?, {sql}, ?) = 0"

    def _words(self, sql: str, op: str, values: list[Any], params: list[Any]) -> str:
        if op not in ("=", "!=", "IN", "NIN") or values[0] is None:
            return self._string(sql, op, values, params)
        params.extend(values)
        matches = " OR ".join(f"ic_has_word({sql}, ?) = 1" for _ in values)
        return f"({matches})" if op in ("=", "IN") else f"NOT ({matches})"

    @staticmethod
    def _number(sql: str, op: str, values: list[Any], params: list[Any]) -> str:
        if op in ("=", "!=") and values[0] is None:
            return f"{sql} IS NULL" if op == "=" else f"{sql} IS NOT NULL"
        numbers = [int(v) if isinstance(v, bool) else v for v in values]
        params.extend(numbers)
        marks = ", ".join("?" * len(numbers))
        if op in ("=", "IN"):
            return f"{sql} IN ({marks})"
        if op in ("!=", "NIN"):
            return f"({sql} IS NULL OR {sql} NOT IN ({marks}))"
        return f"{sql} {op} ?"

    def _date(self, sql: str, op: str, values: list[Any], params: list[Any]) -> str:
        if not self.schema.day_granular:
            inclusive = {">": ">=", "<": "<="}  # conversations: "Greater (or equal) than"
            return self._number(sql, inclusive.get(op, op), values, params)
        if values[0] is None:
            return f"{sql} IS NULL"
        start, end = self.day_bounds(values[0])
        if op == "=":
            params.extend([start, end])
            return f"({sql} >= ? AND {sql} < ?)"
        params.append(end if op == ">" else start)
        return f"{sql} >= ?" if op == ">" else f"{sql} < ?"

    @staticmethod
    def _exists(sql: str, op: str, values: list[Any], params: list[Any]) -> str:
        params.extend(values)
        any_of = " OR ".join(f"{sql}" for _ in values)
        return f"({any_of})" if op in ("=", "IN") else f"NOT ({any_of})"

    def day_bounds(self, timestamp: int) -> tuple[int, int]:
        """[midnight, next midnight) of the timestamp's calendar day in the workspace time zone."""
        day = datetime.fromtimestamp(timestamp, self.timezone).date()
        start = datetime(day.year, day.month, day.day, tzinfo=self.timezone)
        following = day + timedelta(days=1)
        end = datetime(following.year, following.month, following.day, tzinfo=self.timezone)
        return int(start.timestamp()), int(end.timestamp())

    # -- sorting and pages --------------------------------------------------------------------

    def sort(self, sort: Any) -> tuple[str, bool]:
        """(SQL sort key, descending) for a `sort` object; order defaults to descending (2.16 spec)."""
        if sort is None:
            sort = {}
        if not isinstance(sort, dict):
            raise parameter_invalid("sort must be an object with field and order", "sort")
        order = sort.get("order", "descending")
        if order not in SORT_ORDERS:
            raise IntercomError(
                400, "invalid_sort_order", f"Invalid sort order '{order}'. Must be one of: ascending, descending"
            )
        field = self.schema.field(sort.get("field", "created_at"))
        if field.type in ("string", "words"):
            key = f"coalesce(ic_fold({field.sql}), '')"
        elif field.type in ("integer", "date", "boolean"):
            key = f"coalesce({field.sql}, -1)"
        else:
            raise parameter_invalid(f"cannot sort on {sort.get('field')!r}", "sort")
        return key, order == "descending"


def _custom_type(value: Any) -> str:
    """Custom attributes take their type from the value searched for (string, boolean or number)."""
    probe = value[0] if isinstance(value, list) and value else value
    if isinstance(probe, bool):
        return "boolean"
    if isinstance(probe, int | float):
        return "integer"
    return "string"


def per_page(value: Any, default: int) -> int:
    """1..150 (intercom.md §4); a larger or non-numeric value is refused rather than silently cut."""
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise parameter_invalid("per_page must be an integer", "per_page") from None
    if not 1 <= number <= MAX_PER_PAGE:
        raise parameter_invalid(f"per_page must be between 1 and {MAX_PER_PAGE}", "per_page")
    return number


def encode_cursor(key: Any, record_id: str, page: int) -> str:
    return base64.b64encode(dumps([key, record_id, page]).encode()).decode()


def decode_cursor(cursor: Any) -> tuple[Any, str, int] | None:
    if cursor in (None, ""):
        return None
    try:
        key, record_id, page = json.loads(base64.b64decode(str(cursor), validate=True))
        if not isinstance(record_id, str) or not isinstance(page, int):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error):
        raise parameter_invalid("starting_after is not a cursor this API returned", "starting_after") from None
    return key, record_id, page


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    pages: dict[str, Any]


def keyset_page(
    conn: sqlite3.Connection,
    schema: Schema,
    where: str,
    params: list[Any],
    sort_key: str,
    descending: bool,
    cursor: Any,
    size: int,
) -> Page:
    """One page of `where` in (sort key, id) order after the cursor, with pages.next when more follow."""
    after = decode_cursor(cursor)
    alias = schema.alias
    total = conn.execute(f"SELECT COUNT(*) FROM {schema.table} {alias} WHERE {where}", params).fetchone()[0]
    keyset, keyset_params = "1", []
    if after is not None:
        compare = "<" if descending else ">"
        keyset = f"({sort_key} {compare} ? OR ({sort_key} = ? AND {alias}.id {compare} ?))"
        keyset_params = [after[0], after[0], after[1]]
    direction = "DESC" if descending else "ASC"
    cursor_ = conn.execute(
        f"SELECT *, {sort_key} AS _key FROM {schema.table} {alias} WHERE ({where}) AND {keyset} "
        f"ORDER BY _key {direction}, {alias}.id {direction} LIMIT ?",
        [*params, *keyset_params, size + 1],
    )
    names = [column[0] for column in cursor_.description]
    rows = [dict(zip(names, values, strict=True)) for values in cursor_.fetchall()]
    for row in rows:
        if "data" in row:
            row["data"] = json.loads(row["data"])
    page_number = after[2] + 1 if after else 1
    pages: dict[str, Any] = {
        "type": "pages",
        "page": page_number,
        "per_page": size,
        "total_pages": math.ceil(total / size),
    }
    if len(rows) > size:
        rows = rows[:size]
        pages["next"] = {
            "per_page": size,
            "starting_after": encode_cursor(rows[-1]["_key"], rows[-1]["id"], page_number),
        }
    for row in rows:
        del row["_key"]
    return Page(rows, total, pages)
