"""Returns and exchanges (S9 — return anywhere): an online order comes back in a store, the
money goes back to the original tenders, the units are restocked there or written off, and the
customer's timeline shows it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.auth import service as keys
from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.inventory.models import StockMovement
from seamline.orders.models import Order
from seamline.orders.returns import exchange_price, unit_credit
from seamline.runtime import Runtime
from tests.orders.conftest import Shop
from tests.stock_helpers import level, make_location

CARD = {"provider": "test", "token": "tok_test_success"}


def place(
    client: TestClient,
    make_cart: Callable[..., str],
    shop: Shop,
    lines: list[tuple[str, int, str | None]],
    tenders: list[dict[str, Any]] | None = None,
    **cart: Any,
) -> dict[str, Any]:
    """A real order through checkout (shipped lines leave the warehouse)."""
    cart_id = make_cart(lines, **cart)
    r = client.post(
        f"/api/v1/carts/{cart_id}/checkout",
        json={"tenders": tenders or [CARD]},
        headers={**shop.auth, "Idempotency-Key": f"pay-{cart_id}"},
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def line_of(order: dict[str, Any], variant: str) -> dict[str, Any]:
    found: dict[str, Any] = next(x for x in order["lines"] if x["variant_id"] == variant)
    return found


def ask(
    client: TestClient,
    auth: dict[str, str],
    order_id: str,
    lines: list[dict[str, Any]],
    **extra: Any,
) -> Any:
    return client.post(
        f"/api/v1/orders/{order_id}/returns", json={"lines": lines, **extra}, headers=auth
    )


def receive(
    client: TestClient,
    auth: dict[str, str],
    ret: dict[str, Any],
    disposition: str = "restock",
    **extra: Any,
) -> Any:
    body = {
        "lines": [{"return_line_id": x["id"], "disposition": disposition} for x in ret["lines"]],
        **extra,
    }
    return client.post(f"/api/v1/returns/{ret['id']}/receive", json=body, headers=auth)


def get_order(client: TestClient, shop: Shop, order_id: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/orders/{order_id}", headers=shop.auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def movements(db: Database, location: str, kind: str) -> list[StockMovement]:
    with db.transaction(readonly=True) as session:
        return list(
            session.scalars(
                select(StockMovement).where(
                    StockMovement.location_id == location, StockMovement.kind == kind
                )
            )
        )


def store_key(db: Database, location: str) -> dict[str, str]:
    with db.transaction() as session:
        _, token = keys.create_key(session, kind="secret", name="till", location_ids=[location])
    return {"Authorization": f"Bearer {token}"}


# -- the arithmetic ---------------------------------------------------------------------------


def test_units_credit_exactly_the_line_total_the_last_unit_takes_the_remainder() -> None:
    assert [unit_credit(1000, 3, n, 1) for n in range(3)] == [333, 333, 334]
    assert unit_credit(1000, 3, 0, 2) + unit_credit(1000, 3, 2, 1) == 1000
    assert unit_credit(1000, 3, 1, 2) == 667
    assert unit_credit(1000, 3, 0, 3) == 1000
    # The replacement is priced like the returned unit: same list price, same credit.
    assert exchange_price(2250, 2500, 2500, 1) == 2250
    assert exchange_price(2250, 2500, 4999, 1) == 4499  # 10% off carried over, half up
    assert exchange_price(0, 0, 700, 2) == 1400


# -- S9 -------------------------------------------------------------------------------------


def test_an_online_order_returned_in_a_store_refunds_card_first_and_restocks_there(
    client: TestClient,
    db: Database,
    runtime: Runtime,
    shop: Shop,
    make_cart: Callable[..., str],
) -> None:
    # 2 mats shipped from the warehouse: 50.00 + 4.95 shipping, paid 20.00 card + 34.95 cash.
    order = place(
        client,
        make_cart,
        shop,
        [(shop.mat, 2, None)],
        tenders=[{**CARD, "amount": 2000}, {"provider": "manual", "token": "cash"}],
    )
    assert level(db, shop.warehouse, shop.mat) == (8, 0)
    assert level(db, shop.store, shop.mat) == (3, 0)
    mat = line_of(order, shop.mat)
    r = ask(
        client,
        shop.auth,
        order["id"],
        [{"order_line_id": mat["id"], "quantity": 1, "reason": "changed_mind"}],
        location_id=shop.store,
        note="customer came in",
    )
    assert r.status_code == 201, r.text
    ret = r.json()
    assert (ret["status"], ret["location_id"], ret["refund_total"]) == ("requested", shop.store, 0)
    assert ret["lines"][0]["sku"] == mat["sku"]

    r = receive(client, shop.auth, ret)
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["refund_total"], done["shipping_refund"]) == ("refunded", 2500, 0)
    assert done["lines"][0]["disposition"] == "restock"
    assert done["lines"][0]["refund"] == 2500
    # Cards first (the PSP returns the money), cash last: 20.00 to the card, 5.00 in cash.
    by_payment = {x["payment_id"]: x["amount"] for x in done["refunds"]}
    after = get_order(client, shop, order["id"])
    card, cash = after["payments"]
    assert (card["method"], cash["method"]) == ("card", "cash")
    assert by_payment == {card["id"]: 2000, cash["id"]: 500}
    assert (card["refunded"], cash["refunded"]) == (2000, 500)
    assert after["refunded_total"] == 2500
    assert after["payment_state"] == "partially_refunded"
    assert line_of(after, shop.mat)["quantity_returned"] == 1
    assert [h["kind"] for h in after["history"]][-3:] == [
        "return_requested",
        "return_received",
        "refunded",
    ]
    # Restocked where it came back, not where it left.
    assert level(db, shop.store, shop.mat) == (4, 0)
    assert level(db, shop.warehouse, shop.mat) == (8, 0)
    [moved] = movements(db, shop.store, "return")
    assert (moved.variant_id, moved.quantity, moved.reference) == (
        shop.mat,
        1,
        ret["lines"][0]["id"],
    )

    # The events name the customer, and the worker puts them on the timeline.
    with db.transaction(readonly=True) as session:
        events = list(
            session.scalars(
                select(OutboxEvent)
                .where(
                    OutboxEvent.type.in_(["return.requested", "return.received", "order.refunded"])
                )
                .order_by(OutboxEvent.seq)
            )
        )
    assert [e.type for e in events] == [
        "return.requested",
        "return.received",
        "order.refunded",
        "order.refunded",
    ]
    assert {e.payload["profile_id"] for e in events} == {order["profile_id"]}
    refunded = [e.payload for e in events if e.type == "order.refunded"]
    assert [p["amount_minor"] for p in refunded] == [2000, 500]
    assert {p["refund_id"] for p in refunded} == {x["id"] for x in done["refunds"]}
    assert all(p["currency"] == "EUR" and p["order_id"] == order["id"] for p in refunded)
    runtime.worker().drain()
    page = client.get(f"/api/v1/profiles/{order['profile_id']}/timeline", headers=shop.auth).json()[
        "data"
    ]
    kinds = [e["type"] for e in page]
    assert kinds.count("order.refunded") == 2
    assert "return.requested" in kinds
    assert "return.received" in kinds

    # Reads.
    got = client.get(f"/api/v1/returns/{ret['id']}", headers=shop.auth)
    assert got.status_code == 200
    assert got.json() == done
    listed = client.get(f"/api/v1/orders/{order['id']}/returns", headers=shop.auth).json()
    assert [x["id"] for x in listed["data"]] == [ret["id"]]


def test_a_written_off_unit_is_refunded_but_not_restocked(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    order = place(client, make_cart, shop, [(shop.bell, 1, None)])
    bell = line_of(order, shop.bell)
    ret = ask(
        client,
        shop.auth,
        order["id"],
        [{"order_line_id": bell["id"], "quantity": 1, "reason": "damaged"}],
        location_id=shop.store,
    ).json()
    r = receive(client, shop.auth, ret, "write_off")
    assert r.status_code == 200, r.text
    assert r.json()["lines"][0]["disposition"] == "write_off"
    assert r.json()["refund_total"] == 4999
    assert level(db, shop.store, shop.bell) == (3, 0)
    assert level(db, shop.warehouse, shop.bell) == (9, 0)
    assert movements(db, shop.store, "return") == []
    assert movements(db, shop.store, "damage") == []
    after = get_order(client, shop, order["id"])
    assert (after["refunded_total"], after["payment_state"]) == (4999, "partially_refunded")
    assert line_of(after, shop.bell)["quantity_returned"] == 1


def test_partial_returns_add_up_to_the_line_and_over_returns_are_refused(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    # 3 mats, 10% off: the line is 67.50; shipping 4.95; total 72.45.
    order = place(client, make_cart, shop, [(shop.mat, 3, None)], codes=["WELCOME10"])
    mat = line_of(order, shop.mat)
    assert mat["total"] == 6750
    first = ask(
        client,
        shop.auth,
        order["id"],
        [{"order_line_id": mat["id"], "quantity": 1, "reason": "too_small"}],
        location_id=shop.store,
    ).json()
    # Asked back but not received yet still counts: only 2 more may be asked.
    r = ask(
        client,
        shop.auth,
        order["id"],
        [{"order_line_id": mat["id"], "quantity": 3, "reason": "too_small"}],
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "return_exceeds_purchase"
    assert r.json()["returnable"] == 2
    assert r.json()["errors"][0]["path"] == "body.lines.0.quantity"
    assert receive(client, shop.auth, first).json()["refund_total"] == 2250

    second = ask(
        client,
        shop.auth,
        order["id"],
        [{"order_line_id": mat["id"], "quantity": 2, "reason": "too_large"}],
        location_id=shop.store,
    ).json()
    r = receive(client, shop.auth, second, refund_shipping=True)
    assert r.status_code == 200, r.text
    assert (r.json()["refund_total"], r.json()["shipping_refund"]) == (4500 + 495, 495)
    after = get_order(client, shop, order["id"])
    assert after["refunded_total"] == after["paid_total"] == 7245
    assert after["payment_state"] == "refunded"
    assert line_of(after, shop.mat)["quantity_returned"] == 3
    assert level(db, shop.store, shop.mat) == (6, 0)
    # Nothing left to return.
    r = ask(
        client,
        shop.auth,
        order["id"],
        [{"order_line_id": mat["id"], "quantity": 1, "reason": "other"}],
    )
    assert r.status_code == 409
    assert r.json()["code"] == "order_not_paid"


def test_over_return_refused_with_the_field_path(
    client: TestClient, shop: Shop, make_cart: Callable[..., str]
) -> None:
    order = place(client, make_cart, shop, [(shop.bell, 1, None), (shop.mat, 1, None)])
    lines = [
        {"order_line_id": line_of(order, shop.bell)["id"], "quantity": 1, "reason": "other"},
        {"order_line_id": line_of(order, shop.mat)["id"], "quantity": 2, "reason": "other"},
    ]
    r = ask(client, shop.auth, order["id"], lines, location_id=shop.store)
    assert r.status_code == 409
    assert r.json()["code"] == "return_exceeds_purchase"
    assert r.json()["errors"][0]["path"] == "body.lines.1.quantity"
    r = ask(client, shop.auth, order["id"], [lines[0], lines[0]], location_id=shop.store)
    assert r.status_code == 422
    assert r.json()["code"] == "duplicate_line"
    r = ask(
        client,
        shop.auth,
        order["id"],
        [{"order_line_id": "orl_nope", "quantity": 1, "reason": "other"}],
    )
    assert (r.status_code, r.json()["code"]) == (422, "order_line_not_in_order")
    r = ask(client, shop.auth, order["id"], [{**lines[0], "reason": "bored"}])
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "body.lines.0.reason"
    assert client.get(f"/api/v1/orders/{order['id']}/returns", headers=shop.auth).json() == {
        "data": [],
        "next_cursor": None,
    }


def test_cancelled_orders_take_no_returns(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    order = place(client, make_cart, shop, [(shop.bell, 1, None)])
    with db.transaction() as session:
        found = session.get(Order, order["id"])
        assert found is not None
        found.status = "cancelled"
    r = ask(
        client,
        shop.auth,
        order["id"],
        [{"order_line_id": line_of(order, shop.bell)["id"], "quantity": 1, "reason": "other"}],
    )
    assert (r.status_code, r.json()["code"]) == (409, "order_cancelled")


def test_store_keys_take_returns_only_at_their_store(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    other = make_location(client, shop.auth, "kreuzberg", kind="store", returns=True)
    outlet = make_location(client, shop.auth, "outlet", kind="store", returns=False)
    till = store_key(db, shop.store)
    order = place(client, make_cart, shop, [(shop.mat, 2, None)])
    line = [{"order_line_id": line_of(order, shop.mat)["id"], "quantity": 1, "reason": "other"}]
    r = ask(client, till, order["id"], line, location_id=other)
    assert (r.status_code, r.json()["code"]) == (403, "location_out_of_scope")
    r = ask(client, till, order["id"], line)  # by mail: not a store's business
    assert (r.status_code, r.json()["code"]) == (422, "location_required")
    r = ask(client, shop.auth, order["id"], line, location_id=outlet)
    assert (r.status_code, r.json()["code"]) == (422, "location_takes_no_returns")
    assert r.json()["errors"][0]["path"] == "body.location_id"
    # A return by mail, received by the wrong store's key, then at the key's own store.
    by_mail = ask(client, shop.auth, order["id"], line).json()
    assert by_mail["location_id"] is None
    r = receive(client, till, by_mail)
    assert (r.status_code, r.json()["code"]) == (422, "location_required")
    r = receive(client, till, by_mail, location_id=other)
    assert (r.status_code, r.json()["code"]) == (403, "location_out_of_scope")
    r = receive(client, till, by_mail, location_id=shop.store)
    assert r.status_code == 200, r.text
    assert (r.json()["location_id"], r.json()["status"]) == (shop.store, "refunded")
    assert level(db, shop.store, shop.mat) == (4, 0)
    # The store key's own store: fine; a return at another store cannot be received there.
    at_other = ask(client, shop.auth, order["id"], line, location_id=other).json()
    r = receive(client, shop.auth, at_other, location_id=shop.store)
    assert (r.status_code, r.json()["code"]) == (422, "location_mismatch")
    r = receive(client, till, at_other)
    assert (r.status_code, r.json()["code"]) == (403, "location_out_of_scope")


def test_an_exchange_for_a_dearer_variant_takes_the_difference(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    order = place(client, make_cart, shop, [(shop.mat, 1, None)])  # 25.00 + 4.95
    mat = line_of(order, shop.mat)
    ret = ask(
        client,
        shop.auth,
        order["id"],
        [
            {
                "order_line_id": mat["id"],
                "quantity": 1,
                "reason": "not_as_described",
                "exchange_variant_id": shop.bell,
            }
        ],
        location_id=shop.store,
    ).json()
    assert ret["lines"][0]["exchange_variant_id"] == shop.bell
    # 49.99 - 25.00 = 24.99 is due: no tender, or one that is declined, changes nothing.
    r = receive(client, shop.auth, ret)
    assert (r.status_code, r.json()["code"]) == (422, "tenders_required")
    r = receive(client, shop.auth, ret, tenders=[{"provider": "test", "token": "tok_test_decline"}])
    assert (r.status_code, r.json()["code"]) == (402, "payment_declined")
    assert r.json()["decline_code"] == "card_declined"
    r = receive(client, shop.auth, ret, tenders=[{**CARD, "amount": 100}])
    assert (r.status_code, r.json()["code"]) == (422, "tenders_do_not_match_total")
    assert level(db, shop.store, shop.bell) == (3, 0)
    assert client.get(f"/api/v1/returns/{ret['id']}", headers=shop.auth).json()["status"] == (
        "requested"
    )

    r = receive(
        client,
        shop.auth,
        ret,
        tenders=[{"provider": "manual", "token": "cash", "tendered": 3000}],
    )
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["refund_total"], done["exchange_paid"]) == ("received", 0, 2499)
    assert done["lines"][0]["refund"] == -2499
    [paid] = done["payments"]
    assert (paid["method"], paid["captured"], paid["change_due"]) == ("cash", 2499, 501)
    # The returned mat is back on the store's shelf; the bell left it.
    assert level(db, shop.store, shop.mat) == (4, 0)
    assert level(db, shop.store, shop.bell) == (2, 0)
    [sold] = movements(db, shop.store, "sale")
    assert (sold.variant_id, sold.quantity) == (shop.bell, -1)
    after = get_order(client, shop, order["id"])
    assert after["paid_total"] == 2995 + 2499
    assert (after["refunded_total"], after["payment_state"]) == (0, "paid")
    assert "exchange_paid" in [h["kind"] for h in after["history"]]


def test_an_exchange_for_a_cheaper_variant_refunds_the_difference(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    order = place(client, make_cart, shop, [(shop.bell, 1, None)])  # 49.99 + 4.95
    bell = line_of(order, shop.bell)
    ret = ask(
        client,
        shop.auth,
        order["id"],
        [
            {
                "order_line_id": bell["id"],
                "quantity": 1,
                "reason": "wrong_item",
                "exchange_variant_id": shop.mat,
            }
        ],
        location_id=shop.store,
    ).json()
    r = receive(client, shop.auth, ret, tenders=[CARD])
    assert (r.status_code, r.json()["code"]) == (422, "no_payment_due")
    r = receive(client, shop.auth, ret)
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["refund_total"], done["exchange_paid"]) == ("refunded", 2499, 0)
    assert [x["amount"] for x in done["refunds"]] == [2499]
    assert level(db, shop.store, shop.bell) == (4, 0)
    assert level(db, shop.store, shop.mat) == (2, 0)
    after = get_order(client, shop, order["id"])
    assert (after["refunded_total"], after["payment_state"]) == (2499, "partially_refunded")


def test_an_exchange_needs_the_replacement_in_stock_before_any_money_moves(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    order = place(client, make_cart, shop, [(shop.mat, 1, None)])
    r = client.post(
        "/api/v1/stock/adjustments",
        json={
            "location_id": shop.store,
            "variant_id": shop.bell,
            "quantity": 3,
            "kind": "decrease",
            "reason": "display units",
        },
        headers=shop.auth,
    )
    assert r.status_code == 201, r.text
    ret = ask(
        client,
        shop.auth,
        order["id"],
        [
            {
                "order_line_id": line_of(order, shop.mat)["id"],
                "quantity": 1,
                "reason": "other",
                "exchange_variant_id": shop.bell,
            }
        ],
        location_id=shop.store,
    ).json()
    r = receive(client, shop.auth, ret, tenders=[CARD])
    assert (r.status_code, r.json()["code"]) == (409, "insufficient_stock")
    with db.transaction(readonly=True) as session:
        found = session.get(Order, order["id"])
        assert found is not None
        assert found.paid_total == found.total


def test_receiving_twice_is_refused_and_a_retried_key_replays(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    order = place(client, make_cart, shop, [(shop.mat, 2, None)])
    ret = ask(
        client,
        shop.auth,
        order["id"],
        [{"order_line_id": line_of(order, shop.mat)["id"], "quantity": 2, "reason": "other"}],
        location_id=shop.store,
    ).json()
    headers = {**shop.auth, "Idempotency-Key": "receive-1"}
    body = {"lines": [{"return_line_id": ret["lines"][0]["id"], "disposition": "restock"}]}
    url = f"/api/v1/returns/{ret['id']}/receive"
    first = client.post(url, json=body, headers=headers)
    assert first.status_code == 200, first.text
    replay = client.post(url, json=body, headers=headers)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json() == first.json()
    again = client.post(url, json=body, headers=shop.auth)
    assert (again.status_code, again.json()["code"]) == (409, "return_already_received")
    assert level(db, shop.store, shop.mat) == (5, 0)
    after = get_order(client, shop, order["id"])
    assert after["refunded_total"] == 5000
    assert len(movements(db, shop.store, "return")) == 1


@pytest.mark.parametrize("missing", ["lines", "disposition"])
def test_every_line_needs_a_disposition(
    client: TestClient, shop: Shop, make_cart: Callable[..., str], missing: str
) -> None:
    order = place(client, make_cart, shop, [(shop.mat, 1, None), (shop.bell, 1, None)])
    ret = ask(
        client,
        shop.auth,
        order["id"],
        [{"order_line_id": x["id"], "quantity": 1, "reason": "other"} for x in order["lines"]],
        location_id=shop.store,
    ).json()
    if missing == "lines":
        body: dict[str, Any] = {
            "lines": [{"return_line_id": ret["lines"][0]["id"], "disposition": "restock"}]
        }
        code = "disposition_required"
    else:
        body = {"lines": [{"return_line_id": ret["lines"][0]["id"], "disposition": "keep"}]}
        code = "validation_failed"
    r = client.post(f"/api/v1/returns/{ret['id']}/receive", json=body, headers=shop.auth)
    assert (r.status_code, r.json()["code"]) == (422, code)
