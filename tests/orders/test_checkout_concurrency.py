"""1,000 concurrent checkouts for 100 units spread over three locations (PostgreSQL): exactly
100 orders, 900 clean refusals, nothing left held, nothing oversold."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seamline.auth.service import Caller
from seamline.carts.models import Cart, CartLine
from seamline.db.engine import Database
from seamline.inventory.models import Reservation, StockLevel
from seamline.kit.errors import SeamlineError
from seamline.kit.ids import new_id
from seamline.orders import checkout
from seamline.orders.models import Checkout, Order
from seamline.orders.schemas import CheckoutIn, TenderIn
from tests.catalog_helpers import create_product
from tests.orders.conftest import Shop
from tests.stock_helpers import make_location, receive

BUYERS = 1000
UNITS = (40, 30, 30)


@pytest.mark.postgres_only
def test_thousand_buyers_hundred_units(
    client: TestClient, db: Database, shop: Shop, auth: dict[str, str]
) -> None:
    product = create_product(client, auth, "flash-bell", status="active")
    variant = product["variants"][0]["id"]
    client.put(f"/api/v1/products/{product['id']}/listings/{shop.channel}", json={}, headers=auth)
    locations = [shop.warehouse, shop.store, make_location(client, auth, "south", ships=True)]
    for location, units in zip(locations, UNITS, strict=True):
        receive(client, auth, location, variant, units)
    carts = []
    with db.transaction() as session:
        for _ in range(BUYERS):
            cart = Cart(
                id=new_id("crt"),
                share_code=new_id("x")[-7:].upper(),
                anonymous_id=new_id("anon"),
                channel_id=shop.channel,
                currency="EUR",
                shipping_address={"country": "DE"},
                shipping_rate_id=shop.rate,
            )
            session.add(cart)
            session.add(CartLine(id=new_id("cln"), cart_id=cart.id, variant_id=variant, quantity=1))
            carts.append(cart.id)
    caller = Caller("key_flash", "secret", frozenset({"checkout:write"}))
    body = CheckoutIn(tenders=[TenderIn(provider="test", token="tok_test_success")])
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def buy(cart_id: str) -> None:
        try:
            checkout.checkout(db, cart_id, body, caller=caller, idempotency_key=cart_id)
            result = "ordered"
        except SeamlineError as exc:
            result = f"{exc.status}:{exc.code}"
        with lock:
            outcomes[result] += 1

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(buy, carts))

    assert outcomes == {"ordered": 100, "409:insufficient_stock": 900}, outcomes
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 100
        on_hand, reserved = session.execute(
            select(func.sum(StockLevel.on_hand), func.sum(StockLevel.reserved)).where(
                StockLevel.variant_id == variant
            )
        ).one()
        assert (on_hand, reserved) == (0, 0)
        assert (
            session.scalar(
                select(func.count()).select_from(Reservation).where(Reservation.status == "held")
            )
            == 0
        )
        statuses = Counter(session.scalars(select(Cart.status).where(Cart.id.in_(carts))))
        assert statuses == {"completed": 100, "open": 900}
        assert (
            session.scalar(
                select(func.count()).select_from(Checkout).where(Checkout.status == "paying")
            )
            == 0
        )


@pytest.mark.postgres_only
def test_two_line_carts_in_opposite_order_do_not_deadlock(
    client: TestClient, db: Database, shop: Shop
) -> None:
    """Holds and commits lock stock rows in one order (location, variant, bucket), whatever the
    order of the cart's lines, so concurrent checkouts never deadlock (no 503)."""
    carts = []
    with db.transaction() as session:
        for i in range(120):
            cart = Cart(
                id=new_id("crt"),
                share_code=new_id("x")[-7:].upper(),
                anonymous_id=new_id("anon"),
                channel_id=shop.channel,
                currency="EUR",
                shipping_address={"country": "DE"},
                shipping_rate_id=shop.rate,
            )
            session.add(cart)
            session.flush()
            first, second = (shop.bell, shop.mat) if i % 2 else (shop.mat, shop.bell)
            for variant in (first, second):
                session.add(
                    CartLine(id=new_id("cln"), cart_id=cart.id, variant_id=variant, quantity=1)
                )
                session.flush()
            carts.append(cart.id)
    caller = Caller("key_pairs", "secret", frozenset({"checkout:write"}))
    body = CheckoutIn(tenders=[TenderIn(provider="test", token="tok_test_success")])
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def buy(cart_id: str) -> None:
        try:
            checkout.checkout(db, cart_id, body, caller=caller, idempotency_key=cart_id)
            result = "ordered"
        except SeamlineError as exc:
            result = f"{exc.status}:{exc.code}"
        with lock:
            outcomes[result] += 1

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(buy, carts))
    # 13 of each (10 in the warehouse, 3 in the store): 13 two-line orders can be served.
    assert outcomes == {"ordered": 13, "409:insufficient_stock": 107}, outcomes
    with db.transaction(readonly=True) as session:
        reserved = session.scalar(select(func.sum(StockLevel.reserved)))
        assert reserved == 0
