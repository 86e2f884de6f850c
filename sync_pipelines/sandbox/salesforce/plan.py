"""The SOQL evaluator: bind a parsed query to the schema, run it as SQL, render rows as REST JSON or Bulk CSV.

Every field path becomes a column of the object's table or of a LEFT JOINed parent table (one join per
relationship path). Literals are type-checked against their field the way Salesforce does and become SQL
parameters; identifiers come from the schema, so no query text ever reaches SQL.
"""

import csv
import io
import sqlite3
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sync_pipelines.sandbox.salesforce import ids
from sync_pipelines.sandbox.salesforce.schema import (
    ID_TYPES,
    NUMBER_TYPES,
    OBJECTS,
    TEXT_TYPES,
    Field,
    SObject,
    parse_datetime,
    sobject,
    stored_datetime,
    to_csv,
    to_json,
)
from sync_pipelines.sandbox.salesforce.soql import Comparison, FieldPath, Junction, Literal, Not, Query, error_at

_TYPE_NAMES = {"int": "integer", "double": "double", "currency": "double", "percent": "double", "datetime": "dateTime"}
_LITERAL_KINDS = {"boolean": "boolean", "date": "date", "datetime": "datetime"}  # field type -> literal kind
_MAX_RELATIONSHIP_DEPTH = 5


@dataclass(frozen=True)
class Column:
    path: tuple[str, ...]  # canonical names, e.g. ("Account", "Name")
    field: Field
    sql: str

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Relation:
    path: tuple[str, ...]  # canonical relationship names, e.g. ("Account",) or ("Account", "Owner")
    sobject: SObject
    alias: str


@dataclass
class Plan:
    sobject: SObject
    count: bool
    columns: list[Column]
    relations: list[Relation]
    joins: list[str]
    where: str
    params: list[Any]
    order: str
    limit: int | None = None
    _select: str = field(init=False, default="")

    def __post_init__(self) -> None:
        # The root Id and each parent's Id come first: they build attributes.url and null parents.
        hidden = ['t0."Id"'] + [f'{r.alias}."Id"' for r in self.relations]
        self._select = ", ".join(hidden + [c.sql for c in self.columns])

    @property
    def source(self) -> str:
        return " ".join([f"{self.sobject.table} t0", *self.joins])

    # -- running ------------------------------------------------------------------------------

    def count_rows(self, conn: sqlite3.Connection) -> int:
        sql = f"SELECT COUNT(*) FROM {self.source} WHERE {self.where}"
        total = conn.execute(sql, self.params).fetchone()[0]
        return total if self.limit is None else min(total, self.limit)

    def matching_ids(self, conn: sqlite3.Connection) -> list[str]:
        """Every matching root Id in result order: what a query cursor or a Bulk job keeps."""
        return [row[0] for row in self._ordered(conn, 't0."Id"')]

    def rows(self, conn: sqlite3.Connection) -> list[tuple]:
        return self._ordered(conn, self._select)

    def _ordered(self, conn: sqlite3.Connection, select: str) -> list[tuple]:
        sql = f"SELECT {select} FROM {self.source} WHERE {self.where} ORDER BY {self.order}"
        params = list(self.params)
        if self.limit is not None:
            sql += " LIMIT ?"
            params.append(self.limit)
        return conn.execute(sql, params).fetchall()

    def stored_rows(self, conn: sqlite3.Connection, result_id: str, start: int, stop: int) -> list[tuple]:
        """Rows of a kept result (sf_result_rows) by position, with their current values."""
        joins = " ".join(self.joins)
        sql = (
            f'SELECT {self._select} FROM sf_result_rows r JOIN {self.sobject.table} t0 ON t0."Id" = r.record_id '
            f"{joins} WHERE r.result_id = ? AND r.seq >= ? AND r.seq < ? ORDER BY r.seq"
        )
        return conn.execute(sql, (result_id, start, stop)).fetchall()

    # -- rendering ----------------------------------------------------------------------------

    def records(self, rows: list[tuple], version: str) -> list[dict[str, Any]]:
        """REST records: attributes first, fields in select order, parents nested (salesforce.md §3.1)."""
        relations = {r.path: r for r in self.relations}
        offset = 1 + len(self.relations)
        records = []
        for row in rows:
            parent_ids = dict(zip(relations, row[1:offset], strict=True))
            record: dict[str, Any] = {"attributes": attributes(self.sobject.name, row[0], version)}
            for column, value in zip(self.columns, row[offset:], strict=True):
                target: dict[str, Any] | None = record
                for depth in range(1, len(column.path)):
                    key, parent_id = column.path[depth - 1], parent_ids[column.path[:depth]]
                    if parent_id is None:
                        target.setdefault(key, None)  # a null lookup renders as "Account": null
                        target = None
                        break
                    if key not in target:
                        target[key] = {
                            "attributes": attributes(relations[column.path[:depth]].sobject.name, parent_id, version)
                        }
                    target = target[key]
                if target is not None:
                    target[column.field.name] = to_json(column.field, value)
            records.append(record)
        return records

    def csv(self, rows: list[tuple], delimiter: str, line_ending: str) -> str:
        """Bulk CSV: a header of field paths in select order, then one line per row (salesforce.md §6)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator=line_ending, quoting=csv.QUOTE_MINIMAL)
        writer.writerow([column.name for column in self.columns])
        offset = 1 + len(self.relations)
        fields = [column.field for column in self.columns]
        writer.writerows([to_csv(f, v) for f, v in zip(fields, row[offset:], strict=True)] for row in rows)
        return buffer.getvalue()


def attributes(object_name: str, record_id: str, version: str) -> dict[str, str]:
    return {"type": object_name, "url": f"/services/data/v{version}/sobjects/{object_name}/{record_id}"}


def bind(query: Query, include_deleted: bool = False) -> Plan:
    """A runnable plan; raises 400 INVALID_TYPE / INVALID_FIELD / MALFORMED_QUERY like Salesforce."""
    return _Binder(query).plan(include_deleted)


class _Binder:
    def __init__(self, query: Query):
        self.query = query
        root = sobject(query.object_name)
        if root is None:
            raise error_at(
                query.text,
                query.object_position,
                f"sObject type '{query.object_name}' is not supported. If you are attempting to use a custom "
                "object, be sure to append the '__c' after the entity name. Please reference your WSDL or the "
                "describe call for the appropriate names.",
                "INVALID_TYPE",
            )
        self.root = root
        self.relations: dict[tuple[str, ...], Relation] = {}
        self.joins: list[str] = []
        self.params: list[Any] = []

    def plan(self, include_deleted: bool) -> Plan:
        query = self.query
        columns: list[Column] = []
        for path in query.fields:
            column = self.resolve(path)
            if any(c.path == column.path for c in columns):
                raise error_at(query.text, path.position, f"duplicate field selected: {path.text}")
            columns.append(column)
        conditions = [] if include_deleted else ['t0."IsDeleted" = 0']
        if query.where is not None:
            conditions.append(self.condition(query.where))
        if query.count and query.order:
            raise error_at(query.text, query.order[0].field.position, "ORDER BY can not be used with COUNT()")
        order = [self.order_term(term.field, term.descending, term.nulls_last) for term in query.order]
        if not any(term.startswith('t0."Id" ') for term in order):
            order.append('t0."Id" ASC')  # a deterministic order; Salesforce returns unordered rows by Id too
        return Plan(
            self.root,
            query.count,
            columns,
            list(self.relations.values()),
            self.joins,
            " AND ".join(conditions) or "1",
            self.params,
            ", ".join(order),
            query.limit,
        )

    def resolve(self, path: FieldPath) -> Column:
        current, alias, canonical = self.root, "t0", []
        text = self.query.text
        if len(path.names) > _MAX_RELATIONSHIP_DEPTH + 1:
            raise error_at(text, path.position, "SOQL statements cannot query more than 5 levels of relationships")
        for name in path.names[:-1]:
            reference = current.relationship(name)
            if reference is None:
                raise error_at(
                    text,
                    path.position,
                    f"Didn't understand relationship '{name}' in field path. If you are attempting to use a "
                    "custom relationship, be sure to append the '__r' after the custom relationship name. Please "
                    "reference your WSDL or the describe call for the appropriate names.",
                    "INVALID_FIELD",
                )
            canonical.append(reference.relationship)
            key = tuple(canonical)
            if key not in self.relations:
                parent = OBJECTS[reference.reference_to]
                relation = Relation(key, parent, f"t{len(self.relations) + 1}")
                self.relations[key] = relation
                self.joins.append(
                    f'LEFT JOIN {parent.table} {relation.alias} ON {relation.alias}."Id" = {alias}."{reference.name}"'
                )
            current, alias = self.relations[key].sobject, self.relations[key].alias
        found = current.field(path.names[-1])
        if found is None:
            raise error_at(
                text,
                path.position,
                f"No such column '{path.names[-1]}' on entity '{current.name}'. If you are attempting to use a "
                "custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL "
                "or the describe call for the appropriate names.",
                "INVALID_FIELD",
            )
        return Column((*canonical, found.name), found, f'{alias}."{found.name}"')

    def condition(self, node: Any) -> str:
        if isinstance(node, Junction):
            return "(" + f" {node.operator} ".join(self.condition(term) for term in node.terms) + ")"
        if isinstance(node, Not):
            return f"NOT ({self.condition(node.term)})"
        return self.comparison(node)

    def comparison(self, node: Comparison) -> str:
        column = self.resolve(node.field)
        if not column.field.filterable:
            raise error_at(
                self.query.text,
                node.field.position,
                f"field '{column.name}' can not be filtered in a query call",
                "INVALID_FIELD",
            )
        values = [self.value(column, literal, node.operator) for literal in node.values]
        sql = column.sql
        if node.operator == "LIKE":
            if column.field.type not in TEXT_TYPES | ID_TYPES:
                raise error_at(
                    self.query.text, node.field.position, f"invalid operator on field '{column.name}'", "INVALID_FIELD"
                )
            self.params.append(values[0])
            return f"{sql} LIKE ? ESCAPE '\\'"
        if node.operator in ("IN", "NOT IN"):
            listed = [v for v in values if v is not None]
            self.params.extend(listed)
            placeholders = ", ".join("?" * len(listed)) or "NULL"
            has_null = len(listed) < len(values)
            if node.operator == "IN":
                return f"({sql} IN ({placeholders}){f' OR {sql} IS NULL' if has_null else ''})"
            # Like !=, NOT IN keeps rows whose value is null unless null is listed.
            return f"({sql} NOT IN ({placeholders}){'' if has_null else f' OR {sql} IS NULL'})"
        value = values[0]
        if value is None:
            return f"{sql} IS {'NOT ' if node.operator == '!=' else ''}NULL"
        self.params.append(value)
        if node.operator == "!=":
            return f"({sql} IS NULL OR {sql} != ?)"  # SOQL's != matches null values, unlike SQL's
        return f"{sql} {node.operator} ?"

    def value(self, column: Column, literal: Literal, operator: str) -> Any:
        """The SQL parameter for a literal compared with a field, or Salesforce's INVALID_FIELD error."""
        kind, field_type, text = literal.kind, column.field.type, self.query.text
        if kind == "null":
            if operator not in ("=", "!=", "IN", "NOT IN"):
                raise error_at(text, literal.position, f"invalid operator on null for field '{column.name}'")
            return None
        if field_type in ID_TYPES:
            if kind != "string":
                raise self._type_error(column, literal, "id", quoted=True)
            normalized = ids.normalize(literal.value)
            if normalized is None and operator in ("=", "!=", "IN", "NOT IN"):
                raise error_at(
                    text, literal.position, f"invalid ID field: {literal.value}", "INVALID_QUERY_FILTER_OPERATOR"
                )
            return normalized or literal.value
        if field_type in TEXT_TYPES:
            if kind != "string":
                raise self._type_error(column, literal, "string", quoted=True)
            return literal.value
        if field_type in NUMBER_TYPES:
            if kind != "number":
                raise self._type_error(column, literal, _TYPE_NAMES[field_type], quoted=False)
            return literal.value
        if kind != _LITERAL_KINDS[field_type]:
            raise self._type_error(column, literal, _TYPE_NAMES.get(field_type, field_type), quoted=False)
        if kind == "boolean":
            return int(literal.value)
        try:
            if kind == "date":
                return date.fromisoformat(literal.value).isoformat()
            return stored_datetime(parse_datetime(literal.value))
        except ValueError:
            raise error_at(text, literal.position, f"invalid {kind} literal: {literal.value}") from None

    def _type_error(self, column: Column, literal: Literal, type_name: str, quoted: bool):
        should = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
        return error_at(
            self.query.text,
            literal.position,
            f"value of filter criterion for field '{column.name}' must be of type {type_name} and {should}",
            "INVALID_FIELD",
        )

    def order_term(self, path: FieldPath, descending: bool, nulls_last: bool) -> str:
        column = self.resolve(path)
        if not column.field.filterable:
            raise error_at(
                self.query.text,
                path.position,
                f"field '{column.name}' can not be sorted in a query call",
                "INVALID_FIELD",
            )
        return f"{column.sql} {'DESC' if descending else 'ASC'} NULLS {'LAST' if nulls_last else 'FIRST'}"
