"""Cart by code in the console: open, change, check out at the till or for delivery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.carts.models import Cart, CartLine
from seamline.db.engine import Database
from seamline.orders.models import Order
from tests.console.conftest import post, sign_in
from tests.orders.conftest import Shop, cart_status
from tests.stock_helpers import level


def cart_row(db: Database, cart_id: str) -> Cart:
    with db.transaction(readonly=True) as session:
        cart = session.get(Cart, cart_id)
        assert cart is not None
        session.expunge(cart)
        return cart


def cart_lines(db: Database, cart_id: str) -> list[tuple[str, int, str]]:
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(CartLine.variant_id, CartLine.quantity, CartLine.fulfilment)
            .where(CartLine.cart_id == cart_id)
            .order_by(CartLine.created_at, CartLine.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def line_ids(db: Database, cart_id: str) -> list[str]:
    with db.transaction(readonly=True) as session:
        return list(
            session.scalars(
                select(CartLine.id).where(CartLine.cart_id == cart_id).order_by(CartLine.id)
            )
        )


def total(client: TestClient, cart_id: str, auth: dict[str, str]) -> int:
    r = client.get(f"/api/v1/carts/{cart_id}", headers=auth)
    assert r.status_code == 200, r.text
    return int(r.json()["quote"]["total"])


def follow(client: TestClient, r: Any) -> Any:
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"])
    assert page.status_code == 200, page.text
    return page


def orders(db: Database) -> list[Order]:
    with db.transaction(readonly=True) as session:
        rows = list(session.scalars(select(Order)))
        for row in rows:
            session.expunge(row)
        return rows


def test_cart_pages_render_for_admin_and_associate(
    admin: TestClient,
    other_client: TestClient,
    make_staff: Callable[..., str],
    shop: Shop,
    make_cart: Callable[..., str],
) -> None:
    cart = make_cart([(shop.bell, 1, None), (shop.mat, 1, shop.store)])
    sign_in(other_client, make_staff("associate", locations=(shop.store,)))
    for client in (admin, other_client):
        page = client.get("/console/carts")
        assert page.status_code == 200
        assert "data-scan" in page.text
        assert 'for="cart-code"' in page.text
        page = client.get(f"/console/carts/{cart}")
        assert page.status_code == 200, page.text
        assert "KETTLEBELL-1" in page.text
        assert "Pick up at Mitte" in page.text
        assert " style=" not in page.text
        assert "<script>" not in page.text
        assert "Take payment and place the order" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")


def test_open_a_cart_by_its_code(
    admin: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 1, None)])
    code = cart_row(db, cart).share_code
    for typed in (code, code.replace("-", ""), code.lower(), f" {code.lower()} "):
        r = admin.get("/console/carts", params={"code": typed}, follow_redirects=False)
        assert r.status_code == 303, typed
        assert r.headers["location"] == f"/console/carts/{cart}"
    r = admin.get("/console/carts", params={"code": "ZZZ-ZZZ"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "No cart with the code" in r.text
    assert "ZZZ-ZZZ" in r.text
    r = admin.get("/console/carts", params={"code": "<b>"})
    assert r.status_code == 404
    assert "&lt;b&gt;" in r.text
    assert "<b>" not in r.text
    r = admin.get("/console/carts/crt_nope")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")


def test_add_change_remove_lines_and_codes(
    admin: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 1, None)])
    url = f"/console/carts/{cart}"
    r = post(admin, f"{url}/lines", {"code": "YOGA-MAT-1", "quantity": 2, "version": 1})
    page = follow(admin, r)
    assert "Added 2 x YOGA-MAT-1" in page.text
    assert cart_lines(db, cart) == [(shop.bell, 1, "ship"), (shop.mat, 2, "ship")]
    assert total(admin, cart, shop.auth) == 4999 + 2 * 2500 + 495
    bell_line, mat_line = (
        next(i for i in line_ids(db, cart) if _variant(db, i) == want)
        for want in (shop.bell, shop.mat)
    )
    follow(admin, post(admin, f"{url}/lines/{bell_line}", {"quantity": 3, "version": 2}))
    assert cart_lines(db, cart)[0] == (shop.bell, 3, "ship")
    # Pick the mats up at the store instead (it can promise 3 of them).
    follow(
        admin,
        post(
            admin, f"{url}/lines/{mat_line}", {"fulfilment": f"pickup:{shop.store}", "version": 3}
        ),
    )
    assert cart_lines(db, cart)[1] == (shop.mat, 2, "pickup")
    before = total(admin, cart, shop.auth)
    page = follow(admin, post(admin, f"{url}/codes", {"code": "welcome10", "version": 4}))
    assert "applied" in page.text
    # 10% off the merchandise (3 x 49.99 + 2 x 25.00 = 199.97 → 20.00 off).
    assert total(admin, cart, shop.auth) == before - 2000
    assert f'data-total="{before - 2000}"' in page.text
    follow(admin, post(admin, f"{url}/codes/remove", {"code": "WELCOME10", "version": 5}))
    assert total(admin, cart, shop.auth) == before
    follow(admin, post(admin, f"{url}/lines/{mat_line}/remove", {"version": 6}))
    assert cart_lines(db, cart) == [(shop.bell, 3, "ship")]
    assert cart_row(db, cart).updated_by is not None
    # An unknown SKU is refused with a clear notice on the cart page.
    page = follow(admin, post(admin, f"{url}/lines", {"code": "NOPE-1", "version": 7}))
    assert "No variant has that SKU or barcode" in page.text
    assert cart_row(db, cart).version == 7


def _variant(db: Database, line_id: str) -> str:
    with db.transaction(readonly=True) as session:
        line = session.get(CartLine, line_id)
        assert line is not None
        return line.variant_id


def test_a_stale_form_is_refused(
    admin: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 1, None)])
    url = f"/console/carts/{cart}"
    # The customer changes the cart on their phone meanwhile (version 1 → 2).
    r = admin.post(f"/api/v1/carts/{cart}/codes", json={"code": "WELCOME10"}, headers=shop.auth)
    assert r.status_code == 200, r.text
    [line] = line_ids(db, cart)
    page = follow(admin, post(admin, f"{url}/lines/{line}", {"quantity": 5, "version": 1}))
    assert "This cart changed since the page was opened" in page.text
    assert cart_lines(db, cart) == [(shop.bell, 1, "ship")]
    r = post(
        admin,
        f"{url}/checkout",
        {"version": 1, "key": "stalecheckout", "tender": "card_present", "location_id": shop.store},
    )
    assert "This cart changed" in follow(admin, r).text
    assert orders(db) == []
    assert cart_status(db, cart) == "open"


def test_till_checkout_with_cash_gives_change(
    admin: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 1, shop.store)])
    r = post(
        admin,
        f"/console/carts/{cart}/checkout",
        {
            "version": 1,
            "key": "till-1",
            "mode": "till",
            "tender": "cash",
            "tendered": "60",
            "location_id": shop.store,
        },
    )
    assert r.status_code == 303, r.text
    [order] = orders(db)
    assert r.headers["location"] == f"/console/orders/{order.id}"
    page = follow(admin, r)
    assert "Change due: €10.01" in page.text  # 60.00 - 49.99
    assert "€10.01" in page.text
    assert "Order #" in page.text
    assert (order.location_id, order.status, order.total) == (shop.store, "paid", 4999)
    assert cart_status(db, cart) == "completed"
    assert level(db, shop.store, shop.bell) == (2, 0)
    # Sent twice (a double tap): the same order, no second sale.
    again = post(
        admin,
        f"/console/carts/{cart}/checkout",
        {
            "version": 1,
            "key": "till-1",
            "mode": "till",
            "tender": "cash",
            "tendered": "60",
            "location_id": shop.store,
        },
    )
    assert again.status_code == 303
    assert len(orders(db)) == 1
    # Not enough cash is refused.
    cart2 = make_cart([(shop.mat, 1, shop.store)])
    r = post(
        admin,
        f"/console/carts/{cart2}/checkout",
        {
            "version": 1,
            "key": "till-2",
            "tender": "cash",
            "tendered": "10",
            "location_id": shop.store,
        },
    )
    assert r.headers["location"] == f"/console/carts/{cart2}"
    assert cart_status(db, cart2) == "open"
    assert len(orders(db)) == 1


def test_endless_aisle_order_for_home_delivery(
    client: TestClient,
    make_staff: Callable[..., str],
    db: Database,
    shop: Shop,
    make_cart: Callable[..., str],
) -> None:
    sign_in(client, make_staff("associate", locations=(shop.store,)))
    # The store has 3 kettlebells; the customer wants 5 at home.
    cart = make_cart([(shop.bell, 5, None)])
    r = post(
        client,
        f"/console/carts/{cart}/checkout",
        {
            "version": 1,
            "key": "aisle-1",
            "mode": "delivery",
            "tender": "card_present",
            "location_id": shop.store,
        },
    )
    assert r.status_code == 303, r.text
    [order] = orders(db)
    assert order.location_id == shop.store
    page = follow(client, r)
    assert "Ship from Warehouse" in page.text
    assert level(db, shop.warehouse, shop.bell) == (5, 0)
    assert level(db, shop.store, shop.bell) == (3, 0)
    # Delivery needs every line shipped.
    cart2 = make_cart([(shop.mat, 1, shop.store)])
    page = follow(
        client,
        post(
            client,
            f"/console/carts/{cart2}/checkout",
            {
                "version": 1,
                "key": "aisle-2",
                "mode": "delivery",
                "tender": "card_present",
                "location_id": shop.store,
            },
        ),
    )
    assert "switch the pick-up lines to ship" in page.text
    # An associate checks out only at their own store.
    r = post(
        client,
        f"/console/carts/{cart2}/checkout",
        {"version": 1, "key": "aisle-3", "tender": "card_present", "location_id": shop.warehouse},
    )
    assert "own locations" in follow(client, r).text
    assert len(orders(db)) == 1


def test_delivery_details_and_escaping(
    admin: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 1, None)])
    evil = "<script>alert(1)</script>"
    r = post(
        admin,
        f"/console/carts/{cart}/shipping",
        {
            "version": 1,
            "email": "<img/src=x>@example.com",
            "name": evil,
            "line1": "Torstr. 1",
            "city": "Berlin",
            "postcode": "10119",
            "country": "de",
            "shipping_rate_id": shop.rate,
        },
    )
    page = follow(admin, r)
    assert "Delivery details saved" in page.text
    assert evil not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<img/src=x>" not in page.text
    row = cart_row(db, cart)
    assert row.shipping_address is not None
    assert row.shipping_address["name"] == evil
    assert row.email == "<img/src=x>@example.com"
    # A bad country is refused, naming the field.
    page = follow(
        admin,
        post(
            admin,
            f"/console/carts/{cart}/shipping",
            {"version": 2, "name": "A", "line1": "B", "city": "C", "country": "XX"},
        ),
    )
    assert "country" in page.text
    assert cart_row(db, cart).version == 2


def test_marketer_cannot_check_out(
    client: TestClient,
    make_staff: Callable[..., str],
    db: Database,
    shop: Shop,
    make_cart: Callable[..., str],
) -> None:
    sign_in(client, make_staff("marketer"))
    cart = make_cart([(shop.bell, 1, shop.store)])
    assert client.get(f"/console/carts/{cart}").status_code == 403
    r = post(
        client,
        f"/console/carts/{cart}/checkout",
        {"version": 1, "key": "mkt-1", "tender": "card_present", "location_id": shop.store},
    )
    assert r.status_code == 303
    assert "may not" in client.get(r.headers["location"]).text
    r = post(client, f"/console/carts/{cart}/lines", {"code": "YOGA-MAT-1", "version": 1})
    assert r.status_code == 303
    assert orders(db) == []
    assert cart_status(db, cart) == "open"
    assert cart_lines(db, cart) == [(shop.bell, 1, "pickup")]
