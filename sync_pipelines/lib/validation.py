"""Split a batch into rows that honour a pandera contract and rows to quarantine, with readable reasons.

Whatever a record holds, judging it never raises: values of the wrong JSON type, numbers that are not finite,
text no target can take, and failures pandera cannot pin on a row all become reasons.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime

import pandas as pd
import pandera.pandas as pa

# Text is quarantined, never stripped, when it holds characters no business value has: a lone UTF-16 surrogate
# (not Unicode: no UTF-8 encoder, DuckDB or target takes it), C0 controls (NUL, ESC, ...), DEL and C1 controls.
# Stripping would send something the source does not hold and hide that it does. Tab and line breaks are text in
# columns the contract marks free text (`metadata={"free_text": True}`, e.g. a street or a description) and
# refused in every other, single-line one (ids, names, numbers, emails).
_NEVER_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"[\t\n\r]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_INT64 = (-(2**63), 2**63 - 1)
_SHOWN_CHARS = 80


def shown(value: object) -> str:
    """A value as a reason quotes it: its repr, cut short (a 200 kB string stays a readable reason)."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[: _SHOWN_CHARS - 3]}..."


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def _boolean(value: object) -> str | None:
    return None if isinstance(value, bool) else "is not a valid boolean"


def _integer(value: object) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]
    return None if ok else "is not a valid integer"


def _float(value: object) -> str | None:
    if not _is_number(value):
        return "is not a valid number"
    return None if _is_finite(value) else "is not a finite number"


def _date(value: object) -> str | None:
    return None if isinstance(value, datetime) else "is not a valid date"


def _text(free_text: bool):
    def check(value: object) -> str | None:
        if not isinstance(value, str):
            return "is not text"
        if found := _NEVER_TEXT.search(value):
            return f"holds the control character or lone surrogate U+{ord(found.group()):04X}"
        if not free_text and (found := _LINE_BREAKS.search(value)):
            return f"holds a tab or line break (U+{ord(found.group()):04X}) in a single-line field"
        return None

    return check


_SINGLE_LINE_TEXT, _FREE_TEXT = _text(free_text=False), _text(free_text=True)


def _value_check(column: pa.Column):
    """What a flattened value must be to become this column's without pandera changing its meaning, or None."""
    dtype = column.dtype.type
    if pd.api.types.is_bool_dtype(dtype):
        return _boolean
    if pd.api.types.is_integer_dtype(dtype):
        return _integer
    if pd.api.types.is_float_dtype(dtype):
        return _float
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _date
    if pd.api.types.is_string_dtype(dtype):
        return _FREE_TEXT if (column.metadata or {}).get("free_text") else _SINGLE_LINE_TEXT
    return None


def _all_pass(values: list, check) -> bool:
    """Whether every value of a column passes `check`, told for the whole column at once where it can be (the
    usual case: one type throughout, nothing odd), so that only a column with a suspect value is judged value by
    value."""
    kinds = {type(value) for value in values} - {type(None)}
    present = [value for value in values if value is not None]
    if check is _float and kinds <= {float, int}:
        try:
            return all(map(math.isfinite, present))
        except OverflowError:  # an int beyond any float
            return False
    if check in (_SINGLE_LINE_TEXT, _FREE_TEXT) and kinds <= {str}:
        # A space joins them: it is no character either pattern looks for.
        joined = " ".join(present)
        return not _NEVER_TEXT.search(joined) and (check is _FREE_TEXT or not _LINE_BREAKS.search(joined))
    if check is _date:
        return all(issubclass(kind, datetime) for kind in kinds)
    if check is _integer and kinds <= {int}:
        return not present or (_INT64[0] <= min(present) and max(present) <= _INT64[1])
    if check is _boolean:
        return kinds <= {bool}
    return False


def _shape_problems(frame: pd.DataFrame, schema: pa.DataFrameSchema) -> dict[object, list[str]]:
    """Reasons per row for values pandera would coerce into something else (a list into its repr, a number into
    text, "12.5" into a float) or choke on (an unhashable list in a unique column); missing values (None) are the
    contract's to judge."""
    reasons: dict[object, list[str]] = {}
    for name, column in schema.columns.items():
        check = _value_check(column)
        if check is None or name not in frame.columns or _all_pass(frame[name].tolist(), check):
            continue
        for index, value in frame[name].items():
            if value is not None and (problem := check(value)) is not None:
                reasons.setdefault(index, []).append(f"{name}: {shown(value)} {problem}")
    return reasons


def _reason(case: dict) -> str:
    check = str(case["check"])
    if check == "not_nullable":
        return f"{case['column']}: missing"
    if check.startswith("coerce_dtype"):
        dtype = check[len("coerce_dtype") :].strip("()")
        return f"{case['column']}: {shown(case['failure_case'])} is not a valid {dtype}"
    if case["schema_context"] == "DataFrameSchema":
        return f"row: {check} failed"
    return f"{case['column']}: {check} failed for {shown(case['failure_case'])}"


def _judging_schema(model: type[pa.DataFrameModel]) -> pa.DataFrameSchema:
    """The contract without its unique-key rule: versions of one record in a batch are each judged on their own,
    and the latest valid one is staged (the staged table's `unique_keys` check keeps the rule)."""
    schema = model.to_schema()
    return schema.update_columns({name: {"unique": False} for name, column in schema.columns.items() if column.unique})


def split_valid(frame: pd.DataFrame, model: type[pa.DataFrameModel]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate row by row: (valid rows coerced to the contract, rejects with `reasons` and `row` JSON).

    Build the frame with dtype=object, so a missing value (None) and a value that is no number (NaN) stay apart.
    The frame's index identifies rows (the landing sequence), so reasons land against the right record. A
    failure that names no row (e.g. a missing column) is every remaining row's reason.
    """
    schema = _judging_schema(model)
    reasons = _shape_problems(frame, schema)
    remaining = frame.drop(index=list(reasons))
    # Column checks first stop bad values; frame-wide checks can only judge rows whose values coerced, so
    # validation repeats on the survivors until they all pass (each round drops at least one row).
    while True:
        try:
            valid = schema.validate(remaining, lazy=True)
            break
        except pa.errors.SchemaErrors as errors:
            cases = errors.failure_cases
            row_cases = cases[cases["index"].notna()]
            if row_cases.empty:
                batch = [f"batch: {c['check']} failed for {shown(c['failure_case'])}" for c in cases.to_dict("records")]
                for index in remaining.index:
                    reasons.setdefault(index, []).extend(batch)
                valid = remaining.iloc[0:0]
                break
            for case in row_cases.to_dict("records"):
                # A value that failed to coerce is also reported by the dtype check: say it once.
                if str(case["check"]).startswith("dtype(") and any(
                    r.startswith(f"{case['column']}:") for r in reasons.get(case["index"], [])
                ):
                    continue
                reasons.setdefault(case["index"], []).append(_reason(case))
            remaining = remaining.drop(index=list(set(row_cases["index"])))
    rejected = frame.loc[list(reasons)]
    return valid, rejected_rows({i: reasons[i] for i in rejected.index}, rejected.to_dict("index"))


def rejected_rows(reasons: Mapping[object, list[str]], rows: Mapping[object, object]) -> pd.DataFrame:
    """Rows to quarantine, indexed like `reasons`: each with its reasons joined and the row as JSON."""
    return pd.DataFrame(
        {
            "reasons": ["; ".join(dict.fromkeys(r)) for r in reasons.values()],
            "row": [row_json(rows[index]) for index in reasons],
        },
        index=pd.Index(list(reasons), dtype="int64"),
    )


def row_json(row: object) -> str:
    """A quarantined row as JSON that DuckDB accepts: a lone surrogate is kept as the text of its escape."""
    text = json.dumps(row, default=str, ensure_ascii=False)
    return _SURROGATE.sub(lambda found: f"\\\\u{ord(found.group()):04x}", text)


def message_refusal(
    payload: dict, *, max_bytes: int | None = None, field_lengths: Mapping[str, int] | None = None
) -> str | None:
    """Why a target would refuse this message, judged before it is queued, or None.

    It must serialise as strict JSON (no NaN or Infinity), fit the target's size per message, and keep every
    field the target bounds within its length.
    """
    try:
        size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode())
    except (TypeError, ValueError) as error:
        return f"message: not valid JSON ({error})"
    if max_bytes is not None and size > max_bytes:
        return f"message: {size} bytes, over the target's {max_bytes}"
    for field, value in _fields(payload):
        limit = (field_lengths or {}).get(field)
        if limit is not None and isinstance(value, str) and len(value) > limit:
            return f"message: {field} has {len(value)} characters, over the target's {limit}"
    return None


def _fields(value: object):
    """(name, value) of every field of a JSON object, nested ones too."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield name, item
            yield from _fields(item)
    elif isinstance(value, list):
        for item in value:
            yield from _fields(item)
