"""Items and the stock Xero keeps for tracked ones, through the sandbox's Accounting API (xero.md §2.10).

Stock is read-only in Xero: bills bring it in, sales take it out, and each test builds it that way.
"""

import datetime as dt

import requests

from sync_pipelines.sandbox.xero.dates import parse_net

WIDGET = {
    "Code": "WIDGET",
    "Name": "Widget",
    "Description": "A widget",
    "PurchaseDescription": "Widget, bought in",
    "SalesDetails": {"UnitPrice": 25, "AccountCode": "200", "TaxType": "OUTPUT"},
    "PurchaseDetails": {"UnitPrice": 10, "COGSAccountCode": "310", "TaxType": "INPUT"},
    "InventoryAssetAccountCode": "630",
}


def _contact_id(admin) -> str:
    return next(c["ContactID"] for c in admin.call("GET", "/xero/contacts") if c["ContactStatus"] == "ACTIVE")


def _item(api, code: str = "WIDGET") -> dict:
    response = api.request("GET", f"Items/{code}")
    assert response.status_code == 200, response.text
    return response.json()["Items"][0]


def _create_item(api, **fields) -> dict:
    response = api.request("PUT", "Items", json={"Items": [{**WIDGET, **fields}]})
    assert response.status_code == 200, response.text
    return response.json()["Items"][0]


def _document(api, invoice_type: str, contact_id: str, quantity: float, status: str = "AUTHORISED", **line) -> dict:
    body = {
        "Type": invoice_type,
        "Contact": {"ContactID": contact_id},
        "Status": status,
        "LineItems": [{"ItemCode": "WIDGET", "Quantity": quantity, **line}],
    }
    response = api.request("PUT", "Invoices", json=body)
    assert response.status_code == 200, response.text
    return response.json()["Invoices"][0]


def _messages(response: requests.Response) -> list[str]:
    return [error["Message"] for element in response.json()["Elements"] for error in element["ValidationErrors"]]


def test_items_are_created_read_by_id_or_code_and_updated_by_code(api):
    created = _create_item(api)
    assert created["IsTrackedAsInventory"] is True
    assert (created["QuantityOnHand"], created["TotalCostPool"]) == (0.0, 0.0)
    assert (created["IsSold"], created["IsPurchased"]) == (True, True)
    assert created["SalesDetails"] == {"UnitPrice": 25.0, "AccountCode": "200", "TaxType": "OUTPUT"}
    assert created.pop("StatusAttributeString") == "OK"
    assert _item(api, created["ItemID"]) == _item(api, "WIDGET") == created

    service = _create_item(
        api, Code="CONSULT", Name="Consulting", InventoryAssetAccountCode=None, PurchaseDetails={}, IsPurchased=False
    )
    assert service["IsTrackedAsInventory"] is False
    assert "QuantityOnHand" not in service and "PurchaseDescription" not in service  # IsPurchased false clears it

    # PUT only creates, and codes are unique (the spec's createItems example message).
    again = api.request("PUT", "Items", json=WIDGET)
    assert again.status_code == 400 and again.json()["Type"] == "ValidationException"
    assert _messages(again) == ["Price List Item with Code 'WIDGET' already exists"]
    # POST with an existing Code updates that item; omitted fields stay as they were.
    renamed = api.request("POST", "Items", json={"Items": [{"Code": "WIDGET", "Name": "Blue widget"}]})
    assert renamed.json()["Items"][0]["ItemID"] == created["ItemID"]
    assert _item(api)["Name"] == "Blue widget" and _item(api)["Description"] == "A widget"
    by_code = api.request("POST", "Items/CONSULT", json={"Description": "Advice by the hour"})
    assert by_code.json()["Items"][0]["ItemID"] == service["ItemID"]
    assert parse_net(_item(api, "CONSULT")["UpdatedDateUTC"]) >= parse_net(service["UpdatedDateUTC"])

    # A tracked item needs a COGS account beside its inventory asset account (the spec's Item description).
    untracked_cogs = api.request("PUT", "Items", json={"Code": "BOLT", "InventoryAssetAccountCode": "630"})
    assert _messages(untracked_cogs) == [
        "The COGSAccountCode in PurchaseDetails is also required to create a tracked item"
    ]
    too_long = api.request("PUT", "Items", params={"summarizeErrors": "false"}, json={"Code": "X" * 31})
    assert too_long.json()["Items"][0]["StatusAttributeString"] == "ERROR"
    assert api.request("GET", "Items/NO-SUCH-CODE").status_code == 404


def test_items_list_with_where_order_and_if_modified_since_but_no_paging(api):
    first = _create_item(api, Code="B-ITEM", Name="Second by code")
    _create_item(api, Code="A-ITEM", Name="First by code", InventoryAssetAccountCode=None)
    listed = api.request("GET", "Items", params={"order": "Code DESC"}).json()
    assert "pagination" not in listed  # xero.md §3.1: items are not paged
    assert [i["Code"] for i in listed["Items"] if i["Code"] in ("A-ITEM", "B-ITEM")] == ["B-ITEM", "A-ITEM"]
    tracked = api.request("GET", "Items", params={"where": "IsTrackedAsInventory==true"}).json()["Items"]
    assert "B-ITEM" in [i["Code"] for i in tracked] and "A-ITEM" not in [i["Code"] for i in tracked]
    assert api.request("GET", "Items", params={"where": 'Code=="A-ITEM"'}).json()["Items"][0]["Name"] == "First by code"
    paged = api.request("GET", "Items", params={"page": 1})
    assert paged.status_code == 400 and paged.json()["Type"] == "QueryParseException"

    later = parse_net(first["UpdatedDateUTC"]) + 60_000
    since = dt.datetime.fromtimestamp(later / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert api.request("GET", "Items", headers=api.headers(**{"If-Modified-Since": since})).json()["Items"] == []


def test_tracked_stock_follows_bills_sales_voids_and_customer_credit(api, admin):
    contact_id = _contact_id(admin)
    _create_item(api)
    _document(api, "ACCPAY", contact_id, 10, UnitAmount=12)  # a bill brings stock in at its cost
    assert (_item(api)["QuantityOnHand"], _item(api)["TotalCostPool"]) == (10.0, 120.0)

    # The line names only the item: description, price, account and tax come from its sales side.
    sale = _document(api, "ACCREC", contact_id, 3)
    line = sale["LineItems"][0]
    assert (line["Description"], line["UnitAmount"], line["AccountCode"], line["TaxType"]) == (
        "A widget",
        25.0,
        "200",
        "OUTPUT",
    )
    assert line["Item"] == {"ItemID": _item(api)["ItemID"], "Name": "Widget", "Code": "WIDGET"}
    assert (_item(api)["QuantityOnHand"], _item(api)["TotalCostPool"]) == (7.0, 84.0)  # sold at average cost

    draft = _document(api, "ACCREC", contact_id, 5, status="DRAFT")
    assert _item(api)["QuantityOnHand"] == 7.0  # only approval moves stock
    approved = api.request("POST", f"Invoices/{draft['InvoiceID']}", json={"Status": "AUTHORISED"})
    assert approved.status_code == 200, approved.text
    assert _item(api)["QuantityOnHand"] == 2.0

    voided = api.request("POST", f"Invoices/{sale['InvoiceID']}", json={"Status": "VOIDED"})
    assert voided.json()["Invoices"][0]["Status"] == "VOIDED"
    assert (_item(api)["QuantityOnHand"], _item(api)["TotalCostPool"]) == (5.0, 60.0)

    returned = {
        "Type": "ACCRECCREDIT",
        "Contact": {"ContactID": contact_id},
        "Status": "AUTHORISED",
        "LineItems": [{"ItemCode": "WIDGET", "Quantity": 1}],
    }
    credit = api.request("PUT", "CreditNotes", json=returned)
    assert credit.status_code == 200, credit.text
    assert _item(api)["QuantityOnHand"] == 6.0


def test_xero_refuses_to_take_a_tracked_item_below_zero(api, admin):
    contact_id = _contact_id(admin)
    _create_item(api)
    bill = _document(api, "ACCPAY", contact_id, 2, UnitAmount=10)
    before = len(admin.call("GET", "/xero/invoices"))

    oversold = api.request(
        "PUT",
        "Invoices",
        json={
            "Type": "ACCREC",
            "Contact": {"ContactID": contact_id},
            "Status": "AUTHORISED",
            "LineItems": [{"ItemCode": "WIDGET", "Quantity": 3}],
        },
    )
    assert oversold.status_code == 400 and oversold.json()["ErrorNumber"] == 10
    assert "does not have sufficient quantity on hand" in _messages(oversold)[0]
    assert len(admin.call("GET", "/xero/invoices")) == before and _item(api)["QuantityOnHand"] == 2.0

    _document(api, "ACCREC", contact_id, 2)
    # The stock the bill brought in is sold, so voiding the bill would leave it negative.
    void_bill = api.request("POST", f"Invoices/{bill['InvoiceID']}", json={"Status": "VOIDED"})
    assert void_bill.status_code == 400 and "sufficient quantity" in _messages(void_bill)[0]
    assert _item(api)["QuantityOnHand"] == 0.0


def test_money_spent_or_received_moves_stock_when_saved_and_back_when_deleted(api):
    _create_item(api)
    bank = {"BankAccount": {"Code": "090"}}
    spent = api.request(
        "PUT", "BankTransactions", json={**bank, "Type": "SPEND", "LineItems": [{"ItemCode": "WIDGET", "Quantity": 4}]}
    )
    assert spent.status_code == 200, spent.text
    assert (_item(api)["QuantityOnHand"], _item(api)["TotalCostPool"]) == (4.0, 40.0)  # at the purchase price
    received = api.request(
        "PUT",
        "BankTransactions",
        json={**bank, "Type": "RECEIVE", "LineItems": [{"ItemCode": "WIDGET", "Quantity": 1}]},
    )
    assert _item(api)["QuantityOnHand"] == 3.0
    txn_id = received.json()["BankTransactions"][0]["BankTransactionID"]
    api.request("POST", f"BankTransactions/{txn_id}", json={"Status": "DELETED"})
    assert (_item(api)["QuantityOnHand"], _item(api)["TotalCostPool"]) == (4.0, 40.0)


def test_an_unknown_item_code_is_a_validation_error(api, admin):
    line = {"ItemCode": "NOPE", "Description": "Mystery", "Quantity": 1, "UnitAmount": 5}
    body = {"Type": "ACCREC", "Contact": {"ContactID": _contact_id(admin)}, "LineItems": [line]}
    refused = api.request("PUT", "Invoices", json=body)
    assert refused.status_code == 400 and refused.json()["Type"] == "ValidationException"
    assert _messages(refused) == ["Item code 'NOPE' is not valid: no item has this code"]
    reported = api.request("PUT", "Invoices", params={"summarizeErrors": "false"}, json=body).json()["Invoices"][0]
    assert reported["HasErrors"] is True and reported["StatusAttributeString"] == "ERROR"
