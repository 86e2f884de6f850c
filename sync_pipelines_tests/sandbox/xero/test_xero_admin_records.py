"""Admin changes to contacts, payments and bank transactions, checked through the Accounting API."""

import requests

from sync_pipelines.sandbox.xero.dates import parse_net


def _new_contact(admin, name: str) -> dict:
    """A contact with no invoices yet (every seeded one has some)."""
    return admin.post("/xero/contacts", {"Name": name})


def test_admin_creates_and_updates_contacts_with_xeros_rules(sandbox, api, admin):
    person = {
        "Name": "Ada Lovelace",
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "EmailAddress": "ada@engine.test",
        "Phones": [
            {"PhoneType": "DEFAULT", "PhoneNumber": "555-0101", "PhoneAreaCode": "212", "PhoneCountryCode": "1"}
        ],
        "Addresses": [{"AddressType": "STREET", "AddressLine1": "1 Engine Way", "City": "London", "Country": "UK"}],
    }
    created = admin.post("/xero/contacts", person)
    fetched = api.request("GET", f"Contacts/{created['ContactID']}").json()["Contacts"][0]
    assert {k: fetched[k] for k in person} == person
    assert (fetched["ContactStatus"], fetched["IsCustomer"], fetched["IsSupplier"]) == ("ACTIVE", False, False)

    updated = admin.post(f"/xero/contacts/{created['ContactID']}", {"Website": "https://ada.test", "LastName": "King"})
    assert (updated["Website"], updated["LastName"], updated["Name"]) == ("https://ada.test", "King", "Ada Lovelace")
    assert parse_net(updated["UpdatedDateUTC"]) >= parse_net(created["UpdatedDateUTC"])

    def rejected(path: str, body: dict) -> requests.Response:
        return requests.post(f"{sandbox.url}/_admin/xero/contacts{path}", json=body, timeout=10)

    duplicate = rejected("", {"Name": "Ada Lovelace"})
    assert duplicate.status_code == 400 and "must be unique" in duplicate.json()["error"]  # xero.md §2.5
    assert rejected(f"/{created['ContactID']}", {"EmailAddress": "not-an-email"}).status_code == 400
    assert rejected("", {"FirstName": "Nameless"}).status_code == 400
    assert rejected("/00000000-0000-0000-0000-000000000000", {"Name": "Ghost"}).status_code == 404


def test_payments_are_listed_dated_and_deleted_through_admin(api, admin):
    contact = _new_contact(admin, "Payer Ltd")
    invoice = admin.post("/xero/invoices", {"ContactID": contact["ContactID"]})  # 100 + 15% tax
    paid = admin.post(f"/xero/invoices/{invoice['InvoiceID']}/pay", {"Amount": 15, "Date": "2025-02-03"})
    [payment] = [p for p in admin.get("/xero/payments") if p["Invoice"]["InvoiceID"] == invoice["InvoiceID"]]
    assert (payment["Amount"], payment["DateString"], payment["PaymentType"]) == (
        15.0,
        "2025-02-03T00:00:00",
        "ACCRECPAYMENT",
    )
    assert (paid["AmountDue"], paid["Status"]) == (100.0, "AUTHORISED")

    deleted = admin.post(f"/xero/payments/{payment['PaymentID']}/delete")
    assert deleted["Status"] == "DELETED"
    reopened = api.request("GET", f"Invoices/{invoice['InvoiceID']}").json()["Invoices"][0]
    assert (reopened["AmountDue"], reopened["AmountPaid"], reopened["Payments"]) == (115.0, 0.0, [])
    listed = api.request("GET", f"Payments/{payment['PaymentID']}").json()["Payments"][0]
    assert listed["Status"] == "DELETED"  # readable with its status (xero.md §7)
    again = requests.post(f"{api.base}/_admin/xero/payments/{payment['PaymentID']}/delete", timeout=10)
    assert again.status_code == 400


def test_bank_transactions_are_created_with_sensible_accounts_and_removed_by_status(api, admin):
    contact = _new_contact(admin, "Depositor Ltd")
    spend = admin.post("/xero/bank-transactions", {"Type": "SPEND", "Reference": "Card fee"})
    assert [line["AccountCode"] for line in spend["LineItems"]] == ["429"]  # General Expenses
    assert (spend["BankAccount"]["Code"], spend["Status"], "Contact" in spend) == ("090", "AUTHORISED", False)
    receive = admin.post(
        "/xero/bank-transactions",
        {
            "Type": "RECEIVE",
            "ContactID": contact["ContactID"],
            "CurrencyCode": "EUR",
            "Date": "2025-04-01",
            "LineItems": [{"Description": "Deposit", "Quantity": 2, "UnitAmount": 50, "AccountCode": "200"}],
        },
    )
    assert (receive["Contact"]["ContactID"], receive["CurrencyCode"], receive["Total"]) == (
        contact["ContactID"],
        "EUR",
        115.0,
    )
    # Customers are made by invoices, not by money received (xero.md §2.5).
    refetched = api.request("GET", f"Contacts/{contact['ContactID']}").json()["Contacts"][0]
    assert refetched["IsCustomer"] is False

    assert admin.post(f"/xero/bank-transactions/{spend['BankTransactionID']}/delete")["Status"] == "DELETED"
    assert admin.post(f"/xero/bank-transactions/{receive['BankTransactionID']}/void")["Status"] == "VOIDED"
    by_id = {t["BankTransactionID"]: t["Status"] for t in admin.get("/xero/bank-transactions")}
    assert (by_id[spend["BankTransactionID"]], by_id[receive["BankTransactionID"]]) == ("DELETED", "VOIDED")
    listed = api.request("GET", "BankTransactions", params={"where": 'Status=="DELETED"'}).json()["BankTransactions"]
    assert spend["BankTransactionID"] in {t["BankTransactionID"] for t in listed}
    base = f"{api.base}/_admin/xero/bank-transactions"
    assert requests.post(f"{base}/{spend['BankTransactionID']}/void", timeout=10).status_code == 400
    assert requests.post(base, json={"LineItems": []}, timeout=10).status_code == 400  # Type is required
