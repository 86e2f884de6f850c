"""A seeded history of the workspace: people who browse, identify, join companies, order from the catalogue and get
refunds, spread over the four sources as each would send them (POST /_admin/segment/seed, and archive.py).

Deterministic: every choice comes from one random.Random and one Faker seeded from the seed, every moment is laid out
inside the HISTORY_DAYS before history_end(seed), a fixed instant derived from the seed, never from the clock, and
messageIds are drawn from the same stream in each library's format (Source.message_id). Each message also carries
the moment Segment received it (workspace.Emission), so the same seed and size complete to byte-identical messages.

What comes from where:
- Web (analytics.js): anonymous page views, then an identify with the anonymousId and the userId, pages, online
  orders, group calls of the people who signed up there.
- iOS (analytics-ios): an anonymous "Application Opened", an identify, orders in the app.
- Server (analytics-python): sign-ups made by the backend, plan changes, group calls, refunds of online orders.
- Point of Sale (HTTP API, no sentAt): customers signed up at the till, their in-store orders and refunds.

Orders follow Order Completed of the e-commerce spec (segment.md §6): order_id, affiliation, products (product_id,
sku, name, category, price, quantity) from the catalogue (catalogue.py), currency USD, shipping on some online orders,
a discount and its coupon on some; subtotal and revenue are the products less the discount (excluding shipping, as
the spec defines them) and total adds the shipping. Order Refunded names the order alone (refunded whole) or one
product and the amount refunded (a partial refund). Each library's send delay (analytics-ios flushes every 30 s,
analytics-python every 0.5 s) sets sentAt and, with the network, receivedAt.
"""

import random
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from faker import Faker

from sync_pipelines.sandbox.segment.catalogue import CATALOGUE, Product
from sync_pipelines.sandbox.segment.sources import SOURCES, Source, iso
from sync_pipelines.sandbox.segment.workspace import Emission

HISTORY_DAYS = 60
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
MAX_PEOPLE = 10_000
WEB, IOS, SERVER, POINT_OF_SALE = SOURCES[:4]
SITE = "https://shop.harbour-roasters.example"
STAFF_DOMAIN = "harbour-roasters.example"
PLANS = ("free", "pro", "business")
CURRENCY = "USD"
CENT = Decimal("0.01")
COUPONS = {"WELCOME10": Decimal("0.10"), "SPRING15": Decimal("0.15"), "LOYAL20": Decimal("0.20")}
SHIPPING = (Decimal("4.99"), Decimal("7.99"))
INDUSTRIES = ("Hospitality", "Retail", "Software", "Education", "Healthcare", "Media", "Construction")
_HOMES = (WEB, IOS, SERVER, POINT_OF_SALE)
_HOME_WEIGHTS = (45, 20, 15, 20)
_AFFILIATION = {WEB.slug: "Online Store", IOS.slug: "iOS App", POINT_OF_SALE.slug: "Harbour Street Store"}
_ORDER_PREFIX = {WEB.slug: "WEB", IOS.slug: "APP", POINT_OF_SALE.slug: "POS"}
# Milliseconds from the call to sentAt (None: the caller sends none), and from sentAt to Segment's receipt.
_SEND_DELAY_MS: dict[str, tuple[int, int] | None] = {
    WEB.slug: (20, 800),
    IOS.slug: (0, 30_000),
    SERVER.slug: (0, 500),
    POINT_OF_SALE.slug: None,
}
_NETWORK_MS = (30, 600)
_PAGES = (
    ("/", "Harbour Roasters"),
    ("/shop", "Shop"),
    ("/shop/coffee", "Coffee"),
    ("/shop/brewing", "Brewing Gear"),
    ("/about", "Our Story"),
    ("/journal/pour-over-guide", "A Pour-Over Guide"),
)
_REFERRERS = ("", "https://www.google.com/", "https://www.instagram.com/", "https://duckduckgo.com/")
_USER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Mobile/15E148 Safari/604.1",
)
_IPHONES = (("iPhone14,5", "17.5.1"), ("iPhone15,2", "17.6"), ("iPhone16,1", "18.0"))
_TIMEZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
_CUSTOM_TRAITS: dict[str, Callable[[random.Random, Faker], Any]] = {
    "favourite_colour": lambda rng, fake: fake.safe_color_name(),
    "preferred_roast": lambda rng, fake: rng.choice(("light", "medium", "dark")),
    "newsletter_opt_in": lambda rng, fake: rng.random() < 0.6,
    "referral_source": lambda rng, fake: rng.choice(("friend", "instagram", "search", "farmers market")),
}
_LATER_CHANGES = ("plan", "phone", "address", "title")


def history_end(seed: int) -> datetime:
    """When a seed's history ends: a fixed day after EPOCH picked by the seed, so histories differ by seed and never
    depend on the clock."""
    return EPOCH + timedelta(days=HISTORY_DAYS + seed % 300)


def history(seed: int, people: int) -> list[Emission]:
    """Every message of the seeded history, in the order Segment received them."""
    return _History(seed, people).build()


def summary(emissions: Sequence[Emission]) -> dict[str, Any]:
    """What a history holds: {messages, counts: {types, events, sources}, message_ids} (the /seed answer)."""
    messages = [emission.message for emission in emissions]
    return {
        "messages": len(messages),
        "counts": {
            "types": dict(Counter(message["type"] for message in messages)),
            "events": dict(Counter(message["event"] for message in messages if message["type"] == "track")),
            "sources": dict(Counter(emission.source.slug for emission in emissions)),
        },
        "message_ids": [message["messageId"] for message in messages],
    }


@dataclass(frozen=True)
class _Company:
    group_id: str
    traits: dict[str, Any]


@dataclass
class _Person:
    user_id: str
    anonymous_id: str  # what analytics.js or analytics-ios keeps on the person's browser or phone
    home: Source
    traits: dict[str, Any]
    company: _Company | None
    web_context: dict[str, Any]
    app_context: dict[str, Any]


def _ms(milliseconds: int) -> timedelta:
    return timedelta(milliseconds=milliseconds)


def _money(value: Decimal) -> float:
    return float(value.quantize(CENT))


class _History:
    def __init__(self, seed: int, people: int):
        self.rng = random.Random(f"segment:{seed}")
        self.fake = Faker("en_US")
        self.fake.seed_instance(f"segment:{seed}")
        self.people = people
        self.end = history_end(seed)
        self.start = self.end - timedelta(days=HISTORY_DAYS)
        self.taken: set[str] = set()  # every id, email, name and order_id drawn, so none repeats
        self.emissions: list[Emission] = []
        self.owners = [f"{self.fake.first_name().lower()}@{STAFF_DOMAIN}" for _ in range(4)]  # the shop's staff
        self.companies = [self._company() for _ in range(max(1, people // 6))]

    def build(self) -> list[Emission]:
        for _ in range(self.people):
            self._life(self._person())
        for _ in range(max(1, self.people // 5)):
            self._visitor(self._between(self.start, self.end - timedelta(hours=1)))
        return sorted(self.emissions, key=lambda emission: emission.received)

    # -- drawing --------------------------------------------------------------------------------

    def _unique(self, draw: Callable[[], str]) -> str:
        value = draw()
        while value in self.taken:
            value = draw()
        self.taken.add(value)
        return value

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _between(self, first: datetime, last: datetime) -> datetime:
        span = max(1, (last - first) // _ms(1))
        return first + _ms(self.rng.randrange(span))

    def _address(self) -> dict[str, str]:
        fake = self.fake
        return {
            "street": fake.street_address(),
            "city": fake.city(),
            "state": fake.state_abbr(),
            "postal_code": fake.zipcode(),
            "country": "US",
        }

    def _company(self) -> _Company:
        rng, fake = self.rng, self.fake
        name = self._unique(fake.company)
        traits = {
            "name": name,
            "website": f"https://www.{fake.domain_name()}",
            "industry": rng.choice(INDUSTRIES),
            "employees": rng.choice((3, 8, 15, 40, 120, 350, 900)),
        }
        return _Company(self._unique(lambda: f"acct_{rng.getrandbits(32):08x}"), traits)

    def _person(self) -> _Person:
        rng, fake = self.rng, self.fake
        home = rng.choices(_HOMES, weights=_HOME_WEIGHTS)[0]
        first, last = fake.first_name(), fake.last_name()
        domain = fake.free_email_domain()
        email = self._unique(lambda: f"{first}.{last}{rng.randint(1, 99)}@{domain}".lower())
        traits: dict[str, Any] = {
            "email": email,
            "firstName": first,
            "lastName": last,
            "phone": fake.numerify("+1-###-###-####"),
            "address": self._address(),
            "title": fake.job(),
        }
        if rng.random() < 0.3:
            traits["website"] = f"https://{fake.domain_name()}"
        company = rng.choice(self.companies) if rng.random() < 0.35 else None
        if company is not None:
            traits["company"] = {"name": company.traits["name"]}
        elif rng.random() < 0.25:
            traits["company"] = {"name": fake.company()}
        if rng.random() < 0.6:
            traits["plan"] = rng.choices(PLANS, weights=(5, 3, 1))[0]
        if rng.random() < 0.35:
            traits["owner_email"] = rng.choice(self.owners)
        for name in rng.sample(sorted(_CUSTOM_TRAITS), rng.randint(1, 2)):
            traits[name] = _CUSTOM_TRAITS[name](rng, fake)
        model, os_version = rng.choice(_IPHONES)
        timezone = rng.choice(_TIMEZONES)
        return _Person(
            user_id=self._unique(lambda: f"user_{rng.getrandbits(48):012x}"),
            anonymous_id=str(self._uuid()),
            home=home,
            traits=traits,
            company=company,
            web_context={"userAgent": rng.choice(_USER_AGENTS), "locale": "en-US", "timezone": timezone},
            app_context={
                "app": {"name": "Harbour Roasters", "version": "3.4.1", "build": "341"},
                "device": {"manufacturer": "Apple", "model": model, "type": "ios"},
                "os": {"name": "iOS", "version": os_version},
                "locale": "en-US",
                "timezone": timezone,
            },
        )

    # -- sending ----------------------------------------------------------------------------------

    def _send(self, source: Source, at: datetime, message: dict[str, Any], context: dict[str, Any]) -> None:
        """A message as the source's library sends it at `at`, and when Segment receives it."""
        rng = self.rng
        message = {**message, "messageId": source.message_id(self._uuid())}
        if context:
            message["context"] = context
        message["timestamp"] = iso(at)
        sent = at
        delay = _SEND_DELAY_MS[source.slug]
        if delay is not None:
            sent = at + _ms(rng.randint(*delay))
            message["sentAt"] = iso(sent)
        self.emissions.append(Emission(source, message, sent + _ms(rng.randint(*_NETWORK_MS))))

    def _ids(self, person: _Person, source: Source, anonymous: bool = False) -> dict[str, str]:
        """analytics.js and analytics-ios send the anonymousId they keep on every call; servers know the userId."""
        ids = {} if anonymous else {"userId": person.user_id}
        if source in (WEB, IOS):
            ids["anonymousId"] = person.anonymous_id
        return ids

    def _context(self, person: _Person, source: Source, page: dict[str, str] | None = None) -> dict[str, Any]:
        if source is WEB:
            return {"page": page or self._page(), **person.web_context}
        return dict(person.app_context) if source is IOS else {}

    def _page(self) -> dict[str, str]:
        path, title = self.rng.choice(_PAGES)
        return {"path": path, "referrer": self.rng.choice(_REFERRERS), "search": "", "title": title, "url": SITE + path}

    def _page_view(self, person: _Person, at: datetime, anonymous: bool) -> None:
        page = self._page()
        message = {"type": "page", **self._ids(person, WEB, anonymous), "name": page["title"], "properties": page}
        self._send(WEB, at, message, self._context(person, WEB, page))

    # -- a person's life --------------------------------------------------------------------------

    def _life(self, person: _Person) -> None:
        rng = self.rng
        at = self._between(self.start, self.end - timedelta(days=HISTORY_DAYS // 4))
        if person.home is WEB:
            for _ in range(rng.randint(0, 2)):
                self._page_view(person, at, anonymous=True)
                at += _ms(rng.randint(20_000, 600_000))
        elif person.home is IOS:
            opened = {"type": "track", **self._ids(person, IOS, anonymous=True), "event": "Application Opened"}
            self._send(IOS, at, {**opened, "properties": {"from_background": False}}, self._context(person, IOS))
            at += _ms(rng.randint(20_000, 600_000))
        identify = {"type": "identify", **self._ids(person, person.home), "traits": person.traits}
        self._send(person.home, at, identify, self._context(person, person.home))
        identified = at
        if person.home is WEB:
            for _ in range(rng.randint(0, 2)):
                self._page_view(person, self._between(identified, self.end), anonymous=False)
        if person.company is not None:
            source = WEB if person.home is WEB else SERVER
            group = {"type": "group", **self._ids(person, source), "groupId": person.company.group_id}
            joined = identified + _ms(rng.randint(60_000, 2 * 86_400_000))
            self._send(source, joined, {**group, "traits": person.company.traits}, self._context(person, source))
        if rng.random() < 0.3:
            self._later_identify(person, self._between(identified + timedelta(hours=1), self.end))
        for _ in range(rng.choices((0, 1, 2, 3), weights=(50, 30, 15, 5))[0]):
            self._order(person, self._between(identified + timedelta(hours=1), self.end - timedelta(hours=1)))

    def _later_identify(self, person: _Person, at: datetime) -> None:
        """One trait changed, sent alone as later identify calls are: a plan by the backend, the rest by the
        person where they signed up."""
        change = self.rng.choice(_LATER_CHANGES)
        if change == "plan":
            plan = person.traits.get("plan")
            value: Any = PLANS[min(PLANS.index(plan) + 1, len(PLANS) - 1)] if plan else "pro"
        elif change == "phone":
            value = self.fake.numerify("+1-###-###-####")
        elif change == "address":
            value = self._address()
        else:
            value = self.fake.job()
        source = SERVER if change == "plan" else person.home
        message = {"type": "identify", **self._ids(person, source), "traits": {change: value}}
        self._send(source, at, message, self._context(person, source))

    def _order(self, person: _Person, at: datetime) -> None:
        rng = self.rng
        if person.home is POINT_OF_SALE:
            source = POINT_OF_SALE
        elif person.home is IOS:
            source = IOS if rng.random() < 0.7 else WEB
        else:
            source = WEB
        order_id = self._unique(lambda: f"{_ORDER_PREFIX[source.slug]}-{rng.randrange(100_000, 1_000_000)}")
        products = [self._product(product, rng.randint(1, 3)) for product in rng.sample(CATALOGUE, rng.randint(1, 3))]
        goods = sum(Decimal(str(p["price"])) * p["quantity"] for p in products)
        properties: dict[str, Any] = {"order_id": order_id, "affiliation": _AFFILIATION[source.slug]}
        discount = shipping = Decimal(0)
        if rng.random() < 0.25:
            coupon = rng.choice(sorted(COUPONS))
            discount = (goods * COUPONS[coupon]).quantize(CENT)
            properties.update(discount=_money(discount), coupon=coupon)
        if source is not POINT_OF_SALE and rng.random() < 0.6:
            shipping = rng.choice(SHIPPING)
            properties["shipping"] = _money(shipping)
        properties.update(
            subtotal=_money(goods - discount),
            revenue=_money(goods - discount),
            total=_money(goods - discount + shipping),
            currency=CURRENCY,
            products=products,
        )
        message = {"type": "track", **self._ids(person, source), "event": "Order Completed", "properties": properties}
        self._send(source, at, message, self._context(person, source))
        if rng.random() < 0.15 and at + timedelta(days=1) < self.end:
            self._refund(person, source, order_id, products, at)

    @staticmethod
    def _product(product: Product, quantity: int) -> dict[str, Any]:
        return {
            "product_id": f"{CATALOGUE.index(product) + 1:04d}",
            "sku": product.sku,
            "name": product.name,
            "category": product.category,
            "price": float(product.price),
            "quantity": quantity,
        }

    def _refund(self, person: _Person, sold_by: Source, order_id: str, products: list[dict], sold: datetime) -> None:
        """Refunded at the till for a till's order, else by the backend; whole, or one product (some of its units)."""
        rng = self.rng
        source = POINT_OF_SALE if sold_by is POINT_OF_SALE else SERVER
        properties: dict[str, Any] = {"order_id": order_id}
        if rng.random() < 0.5:
            product = rng.choice(products)
            returned = {**product, "quantity": rng.randint(1, product["quantity"])}
            amount = Decimal(str(product["price"])) * returned["quantity"]
            properties.update(total=_money(amount), currency=CURRENCY, products=[returned])
        at = self._between(sold + timedelta(days=1), min(sold + timedelta(days=14), self.end))
        message = {"type": "track", **self._ids(person, source), "event": "Order Refunded", "properties": properties}
        self._send(source, at, message, self._context(person, source))

    def _visitor(self, at: datetime) -> None:
        """Someone who browses the site and never signs up: pages, and perhaps a product looked at."""
        rng = self.rng
        visitor = _Person(
            user_id="",  # never learnt: every call is anonymous
            anonymous_id=str(self._uuid()),
            home=WEB,
            traits={},
            company=None,
            web_context={"userAgent": rng.choice(_USER_AGENTS), "locale": "en-US", "timezone": rng.choice(_TIMEZONES)},
            app_context={},
        )
        for _ in range(rng.randint(1, 3)):
            self._page_view(visitor, at, anonymous=True)
            at += _ms(rng.randint(10_000, 300_000))
        if rng.random() < 0.4:
            product = self._product(rng.choice(CATALOGUE), 1)
            properties = {key: value for key, value in product.items() if key != "quantity"}
            viewed = {"type": "track", "anonymousId": visitor.anonymous_id, "event": "Product Viewed"}
            self._send(WEB, at, {**viewed, "properties": properties}, self._context(visitor, WEB))
