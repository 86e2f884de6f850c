"""The seeded history of the Segment workspace (sandbox/segment/seed.py), emitted to a real receiver through the
Webhooks destination or written as the AWS S3 destination's archive (sandbox/segment/archive.py)."""

import gzip
import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

import requests

ARCHIVE_KEY = re.compile(r"segment-logs/(?P<source>[0-9A-Za-z]{22})/(?P<day>\d{13})/(?P<hour>\d{13})\.gz")
DAY_MS, HOUR_MS = 86_400_000, 3_600_000


def seed_and_deliver(admin, endpoint, **body) -> tuple[dict, list[dict]]:
    """The seeded history emitted and delivered; returns the /seed answer and the messages the receiver got, in
    order, whether posted alone or in batches."""
    before = len(endpoint.bodies())
    answer = admin.segment_seed(**body)
    admin.segment_flush_webhooks()
    messages: list[dict] = []
    for raw in endpoint.bodies()[before:]:
        parsed = json.loads(raw)
        messages.extend(parsed if isinstance(parsed, list) else [parsed])
    return answer, messages


def compact(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def money(value: float) -> Decimal:
    return Decimal(str(value))


def test_the_same_seed_emits_identical_messages_after_a_reset(admin, endpoint):
    admin.segment_destination(url=endpoint.url, batch_size=4000)
    first, first_messages = seed_and_deliver(admin, endpoint, seed=7, people=15)
    repeated = requests.post(f"{admin.url}/segment/seed", json={"seed": 7, "people": 15}, timeout=60)
    assert repeated.status_code == 400  # its messageIds were seen (segment.md §4): nothing of it is emitted again
    assert {r["reason"] for r in repeated.json()["reasons"]} == {"duplicate_message_id"}

    admin.reset()
    second, second_messages = seed_and_deliver(admin, endpoint, seed=7, people=15)

    assert second == first and [compact(m) for m in second_messages] == [compact(m) for m in first_messages]
    assert [m["messageId"] for m in first_messages] == first["message_ids"]
    assert first["messages"] == len(first_messages) == sum(first["counts"]["types"].values())
    # Not the clock's: every moment lies in the 60 days the seed's history covers, as received in order.
    received = [datetime.fromisoformat(m["receivedAt"]) for m in first_messages]
    assert received == sorted(received) and received[-1] - received[0] <= timedelta(days=60)
    assert received[-1] < datetime.fromisoformat("2026-01-01T00:00:00Z")
    other = admin.segment_seed(seed=8, people=15)
    assert not set(other["message_ids"]) & set(first["message_ids"])


def test_the_people_knob_scales_the_history(admin, endpoint):
    admin.segment_destination(url=endpoint.url, batch_size=4000)
    sizes = {}
    for people in (10, 40):
        admin.reset()
        answer, messages = seed_and_deliver(admin, endpoint, seed=3, people=people)
        assert answer["people"] == people
        assert len({m["userId"] for m in messages if m["type"] == "identify"}) == people
        sizes[people] = answer["messages"]
    assert sizes[40] > 2 * sizes[10]
    refused = requests.post(f"{admin.url}/segment/seed", json={"people": 0}, timeout=10)
    assert refused.status_code == 400 and "people" in refused.json()["error"]


def test_the_history_looks_like_a_shop_and_each_source_sends_what_fits_it(admin, endpoint):
    slugs = {s["id"]: s["slug"] for s in admin.segment_sources()}
    admin.segment_destination(url=endpoint.url, batch_size=4000)
    answer, messages = seed_and_deliver(admin, endpoint, seed=42, people=50)
    by_source = defaultdict(Counter)
    for m in messages:
        by_source[slugs[m["projectId"]]][m.get("event") or m["type"]] += 1
    assert set(by_source) == {"web", "ios", "server", "point-of-sale"}  # the product's own source sends none
    assert {slugs[m["projectId"]] for m in messages if m["type"] == "page"} == {"web"}
    assert {slugs[m["projectId"]] for m in messages if m.get("event") == "Application Opened"} == {"ios"}
    assert {"identify", "Order Completed"} <= set(by_source["point-of-sale"]) <= {
        "identify", "Order Completed", "Order Refunded"
    }  # fmt: skip
    assert answer["counts"]["sources"] == {slug: sum(counts.values()) for slug, counts in by_source.items()}
    assert any(m["type"] == "page" and "userId" not in m for m in messages)  # anonymous visits

    identifies = [m for m in messages if m["type"] == "identify"]
    firsts = {m["userId"]: m["traits"] for m in reversed(identifies)}  # each person's first identify
    assert len(firsts) == 50 and len(identifies) > 50  # some change a trait later
    for traits in firsts.values():
        assert {"email", "firstName", "lastName", "phone", "address", "title"} <= set(traits)
        assert set(traits["address"]) == {"street", "city", "state", "postal_code", "country"}
        assert set(traits) & {"favourite_colour", "preferred_roast", "newsletter_opt_in", "referral_source"}
        assert traits.get("plan", "free") in ("free", "pro", "business")
    for optional in ("website", "company", "plan", "owner_email"):
        assert 0 < sum(optional in traits for traits in firsts.values()) < 50, optional
    groups = [m for m in messages if m["type"] == "group"]
    assert groups and all(set(m["traits"]) == {"name", "website", "industry", "employees"} for m in groups)

    orders = {m["properties"]["order_id"]: m for m in messages if m.get("event") == "Order Completed"}
    assert len(orders) == answer["counts"]["events"]["Order Completed"]  # order_ids are unique
    for order_id, order in orders.items():
        properties = order["properties"]
        assert slugs[order["projectId"]] == {"WEB": "web", "APP": "ios", "POS": "point-of-sale"}[order_id[:3]]
        assert properties["currency"] == "USD" and 1 <= len(properties["products"]) <= 3
        assert all(1 <= p["quantity"] <= 3 for p in properties["products"])
        goods = sum(money(p["price"]) * p["quantity"] for p in properties["products"])
        discount, shipping = money(properties.get("discount", 0)), money(properties.get("shipping", 0))
        assert money(properties["total"]) == goods - discount + shipping
        assert ("discount" in properties) == ("coupon" in properties)
        assert order_id.startswith(("WEB", "APP")) or "shipping" not in properties
    assert any("coupon" in o["properties"] for o in orders.values())
    assert any("shipping" in o["properties"] for o in orders.values())

    refunds = [m for m in messages if m.get("event") == "Order Refunded"]
    kinds = Counter("products" in r["properties"] for r in refunds)
    assert kinds[True] and kinds[False]  # some partial, some whole
    for refund in refunds:
        order = orders[refund["properties"]["order_id"]]
        assert refund["userId"] == order["userId"] and refund["timestamp"] > order["timestamp"]
        refunding = "point-of-sale" if slugs[order["projectId"]] == "point-of-sale" else "server"
        assert slugs[refund["projectId"]] == refunding
        if "products" not in refund["properties"]:
            assert refund["properties"] == {"order_id": order["properties"]["order_id"]}
            continue
        (returned,) = refund["properties"]["products"]
        (sold,) = [p for p in order["properties"]["products"] if p["sku"] == returned["sku"]]
        assert 1 <= returned["quantity"] <= sold["quantity"]
        assert money(refund["properties"]["total"]) == money(returned["price"]) * returned["quantity"]


def test_every_ordered_sku_is_a_tracked_xero_item_with_enough_stock(admin, api, endpoint):
    admin.segment_destination(url=endpoint.url, batch_size=4000)
    _, messages = seed_and_deliver(admin, endpoint, seed=42, people=50)
    ordered, sold_as = Counter(), {}
    for m in messages:
        if m.get("event") == "Order Completed":
            for product in m["properties"]["products"]:
                ordered[product["sku"]] += product["quantity"]
                sold_as[product["sku"]] = (product["name"], product["price"])

    response = api.request("GET", "Items")
    assert response.status_code == 200, response.text
    items = {item["Code"]: item for item in response.json()["Items"]}
    assert ordered and set(ordered) <= set(items)
    for sku, quantity in ordered.items():
        item = items[sku]
        assert item["IsTrackedAsInventory"] and (item["Name"], item["SalesDetails"]["UnitPrice"]) == sold_as[sku]
        assert item["QuantityOnHand"] >= quantity and item["TotalCostPool"] > 0
        assert item["PurchaseDetails"]["COGSAccountCode"] and item["InventoryAssetAccountCode"]


def test_the_archive_is_the_seeded_history_in_the_s3_destination_layout(admin, endpoint, tmp_path):
    admin.segment_destination(url=endpoint.url, batch_size=4000)
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    archive = admin.segment_archive(bucket, seed=5, people=12)

    admin.segment_flush_webhooks()
    assert endpoint.requests == [] and admin.segment_webhook_deliveries() == []  # written, not delivered
    written = sorted(str(p.relative_to(bucket)) for p in bucket.rglob("*") if p.is_file())
    assert archive["path"] == str(bucket) and sorted(archive["files"]) == written
    lines = []
    for key in archive["files"]:
        match = ARCHIVE_KEY.fullmatch(key)
        assert match, key
        day, hour = int(match["day"]), int(match["hour"])
        assert day % DAY_MS == 0 and hour % HOUR_MS == 0 and day <= hour < day + DAY_MS
        raw = (bucket / key).read_bytes()
        assert raw[:2] == b"\x1f\x8b"  # gzip
        text = gzip.decompress(raw).decode()
        assert text.endswith("\n")
        for line in text.splitlines():
            message = json.loads(line)
            received_ms = int(datetime.fromisoformat(message["receivedAt"]).timestamp() * 1000)
            assert message["projectId"] == match["source"] and hour <= received_ms < hour + HOUR_MS
            lines.append(line)
    assert archive["messages"] == len(lines)

    seeded, messages = seed_and_deliver(admin, endpoint, seed=5, people=12)
    assert sorted(lines) == sorted(compact(m) for m in messages)  # exactly the seeded messages, byte for byte

    first_ten = tmp_path / "first-ten"
    first_ten.mkdir()
    partial = admin.segment_archive(first_ten, seed=5, people=12, messages=10)
    archived = [
        json.loads(line)["messageId"]
        for key in partial["files"]
        for line in gzip.decompress((first_ten / key).read_bytes()).decode().splitlines()
    ]
    assert partial["messages"] == 10 and sorted(archived) == sorted(seeded["message_ids"][:10])

    again = tmp_path / "again"
    again.mkdir()
    assert admin.segment_archive(again, seed=5, people=12)["files"] == archive["files"]
    assert all((again / key).read_bytes() == (bucket / key).read_bytes() for key in archive["files"])
    for path in ("relative/dir", str(tmp_path / "missing")):
        refused = requests.post(f"{admin.url}/segment/archive", json={"path": path}, timeout=10)
        assert refused.status_code == 400 and "path" in refused.json()["error"]
