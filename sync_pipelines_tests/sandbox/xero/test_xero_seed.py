"""The Xero seeder: deterministic, true to what it documents, and built as the ledger builds (sandbox/xero/seed.py).

Seedings of more than one chunk of invoices run here with chunks of 100 invoices, so that a few hundred exercise
the worker processes and the per-chunk random streams that a million would.
"""

import random
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from sync_pipelines.sandbox.store import COLLECTIONS, Store, dumps, seeded_row
from sync_pipelines.sandbox.xero import seed
from sync_pipelines.sandbox.xero.accounting import apply_payment, new_bank_transaction, new_invoice, new_payment
from sync_pipelines.sandbox.xero.dates import parse_net

CHUNK = 100


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seed, "_CHUNK_INVOICES", CHUNK)


def _bodies(records: seed.Records) -> dict[str, list[str]]:
    return {collection: [dumps(body) for _, body, _ in rows] for collection, rows in records.items()}


@pytest.mark.parametrize("invoices", [300, 3 * CHUNK + 1])
def test_same_seed_same_records_and_each_organisation_its_own(small_chunks: None, invoices: int):
    """One chunk or several (a chunk's invoices from a stream of its own): the same records every time."""
    first, first_meta = seed.generate(11, invoices, 20, malformed=4)
    again, again_meta = seed.generate(11, invoices, 20, malformed=4)
    assert _bodies(first) == _bodies(again) and first_meta == again_meta
    second, second_meta = seed.generate(11, invoices, 20, malformed=4, organisation=2)
    first_ids = {row_id for rows in first.values() for row_id, _, _ in rows}
    assert first_ids.isdisjoint(row_id for rows in second.values() for row_id, _, _ in rows)
    assert first_meta["tenant_id"] != second_meta["tenant_id"]


def test_several_chunks_are_staged_by_workers_as_generated(small_chunks: None, tmp_path: Path):
    """What worker processes write and the store copies in is exactly generate()'s records, in its order."""
    records, meta = seed.generate(5, 7 * CHUNK + 20, 13, malformed=5)
    assert len(seed._Seeding(5, 7 * CHUNK + 20, 13, 5, 1).invoice_chunks) == 8
    store = Store(tmp_path / "state.db")
    pragmas = ("journal_mode", "synchronous", "cache_size")
    before = [store._conn.execute(f"PRAGMA {name}").fetchone() for name in pragmas]
    staging = tmp_path / "staging"
    staging.mkdir()
    staged, staged_meta = seed.stage(5, 7 * CHUNK + 20, 13, malformed=5, directory=staging)
    store.replace_records(staged, staged_meta)
    assert staged_meta == meta
    for collection, rows in records.items():
        stored = store._conn.execute(f"SELECT id, malformed, body FROM {COLLECTIONS[collection][0]} ORDER BY rowid")
        assert stored.fetchall() == [(row_id, malformed, dumps(body)) for row_id, body, malformed in rows]
    assert [store._conn.execute(f"PRAGMA {name}").fetchone() for name in pragmas] == before  # for that load only
    assert [row[1] for row in store._conn.execute("PRAGMA database_list")] == ["main"]
    store.close()


@pytest.mark.parametrize("invoices", [1200, 12 * CHUNK + 1])
def test_seeded_records_keep_their_documented_shape(small_chunks: None, invoices: int):
    records, meta = seed.generate(3, invoices, 60, malformed=7)
    bills_and_sales = [body for _, body, _ in records["Invoices"]]
    sales = [i for i in bills_and_sales[:invoices] if i["Type"] == "ACCREC"]
    assert 0.8 < len(sales) / invoices < 0.9
    statuses = Counter(i["Status"] for i in bills_and_sales[:invoices])
    assert 0.44 < statuses["PAID"] / invoices < 0.56 and 0.25 < statuses["AUTHORISED"] / invoices < 0.35
    assert 0.4 < Counter(i["CurrencyCode"] for i in bills_and_sales)["USD"] / len(bills_and_sales) < 0.6
    updated = [i["UpdatedDateUTC"] for i in bills_and_sales]
    ties = sum(a == b for a, b in zip(updated, updated[1:], strict=False)) / invoices
    assert 0.06 < ties < 0.14  # clients must tie-break on the ID
    # The malformed extras come last, sales invoices all, cycling through the three kinds.
    reasons = [reason for _, _, reason in records["Invoices"]]
    assert reasons[:invoices] == [None] * invoices
    assert reasons[invoices:] == [seed._MALFORMED_KINDS[n % 3] for n in range(7)]
    assert {i["Type"] for i in bills_and_sales[invoices:]} == {"ACCREC"}
    # Sales invoices are numbered from INV-00001 on without a gap, across chunks too.
    numbers = [i["InvoiceNumber"] for i in bills_and_sales if i["Type"] == "ACCREC"]
    assert numbers == [f"INV-{n:05d}" for n in range(1, len(numbers) + 1)] and meta["invoice_number"] == len(numbers)
    # Every PAID invoice has its payment, as do some AUTHORISED ones; the payments list them in order.
    paid = [(row_id, body) for row_id, body, _ in records["Invoices"] if body["Payments"]]
    assert {i["Status"] for _, i in paid} == {"PAID", "AUTHORISED"}
    assert all(i["Payments"] for i in bills_and_sales if i["Status"] == "PAID")
    assert [p["Invoice"]["InvoiceID"] for _, p, _ in records["Payments"]] == [row_id for row_id, _ in paid]
    contacts = [body for _, body, _ in records["Contacts"]]
    for flag, invoice_type in (("IsCustomer", "ACCREC"), ("IsSupplier", "ACCPAY")):
        having = {i["Contact"]["ContactID"] for i in bills_and_sales if i["Type"] == invoice_type}
        assert {c["ContactID"] for c in contacts if c[flag]} == having
    assert len(records["BankTransactions"]) == invoices // 10


@pytest.mark.parametrize("invoices", [400, 4 * CHUNK + 1])
def test_seeded_records_are_what_the_ledger_makes_of_them(small_chunks: None, invoices: int):
    """The seeder prices in whole cents; accounting.py, which the API writes with, makes the same bytes from the
    same inputs: totals, tax, rounding, payments, key order."""
    records, _ = seed.generate(9, invoices, 25)
    payments = {row_id: body for row_id, body, _ in records["Payments"]}
    for _, seeded, _ in records["Invoices"]:
        lines = [_line_input(line) for line in seeded["LineItems"]]
        status = "AUTHORISED" if seeded["Status"] == "PAID" else seeded["Status"]
        updated = parse_net(seeded["UpdatedDateUTC"])
        invoice = new_invoice(
            seeded["InvoiceID"], seeded["Type"], seeded["InvoiceNumber"], seeded["Reference"], seeded["Contact"],
            lines, status, seeded["CurrencyCode"], parse_net(seeded["Date"]), parse_net(seeded["DueDate"]), updated,
        )  # fmt: skip
        for entry in seeded["Payments"]:
            made = payments[entry["PaymentID"]]
            payment = new_payment(
                made["PaymentID"], invoice, Decimal(str(made["Amount"])), parse_net(made["Date"]), updated, ""
            )
            apply_payment(invoice, payment, updated)
            assert dumps(payment) == dumps(made)
        assert dumps(invoice) == dumps(seeded)
    for _, seeded, _ in records["BankTransactions"]:
        transaction = new_bank_transaction(
            seeded["BankTransactionID"], seeded["Type"], seeded["BankAccount"], seeded["Contact"],
            [_line_input(line) for line in seeded["LineItems"]], seeded["CurrencyCode"], parse_net(seeded["Date"]),
            parse_net(seeded["UpdatedDateUTC"]),
        )  # fmt: skip
        assert dumps(transaction) == dumps(seeded)


def _line_input(line: dict) -> dict:
    """A seeded line as it was before pricing: whole quantity, the unit amount as text."""
    return {
        "Description": line["Description"],
        "Quantity": int(line["Quantity"]),
        "UnitAmount": str(line["UnitAmount"]),
        **{key: line[key] for key in ("AccountCode", "TaxType", "LineItemID")},
    }


def test_stored_bodies_are_what_dumps_writes(small_chunks: None):
    """seeded_row serialises with orjson: the same bytes as dumps for every seeded body, malformed ones too."""
    records, _ = seed.generate(4, 2 * CHUNK + 1, 10, malformed=3)
    for collection, rows in records.items():
        for row_id, body, malformed in rows:
            assert seeded_row(collection, row_id, body, malformed) == Store._row(collection, row_id, body, malformed)


def test_ids_are_version_4_uuids():
    bits = random.Random(1)
    for _ in range(1000):
        value = bits.getrandbits(128)
        assert seed._uuid4(value) == str(uuid.UUID(int=value, version=4))
