"""About 2,000 made-up customers with histories on several channels, from a fixed seed.

Each customer is a series of Segment calls — page and product views on the web and in the
app, marketplace visits, Instagram sign-ups, store visits, past orders (``Order Completed``) —
stored through the identity domain's batch ingestion (``ingest.record_calls``), as the event
API would store them, in large batches. Faker and ``random.Random`` are seeded, so every run
makes the same people. Emails are on ``example.net`` (reserved, never delivered).
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from faker import Faker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seamline.catalog.models import Price, Variant
from seamline.identity import ingest, wire
from seamline.identity.models import Identifier
from seamline.kit import clock

SEED = 20_240_611
DEFAULT_CUSTOMERS = 2_000
CUSTOMERS_ENV = "SEAMLINE_DEMO_CUSTOMERS"
DOMAIN = "example.net"
BATCH = 4_000  # calls per ingestion batch

AREA_CODES = ["212", "646", "917", "718", "347", "201", "551", "973"]
PLACES = [
    ("New York", "NY", ["10001", "10003", "10011", "10012", "10013", "10014", "10025"]),
    ("Brooklyn", "NY", ["11201", "11211", "11215", "11217", "11222", "11238"]),
    ("Queens", "NY", ["11101", "11375", "11377"]),
    ("Jersey City", "NJ", ["07302", "07304", "07306", "07310"]),
    ("Hoboken", "NJ", ["07030"]),
    ("Montclair", "NJ", ["07042", "07043"]),
]
STORES = [("soho", "Soho store"), ("brooklyn", "Brooklyn store"), ("jersey-city", "Jersey City")]
ORDER_CHANNELS = ["web", "web", "app", "marketplace", "store"]


def customer_count() -> int:
    """``SEAMLINE_DEMO_CUSTOMERS`` (tests use a few dozen), else 2,000."""
    raw = os.environ.get(CUSTOMERS_ENV, "")
    return max(1, int(raw)) if raw.strip().isdigit() else DEFAULT_CUSTOMERS


def seeded_count(session: Session) -> int:
    """Demo customers already stored (their emails are on the demo domain)."""
    stmt = select(func.count()).select_from(Identifier)
    stmt = stmt.where(Identifier.kind == "email", Identifier.value.like(f"%@{DOMAIN}"))
    return int(session.scalar(stmt) or 0)


def _catalogue(session: Session) -> list[tuple[str, str, int]]:
    rows = session.execute(
        select(Variant.sku, Variant.title, Price.amount)
        .join(Price, Price.variant_id == Variant.id)
        .where(Price.currency == "USD")
        .order_by(Variant.sku)
    )
    return [(sku, title, amount) for sku, title, amount in rows]


def _iso(at: datetime) -> str:
    return at.isoformat()


def customer_calls(
    index: int,
    fake: Faker,
    rng: random.Random,
    products: list[tuple[str, str, int]],
    now: datetime,
) -> list[dict[str, Any]]:
    """One customer's history as Segment calls, oldest first (ids and times deterministic)."""
    first, last = fake.first_name(), fake.last_name()
    email = f"{first}.{last}.{index}@{DOMAIN}".lower().replace("'", "").replace(" ", "")
    city, region, postcodes = rng.choice(PLACES)
    phone = f"+1{rng.choice(AREA_CODES)}{rng.randint(200, 999)}{rng.randint(1000, 9999)}"
    traits: dict[str, Any] = {
        "email": email,
        "firstName": first,
        "lastName": last,
        "phone": phone,
        "address": {
            "street": fake.street_address(),
            "city": city,
            "state": region,
            "postal_code": rng.choice(postcodes),
            "country": "US",
        },
    }
    if rng.random() < 0.3:
        traits["loyalty_card"] = f"KK{index:08d}"
    if rng.random() < 0.25:
        traits["instagram"] = f"{first}.{last}{rng.randint(1, 99)}".lower().replace("'", "")
    device = str(uuid.UUID(int=rng.getrandbits(128)))
    calls: list[dict[str, Any]] = []
    at = now - timedelta(days=rng.uniform(20, 400))

    def add(call: dict[str, Any], channel: str, anonymous: str | None = device) -> None:
        nonlocal at
        at += timedelta(minutes=rng.uniform(2, 60 * 24 * 12))
        at = min(at, now - timedelta(days=9, minutes=rng.uniform(0, 1000)))
        body = {
            **call,
            "messageId": f"demo-seed-{index}-{len(calls)}",
            "timestamp": _iso(at),
            "context": {"channel": channel, **call.get("context", {})},
        }
        if anonymous:
            body["anonymousId"] = anonymous
        calls.append(body)

    first_channel = rng.choice(["web", "web", "app", "marketplace"])
    for _ in range(rng.randint(1, 3)):
        sku, title, price = rng.choice(products)
        add(
            {
                "type": "track",
                "event": "Product Viewed",
                "properties": {"sku": sku, "name": title, "price": price / 100},
            },
            first_channel,
        )
    add({"type": "identify", "traits": traits}, first_channel)
    if "instagram" in traits:
        add(
            {
                "type": "track",
                "event": "Signed Up",
                "properties": {"method": "instagram_ad"},
                "context": {"traits": {"email": email, "instagram": traits["instagram"]}},
            },
            "social",
        )
    if rng.random() < 0.35:
        store, name = rng.choice(STORES)
        add(
            {
                "type": "track",
                "event": "Store Visited",
                "properties": {"store": store, "name": name},
                "context": {"traits": {"email": email}},
            },
            "store",
            anonymous=f"pos-{store}-{index}",
        )
    for number in range(rng.choice([0, 0, 1, 1, 1, 2, 3])):
        channel = rng.choice(ORDER_CHANNELS)
        picked = rng.sample(products, rng.randint(1, 3))
        total = sum(p[2] for p in picked)
        add(
            {
                "type": "track",
                "event": "Order Completed",
                "properties": {
                    "order_id": f"KK-H{index:05d}-{number}",
                    "total": total / 100,
                    "currency": "USD",
                    "products": [{"sku": s, "name": t, "price": p / 100} for s, t, p in picked],
                },
                "context": {"traits": {"email": email}},
            },
            channel,
            anonymous=device if channel != "store" else f"pos-till-{index}-{number}",
        )
    return calls


def seed_people(
    session: Session, *, key_id: str, count: int, advance: Callable[[int], None]
) -> int:
    """Ingest ``count`` customers' histories in batches; ``advance(customers)`` per batch.
    Returns the calls stored."""
    products = _catalogue(session)
    now = clock.now()
    stored = 0
    pending: list[wire.Incoming] = []
    done_customers = 0

    def flush() -> None:
        nonlocal stored, pending
        if pending:
            result = ingest.record_calls(session, pending, key_id=key_id, received_at=now)
            stored += len(result.stored)
            pending = []

    fake = Faker("en_US")
    fake.seed_instance(SEED)
    rng = random.Random(SEED)
    for index in range(1, count + 1):
        for raw in customer_calls(index, fake, rng, products, now):
            pending.append(wire.validate_call(raw, None))
        done_customers += 1
        if len(pending) >= BATCH:
            flush()
            advance(done_customers)
            done_customers = 0
    flush()
    advance(done_customers)
    return stored
