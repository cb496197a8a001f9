"""Checkout through the API: reserve → pay → commit, refusals that leave nothing behind."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text

from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.inventory.models import Reservation
from seamline.orders.models import Checkout, Order
from seamline.payments.models import Payment
from seamline.payments.providers import luhn_valid
from seamline.pricing.models import Promotion, PromotionUsage
from tests.catalog_helpers import events
from tests.orders.conftest import Shop, cart_status
from tests.statements import recorded
from tests.stock_helpers import level

CARD = {"provider": "test", "token": "tok_test_success"}


def pay(
    client: TestClient,
    cart: str,
    auth: dict[str, str],
    tenders: list[dict[str, Any]] | None = None,
    key: str = "k1",
    **extra: Any,
) -> Any:
    return client.post(
        f"/api/v1/carts/{cart}/checkout",
        json={"tenders": tenders or [CARD], **extra},
        headers={**auth, "Idempotency-Key": key},
    )


def orders(db: Database) -> list[Order]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(Order)))


def test_a_shipped_cart_becomes_a_paid_order(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 2, None), (shop.mat, 1, None)], codes=["welcome10"])
    r = pay(client, cart, shop.auth)
    assert r.status_code == 201, r.text
    order = r.json()
    # 2 x 49.99 + 25.00 = 124.98; 10% = 12.50; shipping 4.95 (no tax rates configured)
    assert order["subtotal"] == 12498
    assert order["discount_total"] == 1250
    assert order["shipping_total"] == 495
    assert order["total"] == 12498 - 1250 + 495
    assert (order["status"], order["payment_state"]) == ("paid", "paid")
    assert order["number"] >= 1001
    assert sum(line["total"] for line in order["lines"]) + 495 == order["total"]
    [group] = order["groups"]
    assert group["kind"] == "ship"
    assert group["location_id"] == shop.warehouse
    assert "every line" in group["routing_reason"]
    [payment] = order["payments"]
    assert (payment["status"], payment["captured"]) == ("captured", order["total"])
    # Stock: sold from the warehouse, nothing left held.
    assert level(db, shop.warehouse, shop.bell) == (8, 0)
    assert level(db, shop.warehouse, shop.mat) == (9, 0)
    assert cart_status(db, cart) == "completed"
    with db.transaction(readonly=True) as session:
        placed = session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "order.placed")
        ).one()
        assert placed.payload["profile_id"] == order["profile_id"]
        assert placed.payload["total_minor"] == order["total"]
        used = session.scalars(select(PromotionUsage)).one()
        assert (used.status, used.order_id) == ("used", order["id"])
        assert session.get(Promotion, shop.code).used_count == 1  # type: ignore[union-attr]
    got = client.get(f"/api/v1/orders/{order['id']}", headers=shop.auth)
    assert got.status_code == 200
    assert got.json()["id"] == order["id"]


def test_the_same_key_returns_the_same_order_and_a_new_body_is_refused(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 1, None)])
    first = pay(client, cart, shop.auth)
    again = pay(client, cart, shop.auth)
    assert first.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert len(orders(db)) == 1
    other = pay(client, cart, shop.auth, tenders=[{**CARD, "amount": 1}])
    assert other.status_code == 422


def test_a_declined_card_leaves_no_order_no_hold_and_an_open_cart(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 2, None)], codes=["WELCOME10"])
    r = pay(client, cart, shop.auth, tenders=[{"provider": "test", "token": "tok_test_decline"}])
    assert r.status_code == 402, r.text
    assert r.json()["code"] == "payment_declined"
    assert r.json()["decline_code"] == "card_declined"
    assert orders(db) == []
    assert level(db, shop.warehouse, shop.bell) == (10, 0)
    assert cart_status(db, cart) == "open"
    with db.transaction(readonly=True) as session:
        assert session.get(Promotion, shop.code).used_count == 0  # type: ignore[union-attr]
        held = session.scalars(select(Reservation.status)).all()
        assert set(held) == {"released"}
    # A retry with the same key gets the same refusal; a new key may try another card.
    assert (
        pay(
            client, cart, shop.auth, tenders=[{"provider": "test", "token": "tok_test_decline"}]
        ).status_code
        == 402
    )
    ok = pay(client, cart, shop.auth, key="k2")
    assert ok.status_code == 201, ok.text


def test_split_tender_card_and_cash_with_change(
    client: TestClient,
    db: Database,
    shop: Shop,
    make_cart: Callable[..., str],
    make_key: Callable[..., str],
) -> None:
    cart = make_cart([(shop.mat, 2, None)])  # 50.00 + 4.95 shipping
    tenders = [
        {"provider": "test", "token": "tok_test_success", "amount": 2000},
        {"provider": "manual", "token": "cash", "tendered": 4000},
    ]
    r = pay(client, cart, shop.auth, tenders=tenders)
    assert r.status_code == 201, r.text
    card, cash = r.json()["payments"]
    assert (card["amount"], cash["amount"]) == (2000, 5495 - 2000)
    assert cash["change_due"] == 4000 - 3495
    assert r.json()["payment_state"] == "paid"


def test_a_decline_after_a_good_tender_refunds_it_and_keeps_nothing(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.mat, 1, None)])
    tenders = [
        {"provider": "test", "token": "tok_test_success", "amount": 1000},
        {"provider": "test", "token": "tok_test_insufficient_funds"},
    ]
    r = pay(client, cart, shop.auth, tenders=tenders)
    assert r.status_code == 402
    assert r.json()["decline_code"] == "insufficient_funds"
    assert r.json()["tender"] == 1
    assert orders(db) == []
    assert level(db, shop.warehouse, shop.mat) == (10, 0)
    with db.transaction(readonly=True) as session:
        recorded = session.scalars(select(Payment).order_by(Payment.position)).all()
        assert [p.status for p in recorded] == ["captured", "declined"]
        assert all(p.order_id is None for p in recorded)


def test_tenders_must_cover_the_total_exactly(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.mat, 1, None)])
    r = pay(client, cart, shop.auth, tenders=[{**CARD, "amount": 100}])
    assert r.status_code == 422
    assert r.json()["code"] == "tenders_do_not_match_total"
    r = pay(client, cart, shop.auth, tenders=[{**CARD, "amount": 100}, CARD, CARD], key="k2")
    assert r.status_code == 422
    assert level(db, shop.warehouse, shop.mat) == (10, 0)
    assert cart_status(db, cart) == "open"


def test_publishable_keys_pay_by_token_only(
    client: TestClient,
    db: Database,
    shop: Shop,
    make_cart: Callable[..., str],
    make_key: Callable[..., str],
) -> None:
    pk = {"Authorization": f"Bearer {make_key(kind='publishable')}"}
    cart = make_cart([(shop.mat, 1, None)])
    r = pay(client, cart, pk, tenders=[{"provider": "manual", "token": "cash"}])
    assert r.status_code == 403
    assert r.json()["code"] == "tender_not_allowed"
    r = pay(client, cart, pk, key="k2")
    assert r.status_code == 201, r.text


def test_a_card_number_is_refused_and_never_stored(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.mat, 1, None)])
    r = pay(client, cart, shop.auth, tenders=[{"provider": "test", "token": "4242 4242 4242 4242"}])
    assert r.status_code == 422
    assert r.json()["code"] == "card_number_refused"
    assert "4242" not in r.text
    assert pay(client, cart, shop.auth, key="k2").status_code == 201
    # No Luhn-valid card number anywhere in the database.
    pattern = re.compile(r"(?:\d[ -]?){13,19}")
    with db.transaction(readonly=True) as session:
        inspector = inspect(session.connection())
        for table in inspector.get_table_names():
            for row in session.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    for found in pattern.findall(str(value)):
                        digits = re.sub(r"\D", "", found)
                        assert not luhn_valid(digits), (table, value)


def test_pickup_lines_hold_at_the_store_with_a_pickup_code(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 1, shop.store), (shop.mat, 1, None)])
    r = pay(client, cart, shop.auth)
    assert r.status_code == 201, r.text
    groups = {g["kind"]: g for g in r.json()["groups"]}
    assert groups["pickup"]["location_id"] == shop.store
    assert re.fullmatch(r"[A-Z0-9]{3}-[A-Z0-9]{3}", groups["pickup"]["pickup_code"])
    assert groups["pickup"]["shipping"] == 0
    assert groups["ship"]["shipping"] == 495
    assert level(db, shop.store, shop.bell) == (2, 0)


def test_out_of_stock_is_refused_cleanly(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 11, None)])
    r = pay(client, cart, shop.auth)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "insufficient_stock"
    assert level(db, shop.warehouse, shop.bell) == (10, 0)
    assert cart_status(db, cart) == "open"
    with db.transaction(readonly=True) as session:
        assert session.scalars(select(Checkout)).all() == []


# The regression guard for issue 5's lean checkout (docs/orders.md, "Statements"): one 2-line
# shipped checkout paid with the test provider, middleware included, in the steady state (the
# process's caches — API keys, the pricing configuration, channels/locations/stock rules,
# postcode centroids — are warm). SQLite also asks, once per transaction, whether a webhook
# endpoint is enabled (PostgreSQL asks inside the statement that writes the events).
STATEMENTS_PER_CHECKOUT = {"postgresql": 18, "sqlite": 31}


def test_statements_per_checkout(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    """Statements of one 2-line checkout request, middleware included (the checkout keys
    itself: no idempotency record): every SQL statement the request sends, savepoints and
    multi-row inserts counted once each. Fails if the count grows back (it was ~80 before the
    lean path, 38 before the cuts of 2026-11-24)."""

    warm = make_cart([(shop.bell, 1, None), (shop.mat, 1, None)])
    assert pay(client, warm, shop.auth, key="warm").status_code == 201
    cart = make_cart([(shop.bell, 1, None), (shop.mat, 1, None)])
    with recorded(db) as sent:
        assert pay(client, cart, shop.auth).status_code == 201
    flat = [" ".join(statement.split()) for statement in sent]
    # The stock stream's poller reads in its own (deferred) transactions meanwhile.
    seen = [
        s[:110]
        for s in flat
        if not s.startswith("BEGIN") and "FROM outbox_events WHERE outbox_events.seq >" not in s
    ]
    if os.environ.get("SEAMLINE_SHOW_STATEMENTS"):
        print(f"\n{len(seen)} statements:\n" + "\n".join(seen))
    # The lean path leaves no COPY (invisible to this listener) in the request.
    assert not any(s.startswith("SELECT nextval(pg_get_serial_sequence") for s in seen), seen
    assert len(seen) <= STATEMENTS_PER_CHECKOUT[db.engine.dialect.name], seen


def test_endless_aisle_a_till_ships_home_what_its_store_lacks(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    """S11: the store has 3 kettlebells, the customer wants 5 delivered: the till's order ships
    from the warehouse and is recorded as the store's sale."""
    from seamline.auth import service as keys
    from tests.stock_helpers import make_channel, make_location

    till_channel = make_channel(client, shop.auth, "kreuzberg-till", kind="store")
    store = make_location(
        client,
        shop.auth,
        "kreuzberg",
        kind="store",
        channel_id=till_channel,
        sells_in_person=True,
    )
    r = client.put(
        f"/api/v1/products/{shop.bell_product}/listings/{till_channel}", json={}, headers=shop.auth
    )
    assert r.status_code == 200, r.text
    with db.transaction() as session:
        _, token = keys.create_key(
            session, kind="secret", name="till", scopes=["checkout:write"], location_ids=[store]
        )
    till = {"Authorization": f"Bearer {token}"}
    cart = make_cart([(shop.bell, 5, None)], channel_id=till_channel)
    needs_store = pay(client, cart, till, tenders=[{"provider": "manual", "token": "card_present"}])
    assert needs_store.status_code == 422
    assert needs_store.json()["code"] == "location_required"
    r = pay(
        client,
        cart,
        till,
        key="k2",
        location_id=store,
        tenders=[{"provider": "manual", "token": "card_present"}],
    )
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["location_id"] == store
    [group] = order["groups"]
    assert (group["kind"], group["location_id"]) == ("ship", shop.warehouse)
    assert level(db, shop.warehouse, shop.bell) == (5, 0)
    assert order["channel_id"] == till_channel


def test_a_web_cart_checked_out_at_a_store_is_the_stores_sale(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    """S1 step 5: the associate places the customer's web cart at the store: the order (and its
    events, hence the timeline and the channel metrics) is the store's, the cart stays web."""
    from tests.stock_helpers import make_channel

    store_channel = make_channel(client, shop.auth, "mitte-till", kind="store")
    r = client.patch(
        f"/api/v1/locations/{shop.store}", json={"channel_id": store_channel}, headers=shop.auth
    )
    assert r.status_code == 200, r.text
    cart = make_cart([(shop.mat, 1, None)])
    r = pay(
        client,
        cart,
        shop.auth,
        location_id=shop.store,
        tenders=[{"provider": "manual", "token": "card_present"}],
    )
    assert r.status_code == 201, r.text
    assert r.json()["channel_id"] == store_channel
    placed = events(db, "order.placed")
    assert [e.payload["channel"] for e in placed] == [store_channel]
    # A web checkout without a store stays the web's.
    web = pay(client, make_cart([(shop.mat, 1, None)]), shop.auth, key="k-web")
    assert web.status_code == 201, web.text
    assert web.json()["channel_id"] == shop.channel


def test_ship_from_store_when_the_warehouse_is_out(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    assert pay(client, make_cart([(shop.bell, 10, None)]), shop.auth).status_code == 201
    r = pay(client, make_cart([(shop.bell, 2, None), (shop.mat, 1, None)]), shop.auth, key="k2")
    assert r.status_code == 201, r.text
    [group] = r.json()["groups"]
    assert (group["kind"], group["location_id"]) == ("ship", shop.store)
    assert group["routing_reason"].startswith("one location can send every line")
    # Split when no single location holds everything: the store has 1 bell left, the
    # warehouse none; mats are in both.
    r = pay(client, make_cart([(shop.bell, 1, None), (shop.mat, 9, None)]), shop.auth, key="k3")
    assert r.status_code == 201, r.text
    groups = {g["location_id"]: g for g in r.json()["groups"]}
    assert set(groups) == {shop.store, shop.warehouse}
    assert all("split over 2 locations" in g["routing_reason"] for g in groups.values())
    assert sum(g["shipping"] for g in groups.values()) == 495  # one shipping charge
