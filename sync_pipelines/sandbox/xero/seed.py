"""Deterministic sandbox data: the same seed always yields byte-identical records.

Every random choice comes from one random.Random(seed) and one seeded Faker, and timestamps are laid out
backwards from a fixed anchor instead of "now", so tests and benchmarks can rely on exact contents.
"""

import random
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from faker import Faker

from sync_pipelines.sandbox.segment.catalogue import CATALOGUE, OPENING_STOCK
from sync_pipelines.sandbox.xero.accounting import (
    BANK_ACCOUNT,
    BANK_ACCOUNT_ID,
    EXPENSE_ACCOUNTS,
    PURCHASES_ACCOUNT,
    SALES_ACCOUNT,
    apply_payment,
    new_bank_transaction,
    new_contact,
    new_invoice,
    new_payment,
)
from sync_pipelines.sandbox.xero.dates import add_days, datetime_literal, day_start, net
from sync_pipelines.sandbox.xero.values import money

ANCHOR_MS = datetime_literal(2025, 1, 1)
HISTORY_DAYS = 365
_DAY_MS = 86_400_000
_STATUS_WEIGHTS = {"DRAFT": 8, "SUBMITTED": 4, "AUTHORISED": 30, "PAID": 50, "VOIDED": 4, "DELETED": 4}
_CURRENCY_WEIGHTS = {"USD": 50, "GBP": 15, "EUR": 15, "AUD": 10, "NZD": 10}
_SHARED_TIMESTAMP_SHARE = 0.1
_INDIVIDUAL_SHARE = 0.25  # contacts that are people (Name == "First Last"); the rest are organisations
_PURCHASES_BILL_SHARE = 0.5  # bills posted to 300 Purchases; the others to one expense account each
_MALFORMED_KINDS = ("missing InvoiceID", "bad Date", "non-numeric Total")
# Xero's default chart of accounts: 310 Cost of Goods Sold, 630 Inventory (the tracked items' asset account).
COGS_ACCOUNT, INVENTORY_ACCOUNT = "310", "630"

Records = dict[str, list[tuple[str, dict, str | None]]]


def tenant_id(seed: int, organisation: int = 1) -> str:
    """A tenant's ID is a function of the seed (and which organisation) so a reset with the same seed keeps it."""
    return str(uuid.UUID(int=random.Random(f"tenant:{_stream(seed, organisation)}").getrandbits(128), version=4))


def _stream(seed: int, organisation: int) -> int | str:
    """What seeds an organisation's random choices: the seed itself for the first, so its records stay as they were
    before the sandbox served several."""
    return seed if organisation == 1 else f"{seed}/{organisation}"


def generate(
    seed: int, invoices: int, contacts: int, malformed: int = 0, organisation: int = 1
) -> tuple[Records, dict[str, Any]]:
    """All collections of one organisation as (row id, rendered body, malformed reason) plus the store metadata to
    keep with them; each organisation's from a random stream of its own."""
    stream = _stream(seed, organisation)
    rng = random.Random(stream)
    fake = Faker("en_US")
    fake.seed_instance(stream)

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    taken: set[str] = set()
    people = [_contact(fake, rng, new_id(), index, taken) for index in range(max(1, contacts))]
    descriptions = sorted({fake.catch_phrase() for _ in range(200)})
    builder = _InvoiceBuilder(rng, new_id, people, descriptions)
    invoice_rows: list[tuple[str, dict, str | None]] = []
    payment_rows: list[tuple[str, dict, str | None]] = []
    for index in range(invoices + malformed):
        # Malformed extras are sales invoices, so every ACCREC consumer meets all of them.
        invoice, payments = builder.build(force_sales=index >= invoices)
        invoice_rows.append((invoice["InvoiceID"], invoice, None))
        payment_rows.extend((p["PaymentID"], p, None) for p in payments)
    for index in range(malformed):
        row_id, invoice, _ = invoice_rows[invoices + index]
        invoice_rows[invoices + index] = (row_id, invoice, _break(invoice, index))
    bank_rows = [
        (txn["BankTransactionID"], txn, None)
        for txn in (_bank_transaction(rng, new_id, people, descriptions) for _ in range(max(1, invoices // 10)))
    ]
    records = {
        "Contacts": [(c["ContactID"], c, None) for c in people],
        "Invoices": invoice_rows,
        "Payments": payment_rows,
        "BankTransactions": bank_rows,
        "Items": [(item["ItemID"], item, None) for item in _catalogue_items(stream)],
    }
    meta = {
        "seed": seed,
        "invoices": invoices,
        "contacts": contacts,
        "malformed": malformed,
        "tenant_id": tenant_id(seed, organisation),
        "tenant_name": f"Sandbox Company {seed}" + ("" if organisation == 1 else f" No. {organisation}"),
        "invoice_number": builder.accrec_count,
        "credit_note_number": 0,  # no credit notes are seeded; a reset restarts their numbering at CN-0001
        "connection": _connection(stream),
    }
    return records, meta


def _connection(seed: int | str) -> dict[str, Any]:
    """The app's one connection to the tenant, connected since the anchor (xero.md §1.6)."""
    rng = random.Random(f"connection:{seed}")
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(2)]
    return {"id": ids[0], "auth_event_id": ids[1], "created_ms": ANCHOR_MS, "updated_ms": ANCHOR_MS, "connected": True}


def _catalogue_items(seed: int | str) -> list[dict]:
    """The shop's catalogue (sandbox/segment/catalogue.py) as tracked items, each holding its opening stock.

    The stock sits on the item with no document behind it, as it stands once brought in before the seeded history:
    a bill would add an invoice to the seeded ones, whose counts and accounts are fixed. Nothing later undoes it,
    as stock movements only ever reverse what a document moved (inventory.py). Its own random stream leaves every
    other seeded record as it was.
    """
    rng = random.Random(f"items:{seed}")
    stocked = net(ANCHOR_MS - HISTORY_DAYS * _DAY_MS)
    return [
        {
            "ItemID": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
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


def _past_ms(rng: random.Random) -> int:
    return ANCHOR_MS - rng.randint(1, HISTORY_DAYS * _DAY_MS)


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
    contact = new_contact(contact_id, name, _past_ms(rng))
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


def _lines(
    rng: random.Random, new_id: Callable[[], str], descriptions: list[str], sales: bool, account: str
) -> list[dict]:
    return [
        {
            "Description": rng.choice(descriptions),
            "Quantity": rng.randint(1, 10),
            "UnitAmount": str(Decimal(rng.randint(500, 200_000)) / 100),
            "AccountCode": account,
            "TaxType": ("OUTPUT" if sales else "INPUT") if rng.random() < 0.8 else "NONE",
            "LineItemID": new_id(),
        }
        for _ in range(rng.randint(1, 5))
    ]


class _InvoiceBuilder:
    """Invoices (~85% ACCREC) over shared contacts, with payments and deliberate UpdatedDateUTC ties."""

    def __init__(self, rng: random.Random, new_id: Callable[[], str], contacts: list[dict], descriptions: list[str]):
        self.rng, self.new_id, self.contacts, self.descriptions = rng, new_id, contacts, descriptions
        self.accrec_count = 0
        self.previous_updated: int | None = None

    def build(self, force_sales: bool = False) -> tuple[dict, list[dict]]:
        rng = self.rng
        sales = rng.random() < 0.85 or force_sales
        contact = rng.choice(self.contacts)
        contact["IsCustomer" if sales else "IsSupplier"] = True
        status = rng.choices(list(_STATUS_WEIGHTS), weights=list(_STATUS_WEIGHTS.values()))[0]
        currency = rng.choices(list(_CURRENCY_WEIGHTS), weights=list(_CURRENCY_WEIGHTS.values()))[0]
        date_ms = day_start(_past_ms(rng))
        due_ms = add_days(date_ms, rng.choice((7, 14, 30, 60)))
        updated = min(ANCHOR_MS - 1, date_ms + rng.randint(0, 20 * _DAY_MS))
        if self.previous_updated is not None and rng.random() < _SHARED_TIMESTAMP_SHARE:
            updated = self.previous_updated  # clients must tie-break on the ID (xero.md §3.1)
        self.previous_updated = updated
        if sales:
            self.accrec_count += 1
            number, reference = f"INV-{self.accrec_count:05d}", rng.choice(("", f"PO-{rng.randint(1000, 9999)}"))
        else:
            number, reference = f"SUP-{rng.randint(1000, 99999)}", ""
        if sales:
            account = SALES_ACCOUNT
        else:
            purchases = rng.random() < _PURCHASES_BILL_SHARE
            account = PURCHASES_ACCOUNT if purchases else rng.choice(EXPENSE_ACCOUNTS)
        lines = _lines(rng, self.new_id, self.descriptions, sales, account)
        initial = "AUTHORISED" if status == "PAID" else status
        invoice = new_invoice(
            self.new_id(),
            "ACCREC" if sales else "ACCPAY",
            number,
            reference,
            contact,
            lines,
            initial,
            currency,
            date_ms,
            due_ms,
            updated,
        )
        payments: list[dict] = []
        if status == "PAID" or (status == "AUTHORISED" and rng.random() < 0.15):
            total = Decimal(str(invoice["Total"]))
            amount = total if status == "PAID" else (total / 2).quantize(Decimal("0.01"))
            paid_ms = min(updated, add_days(date_ms, rng.randint(0, 30)))
            payment = new_payment(self.new_id(), invoice, amount, day_start(paid_ms), updated, "")
            apply_payment(invoice, payment, updated)
            payments.append(payment)
        return invoice, payments


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


def _bank_transaction(
    rng: random.Random, new_id: Callable[[], str], contacts: list[dict], descriptions: list[str]
) -> dict:
    receive = rng.random() < 0.6
    updated = _past_ms(rng)
    return new_bank_transaction(
        new_id(),
        "RECEIVE" if receive else "SPEND",
        {"AccountID": BANK_ACCOUNT_ID, "Code": BANK_ACCOUNT},
        rng.choice(contacts),
        _lines(rng, new_id, descriptions, receive, SALES_ACCOUNT if receive else rng.choice(EXPENSE_ACCOUNTS)),
        "USD",
        day_start(updated),
        updated,
    )
