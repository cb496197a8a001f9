"""The checkout database: created and dropped, the shop seeded directly in its tables (fast,
with a progress bar) after the API made the channel and the locations, and carts built the way
``tests/orders/conftest.py`` ``make_cart`` builds them, before any timed phase.

Every SKU has a twin (``…-RAW``) with the same stock at the same locations: the raw baseline
sells the twins, so the HTTP phases' audits (orders against stock received) stay exact."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from rich.console import Console
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from bench.checkout.constants import API, DB_NAME
from bench.common import progress
from seamline.carts.models import Cart, CartLine
from seamline.catalog.models import Listing, Price, Product, Variant
from seamline.db import models as _all_models  # noqa: F401  (every table, for foreign keys)
from seamline.db.engine import Database
from seamline.identity.models import Profile
from seamline.inventory.models import StockLevel, StockMovement
from seamline.kit import clock
from seamline.kit.ids import new_id, read_aloud_code
from seamline.pricing.models import ShippingRate

CHUNK = 2000
SHIPPING = 495


@contextlib.contextmanager
def checkout_database(postgres_url: str) -> Iterator[str]:
    """An empty database ``seamline_bench_checkout`` (migrated later by ``seamline db
    upgrade``), dropped afterwards; yields its SQLAlchemy URL."""
    admin_url = make_url(postgres_url).set(drivername="postgresql")
    admin = admin_url.render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    try:
        url = make_url(postgres_url).set(drivername="postgresql+psycopg", database=DB_NAME)
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# -- through the API: the channel and the locations -------------------------------------------


@dataclass
class Shop:
    channel: str
    warehouse: str
    stores: list[str]
    rate: str = ""
    # variant id -> (sku, unit price, twin variant id)
    skus: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    spread: list[str] = field(default_factory=list)  # variant ids sold in the spread case
    hot: list[str] = field(default_factory=list)  # the 5 hot variant ids
    # (location, variant) -> units received, for every variant (twins included)
    received: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def locations(self) -> list[str]:
        return [self.warehouse, *self.stores]


def shop_through_api(base: str, token: str, stores: int) -> Shop:
    with httpx.Client(
        base_url=base + API, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as http:

        def post(path: str, body: dict[str, Any]) -> str:
            r = http.post(path, json=body)
            if r.status_code >= 300:
                raise RuntimeError(f"POST {path}: {r.status_code} {r.text}")
            return str(r.json()["id"])

        channel = post("/channels", {"kind": "web", "name": "Web", "handle": "web"})

        def location(handle: str, kind: str, lat: float, **flags: bool) -> str:
            body: dict[str, Any] = {
                "kind": kind,
                "name": handle.replace("-", " ").title(),
                "handle": handle,
                "country": "DE",
                "time_zone": "Europe/Berlin",
                "coordinates": {"latitude": lat, "longitude": 13.4},
                **flags,
            }
            return post("/locations", body)

        warehouse = location("warehouse", "warehouse", 52.5, ships=True)
        shops = [
            location(
                f"store-{n}",
                "store",
                52.51 + n / 100,
                ships=True,
                pickup=True,
                sells_in_person=True,
            )
            for n in range(1, stores + 1)
        ]
    return Shop(channel, warehouse, shops)


# -- directly in the tables: catalogue, prices, listings, stock, shipping rate ---------------


def seed_catalog(
    db: Database, shop: Shop, *, skus: int, hot: int, hot_units: int, console: Console
) -> None:
    """``skus`` products with one variant (plus its raw twin) each, EUR prices, listed on the
    web channel; every variant 10,000 units in the warehouse and, one SKU in three, 5 units in
    each store. The ``hot`` hot SKUs instead get ``hot_units`` each, 3/4 in the warehouse and
    1/4 in the first store. Receipts go to the ledger, so ``inventory verify`` holds."""
    now = clock.now()
    with db.transaction() as session:
        rate = ShippingRate(
            id=new_id("shr"), name="Standard", currency="EUR", kind="flat", price=SHIPPING
        )
        session.add(rate)
    shop.rate = rate.id
    total = skus + hot
    with progress(console) as bar:
        task = bar.add_task(f"seeding {total:,} SKUs (+ raw twins), stock", total=total)
        for start in range(0, total, CHUNK):
            products: list[dict[str, Any]] = []
            variants: list[dict[str, Any]] = []
            prices: list[dict[str, Any]] = []
            listings: list[dict[str, Any]] = []
            levels: list[dict[str, Any]] = []
            moves: list[dict[str, Any]] = []
            for n in range(start, min(total, start + CHUNK)):
                is_hot = n >= skus
                handle = f"hot-{n - skus}" if is_hot else f"item-{n}"
                pid = f"prd_{n:026d}"
                products.append(
                    {
                        "id": pid,
                        "title": handle.replace("-", " ").title(),
                        "handle": handle,
                        "description": "",
                        "status": "active",
                        "tags": [],
                        "media": [],
                        "attributes": {},
                        "search_text": handle.replace("-", " "),
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                listings.append(
                    {
                        "product_id": pid,
                        "channel_id": shop.channel,
                        "published": True,
                        "published_at": now,
                        "updated_at": now,
                    }
                )
                amount = 500 + (n * 37) % 9500
                vid, twin = f"var_{n:026d}", f"var_{n:025d}r"
                sku = handle.upper()
                for i, (v, s) in enumerate(((vid, sku), (twin, sku + "-RAW"))):
                    variants.append(
                        {
                            "id": v,
                            "product_id": pid,
                            "sku": s,
                            "barcode": None,
                            "title": "" if i == 0 else "raw twin",
                            "options": {"size": "M" if i == 0 else "R"},
                            "weight_grams": 300,
                            "position": i,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                    prices.append(
                        {
                            "variant_id": v,
                            "currency": "EUR",
                            "amount": amount,
                            "compare_at": None,
                            "updated_at": now,
                        }
                    )
                    if is_hot:
                        first = hot_units * 3 // 4
                        stock = [(shop.warehouse, first), (shop.stores[0], hot_units - first)]
                    else:
                        stock = [(shop.warehouse, 10_000)]
                        if n % 3 == 0:
                            stock += [(store, 5) for store in shop.stores]
                    for location, units in stock:
                        if units <= 0:
                            continue
                        shop.received[(location, v)] = units
                        levels.append(
                            {
                                "location_id": location,
                                "variant_id": v,
                                "bucket": 0,
                                "on_hand": units,
                                "reserved": 0,
                                "updated_at": now,
                            }
                        )
                        moves.append(
                            {
                                "location_id": location,
                                "variant_id": v,
                                "kind": "receipt",
                                "quantity": units,
                                "reason": "bench seed",
                                "actor": None,
                                "reference": None,
                                "created_at": now,
                            }
                        )
                shop.skus[vid] = (sku, amount, twin)
                (shop.hot if is_hot else shop.spread).append(vid)
            with db.transaction() as session:
                session.execute(insert(Product), products)
                session.execute(insert(Variant), variants)
                session.execute(insert(Price), prices)
                session.execute(insert(Listing), listings)
                session.execute(insert(StockLevel), levels)
                session.execute(insert(StockMovement), moves)
            bar.advance(task, len(products))
    with psycopg.connect(dsn(str(db.engine.url.render_as_string(hide_password=False)))) as conn:
        conn.execute("ANALYZE")


# -- carts, straight in the tables ------------------------------------------------------------


@dataclass
class CartPlan:
    cart_id: str
    lines: list[tuple[str, int]]  # (variant id, quantity)


def plan_lines(rng: random.Random, pool: list[str]) -> list[tuple[str, int]]:
    """Two distinct SKUs of the pool, 1 or 2 units each (1 twice as often)."""
    a, b = rng.sample(pool, 2)
    return [(a, rng.choice((1, 1, 2))), (b, rng.choice((1, 1, 2)))]


def make_carts(
    db: Database,
    shop: Shop,
    plans: list[list[tuple[str, int]]],
    label: str,
    console: Console,
) -> list[CartPlan]:
    """One cart per plan (a profile each, shipped to Berlin at the flat rate), as
    ``make_cart`` in tests/orders/conftest.py does, in bulk."""
    out: list[CartPlan] = []
    now = clock.now()
    codes: set[str] = set()

    def share_code() -> str:
        while (code := read_aloud_code()) in codes:
            pass
        codes.add(code)
        return code

    with progress(console) as bar:
        task = bar.add_task(f"carts: {label}", total=len(plans))
        for start in range(0, len(plans), CHUNK):
            profiles: list[dict[str, Any]] = []
            carts: list[dict[str, Any]] = []
            lines: list[dict[str, Any]] = []
            for plan in plans[start : start + CHUNK]:
                profile_id, cart_id = new_id("prf"), new_id("crt")
                profiles.append(
                    {
                        "id": profile_id,
                        "cluster_id": profile_id,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                carts.append(
                    {
                        "id": cart_id,
                        "share_code": share_code(),
                        "profile_id": profile_id,
                        "anonymous_id": None,
                        "channel_id": shop.channel,
                        "currency": "EUR",
                        "status": "open",
                        "email": "ann@example.com",
                        "shipping_address": {"name": "Ann", "country": "DE", "postcode": "10115"},
                        "shipping_rate_id": shop.rate,
                        "codes": [],
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                for i, (variant, quantity) in enumerate(plan):
                    lines.append(
                        {
                            "id": new_id("cln"),
                            "cart_id": cart_id,
                            "variant_id": variant,
                            "quantity": quantity,
                            "fulfilment": "ship",
                            "pickup_location_id": None,
                            # Distinct times: checkout orders the lines by created_at.
                            "created_at": now.replace(microsecond=i),
                            "updated_at": now,
                        }
                    )
                out.append(CartPlan(cart_id, list(plan)))
            with db.transaction() as session:
                session.execute(insert(Profile), profiles)
                session.execute(insert(Cart), carts)
                session.execute(insert(CartLine), lines)
            bar.advance(task, len(carts))
    return out
