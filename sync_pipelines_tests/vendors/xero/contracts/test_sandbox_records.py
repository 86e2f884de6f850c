"""Every contract accepts what the sandbox's Accounting API returns, read the way the sources read it."""

import pandas as pd

from sync_pipelines.vendors.xero.contracts.bank_transaction import XeroBankTransaction, flatten_bank_transaction
from sync_pipelines.vendors.xero.contracts.contact import XeroContact, flatten_contact
from sync_pipelines.vendors.xero.contracts.invoice import XeroInvoice, flatten_invoice
from sync_pipelines.vendors.xero.contracts.payment import XeroPayment, flatten_payment
from sync_pipelines_tests.conftest import xero_resource
from sync_pipelines_tests.lib.records import judge

CONTRACTS = {
    # collection: (contract, flatten, query) — archived contacts only come when asked for (xero.md §7).
    "Contacts": (XeroContact, flatten_contact, {"includeArchived": "true"}),
    "Invoices": (XeroInvoice, flatten_invoice, None),
    "Payments": (XeroPayment, flatten_payment, None),
    "BankTransactions": (XeroBankTransaction, flatten_bank_transaction, None),
}


def test_sandbox_records_meet_their_contracts_and_agree_with_each_other(admin, sync_env):
    client = xero_resource(sync_env).get_client()
    staged: dict[str, pd.DataFrame] = {}
    for collection, (contract, flatten, query) in CONTRACTS.items():
        records = [record for page in client.iter_pages(collection, params=query) for record in page]
        valid, reasons = judge(contract, flatten, records)
        assert records and reasons == [], (collection, reasons[:3])
        staged[collection] = valid
    assert len(staged["Contacts"]) == len(admin.get("/xero/contacts"))
    assert len(staged["Invoices"]) == len(admin.get("/xero/invoices"))

    # A payment names its invoice's type, currency and contact, and live payments add up to AmountPaid.
    invoices = staged["Invoices"].set_index("invoice_id")
    payments = staged["Payments"]
    paid_invoices = invoices.loc[payments["invoice_id"]]
    for column in ("type", "currency_code", "contact_id"):
        payment_column = "invoice_type" if column == "type" else column
        assert payments[payment_column].tolist() == paid_invoices[column].tolist()
    live = payments[payments["status"] == "AUTHORISED"].groupby("invoice_id")["amount"].sum()
    assert live.reindex(invoices.index, fill_value=0).round(2).tolist() == invoices["amount_paid"].round(2).tolist()

    # FullyPaidOnDate is there exactly when the invoice is PAID (xero.md §2.4).
    assert (invoices["fully_paid_on_date"].notna() == (invoices["status"] == "PAID")).all()
    contact_ids = set(staged["Contacts"]["contact_id"])
    assert set(invoices["contact_id"]) <= contact_ids
    assert set(staged["BankTransactions"]["contact_id"].dropna()) <= contact_ids
