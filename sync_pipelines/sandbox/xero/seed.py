"""Deterministic sandbox data: the same seed always yields byte-identical records.

Every random choice comes from random.Random streams seeded from the seed (one per organisation, and beyond
50,000 invoices one per chunk of them: _Seeding) and one seeded Faker, and timestamps are laid out backwards from a
fixed anchor instead of "now", so tests and benchmarks can rely on exact contents.

Invoices, payments and bank transactions are built here as accounting.py builds them (key order, totals and
their rounding), but in whole cents and without the ledger's checks of API input: seeding a million must take
seconds, and the ledger's Decimal arithmetic costs several times all the rest. Tests hold the two to the same bytes.
"""

import gc
import multiprocessing
import os
import random
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from faker import Faker

from sync_pipelines.sandbox.segment.catalogue import CATALOGUE, OPENING_STOCK
from sync_pipelines.sandbox.store import MAX_STAGED_FILES, StagedRecords, seeded_row
from sync_pipelines.sandbox.xero.accounting import (
    BANK_ACCOUNT,
    BANK_ACCOUNT_ID,
    EXPENSE_ACCOUNTS,
    PURCHASES_ACCOUNT,
    SALES_ACCOUNT,
    TAX_RATES,
    contact_summary,
    new_contact,
)
from sync_pipelines.sandbox.xero.dates import DateTexts, datetime_literal, net
from sync_pipelines.sandbox.xero.values import money

ANCHOR_MS = datetime_literal(2025, 1, 1)
HISTORY_DAYS = 365
_DAY_MS = 86_400_000
_HISTORY_MS = HISTORY_DAYS * _DAY_MS
_STATUS_WEIGHTS = {"DRAFT": 8, "SUBMITTED": 4, "AUTHORISED": 30, "PAID": 50, "VOIDED": 4, "DELETED": 4}
_CURRENCY_WEIGHTS = {"USD": 50, "GBP": 15, "EUR": 15, "AUD": 10, "NZD": 10}
_SALES_SHARE = 0.85
_SHARED_TIMESTAMP_SHARE = 0.1
_PART_PAID_SHARE = 0.15  # AUTHORISED invoices with half paid
_TAXED_LINE_SHARE = 0.8
_RECEIVE_SHARE = 0.6  # bank transactions that receive money; the others spend it
_DUE_DAYS = (7, 14, 30, 60)
_INDIVIDUAL_SHARE = 0.25  # contacts that are people (Name == "First Last"); the rest are organisations
_PURCHASES_BILL_SHARE = 0.5  # bills posted to 300 Purchases; the others to one expense account each
_MALFORMED_KINDS = ("missing InvoiceID", "bad Date", "non-numeric Total")
# Xero's default chart of accounts: 310 Cost of Goods Sold, 630 Inventory (the tracked items' asset account).
COGS_ACCOUNT, INVENTORY_ACCOUNT = "310", "630"
# uuid.UUID(int=..., version=4): clear the variant and version bits, then set variant RFC 4122 and version 4.
_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)

# Invoices per chunk, at least: more, with the malformed extras, are made in chunks by worker processes (_Seeding),
# at most as many chunks as leave room for the bank transactions' file and the contacts' among the staged files.
_CHUNK_INVOICES = 50_000
_MAX_INVOICE_CHUNKS = MAX_STAGED_FILES - 2
_STAGED_BATCH = 10_000  # records a worker keeps before it writes them to its file
# Workers making chunks: more would wait on the one process copying their files in.
_MAX_WORKERS = 4

Row = tuple[str, dict, str | None]  # (row id, rendered body, malformed reason)
Records = dict[str, list[Row]]
_R = TypeVar("_R")  # a record as a chunk renders it: a Row, or a store row (store.seeded_row)


def tenant_id(seed: int, organisation: int = 1) -> str:
    """A tenant's ID is a function of the seed (and which organisation) so a reset with the same seed keeps it."""
    return _uuid4(random.Random(f"tenant:{_stream(seed, organisation)}").getrandbits(128))


def _stream(seed: int, organisation: int) -> int | str:
    """What seeds an organisation's random choices: the seed itself for the first, so its records stay as they were
    before the sandbox served several."""
    return seed if organisation == 1 else f"{seed}/{organisation}"


def _uuid4(bits: int) -> str:
    """str(uuid.UUID(int=bits, version=4)) without building the UUID, which costs three times as much."""
    digits = ((bits & _UUID4_CLEAR) | _UUID4_SET).to_bytes(16).hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def generate(
    seed: int, invoices: int, contacts: int, malformed: int = 0, organisation: int = 1
) -> tuple[Records, dict[str, Any]]:
    """All collections of one organisation as (row id, rendered body, malformed reason) plus the store metadata to
    keep with them; each organisation's from a random stream of its own. Made in this process: stage() writes the
    same records from several."""
    return _Seeding(seed, invoices, contacts, malformed, organisation).records()


def stage(
    seed: int, invoices: int, contacts: int, malformed: int = 0, organisation: int = 1, *, directory: Path
) -> tuple[Iterator[Path], dict[str, Any]]:
    """generate()'s records written to StagedRecords files in `directory`, for Store.replace_records, and the
    metadata.

    Beyond one chunk of invoices, worker processes write the chunks' files while the store copies in those written
    before them: the records are the same whichever process makes them.
    """
    seeding = _Seeding(seed, invoices, contacts, malformed, organisation)
    if seeding.invoice_chunks:
        return seeding.staged_by_workers(directory), seeding.meta()
    records, meta = seeding.records()
    path = directory / "records.sqlite"
    with StagedRecords(path) as staged:
        for collection, rows in records.items():
            staged.add(collection, (seeded_row(collection, *row) for row in rows))
    return iter([path]), meta


@dataclass(frozen=True)
class _InvoiceChunk:
    """Invoices start..stop of an organisation's (from `invoices` on, the malformed extras), drawn from a stream of
    their own whose first draws are whether each is a sale: so every chunk's sales invoice numbers, which follow on
    from the chunks before it, are known before any chunk is made."""

    stream: str
    start: int
    stop: int
    invoices: int
    first_number: int  # sales invoices in the chunks before
    contacts: tuple[dict, ...]  # the contacts' summaries, as invoices show them
    descriptions: tuple[str, ...]


@dataclass(frozen=True)
class _BankChunk:
    """`count` bank transactions drawn from a stream of their own."""

    stream: str
    count: int
    contacts: tuple[dict, ...]
    descriptions: tuple[str, ...]


class _Seeding:
    """One organisation's seeding. Its contacts and line descriptions come first from its stream.

    Up to _CHUNK_INVOICES invoices (with the malformed extras) then come from the same stream, and the bank
    transactions after them, as the seeder has always drawn them. More come in up to _MAX_INVOICE_CHUNKS chunks of
    at least that many (invoice_chunks), and the bank transactions in one more (bank_chunk), each from a stream of
    its own derived from the organisation's, so that processes can make them side by side: an invoice whose
    UpdatedDateUTC would tie with the one before it in another chunk does not.
    """

    def __init__(self, seed: int, invoices: int, contacts: int, malformed: int, organisation: int):
        self.seed, self.invoices, self.contacts, self.malformed = seed, invoices, contacts, malformed
        self.organisation = organisation
        self.stream = _stream(seed, organisation)
        rng = random.Random(self.stream)
        fake = Faker("en_US")
        fake.seed_instance(self.stream)
        self.draws = _Draws(rng)
        taken: set[str] = set()
        self.people = [_contact(fake, rng, self.draws.uuid4(), index, taken) for index in range(max(1, contacts))]
        self.descriptions = tuple(sorted({fake.catch_phrase() for _ in range(200)}))
        self.invoice_chunks: list[_InvoiceChunk] = []
        self.accrec_count = 0
        if invoices + malformed > _CHUNK_INVOICES:
            self._plan_chunks()

    def _plan_chunks(self) -> None:
        summaries = tuple(contact_summary(contact) for contact in self.people)
        total = self.invoices + self.malformed
        size = max(_CHUNK_INVOICES, -(-total // _MAX_INVOICE_CHUNKS))
        for start in range(0, total, size):
            chunk = _InvoiceChunk(
                f"invoices:{self.stream}:{start}",
                start,
                min(start + size, total),
                self.invoices,
                self.accrec_count,
                summaries,
                self.descriptions,
            )
            self.invoice_chunks.append(chunk)
            self.accrec_count += sum(_sales_flags(_Draws(random.Random(chunk.stream)), chunk))
        self.bank_chunk = _BankChunk(
            f"bank-transactions:{self.stream}", max(1, self.invoices // 10), summaries, self.descriptions
        )

    def records(self) -> tuple[Records, dict[str, Any]]:
        """Every record, made in this process."""
        if self.invoice_chunks:
            invoice_rows, payment_rows = [], []
            for chunk in self.invoice_chunks:
                builder, sales_flags = _chunk_builder(chunk)
                rows = _invoices(builder, chunk.start, chunk.stop, chunk.invoices, sales_flags, _record)
                invoice_rows += rows[0]
                payment_rows += rows[1]
                self._flag(builder.customers, builder.suppliers)
            builder = _bank_chunk_builder(self.bank_chunk)
            bank_rows = [_bank_transaction(builder, _record) for _ in range(self.bank_chunk.count)]
        else:
            summaries = [contact_summary(contact) for contact in self.people]
            builder = _InvoiceBuilder(self.draws, summaries, self.descriptions, 0)
            total = self.invoices + self.malformed
            invoice_rows, payment_rows = _invoices(builder, 0, total, self.invoices, None, _record)
            self._flag(builder.customers, builder.suppliers)
            self.accrec_count = builder.accrec_count
            bank_rows = [_bank_transaction(builder, _record) for _ in range(max(1, self.invoices // 10))]
        records = {
            "Contacts": [(c["ContactID"], c, None) for c in self.people],
            "Invoices": invoice_rows,
            "Payments": payment_rows,
            "BankTransactions": bank_rows,
            "Items": [(item["ItemID"], item, None) for item in _catalogue_items(self.stream)],
        }
        return records, self.meta()

    def staged_by_workers(self, directory: Path) -> Iterator[Path]:
        """The chunks' files, written by worker processes, in order as each is done; then the contacts' (flagged
        by the invoices) and the items'.

        The workers are forked: spawned ones would each import the caller's main module again (the CLI's takes
        seconds), and run nothing but the seeder, which takes no lock another thread of the caller might hold.
        They run without the cyclic garbage collector: a chunk makes no cycles, and collections would look through
        every record a batch keeps.
        """
        workers = min(_MAX_WORKERS, os.cpu_count() or 1, len(self.invoice_chunks))
        context = multiprocessing.get_context("fork")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=gc.disable)
        try:
            paths = [directory / f"invoices-{number}.sqlite" for number in range(len(self.invoice_chunks))]
            flags = pool.map(_stage_invoice_chunk, self.invoice_chunks, paths)
            bank_path = directory / "bank-transactions.sqlite"
            bank = pool.submit(_stage_bank_chunk, self.bank_chunk, bank_path)
            for path, (customers, suppliers) in zip(paths, flags, strict=True):
                self._flag(customers, suppliers)
                yield path
            bank.result()
            yield bank_path
        finally:
            pool.shutdown(cancel_futures=True)
        path = directory / "contacts-and-items.sqlite"
        with StagedRecords(path) as staged:
            staged.add("Contacts", (seeded_row("Contacts", c["ContactID"], c, None) for c in self.people))
            items = _catalogue_items(self.stream)
            staged.add("Items", (seeded_row("Items", item["ItemID"], item, None) for item in items))
        yield path

    def _flag(self, customers: set[int], suppliers: set[int]) -> None:
        """IsCustomer/IsSupplier follow from having sales invoices / bills (xero.md §2.5)."""
        for index in customers:
            self.people[index]["IsCustomer"] = True
        for index in suppliers:
            self.people[index]["IsSupplier"] = True

    def meta(self) -> dict[str, Any]:
        """What the store keeps with the records (once the invoices are numbered)."""
        return {
            "seed": self.seed,
            "invoices": self.invoices,
            "contacts": self.contacts,
            "malformed": self.malformed,
            "tenant_id": tenant_id(self.seed, self.organisation),
            "tenant_name": f"Sandbox Company {self.seed}"
            + ("" if self.organisation == 1 else f" No. {self.organisation}"),
            "invoice_number": self.accrec_count,
            "credit_note_number": 0,  # no credit notes are seeded; a reset restarts their numbering at CN-0001
            "connection": _connection(self.stream),
        }


def _sales_flags(draws: "_Draws", chunk: _InvoiceChunk) -> list[bool]:
    # Malformed extras are sales invoices, so every ACCREC consumer meets all of them.
    return [draws.random() < _SALES_SHARE or index >= chunk.invoices for index in range(chunk.start, chunk.stop)]


def _invoices(
    builder: "_InvoiceBuilder",
    start: int,
    stop: int,
    invoices: int,
    sales_flags: list[bool] | None,
    render: Callable[[str, str, dict, str | None], _R],
) -> tuple[list[_R], list[_R]]:
    """Invoices start..stop and their payments, each rendered as it is made; those from `invoices` on are malformed.
    Whether each is a sale is drawn just before it unless given."""
    invoice_rows: list[_R] = []
    payment_rows: list[_R] = []
    for index in range(start, stop):
        if sales_flags is None:
            sales = builder.draws.random() < _SALES_SHARE or index >= invoices  # as _sales_flags
        else:
            sales = sales_flags[index - start]
        invoice, payment = builder.build(sales)
        row_id = invoice["InvoiceID"]
        malformed = _break(invoice, index - invoices) if index >= invoices else None
        invoice_rows.append(render("Invoices", row_id, invoice, malformed))
        if payment is not None:
            payment_rows.append(render("Payments", payment["PaymentID"], payment, None))
    return invoice_rows, payment_rows


def _record(collection: str, row_id: str, body: dict, malformed: str | None) -> Row:
    """A record as generate() gives it."""
    return row_id, body, malformed


def _chunk_builder(chunk: _InvoiceChunk) -> tuple["_InvoiceBuilder", list[bool]]:
    """A chunk's builder, and whether each of its invoices is a sale (the first draws of its stream)."""
    draws = _Draws(random.Random(chunk.stream))
    sales_flags = _sales_flags(draws, chunk)
    return _InvoiceBuilder(draws, chunk.contacts, chunk.descriptions, chunk.first_number), sales_flags


def _stage_invoice_chunk(chunk: _InvoiceChunk, path: Path) -> tuple[set[int], set[int]]:
    """In a worker: a chunk's invoices and payments written to a StagedRecords file a batch at a time; returns
    the contacts it makes customers and suppliers (by index)."""
    builder, sales_flags = _chunk_builder(chunk)
    with StagedRecords(path) as staged:
        for start in range(chunk.start, chunk.stop, _STAGED_BATCH):
            stop = min(start + _STAGED_BATCH, chunk.stop)
            batch_sales = sales_flags[start - chunk.start : stop - chunk.start]
            invoice_rows, payment_rows = _invoices(builder, start, stop, chunk.invoices, batch_sales, seeded_row)
            staged.add("Invoices", invoice_rows)
            staged.add("Payments", payment_rows)
    return builder.customers, builder.suppliers


def _bank_chunk_builder(chunk: _BankChunk) -> "_InvoiceBuilder":
    return _InvoiceBuilder(_Draws(random.Random(chunk.stream)), chunk.contacts, chunk.descriptions, 0)


def _stage_bank_chunk(chunk: _BankChunk, path: Path) -> None:
    """In a worker: the bank transactions written to a StagedRecords file a batch at a time."""
    builder = _bank_chunk_builder(chunk)
    with StagedRecords(path) as staged:
        for start in range(0, chunk.count, _STAGED_BATCH):
            batch = min(_STAGED_BATCH, chunk.count - start)
            staged.add("BankTransactions", [_bank_transaction(builder, seeded_row) for _ in range(batch)])


def _bank_transaction(builder: "_InvoiceBuilder", render: Callable[[str, str, dict, str | None], _R]) -> _R:
    transaction = builder.bank_transaction()
    return render("BankTransactions", transaction["BankTransactionID"], transaction, None)


def _connection(seed: int | str) -> dict[str, Any]:
    """The app's one connection to the tenant, connected since the anchor (xero.md §1.6)."""
    rng = random.Random(f"connection:{seed}")
    ids = [_uuid4(rng.getrandbits(128)) for _ in range(2)]
    return {"id": ids[0], "auth_event_id": ids[1], "created_ms": ANCHOR_MS, "updated_ms": ANCHOR_MS, "connected": True}


def _catalogue_items(seed: int | str) -> list[dict]:
    """The shop's catalogue (sandbox/segment/catalogue.py) as tracked items, each holding its opening stock.

    The stock sits on the item with no document behind it, as it stands once brought in before the seeded history:
    a bill would add an invoice to the seeded ones, whose counts and accounts are fixed. Nothing later undoes it,
    as stock movements only ever reverse what a document moved (inventory.py). Its own random stream leaves every
    other seeded record as it was.
    """
    rng = random.Random(f"items:{seed}")
    stocked = net(ANCHOR_MS - _HISTORY_MS)
    return [
        {
            "ItemID": _uuid4(rng.getrandbits(128)),
            "Code": product.sku,
            "Description": product.description,
            "PurchaseDescription": product.description,
            "UpdatedDateUTC": stocked,
            "PurchaseDetails": {"UnitPrice": float(product.cost), "COGSAccountCode": COGS_ACCOUNT, "TaxType": "NONE"},
            "SalesDetails": {"UnitPrice": float(product.price), "AccountCode": SALES_ACCOUNT, "TaxType": "NONE"},
            "Name": product.name,
            "IsTrackedAsInventory": True,
            "InventoryAssetAccountCode": INVENTORY_ACCOUNT,
            "TotalCostPool": money(product.cost * OPENING_STOCK),
            "QuantityOnHand": float(OPENING_STOCK),
            "IsSold": True,
            "IsPurchased": True,
        }
        for product in CATALOGUE
    ]


def _contact(fake: Faker, rng: random.Random, contact_id: str, index: int, taken: set[str]) -> dict:
    """A person (Name is exactly "First Last") or an organisation with a primary person (FirstName/LastName).

    IsCustomer/IsSupplier stay false here: invoices set them (xero.md §2.5).
    """
    first, last = fake.first_name(), fake.last_name()
    if rng.random() < _INDIVIDUAL_SHARE:
        while f"{first} {last}" in taken:  # a suffix would make a person look like an organisation
            first, last = fake.first_name(), fake.last_name()
        name = f"{first} {last}"
    else:
        name = _unique_name(fake.company(), taken)
    taken.add(name)
    contact = new_contact(contact_id, name, ANCHOR_MS - rng.randint(1, _HISTORY_MS))
    contact.update(
        ContactStatus="ARCHIVED" if rng.random() < 0.05 else "ACTIVE",
        FirstName=first,
        LastName=last,
        EmailAddress=f"{first}.{last}{index}@{fake.domain_name()}".lower(),
        Addresses=[
            {
                "AddressType": "STREET",
                "AddressLine1": fake.street_address(),
                "City": fake.city(),
                "Region": fake.state_abbr(),
                "PostalCode": fake.zipcode(),
                "Country": "United States",
            },
            {
                "AddressType": "POBOX",
                "AddressLine1": f"PO Box {rng.randint(100, 9999)}",
                "City": fake.city(),
                "Region": fake.state_abbr(),
                "PostalCode": fake.zipcode(),
                "Country": "United States",
            },
        ],
        Phones=[
            {
                "PhoneType": "DEFAULT",
                "PhoneNumber": fake.numerify("###-####"),
                "PhoneAreaCode": fake.numerify("###"),
                "PhoneCountryCode": "1",
            },
            {
                "PhoneType": "MOBILE",
                "PhoneNumber": fake.numerify("###-####") if rng.random() < 0.5 else "",
                "PhoneAreaCode": "",
                "PhoneCountryCode": "",
            },
            {"PhoneType": "DDI", "PhoneNumber": "", "PhoneAreaCode": "", "PhoneCountryCode": ""},
            {"PhoneType": "FAX", "PhoneNumber": "", "PhoneAreaCode": "", "PhoneCountryCode": ""},
        ],
    )
    return contact


def _unique_name(name: str, taken: set[str]) -> str:
    """Names must be unique among active contacts (xero.md §2.5); the sandbox keeps them unique overall."""
    candidate, suffix = name, 2
    while candidate in taken:
        candidate, suffix = f"{name} ({suffix})", suffix + 1
    return candidate


class _Draws:
    """The draws random.Random's randint, choice and choices make, taking the same bits from the same stream (so a
    seed's records stay as they were) at a third of the cost: those methods spend most of a draw checking
    arguments that the seeder never gets wrong."""

    def __init__(self, rng: random.Random):
        self.random: Callable[[], float] = rng.random
        self._getrandbits = rng.getrandbits

    def below(self, n: int) -> int:
        """0 <= r < n as Random._randbelow draws it: as many bits as n has, drawn again while r >= n."""
        bits = n.bit_length()
        value = self._getrandbits(bits)
        while value >= n:
            value = self._getrandbits(bits)
        return value

    def weighted(self, population: tuple[str, ...], cumulative: tuple[int, ...]) -> str:
        """Random.choices(population, cum_weights=cumulative)[0]."""
        return population[bisect(cumulative, self.random() * cumulative[-1], 0, len(population) - 1)]

    def uuid4(self) -> str:
        return _uuid4(self._getrandbits(128))


def _half_even(cents: int) -> int:
    """Half an amount rounded to the cent as Decimal's default context rounds: ties to even."""
    half, odd = divmod(cents, 2)
    return half + (odd and half % 2)


class _InvoiceBuilder:
    """Invoices (~85% ACCREC) over shared contacts, with payments and deliberate UpdatedDateUTC ties, and bank
    transactions over the same contacts and descriptions."""

    def __init__(self, draws: _Draws, contacts: Sequence[dict], descriptions: Sequence[str], accrec_count: int):
        """`contacts` are the contacts' summaries (accounting.contact_summary); invoices show copies of them, and
        customers and suppliers collect the indexes of those they make customers and suppliers."""
        self.draws, self.contacts, self.descriptions = draws, contacts, descriptions
        self.dates = DateTexts()
        self.statuses, self.status_weights = _cumulative(_STATUS_WEIGHTS)
        self.currencies, self.currency_weights = _cumulative(_CURRENCY_WEIGHTS)
        # The rate of OUTPUT and INPUT, the taxed lines' types: a whole percent, so tax is whole cents rounded half up.
        self.tax_percent = int(TAX_RATES["OUTPUT"] * 100)
        self.accrec_count = accrec_count
        self.customers: set[int] = set()
        self.suppliers: set[int] = set()
        self.previous_updated: int | None = None

    def build(self, sales: bool) -> tuple[dict, dict | None]:
        """A sales invoice or a bill as accounting.new_invoice renders it, and its payment (accounting.new_payment,
        applied as accounting.apply_payment applies it) when it has one."""
        draws, below, dates = self.draws, self.draws.below, self.dates
        contact = below(len(self.contacts))
        (self.customers if sales else self.suppliers).add(contact)
        status = draws.weighted(self.statuses, self.status_weights)
        currency = draws.weighted(self.currencies, self.currency_weights)
        date_ms = ANCHOR_MS - 1 - below(_HISTORY_MS)
        date_ms -= date_ms % _DAY_MS
        due_ms = date_ms + _DUE_DAYS[below(len(_DUE_DAYS))] * _DAY_MS
        updated = min(ANCHOR_MS - 1, date_ms + below(20 * _DAY_MS + 1))
        if self.previous_updated is not None and draws.random() < _SHARED_TIMESTAMP_SHARE:
            updated = self.previous_updated  # clients must tie-break on the ID (xero.md §3.1)
        self.previous_updated = updated
        if sales:
            self.accrec_count += 1
            order = 1000 + below(9000)
            number, reference = f"INV-{self.accrec_count:05d}", f"PO-{order}" if below(2) else ""
            account = SALES_ACCOUNT
        else:
            number, reference = f"SUP-{1000 + below(99000)}", ""
            purchases = draws.random() < _PURCHASES_BILL_SHARE
            account = PURCHASES_ACCOUNT if purchases else EXPENSE_ACCOUNTS[below(len(EXPENSE_ACCOUNTS))]
        lines, subtotal, tax = self._lines(sales, account)
        invoice_id = draws.uuid4()
        invoice_type = "ACCREC" if sales else "ACCPAY"
        summary = dict(self.contacts[contact])
        stamp = net(updated), dates.utc_string(updated)  # UpdatedDateUTC(String), the payment's too
        total = subtotal + tax
        paid, payments, payment = 0, [], None
        if status == "PAID" or (status == "AUTHORISED" and draws.random() < _PART_PAID_SHARE):
            # A PAID invoice's payment covers it; a part-paid one stays AUTHORISED (accounting.apply_payment).
            paid = total if status == "PAID" else _half_even(total)
            paid_ms = min(updated, date_ms + below(31) * _DAY_MS)
            paid_date = dates.day(paid_ms - paid_ms % _DAY_MS)
            payment = self._payment(paid, paid_date, stamp, invoice_type, invoice_id, number, summary, currency)
            payments.append(
                {
                    "PaymentID": payment["PaymentID"],
                    "Date": paid_date[0],
                    "Amount": payment["Amount"],
                    "CurrencyRate": 1.0,
                    "HasAccount": False,
                    "HasValidationErrors": False,
                }
            )
        date_net, date_string = dates.day(date_ms)
        due_net, due_string = dates.day(due_ms)
        invoice = {
            "Type": invoice_type,
            "InvoiceID": invoice_id,
            "InvoiceNumber": number,
            "Reference": reference,
            "Payments": payments,
            "CreditNotes": [],
            "Prepayments": [],
            "Overpayments": [],
            "AmountDue": 0.0 if status in ("VOIDED", "DELETED") else (total - paid) / 100,
            "AmountPaid": paid / 100,
            "AmountCredited": 0.0,
            "CurrencyRate": 1.0,
            "HasErrors": False,
            "IsDiscounted": False,
            "HasAttachments": False,
            "Contact": summary,
            "Date": date_net,
            "DateString": date_string,
            "DueDate": due_net,
            "DueDateString": due_string,
            "Status": status,
            "LineAmountTypes": "Exclusive",
            "LineItems": lines,
            "SubTotal": subtotal / 100,
            "TotalTax": tax / 100,
            "Total": total / 100,
            "UpdatedDateUTC": stamp[0],
            "UpdatedDateUTCString": stamp[1],
            "CurrencyCode": currency,
        }
        if status == "PAID":
            invoice["FullyPaidOnDate"] = payments[0]["Date"]
        return invoice, payment

    def _payment(
        self,
        cents: int,
        date: tuple[str, str],
        stamp: tuple[str, str],
        invoice_type: str,
        invoice_id: str,
        number: str,
        contact: dict,
        currency: str,
    ) -> dict:
        """A payment of `cents` on the invoice, as accounting.new_payment renders it: `date` and `stamp` are its
        Date(String) and UpdatedDateUTC(String), `contact` the invoice's."""
        amount = cents / 100
        return {
            "PaymentID": self.draws.uuid4(),
            "Date": date[0],
            "DateString": date[1],
            "BankAmount": amount,
            "Amount": amount,
            "Reference": "",
            "CurrencyRate": 1.0,
            "PaymentType": "ACCRECPAYMENT" if invoice_type == "ACCREC" else "ACCPAYPAYMENT",
            "Status": "AUTHORISED",
            "UpdatedDateUTC": stamp[0],
            "UpdatedDateUTCString": stamp[1],
            "HasAccount": True,
            "IsReconciled": False,
            "Account": {"AccountID": BANK_ACCOUNT_ID, "Code": BANK_ACCOUNT},
            "Invoice": {
                "Type": invoice_type,
                "InvoiceID": invoice_id,
                "InvoiceNumber": number,
                "Contact": contact,
                "CurrencyCode": currency,
            },
            "HasValidationErrors": False,
        }

    def bank_transaction(self) -> dict:
        """Money received or spent, as accounting.new_bank_transaction renders it."""
        draws, below = self.draws, self.draws.below
        receive = draws.random() < _RECEIVE_SHARE
        updated = ANCHOR_MS - 1 - below(_HISTORY_MS)
        txn_id = draws.uuid4()
        contact = dict(self.contacts[below(len(self.contacts))])
        account = SALES_ACCOUNT if receive else EXPENSE_ACCOUNTS[below(len(EXPENSE_ACCOUNTS))]
        lines, subtotal, tax = self._lines(receive, account)
        date_net, date_string = self.dates.day(updated - updated % _DAY_MS)
        return {
            "BankTransactionID": txn_id,
            "BankAccount": {"AccountID": BANK_ACCOUNT_ID, "Code": BANK_ACCOUNT, "Name": "Business Bank Account"},
            "Type": "RECEIVE" if receive else "SPEND",
            "IsReconciled": False,
            "HasAttachments": False,
            "Contact": contact,
            "Date": date_net,
            "DateString": date_string,
            "Status": "AUTHORISED",
            "LineAmountTypes": "Exclusive",
            "LineItems": lines,
            "SubTotal": subtotal / 100,
            "TotalTax": tax / 100,
            "Total": (subtotal + tax) / 100,
            "UpdatedDateUTC": net(updated),
            "CurrencyCode": "USD",
        }

    def _lines(self, sales: bool, account: str) -> tuple[list[dict], int, int]:
        """One to five priced lines (LineAmountTypes Exclusive) and their subtotal and tax, in cents.

        Amounts are rendered as money() renders them: cents / 100 is the float nearest the decimal amount, as
        float(Decimal) is.
        """
        random, below, uuid4, descriptions = self.draws.random, self.draws.below, self.draws.uuid4, self.descriptions
        taxed_type, tax_percent = "OUTPUT" if sales else "INPUT", self.tax_percent
        lines, subtotal, tax = [], 0, 0
        for _ in range(1 + below(5)):
            description = descriptions[below(len(descriptions))]
            quantity = 1 + below(10)
            unit = 500 + below(199_501)
            taxed = random() < _TAXED_LINE_SHARE
            amount = quantity * unit
            line_tax = (amount * tax_percent + 50) // 100 if taxed else 0
            lines.append(
                {
                    "Description": description,
                    "Quantity": float(quantity),
                    "UnitAmount": unit / 100,
                    "AccountCode": account,
                    "TaxType": taxed_type if taxed else "NONE",
                    "LineItemID": uuid4(),
                    "LineAmount": amount / 100,
                    "TaxAmount": line_tax / 100,
                }
            )
            subtotal += amount
            tax += line_tax
        return lines, subtotal, tax


def _cumulative(weights: dict[str, int]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """A weighted choice's population and cumulative weights, for _Draws.weighted."""
    running, cumulative = 0, []
    for weight in weights.values():
        running += weight
        cumulative.append(running)
    return tuple(weights), tuple(cumulative)


def _break(invoice: dict, index: int) -> str:
    """Malformed invoices cycle through a missing ID, a bad date and a non-numeric total; they still page normally."""
    kind = _MALFORMED_KINDS[index % len(_MALFORMED_KINDS)]
    if kind == "missing InvoiceID":
        del invoice["InvoiceID"]
    elif kind == "bad Date":
        invoice["Date"] = "/Date(notanumber)/" if index % 2 else "2024-13-45"
    else:
        invoice["Total"] = "12,34.x"
    return kind
