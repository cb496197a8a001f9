"""Erasing a customer blanks the personal fields of their orders and carts and keeps the
financial facts (issue 4's rule, for the commerce tables)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.carts.models import Cart
from seamline.db.engine import Database
from seamline.orders.models import Order
from tests.orders.conftest import Shop
from tests.orders.test_checkout import pay


def test_erasure_blanks_orders_and_carts_but_keeps_the_money(
    client: TestClient,
    db: Database,
    shop: Shop,
    make_cart: Callable[..., str],
    make_key: Callable[..., str],
) -> None:
    cart = make_cart([(shop.mat, 1, None)])
    order = pay(client, cart, shop.auth).json()
    open_cart = make_cart([(shop.bell, 1, None)], profile=False)
    with db.transaction() as session:
        session.get(Cart, open_cart).profile_id = order["profile_id"]  # type: ignore[union-attr]
    privacy = {"Authorization": f"Bearer {make_key(scopes=['privacy:write'])}"}
    r = client.post(
        f"/api/v1/profiles/{order['profile_id']}/erase",
        json={"reason": "customer request"},
        headers=privacy,
    )
    assert r.status_code == 200, r.text
    with db.transaction(readonly=True) as session:
        kept = session.get(Order, order["id"])
        assert kept is not None
        assert kept.email is None
        assert kept.shipping_address == {"country": "DE"}
        assert (kept.total, kept.paid_total) == (order["total"], order["total"])
        carts = session.scalars(select(Cart).where(Cart.id.in_([cart, open_cart]))).all()
        assert [(c.email, c.shipping_address) for c in carts] == [(None, None), (None, None)]
        for table in ("orders", "carts"):
            rows = session.execute(select(Order.email) if table == "orders" else select(Cart.email))
            assert "ann@example.com" not in str(list(rows))
