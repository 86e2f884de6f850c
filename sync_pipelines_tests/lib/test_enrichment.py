"""Contact traits from staged invoices, bills and payments, against figures worked out by hand.

Hand-written Xero records go through the real flatten functions and contracts into a DuckDB file's staged
tables, the way the validated assets stage them; `contact_traits` then reads that file.
"""

from datetime import date
from pathlib import Path

import pytest

from sync_pipelines.lib import staging
from sync_pipelines.lib.enrichment import contact_traits
from sync_pipelines.lib.staging import StagingResource, row_versions
from sync_pipelines.vendors.xero.contracts.invoice import XeroInvoice, flatten_invoice
from sync_pipelines.vendors.xero.contracts.payment import XeroPayment, flatten_payment
from sync_pipelines_tests.lib.records import invoice, judge, payment

ACME = "0a1b2c3d-0000-4000-8000-00000000000a"  # customer in USD and EUR
BOLT = "0a1b2c3d-0000-4000-8000-00000000000b"  # supplier in USD and NZD
DRAFTY = "0a1b2c3d-0000-4000-8000-00000000000c"  # only a draft and a deleted invoice
VOIDY = "0a1b2c3d-0000-4000-8000-00000000000d"  # only a voided invoice

AS_OF = date(2025, 3, 1)


def _id(n: int) -> str:
    return f"11111111-0000-4000-8000-{n:012d}"


SALES = {
    # Two paid USD invoices: 10 and 16 days from Date to FullyPaidOnDate.
    1: invoice(_id(1), ACME, status="PAID", date="2025-01-01", due="2025-01-31", sub_total="1000.00",
               paid="1000.00", fully_paid_on="2025-01-11"),
    2: invoice(_id(2), ACME, status="PAID", date="2025-01-10", due="2025-02-09", sub_total="250.50",
               paid="250.50", fully_paid_on="2025-01-26"),
    # Part-paid, due 2025-02-19: overdue on 1 March. 400.00 total, 150.00 paid, 250.00 due.
    3: invoice(_id(3), ACME, date="2025-01-20", due="2025-02-19", sub_total="400.00", paid="150.00"),
    # Due on 1 March itself: not overdue yet on 1 March.
    4: invoice(_id(4), ACME, date="2025-02-15", due="2025-03-01", sub_total="99.99"),
    # EUR: 260.87 + 39.13 tax = 300.00, unpaid, due 2025-02-15; and a paid one, 8 days to pay.
    5: invoice(_id(5), ACME, currency="EUR", date="2025-02-01", due="2025-02-15", sub_total="260.87", tax="39.13"),
    6: invoice(_id(6), ACME, status="PAID", currency="EUR", date="2024-12-01", due="2024-12-31",
               sub_total="120.00", paid="120.00", fully_paid_on="2024-12-09"),
    # Never revenue, and never the last invoice: voided, draft, deleted (all dated later than the rest).
    7: invoice(_id(7), ACME, status="VOIDED", date="2025-02-20", due="2025-02-27", sub_total="5000.00"),
    8: invoice(_id(8), ACME, status="DRAFT", date="2025-02-28", due="2025-03-30", sub_total="777.00"),
    9: invoice(_id(9), ACME, status="DELETED", date="2025-02-27", due="2025-03-29", sub_total="888.00"),
    # Submitted (awaiting approval): issued, so the last invoice date, but not revenue and no GBP traits.
    10: invoice(_id(10), ACME, status="SUBMITTED", currency="GBP", date="2025-02-25", due="2025-03-27",
                sub_total="50.00"),
    11: invoice(_id(11), DRAFTY, status="DRAFT", date="2025-02-01", sub_total="10.00"),
    12: invoice(_id(12), DRAFTY, status="DELETED", date="2025-02-02", sub_total="20.00"),
    13: invoice(_id(13), VOIDY, status="VOIDED", date="2025-01-05", due="2025-01-20", sub_total="200.00"),
}  # fmt: skip

BILLS = {
    21: invoice(_id(21), BOLT, invoice_type="ACCPAY", date="2025-01-02", due="2025-02-01", sub_total="500.00",
                account_codes=("429",)),
    22: invoice(_id(22), BOLT, invoice_type="ACCPAY", status="PAID", date="2025-01-15", due="2025-02-14",
                sub_total="80.00", paid="80.00", fully_paid_on="2025-02-14", account_codes=("404",)),
    # NZD: 56.00 + 8.40 tax = 64.40, 14.40 paid, 50.00 due.
    23: invoice(_id(23), BOLT, invoice_type="ACCPAY", currency="NZD", date="2025-02-01", due="2025-03-03",
                sub_total="56.00", tax="8.40", paid="14.40", account_codes=("300",)),
    24: invoice(_id(24), BOLT, invoice_type="ACCPAY", status="DRAFT", date="2025-02-25", sub_total="999.00"),
}  # fmt: skip

PAYMENTS = [
    payment(_id(31), SALES[1], "1000.00", "2025-01-11"),
    payment(_id(32), SALES[2], "250.50", "2025-01-26"),
    payment(_id(33), SALES[3], "150.00", "2025-02-10"),
    payment(_id(34), SALES[6], "120.00", "2024-12-09"),
    # Reversed, so never the last payment although the latest (xero.md §2.9).
    payment(_id(35), SALES[5], "300.00", "2025-02-20", status="DELETED"),
    payment(_id(36), BILLS[22], "80.00", "2025-02-14"),
    payment(_id(37), BILLS[23], "14.40", "2025-02-20"),
    payment(_id(38), BILLS[23], "50.00", "2025-02-28", status="DELETED"),
]

EXPECTED = {
    ACME: {
        # USD revenue: invoices 1-4 = 1000.00 + 250.50 + 400.00 + 99.99 = 1750.49 (5000.00 voided not counted).
        "lifetime_revenue_usd": 1750.49,
        # USD due: invoice 3 250.00 (400.00 - 150.00 paid) + invoice 4 99.99 = 349.99.
        "outstanding_balance_usd": 349.99,
        # Overdue on 1 March: only invoice 3 (due 19 Feb); invoice 4 is due on 1 March itself.
        "overdue_balance_usd": 250.0,
        # EUR revenue: invoice 5 300.00 + invoice 6 120.00 = 420.00; invoice 5 is due and overdue (15 Feb).
        "lifetime_revenue_eur": 420.0,
        "outstanding_balance_eur": 300.0,
        "overdue_balance_eur": 300.0,
        # Invoices 3 (USD) and 5 (EUR).
        "overdue_invoice_count": 2,
        # Submitted invoice 10 (25 Feb); draft 8 (28 Feb), deleted 9 (27 Feb) and voided 7 (20 Feb) do not count.
        "last_invoice_date": "2025-02-25",
        # Payment 33 (10 Feb); deleted payment 35 (20 Feb) does not count.
        "last_payment_date": "2025-02-10",
        # Invoices 1, 2, 6: (10 + 16 + 8) / 3 = 34 / 3 = 11.33 -> 11.3.
        "average_days_to_pay": 11.3,
    },
    BOLT: {
        # USD bills: 500.00 + 80.00 = 580.00 (draft 999.00 not counted); 500.00 still due.
        "lifetime_spend_usd": 580.0,
        "outstanding_payable_usd": 500.0,
        # NZD bill: 64.40 total, 64.40 - 14.40 = 50.00 due.
        "lifetime_spend_nzd": 64.4,
        "outstanding_payable_nzd": 50.0,
        # Payment 37 (20 Feb); deleted payment 38 (28 Feb) does not count.
        "last_payment_date": "2025-02-20",
    },
    # Voided revenue is zero rather than absent, so Segment's copy of an earlier figure is corrected.
    VOIDY: {
        "lifetime_revenue_usd": 0.0,
        "outstanding_balance_usd": 0.0,
        "overdue_balance_usd": 0.0,
        "overdue_invoice_count": 0,
    },
    # DRAFTY has only a draft and a deleted invoice: no traits at all, so not in the result.
}


def _stage(conn, table: str, key: str, contract, flatten, records: list[dict]) -> None:
    """Stage records as the validated asset does: through the contract, with a content hash and a stage time."""
    valid, reasons = judge(contract, flatten, records)
    assert reasons == []
    staging.upsert_state(conn, table, key, valid.assign(content_hash=row_versions(valid), staged_at=staging.utcnow()))


@pytest.fixture
def warehouse(tmp_path: Path) -> StagingResource:
    store = StagingResource(database=str(tmp_path / "warehouse.duckdb"))
    with store.connect() as conn:
        _stage(conn, "stg_xero_invoices", "invoice_id", XeroInvoice, flatten_invoice, list(SALES.values()))
        _stage(conn, "stg_xero_bills", "invoice_id", XeroInvoice, flatten_invoice, list(BILLS.values()))
        _stage(conn, "stg_xero_payments", "payment_id", XeroPayment, flatten_payment, PAYMENTS)
    return store


def test_traits_per_contact_match_the_hand_computed_figures(warehouse):
    with warehouse.connect() as conn:
        assert contact_traits(conn, AS_OF) == EXPECTED


@pytest.mark.parametrize(
    ("as_of", "overdue"),
    [
        # 15 Feb: invoice 5 is due that day, invoice 3 on the 19th: nothing is overdue yet.
        (date(2025, 2, 15), {"overdue_balance_usd": 0.0, "overdue_balance_eur": 0.0, "overdue_invoice_count": 0}),
        # 16 Feb: invoice 5 (EUR 300.00) is one day late.
        (date(2025, 2, 16), {"overdue_balance_usd": 0.0, "overdue_balance_eur": 300.0, "overdue_invoice_count": 1}),
        # 2 March: invoice 3 (250.00 still due) and invoice 4 (99.99) are late: 250.00 + 99.99 = 349.99.
        (date(2025, 3, 2), {"overdue_balance_usd": 349.99, "overdue_balance_eur": 300.0, "overdue_invoice_count": 3}),
    ],
)
def test_overdue_is_judged_against_the_day_asked_about(warehouse, as_of, overdue):
    with warehouse.connect() as conn:
        traits = contact_traits(conn, as_of)[ACME]
    assert {name: traits[name] for name in overdue} == overdue
    assert traits["outstanding_balance_usd"] == 349.99  # what is due does not depend on the day


def test_tables_not_staged_yet_count_as_empty(tmp_path):
    store = StagingResource(database=str(tmp_path / "warehouse.duckdb"))
    with store.connect() as conn:
        assert contact_traits(conn, AS_OF) == {}
        _stage(conn, "stg_xero_bills", "invoice_id", XeroInvoice, flatten_invoice, list(BILLS.values()))
        # Only bills: the supplier's spend, and no payment date until payments are staged.
        assert contact_traits(conn, AS_OF) == {
            BOLT: {k: v for k, v in EXPECTED[BOLT].items() if k != "last_payment_date"}
        }


def test_a_payment_made_later_moves_the_figures(warehouse):
    # Invoice 3's remaining 250.00 is paid on 2025-02-27: it is PAID, 38 days after its date (20 Jan).
    paid = invoice(_id(3), ACME, status="PAID", date="2025-01-20", due="2025-02-19", sub_total="400.00",
                   paid="400.00", fully_paid_on="2025-02-27")  # fmt: skip
    with warehouse.connect() as conn:
        _stage(conn, "stg_xero_invoices", "invoice_id", XeroInvoice, flatten_invoice, [paid])
        _stage(conn, "stg_xero_payments", "payment_id", XeroPayment, flatten_payment,
               [payment(_id(39), paid, "250.00", "2025-02-27")])  # fmt: skip
        traits = contact_traits(conn, AS_OF)[ACME]
    assert traits == {
        **EXPECTED[ACME],
        "outstanding_balance_usd": 99.99,  # only invoice 4 is still due
        "overdue_balance_usd": 0.0,  # invoice 4 is due today, not overdue
        "overdue_invoice_count": 1,  # invoice 5 (EUR)
        "last_payment_date": "2025-02-27",
        "average_days_to_pay": 18.0,  # (10 + 16 + 8 + 38) / 4 = 72 / 4 = 18.0
    }
