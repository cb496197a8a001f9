"""Orders in the console: list, detail with its timeline, store actions, returns, scoping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.orders.models import FulfilmentGroup, Order, Return
from tests.console.conftest import post, sign_in
from tests.orders.conftest import Shop
from tests.stock_helpers import level, make_location


def place(client: TestClient, shop: Shop, cart: str, key: str = "k1") -> dict[str, Any]:
    r = client.post(
        f"/api/v1/carts/{cart}/checkout",
        json={"tenders": [{"provider": "test", "token": "tok_test_success"}]},
        headers={**shop.auth, "Idempotency-Key": key},
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def groups(db: Database, order_id: str) -> dict[str, tuple[str, str | None]]:
    with db.transaction(readonly=True) as session:
        rows = session.scalars(select(FulfilmentGroup).where(FulfilmentGroup.order_id == order_id))
        return {g.kind: (g.status, g.tracking_number) for g in rows}


def order_status(db: Database, order_id: str) -> str:
    with db.transaction(readonly=True) as session:
        return session.scalars(select(Order.status).where(Order.id == order_id)).one()


def follow(client: TestClient, r: Any) -> Any:
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"])
    assert page.status_code == 200, page.text
    return page


def test_order_pages_render_for_admin_and_associate(
    admin: TestClient,
    other_client: TestClient,
    make_staff: Callable[..., str],
    shop: Shop,
    make_cart: Callable[..., str],
) -> None:
    web = place(admin, shop, make_cart([(shop.mat, 1, None)]), "k1")
    pickup = place(admin, shop, make_cart([(shop.bell, 1, shop.store)]), "k2")
    sign_in(other_client, make_staff("associate", locations=(shop.store,)))
    for client in (admin, other_client):
        page = client.get("/console/orders")
        assert page.status_code == 200, page.text
        assert " style=" not in page.text
        for order in (web, pickup):
            page = client.get(f"/console/orders/{order['id']}")
            assert page.status_code == 200, page.text
            assert f"Order #{order['number']}" in page.text
            assert "Fulfilment timeline" in page.text
            assert "Order placed" in page.text
    # The associate's list defaults to their store: the pick-up order, not the web one.
    page = other_client.get("/console/orders")
    assert f"#{pickup['number']}" in page.text
    assert f"#{web['number']}" not in page.text
    page = other_client.get("/console/orders?location=all")
    assert f"#{web['number']}" in page.text
    page = admin.get("/console/orders")
    assert page.text.index(f"#{pickup['number']}") < page.text.index(f"#{web['number']}")
    page = admin.get("/console/orders?status=cancelled")
    assert "No orders match" in page.text
    # Paging: one per page via the cursor link.
    assert admin.get("/console/orders/ord_nope").status_code == 404


def test_ready_then_hand_over_with_the_code(
    admin: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    order = place(admin, shop, make_cart([(shop.bell, 1, shop.store)]))
    [group] = order["groups"]
    base = f"/console/orders/{order['id']}/groups/{group['id']}"
    page = follow(admin, post(admin, f"{base}/ready"))
    assert "Marked ready for pick-up" in page.text
    assert groups(db, order["id"])["pickup"][0] == "ready_for_pickup"
    page = follow(admin, post(admin, f"{base}/handover", {"code": "AAA-AAA"}))
    assert "pick-up code does not match" in page.text
    assert groups(db, order["id"])["pickup"][0] == "ready_for_pickup"
    assert order_status(db, order["id"]) == "paid"
    code = group["pickup_code"].lower().replace("-", "")
    page = follow(admin, post(admin, f"{base}/handover", {"code": code}))
    assert "handed over" in page.text
    assert groups(db, order["id"])["pickup"][0] == "picked_up"
    assert order_status(db, order["id"]) == "completed"
    assert "Picked up by the customer" in page.text


def test_ship_with_tracking_and_cancel_restocks(
    admin: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    shipped = place(admin, shop, make_cart([(shop.mat, 1, None)]), "k1")
    [group] = shipped["groups"]
    url = f"/console/orders/{shipped['id']}/groups/{group['id']}/ship"
    page = follow(admin, post(admin, url, {"carrier": "DHL", "tracking_number": "JD0001"}))
    assert "Shipped with DHL JD0001" in page.text
    assert groups(db, shipped["id"])["ship"] == ("shipped", "JD0001")
    assert order_status(db, shipped["id"]) == "fulfilled"
    # Shipped: no cancel any more (start a return instead).
    r = post(admin, f"/console/orders/{shipped['id']}/cancel", {"reason": "changed mind"})
    assert "left the building" in follow(admin, r).text
    order = place(admin, shop, make_cart([(shop.bell, 2, shop.store)]), "k2")
    assert level(db, shop.store, shop.bell) == (1, 0)
    page = admin.get(f"/console/orders/{order['id']}")
    assert 'data-confirm="Cancel order' in page.text
    evil = "<script>alert(1)</script>"
    page = follow(admin, post(admin, f"/console/orders/{order['id']}/cancel", {"reason": evil}))
    assert "Order cancelled" in page.text
    assert evil not in page.text
    assert "&lt;script&gt;" in page.text
    assert order_status(db, order["id"]) == "cancelled"
    assert level(db, shop.store, shop.bell) == (3, 0)


def test_return_started_and_received_in_the_store(
    admin: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    order = place(admin, shop, make_cart([(shop.mat, 2, None)]))
    [line] = order["lines"]
    evil = "<img src=x onerror=alert(1)>"
    r = post(
        admin,
        f"/console/orders/{order['id']}/returns",
        {
            "line_id": [line["id"]],
            "quantity": [1],
            "reason": ["damaged"],
            "location_id": shop.store,
            "note": evil,
        },
    )
    assert r.status_code == 303, r.text
    page = follow(admin, r)
    assert "Return started" in page.text
    assert evil not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    with db.transaction(readonly=True) as session:
        ret = session.scalars(select(Return)).one()
        ret_id, status = ret.id, ret.status
    assert status == "requested"
    assert r.headers["location"] == f"/console/orders/{order['id']}/returns/{ret_id}"
    rl = page.text.split('name="return_line_id" value="')[1].split('"')[0]
    before = level(db, shop.store, shop.mat)
    r = post(
        admin,
        f"/console/orders/{order['id']}/returns/{ret_id}/receive",
        {"return_line_id": [rl], "disposition": ["restock"]},
    )
    page = follow(admin, r)
    assert "Return received: €25.00 refunded" in page.text
    assert level(db, shop.store, shop.mat) == (before[0] + 1, before[1])
    with db.transaction(readonly=True) as session:
        assert session.scalars(select(Return.status)).one() == "refunded"
    page = admin.get(f"/console/orders/{order['id']}")
    assert "Return received" in page.text
    assert "Return started" in page.text
    # The customer 360 lists the return with what it refunded.
    c360 = admin.get(f"/console/customers/{order['profile_id']}").text
    assert f"Return of #{order['number']}</a> · refunded · €25.00 refunded" in c360
    # Asking back more than is left is refused.
    r = post(
        admin,
        f"/console/orders/{order['id']}/returns",
        {"line_id": [line["id"]], "quantity": [2], "reason": ["other"], "location_id": shop.store},
    )
    assert "units left to return" in follow(admin, r).text


def test_an_associate_of_another_store_is_refused(
    admin: TestClient,
    other_client: TestClient,
    make_staff: Callable[..., str],
    db: Database,
    shop: Shop,
    make_cart: Callable[..., str],
) -> None:
    other = make_location(
        admin,
        shop.auth,
        "kreuzberg",
        kind="store",
        pickup=True,
        returns=True,
        sells_in_person=True,
    )
    pickup = place(admin, shop, make_cart([(shop.bell, 1, shop.store)]), "k1")
    web = place(admin, shop, make_cart([(shop.mat, 1, None)]), "k2")
    [pg], [wg] = pickup["groups"], web["groups"]
    sign_in(other_client, make_staff("associate", locations=(other,)))
    page = other_client.get(f"/console/orders/{pickup['id']}")
    assert page.status_code == 200
    assert "Mark ready for pick-up" not in page.text
    for url, data in (
        (f"/console/orders/{pickup['id']}/groups/{pg['id']}/ready", {}),
        (f"/console/orders/{pickup['id']}/groups/{pg['id']}/handover", {"code": pg["pickup_code"]}),
        (
            f"/console/orders/{web['id']}/groups/{wg['id']}/ship",
            {"carrier": "DHL", "tracking_number": "X1"},
        ),
        (f"/console/orders/{pickup['id']}/cancel", {"reason": "nope"}),
        (f"/console/orders/{web['id']}/cancel", {"reason": "nope"}),
        (
            f"/console/orders/{web['id']}/returns",
            {
                "line_id": [web["lines"][0]["id"]],
                "quantity": [1],
                "reason": ["other"],
                "location_id": shop.store,
            },
        ),
    ):
        r = post(other_client, url, data)
        assert "only act at its own locations" in follow(other_client, r).text, url
    assert groups(db, pickup["id"]) == {"pickup": ("pending", None)}
    assert groups(db, web["id"]) == {"ship": ("pending", None)}
    assert order_status(db, pickup["id"]) == order_status(db, web["id"]) == "paid"
    # A return started at the right store is received only there.
    r = post(
        admin,
        f"/console/orders/{web['id']}/returns",
        {
            "line_id": [web["lines"][0]["id"]],
            "quantity": [1],
            "reason": ["other"],
            "location_id": shop.store,
        },
    )
    assert r.status_code == 303
    with db.transaction(readonly=True) as session:
        ret_id = session.scalars(select(Return.id)).one()
    page = other_client.get(r.headers["location"])
    assert page.status_code == 200
    assert "Receive and refund" not in page.text
    rl = admin.get(r.headers["location"]).text.split('name="return_line_id" value="')[1]
    r = post(
        other_client,
        f"/console/orders/{web['id']}/returns/{ret_id}/receive",
        {"return_line_id": [rl.split('"')[0]], "disposition": ["restock"]},
    )
    assert "only act at its own locations" in follow(other_client, r).text
    with db.transaction(readonly=True) as session:
        assert session.scalars(select(Return.status)).one() == "requested"
