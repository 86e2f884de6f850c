"""Validation errors, money arithmetic and transaction sides shared by the ledger and its extensions (items,
tracking, credit notes).

They live apart from accounting.py so the modules the ledger itself uses can raise and price without importing it.
"""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

CENT = Decimal("0.01")


class Invalid(Exception):
    """Element-level validation failure: becomes ValidationErrors on that element (xero.md §4.2, §4.4)."""

    def __init__(self, *messages: str):
        super().__init__("; ".join(messages))
        self.messages = list(messages)


class PostDataInvalid(Exception):
    """Request-level failure (bad enum, bad date, malformed body): ErrorNumber 14 (xero.md §4.4)."""


def money(value: Decimal) -> float:
    return float(value.quantize(CENT, rounding=ROUND_HALF_UP))


def decimal(value: Any, field: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except InvalidOperation as exc:
        raise PostDataInvalid(f"{field} must be a number, got {value!r}") from exc
    if not result.is_finite():
        raise PostDataInvalid(f"{field} must be a number, got {value!r}")
    return result


def text(element: dict, field: str, max_length: int) -> str | None:
    """An optional string field; a non-string is malformed, an over-long one invalid (the spec's maxLength)."""
    value = element.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PostDataInvalid(f"{field} must be a string")
    if len(value) > max_length:
        raise Invalid(f"{field} cannot be longer than {max_length} characters")
    return value


def is_sale(transaction_type: str) -> bool:
    """Sales invoices, customer credit notes and money received sell; bills, supplier credits and spending buy."""
    return transaction_type in ("ACCREC", "ACCRECCREDIT") or transaction_type.startswith("RECEIVE")
