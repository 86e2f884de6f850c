"""Items (the price list) and the stock Xero keeps for tracked ones.

https://developer.xero.com/documentation/api/items/: Code is required (at most 30 characters) and unique, Name at
most 50, the descriptions at most 4,000; IsSold and IsPurchased default to true, and setting one false clears that
side's description and details. An item is tracked (IsTrackedAsInventory, read-only) once it has an
InventoryAssetAccountCode, which needs a PurchaseDetails.COGSAccountCode. QuantityOnHand and TotalCostPool are
read-only: the transactions that use the item keep them, and "you can't create a sales invoice for that item if you
don't have sufficient quantity on hand".

https://help.xero.com/int/Inventory_TSUpdate: the quantity and value change when an invoice, bill or credit note is
approved, and when spend or receive money is saved. https://help.xero.com/us/InventoryTracked: Xero won't allow
negative inventory and values it at average cost.
"""

import json
import sqlite3
import uuid
from decimal import Decimal

from sync_pipelines.sandbox.store import COLLECTIONS, Store
from sync_pipelines.sandbox.xero.dates import net
from sync_pipelines.sandbox.xero.values import CENT, Invalid, PostDataInvalid, decimal, is_sale, money, text

CODE_LENGTH, NAME_LENGTH, DESCRIPTION_LENGTH = 30, 50, 4000
ACCOUNT_CODE_LENGTH = 10  # the spec's Account.Code
DETAIL_FIELDS = ("UnitPrice", "AccountCode", "COGSAccountCode", "TaxType")
# The spec's getItem example, in its key order; absent fields (an untracked item's stock) stay absent.
ITEM_FIELDS = (
    "ItemID",
    "Code",
    "Description",
    "PurchaseDescription",
    "UpdatedDateUTC",
    "PurchaseDetails",
    "SalesDetails",
    "Name",
    "IsTrackedAsInventory",
    "InventoryAssetAccountCode",
    "TotalCostPool",
    "QuantityOnHand",
    "IsSold",
    "IsPurchased",
)
STOCK_COLLECTIONS = ("Invoices", "CreditNotes", "BankTransactions")
APPROVED = ("AUTHORISED", "PAID")
# Transaction type -> (+1 stock in or -1 stock out, valued at the line's net amount rather than the average cost).
STOCK_EFFECTS = {
    "ACCPAY": (1, True),
    "SPEND": (1, True),
    "ACCPAYCREDIT": (-1, True),
    "ACCREC": (-1, False),
    "RECEIVE": (-1, False),
    "ACCRECCREDIT": (1, False),
}


def find_item(store: Store, conn: sqlite3.Connection, code: str) -> dict | None:
    rows = store.find("Items", "label = ? AND malformed IS NULL", (code,), limit=1, conn=conn)
    return json.loads(rows[0][0]) if rows else None


def build_item(
    store: Store, conn: sqlite3.Connection, element: dict, now: int, create_only: bool, target_id: str | None
) -> dict:
    """PUT creates; POST creates or updates the item its ItemID or Code names (xero.md §4.1, §2.10)."""
    code = text(element, "Code", CODE_LENGTH)
    item_id = target_id or element.get("ItemID")
    if item_id and create_only:
        raise Invalid(f"Item {item_id} already has an ID; PUT only creates, use POST to update")
    if item_id:
        existing = store.get("Items", item_id, conn)
        if existing is None:
            raise Invalid(f"Item with ID {item_id} could not be found")
    else:
        existing = find_item(store, conn, code) if code and not create_only else None
    if existing is None:
        if not code or not code.strip():
            raise Invalid("An item Code must be specified")
        item = {"ItemID": str(uuid.uuid4()), "Code": code, "Name": "", "PurchaseDetails": {}, "SalesDetails": {}}
        item.update(IsTrackedAsInventory=False, IsSold=True, IsPurchased=True)
    else:
        item = existing
    if code:
        item["Code"] = code
    for field, length in (
        ("Name", NAME_LENGTH),
        ("Description", DESCRIPTION_LENGTH),
        ("PurchaseDescription", DESCRIPTION_LENGTH),
        ("InventoryAssetAccountCode", ACCOUNT_CODE_LENGTH),
    ):
        value = text(element, field, length)
        if value is not None:
            item[field] = value
    for field in ("IsSold", "IsPurchased"):
        if field in element:
            if not isinstance(element[field], bool):
                raise PostDataInvalid(f"{field} must be true or false")
            item[field] = element[field]
    for field in ("PurchaseDetails", "SalesDetails"):
        if field in element:
            item[field] = _details(element[field], field)
    if not item["IsSold"]:
        item.pop("Description", None)
        item["SalesDetails"] = {}
    if not item["IsPurchased"]:
        item.pop("PurchaseDescription", None)
        item["PurchaseDetails"] = {}
    _track(item)
    if store.label_taken("Items", item["Code"], item["ItemID"], "1", conn):
        # The spec's createItems example message.
        raise Invalid(f"Price List Item with Code '{item['Code']}' already exists")
    item["UpdatedDateUTC"] = net(now)
    return {field: item[field] for field in ITEM_FIELDS if field in item}


def _details(value: object, field: str) -> dict:
    """SalesDetails / PurchaseDetails (the spec's Purchase schema); given as a whole, it replaces the old one."""
    if not isinstance(value, dict):
        raise PostDataInvalid(f"{field} must be an object")
    details: dict = {}
    for key in DETAIL_FIELDS:
        if value.get(key) is None:
            continue
        if key == "UnitPrice":
            details[key] = float(decimal(value[key], f"{field}.UnitPrice"))
        elif isinstance(value[key], str):
            details[key] = value[key]
        else:
            raise PostDataInvalid(f"{field}.{key} must be a string")
    return details


def _track(item: dict) -> None:
    """Tracked once it has an inventory asset account; stock starts at zero and must be zero to stop tracking."""
    tracked = bool(item.get("InventoryAssetAccountCode"))
    if tracked and not item["PurchaseDetails"].get("COGSAccountCode"):
        raise Invalid("The COGSAccountCode in PurchaseDetails is also required to create a tracked item")
    if item["IsTrackedAsInventory"] and not tracked and item["QuantityOnHand"] != 0:
        raise Invalid(f"Item '{item['Code']}' has quantity on hand, so it cannot stop being tracked")
    if tracked and not item["IsTrackedAsInventory"]:
        item.update(TotalCostPool=0.0, QuantityOnHand=0.0)
    if not tracked:
        for field in ("InventoryAssetAccountCode", "TotalCostPool", "QuantityOnHand"):
            item.pop(field, None)
    item["IsTrackedAsInventory"] = tracked


def fill_line_from_item(item: dict, transaction_type: str, line: dict) -> None:
    """What a line leaves out comes from the item's sales or purchase side (a tracked item's purchases go to its
    inventory asset account), and the line names the item (the spec's LineItem.Item)."""
    sale = is_sale(transaction_type)
    details = item["SalesDetails"] if sale else item["PurchaseDetails"]
    description = item.get("Description") if sale else item.get("PurchaseDescription", item.get("Description"))
    account = item.get("InventoryAssetAccountCode") if not sale and item["IsTrackedAsInventory"] else None
    defaults = {
        "Description": description,
        "UnitAmount": details.get("UnitPrice"),
        "AccountCode": account or details.get("AccountCode"),
        "TaxType": details.get("TaxType"),
    }
    for field, value in defaults.items():
        if value is not None and field not in line:
            line[field] = value
    line["Item"] = {"ItemID": item["ItemID"], "Name": item["Name"], "Code": item["Code"]}


class Inventory:
    """Moves tracked items' QuantityOnHand and TotalCostPool as the documents that use them are saved.

    What each document moved is remembered per item, so voiding or editing it reverses exactly that before the
    document's new effect applies; a change that would leave an item below zero fails the whole write. A document
    whose type, approval and lines did not change moves nothing, so an item that starts being tracked is not
    charged for transactions approved before. Stock movements do not bump the item's UpdatedDateUTC: like other
    figures derived from other records (xero.md §3.2), whether Xero bumps it is not documented, and not bumping
    is the safe assumption for a client syncing by If-Modified-Since.
    """

    def __init__(self, store: Store):
        self.store = store

    def sync(self, conn: sqlite3.Connection, collection: str, document: dict) -> None:
        """Called just before a document is saved, while the stored copy is still the previous one."""
        if collection not in STOCK_COLLECTIONS:
            return
        document_id = document[COLLECTIONS[collection][1]]
        moved = self.store.stock_movements(conn, collection, document_id)
        if not moved and not any(line.get("ItemCode") for line in document.get("LineItems", [])):
            return  # the common case: a document that never named an item
        previous = self.store.get(collection, document_id, conn)
        if previous is not None and _stock_view(previous) == _stock_view(document):
            return
        touched = set()
        for item_id, (quantity, cost) in moved.items():
            self._move(conn, item_id, -Decimal(quantity), -Decimal(cost))
            touched.add(item_id)
        applied: dict[str, tuple[str, str]] = {}
        for item_id, (quantity, line_cost) in self._wanted(conn, document).items():
            cost = line_cost if line_cost is not None else quantity * self._average_cost(conn, item_id)
            cost = cost.quantize(CENT)
            self._move(conn, item_id, quantity, cost)
            applied[item_id] = (str(quantity), str(cost))
            touched.add(item_id)
        self.store.replace_stock_movements(conn, collection, document_id, applied)
        for item_id in sorted(touched):
            item = self.store.get("Items", item_id, conn)
            if item is not None and item["IsTrackedAsInventory"] and item["QuantityOnHand"] < 0:
                raise Invalid(
                    f"Item '{item['Code']}' does not have sufficient quantity on hand: this change would leave "
                    f"{item['QuantityOnHand']:g}, and Xero does not allow negative inventory"
                )

    def _wanted(self, conn: sqlite3.Connection, document: dict) -> dict[str, tuple[Decimal, Decimal | None]]:
        """ItemID -> (signed quantity, signed net line amount, or None where the average cost values it)."""
        effect = STOCK_EFFECTS.get(document.get("Type", ""))
        if effect is None or document.get("Status") not in APPROVED:
            return {}
        direction, at_line_cost = effect
        inclusive = document.get("LineAmountTypes") == "Inclusive"
        totals: dict[str, tuple[Decimal, Decimal]] = {}
        for line in document.get("LineItems", []):
            item = self._item(conn, line)
            if item is None or not item["IsTrackedAsInventory"]:
                continue
            amount = Decimal(str(line["LineAmount"])) - (Decimal(str(line["TaxAmount"])) if inclusive else 0)
            quantity, cost = totals.get(item["ItemID"], (Decimal(0), Decimal(0)))
            totals[item["ItemID"]] = (
                quantity + direction * Decimal(str(line.get("Quantity", 0))),
                cost + direction * amount,
            )
        return {item_id: (quantity, cost if at_line_cost else None) for item_id, (quantity, cost) in totals.items()}

    def _item(self, conn: sqlite3.Connection, line: dict) -> dict | None:
        """The line's item by the ItemID it was saved with, so renaming an item's Code keeps its stock links."""
        named = line.get("Item")
        if isinstance(named, dict) and named.get("ItemID"):
            return self.store.get("Items", named["ItemID"], conn)
        return find_item(self.store, conn, line["ItemCode"]) if line.get("ItemCode") else None

    def _average_cost(self, conn: sqlite3.Connection, item_id: str) -> Decimal:
        """TotalCostPool / QuantityOnHand; with nothing on hand, the purchase price is the best estimate."""
        item = self.store.get("Items", item_id, conn)
        on_hand = Decimal(str(item["QuantityOnHand"]))
        if on_hand > 0:
            return Decimal(str(item["TotalCostPool"])) / on_hand
        return Decimal(str(item["PurchaseDetails"].get("UnitPrice", 0)))

    def _move(self, conn: sqlite3.Connection, item_id: str, quantity: Decimal, cost: Decimal) -> None:
        item = self.store.get("Items", item_id, conn)
        if item is None or not item["IsTrackedAsInventory"]:
            return
        item["QuantityOnHand"] = float(Decimal(str(item["QuantityOnHand"])) + quantity)
        item["TotalCostPool"] = money(Decimal(str(item["TotalCostPool"])) + cost)
        self.store.save(conn, "Items", item)


def _stock_view(document: dict) -> tuple:
    """The parts of a document its stock effect depends on."""
    lines = [
        (line.get("ItemCode"), line.get("Quantity"), line.get("LineAmount"), line.get("TaxAmount"))
        for line in document.get("LineItems", [])
    ]
    approved = document.get("Status") in APPROVED
    return document.get("Type"), approved, document.get("LineAmountTypes"), lines
