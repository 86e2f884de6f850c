"""Translate the supported subset of Xero's `where` and `order` parameters into SQL on indexed columns.

Supported (xero.md §3.3): `Field OP value` clauses joined by AND / &&, where OP is one of == != >= <= > <
and value is a "string", Guid("..."), DateTime(y, m, d[, h, mi, s]), a number, true or false. Only fields
backed by an indexed column are accepted, so every filter stays cheap on 100k+ rows; anything else is a
QueryParseException rather than a silently ignored filter.
"""

import re

from sync_pipelines.sandbox.xero.dates import datetime_literal

# API field -> store column, per collection.
FIELDS: dict[str, dict[str, str]] = {
    "Invoices": {
        "InvoiceID": "id",
        "UpdatedDateUTC": "updated_ms",
        "Type": "type",
        "Status": "status",
        "Contact.ContactID": "ref_id",
        "InvoiceNumber": "label",
        "Reference": "json_extract(body, '$.Reference')",
        "Date": "date_ms",
    },
    "Contacts": {"ContactID": "id", "UpdatedDateUTC": "updated_ms", "ContactStatus": "status", "Name": "label"},
    "BankTransactions": {
        "BankTransactionID": "id",
        "UpdatedDateUTC": "updated_ms",
        "Type": "type",
        "Status": "status",
        "Contact.ContactID": "ref_id",
        "Reference": "label",
        "Date": "date_ms",
    },
    "Payments": {
        "PaymentID": "id",
        "UpdatedDateUTC": "updated_ms",
        "PaymentType": "type",
        "Status": "status",
        "Invoice.InvoiceID": "ref_id",
        "Reference": "label",
        "Date": "date_ms",
    },
    "CreditNotes": {
        "CreditNoteID": "id",
        "UpdatedDateUTC": "updated_ms",
        "Type": "type",
        "Status": "status",
        "Contact.ContactID": "ref_id",
        "CreditNoteNumber": "label",
        "Reference": "json_extract(body, '$.Reference')",
        "Date": "date_ms",
    },
    # The spec's getItems examples: where=IsSold==true, order=Code ASC.
    "Items": {
        "ItemID": "id",
        "UpdatedDateUTC": "updated_ms",
        "Code": "label",
        "Name": "json_extract(body, '$.Name')",
        "IsSold": "json_extract(body, '$.IsSold')",
        "IsPurchased": "json_extract(body, '$.IsPurchased')",
        "IsTrackedAsInventory": "json_extract(body, '$.IsTrackedAsInventory')",
    },
}
_TIME_COLUMNS = {"updated_ms", "date_ms"}
_OPERATORS = {"==": "=", "!=": "!=", ">=": ">=", "<=": "<=", ">": ">", "<": "<"}
_CLAUSE = re.compile(
    r"""\s*(?P<field>[A-Za-z][A-Za-z0-9_.]*)\s*(?P<op>==|!=|>=|<=|>|<)\s*
    (?:"(?P<string>[^"]*)"
      |Guid\(\s*"(?P<guid>[^"]*)"\s*\)
      |DateTime\(\s*(?P<datetime>\d+(?:\s*,\s*\d+){2,5})\s*\)
      |(?P<number>-?\d+(?:\.\d+)?)
      |(?P<boolean>true|false))\s*""",
    re.VERBOSE | re.IGNORECASE,
)
_AND = re.compile(r"\s+AND\s+|\s*&&\s*", re.IGNORECASE)


class QueryError(ValueError):
    """An unsupported or unparsable where/order: a 400 QueryParseException."""


def where_sql(collection: str, expression: str) -> tuple[str, list]:
    """SQL condition and parameters for a `where` expression."""
    fields = FIELDS[collection]
    conditions, params = [], []
    for clause in _AND.split(expression.strip()):
        match = _CLAUSE.fullmatch(clause)
        if not match:
            raise QueryError(f"Unsupported where clause: {clause!r}")
        column = fields.get(match["field"])
        if column is None:
            raise QueryError(f"Filtering on {match['field']} is not supported; use one of {', '.join(fields)}")
        if match["datetime"] is not None:
            value: object = datetime_literal(*(int(part) for part in match["datetime"].split(",")))
        elif match["string"] is not None or match["guid"] is not None:
            value = match["string"] if match["string"] is not None else match["guid"]
            if column in _TIME_COLUMNS:
                raise QueryError(f"{match['field']} must be compared with DateTime(...)")
        elif match["number"] is not None:
            value = float(match["number"])
        else:
            value = match["boolean"].lower() == "true"
        conditions.append(f"{column} {_OPERATORS[match['op']]} ?")
        params.append(value)
    return " AND ".join(conditions), params


def order_sql(collection: str, order: str | None) -> str:
    """ORDER BY for `order` ("Field [ASC|DESC]", comma separated); the record ID always breaks ties."""
    if not order:
        return "updated_ms, id"
    fields = FIELDS[collection]
    terms = []
    for term in order.split(","):
        parts = term.split()
        if not parts or len(parts) > 2 or parts[0] not in fields:
            raise QueryError(f"Ordering by {term.strip()!r} is not supported; use one of {', '.join(fields)}")
        direction = parts[1].upper() if len(parts) == 2 else "ASC"
        if direction not in ("ASC", "DESC"):
            raise QueryError(f"Unknown order direction {parts[1]!r}")
        terms.append(f"{fields[parts[0]]} {direction}")
    if not any(term.startswith("id ") for term in terms):
        terms.append("id ASC")
    return ", ".join(terms)
