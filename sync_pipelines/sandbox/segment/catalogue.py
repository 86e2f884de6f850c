"""The shop's catalogue, kept once so the two seeds agree: the Segment sources' orders sell these SKUs
(sandbox/segment/seed.py) and the Xero organisation stocks each as a tracked item (sandbox/xero/seed.py), so every
product an order names can be invoiced from stock.
"""

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Product:
    sku: str  # the Xero item's Code (at most 30 characters)
    name: str  # the Xero item's Name (at most 50)
    category: str
    description: str
    price: Decimal  # sale price in USD, the orders' `price` and the item's SalesDetails.UnitPrice
    cost: Decimal  # purchase price, the item's PurchaseDetails.UnitPrice


CATALOGUE = (
    Product("COF-HOUSE-250", "House Blend Beans 250g", "Coffee", "Medium roast whole beans, 250 g bag",
            Decimal("14.50"), Decimal("6.20")),
    Product("COF-DECAF-250", "Swiss Water Decaf Beans 250g", "Coffee", "Decaffeinated whole beans, 250 g bag",
            Decimal("15.00"), Decimal("6.80")),
    Product("COF-ESPRESSO-1KG", "Espresso Roast Beans 1kg", "Coffee", "Dark roast whole beans, 1 kg bag",
            Decimal("42.00"), Decimal("19.50")),
    Product("TEA-EARLGREY-100", "Earl Grey Loose Leaf 100g", "Tea", "Black tea with bergamot, 100 g tin",
            Decimal("9.75"), Decimal("3.40")),
    Product("MUG-ENAMEL", "Enamel Camp Mug", "Merchandise", "Enamel mug with the shop's logo, 350 ml",
            Decimal("18.00"), Decimal("7.25")),
    Product("TUMBLER-12OZ", "Insulated Tumbler 12oz", "Merchandise", "Double-walled steel tumbler with lid",
            Decimal("29.00"), Decimal("11.80")),
    Product("BREW-V60-DRIPPER", "Ceramic Pour-Over Dripper", "Brewing", "Cone dripper for one to four cups",
            Decimal("32.00"), Decimal("13.00")),
    Product("BREW-FILTERS-100", "Paper Filters (100)", "Brewing", "Cone paper filters, pack of 100",
            Decimal("6.50"), Decimal("2.10")),
    Product("BREW-HAND-GRINDER", "Hand Burr Grinder", "Brewing", "Steel conical burr hand grinder",
            Decimal("89.00"), Decimal("41.00")),
)  # fmt: skip
# What each item holds before the seeded history: far more than any seeded history of a few thousand people sells.
OPENING_STOCK = 1000
