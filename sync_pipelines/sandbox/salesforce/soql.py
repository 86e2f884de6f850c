"""A small SOQL parser: the subset the connector sends, with Salesforce's own MALFORMED_QUERY errors.

Grammar (keywords case-insensitive; salesforce.md §2, §3):

    query      := SELECT (COUNT '(' ')' | field (',' field)*) FROM name
                  [WHERE condition] [ORDER BY order (',' order)*] [LIMIT integer]
    condition  := term (AND term)* | term (OR term)*     -- mixing AND and OR needs parentheses
    term       := '(' condition ')' | NOT term | field op literal
                | field [NOT] IN '(' literal (',' literal)* ')' | field LIKE string
    op         := '=' | '!=' | '<>' | '<' | '<=' | '>' | '>='
    literal    := 'string' | number | date | datetime | TRUE | FALSE | NULL
    order      := field [ASC | DESC] [NULLS (FIRST | LAST)]
    field      := name ('.' name)*                        -- parent relationships: Account.Name

Date and datetime literals are unquoted (`2024-01-15`, `2024-01-15T10:20:30Z`, `...+01:00`). Parsing knows
nothing about objects and fields; plan.py binds the tree to the schema.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from sync_pipelines.sandbox.salesforce.errors import SalesforceError

_TOKEN = re.compile(
    r"""
     (?P<space>\s+)
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2})
    |(?P<number>[+-]?\d+(?:\.\d+)?)
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<op>!=|<>|<=|>=|=|<|>)
    |(?P<punct>[(),])
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    """,
    re.VERBOSE,
)
_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_LIKE_ESCAPES = {"%": "\\%", "_": "\\_"}  # kept escaped for SQL LIKE ... ESCAPE '\'
_CLAUSE_KEYWORDS = ("WHERE", "ORDER", "LIMIT")
_COMPARISONS = {"=": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass(frozen=True)
class Token:
    kind: str  # datetime, date, number, string, op, punct, name, eof
    text: str
    position: int  # offset into the query text


@dataclass(frozen=True)
class FieldPath:
    names: tuple[str, ...]  # as written: ("Account", "Name")
    position: int

    @property
    def text(self) -> str:
        return ".".join(self.names)


@dataclass(frozen=True)
class Literal:
    kind: str  # string, number, date, datetime, boolean, null
    value: Any
    position: int


@dataclass(frozen=True)
class Comparison:
    field: FieldPath
    operator: str  # = != < <= > >= IN NOT IN LIKE
    values: tuple[Literal, ...]


@dataclass(frozen=True)
class Not:
    term: "Condition"


@dataclass(frozen=True)
class Junction:
    operator: str  # AND / OR
    terms: tuple["Condition", ...]


Condition = Comparison | Not | Junction


@dataclass(frozen=True)
class Order:
    field: FieldPath
    descending: bool
    nulls_last: bool


@dataclass
class Query:
    text: str
    fields: list[FieldPath] = field(default_factory=list)  # empty for SELECT COUNT()
    count: bool = False
    object_name: str = ""
    object_position: int = 0
    where: Condition | None = None
    order: list[Order] = field(default_factory=list)
    limit: int | None = None


def error_at(text: str, position: int, message: str, code: str = "MALFORMED_QUERY") -> SalesforceError:
    """Salesforce echoes the offending line with a caret under the column (salesforce.md §5, 400)."""
    line_start = text.rfind("\n", 0, position) + 1
    line_end = text.find("\n", position)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    row, column = text.count("\n", 0, position) + 1, position - line_start + 1
    caret = " " * (column - 1) + "^"
    return SalesforceError(400, code, f"\n{line}\n{caret}\nERROR at Row:{row}:Column:{column}\n{message}")


def tokenize(text: str) -> list[Token]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # also an unterminated 'string
            raise error_at(text, position, f"unexpected token: '{text[position]}'")
        if match.lastgroup != "space":
            tokens.append(Token(match.lastgroup, match.group(), position))
        position = match.end()
    tokens.append(Token("eof", "<EOF>", len(text)))
    return tokens


def parse(text: str) -> Query:
    """Parse a SOQL query or raise a 400 MALFORMED_QUERY SalesforceError."""
    if not text.strip():
        raise SalesforceError(400, "MALFORMED_QUERY", "A query string has to be specified")
    return _Parser(text).query()


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    # -- token helpers ------------------------------------------------------------------------

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.current
        self.index += 1
        return token

    def is_keyword(self, *words: str) -> bool:
        return self.current.kind == "name" and self.current.text.upper() in words

    def accept_keyword(self, word: str) -> bool:
        if self.is_keyword(word):
            self.index += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.accept_keyword(word):
            raise self.unexpected()

    def expect_punct(self, char: str) -> None:
        if self.current.kind != "punct" or self.current.text != char:
            raise self.unexpected()
        self.index += 1

    def unexpected(self, token: Token | None = None) -> SalesforceError:
        token = token or self.current
        return error_at(self.text, token.position, f"unexpected token: '{token.text}'")

    # -- grammar ------------------------------------------------------------------------------

    def query(self) -> Query:
        query = Query(self.text)
        self.expect_keyword("SELECT")
        if self.is_keyword("COUNT") and self.tokens[self.index + 1].text == "(":
            self.index += 1
            self.expect_punct("(")
            self.expect_punct(")")
            query.count = True
        else:
            query.fields.append(self.field())
            while self.current.text == ",":
                self.advance()
                query.fields.append(self.field())
        self.expect_keyword("FROM")
        if self.current.kind != "name" or "." in self.current.text or self.is_keyword(*_CLAUSE_KEYWORDS):
            raise self.unexpected()
        query.object_name, query.object_position = self.current.text, self.current.position
        self.advance()
        if self.accept_keyword("WHERE"):
            query.where = self.condition()
        if self.accept_keyword("ORDER"):
            self.expect_keyword("BY")
            query.order.append(self.order())
            while self.current.text == ",":
                self.advance()
                query.order.append(self.order())
        if self.accept_keyword("LIMIT"):
            token = self.advance()
            if token.kind != "number" or not token.text.isdigit():
                raise self.unexpected(token)
            query.limit = int(token.text)
        if self.current.kind != "eof":
            raise self.unexpected()
        return query

    def field(self) -> FieldPath:
        token = self.current
        if token.kind != "name" or self.is_keyword("FROM", *_CLAUSE_KEYWORDS, "AND", "OR", "NOT"):
            raise self.unexpected()
        self.advance()
        return FieldPath(tuple(token.text.split(".")), token.position)

    def condition(self) -> Condition:
        terms = [self.term()]
        operator = None
        while self.is_keyword("AND", "OR"):
            word = self.current.text.upper()
            if operator is not None and word != operator:
                raise self.unexpected()  # SOQL needs parentheses to mix AND and OR
            operator = word
            self.advance()
            terms.append(self.term())
        return terms[0] if operator is None else Junction(operator, tuple(terms))

    def term(self) -> Condition:
        if self.current.text == "(":
            self.advance()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        if self.accept_keyword("NOT"):
            return Not(self.term())
        path = self.field()
        if self.current.kind == "op":
            operator = _COMPARISONS[self.advance().text]
            return Comparison(path, operator, (self.literal(),))
        if self.accept_keyword("LIKE"):
            token = self.current
            if token.kind != "string":
                raise self.unexpected()
            self.advance()
            return Comparison(path, "LIKE", (Literal("string", self._string(token, like=True), token.position),))
        negated = self.accept_keyword("NOT")
        if not self.accept_keyword("IN"):
            raise self.unexpected()
        self.expect_punct("(")
        values = [self.literal()]
        while self.current.text == ",":
            self.advance()
            values.append(self.literal())
        self.expect_punct(")")
        return Comparison(path, "NOT IN" if negated else "IN", tuple(values))

    def literal(self) -> Literal:
        token = self.advance()
        if token.kind == "string":
            return Literal("string", self._string(token), token.position)
        if token.kind == "number":
            return Literal("number", float(token.text) if "." in token.text else int(token.text), token.position)
        if token.kind in ("date", "datetime"):
            return Literal(token.kind, token.text, token.position)
        if token.kind == "name" and token.text.upper() in ("TRUE", "FALSE"):
            return Literal("boolean", token.text.upper() == "TRUE", token.position)
        if token.kind == "name" and token.text.upper() == "NULL":
            return Literal("null", None, token.position)
        raise self.unexpected(token)

    def _string(self, token: Token, like: bool = False) -> str:
        """Unquote 'it\\'s': backslash escapes as SOQL defines them; LIKE keeps \\% and \\_ as literal wildcards."""
        body, out, i = token.text[1:-1], [], 0
        while i < len(body):
            char = body[i]
            if char == "\\":
                escaped = body[i + 1]
                if like and escaped in _LIKE_ESCAPES:
                    out.append(_LIKE_ESCAPES[escaped])
                elif escaped in _ESCAPES:
                    out.append(("\\\\" if like else "\\") if escaped == "\\" else _ESCAPES[escaped])
                else:
                    raise error_at(
                        self.text,
                        token.position + 1 + i,
                        f"Invalid string literal '{token.text}'. Illegal character sequence '\\{escaped}' in string "
                        "literal.",
                    )
                i += 2
            else:
                out.append(char)
                i += 1
        return "".join(out)

    def order(self) -> Order:
        path = self.field()
        descending = False
        if self.is_keyword("ASC", "DESC"):
            descending = self.advance().text.upper() == "DESC"
        nulls_last = descending  # SOQL: ascending puts nulls first, descending last
        if self.accept_keyword("NULLS"):
            if not self.is_keyword("FIRST", "LAST"):
                raise self.unexpected()
            nulls_last = self.advance().text.upper() == "LAST"
        return Order(path, descending, nulls_last)
