"""Split a batch into rows that honour a pandera contract and rows to quarantine, with readable reasons."""

from __future__ import annotations

import json

import pandas as pd
import pandera.pandas as pa

# Column checks first stop bad values; frame-wide checks can only judge rows whose values coerced, so
# validation repeats on the survivors. Three rounds cover: bad values, then cross-field rules.
_MAX_ROUNDS = 3


def _reason(case: dict) -> str:
    check = str(case["check"])
    if check == "not_nullable":
        return f"{case['column']}: missing"
    if check.startswith("coerce_dtype"):
        return f"{case['column']}: {case['failure_case']!r} is not a valid {check[len('coerce_dtype') :].strip('()')}"
    if case["schema_context"] == "DataFrameSchema":
        return f"row: {check} failed"
    return f"{case['column']}: {check} failed for {case['failure_case']!r}"


def split_valid(frame: pd.DataFrame, model: type[pa.DataFrameModel]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate row by row: (valid rows coerced to the contract, rejects with `reasons` and `row` JSON).

    The frame's index identifies rows (the landing sequence), so reasons land against the right record.
    A failure that names no row (e.g. a missing column) means the batch itself is wrong and is raised.
    """
    reasons: dict[object, list[str]] = {}
    remaining = frame
    for _ in range(_MAX_ROUNDS):
        try:
            valid = model.validate(remaining, lazy=True)
            break
        except pa.errors.SchemaErrors as errors:
            cases = errors.failure_cases
            row_cases = cases[cases["index"].notna()]
            if row_cases.empty:
                raise
            for case in row_cases.to_dict("records"):
                # A value that failed to coerce is also reported by the dtype check: say it once.
                if str(case["check"]).startswith("dtype(") and any(
                    r.startswith(f"{case['column']}:") for r in reasons.get(case["index"], [])
                ):
                    continue
                reasons.setdefault(case["index"], []).append(_reason(case))
            remaining = remaining.drop(index=list(set(row_cases["index"])))
    else:
        valid = model.validate(remaining, lazy=True)
    rejected = frame.loc[list(reasons)]
    quarantined = pd.DataFrame(
        {
            "reasons": ["; ".join(dict.fromkeys(reasons[i])) for i in rejected.index],
            "row": [json.dumps(r, default=str) for r in rejected.to_dict("records")],
        },
        index=rejected.index,
    )
    return valid, quarantined
