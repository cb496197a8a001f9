"""Fulfilment through the API: pick up with a code, ship with tracking and carrier updates,
cancel, pick-ups that expire, asynchronous payments confirmed or failed by webhook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.auth import service as keys
from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.kit.clock import FrozenClock
from seamline.payments.providers import get_provider
from seamline.payments.sandbox import SandboxProvider
from seamline.runtime import Runtime
from tests.orders.conftest import Shop
from tests.orders.test_checkout import pay
from tests.stock_helpers import level


def store_key(db: Database, location: str) -> dict[str, str]:
    with db.transaction() as session:
        _, token = keys.create_key(
            session,
            kind="secret",
            name="till",
            scopes=["orders:read", "orders:write"],
            location_ids=[location],
        )
    return {"Authorization": f"Bearer {token}"}


def event_types(db: Database, prefix: str) -> list[OutboxEvent]:
    with db.transaction(readonly=True) as session:
        return list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.type.startswith(prefix))
                .order_by(OutboxEvent.seq)
            )
        )


def place(client: TestClient, shop: Shop, cart: str, **kw: Any) -> dict[str, Any]:
    r = pay(client, cart, shop.auth, **kw)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def test_pick_up_in_store_with_the_code(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    order = place(client, shop, make_cart([(shop.bell, 1, shop.store)]))
    [group] = order["groups"]
    base = f"/api/v1/orders/{order['id']}/groups/{group['id']}"
    till = store_key(db, shop.store)
    elsewhere = store_key(db, shop.warehouse)
    assert client.post(f"{base}/ready", headers=elsewhere).status_code == 403
    ready = client.post(f"{base}/ready", headers=till)
    assert ready.status_code == 200, ready.text
    assert ready.json()["groups"][0]["status"] == "ready_for_pickup"
    [told] = event_types(db, "order.ready_for_pickup")
    assert told.payload["pickup_code"] == group["pickup_code"]
    assert told.payload["profile_id"] == order["profile_id"]
    wrong = client.post(f"{base}/handover", json={"code": "AAA-AAA"}, headers=till)
    assert wrong.status_code == 422
    assert wrong.json()["code"] == "pickup_code_mismatch"
    typed = group["pickup_code"].replace("-", " ").lower()  # as a customer reads it out
    done = client.post(f"{base}/handover", json={"code": typed}, headers=till)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"
    assert done.json()["lines"][0]["quantity_fulfilled"] == 1
    kinds = [h["kind"] for h in done.json()["history"]]
    assert kinds[:2] == ["placed", "ready_for_pickup"]
    assert kinds[-2:] == ["picked_up", "status_changed"]


def test_ship_then_carrier_updates_until_delivered(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    order = place(client, shop, make_cart([(shop.mat, 1, None)]))
    [group] = order["groups"]
    base = f"/api/v1/orders/{order['id']}/groups/{group['id']}"
    shipped = client.post(
        f"{base}/ship", json={"carrier": "DHL", "tracking_number": "JD0146"}, headers=shop.auth
    )
    assert shipped.status_code == 200, shipped.text
    assert shipped.json()["status"] == "fulfilled"
    for status in ("in_transit", "delivered"):
        r = client.post(
            "/api/v1/carrier-events",
            json={"tracking_number": "JD0146", "status": status},
            headers=shop.auth,
        )
        assert r.status_code == 200, r.text
    assert r.json()["groups"][0]["status"] == "delivered"
    assert r.json()["status"] == "completed"
    updates = event_types(db, "order.tracking_updated")
    assert [e.payload["status"] for e in updates] == ["in_transit", "delivered"]
    missing = client.post(
        "/api/v1/carrier-events",
        json={"tracking_number": "NOPE", "status": "delivered"},
        headers=shop.auth,
    )
    assert missing.status_code == 404
    # Shipped goods cannot be cancelled.
    late = client.post(
        f"/api/v1/orders/{order['id']}/cancel", json={"reason": "x"}, headers=shop.auth
    )
    assert late.status_code == 409


def test_cancel_puts_stock_back_and_refunds_every_tender(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    tenders = [
        {"provider": "test", "token": "tok_test_success", "amount": 3000},
        {"provider": "manual", "token": "card_present"},
    ]
    order = place(client, shop, make_cart([(shop.bell, 1, None)]), tenders=tenders)
    assert level(db, shop.warehouse, shop.bell) == (9, 0)
    r = client.post(
        f"/api/v1/orders/{order['id']}/cancel", json={"reason": "changed mind"}, headers=shop.auth
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["payment_state"]) == ("cancelled", "refunded")
    assert body["refunded_total"] == body["total"]
    assert [p["refunded"] for p in body["payments"]] == [p["captured"] for p in body["payments"]]
    assert level(db, shop.warehouse, shop.bell) == (10, 0)
    refunded = event_types(db, "order.refunded")
    assert sum(e.payload["amount_minor"] for e in refunded) == body["total"]
    again = client.post(
        f"/api/v1/orders/{order['id']}/cancel", json={"reason": "again"}, headers=shop.auth
    )
    assert again.status_code == 200
    assert level(db, shop.warehouse, shop.bell) == (10, 0)


def test_an_uncollected_pick_up_expires_refunded_and_restocked(
    client: TestClient,
    db: Database,
    runtime: Runtime,
    clock: FrozenClock,
    shop: Shop,
    make_cart: Callable[..., str],
) -> None:
    order = place(client, shop, make_cart([(shop.mat, 1, shop.store)]))
    [group] = order["groups"]
    base = f"/api/v1/orders/{order['id']}/groups/{group['id']}"
    assert client.post(f"{base}/ready", headers=shop.auth).status_code == 200
    assert level(db, shop.store, shop.mat) == (2, 0)
    clock.advance(days=6, hours=1)
    runtime.worker().drain()
    assert [e.type for e in event_types(db, "order.pickup_reminder")] == ["order.pickup_reminder"]
    clock.advance(days=1)
    runtime.worker().drain()
    got = client.get(f"/api/v1/orders/{order['id']}", headers=shop.auth).json()
    assert got["status"] == "cancelled"
    assert got["groups"][0]["status"] == "expired"
    assert got["refunded_total"] == got["total"]
    assert level(db, shop.store, shop.mat) == (3, 0)


def test_asynchronous_payment_confirmed_by_a_signed_webhook_once(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    order = place(
        client,
        shop,
        make_cart([(shop.mat, 1, None)]),
        tenders=[{"provider": "test", "token": "tok_test_async"}],
    )
    assert (order["status"], order["payment_state"]) == ("placed", "pending")
    [payment] = order["payments"]
    sandbox = get_provider("test")
    assert isinstance(sandbox, SandboxProvider)
    with db.transaction(readonly=True) as session:
        from seamline.payments.models import Payment

        reference = session.get(Payment, payment["id"]).provider_reference  # type: ignore[union-attr]
    body, headers = sandbox.confirmation_webhook(
        str(reference), amount=order["total"], currency="EUR"
    )
    forged = client.post(
        "/api/v1/payments/webhooks/test",
        content=body,
        headers={**headers, "Seamline-Test-Signature": "t=1,v1=00"},
    )
    assert forged.status_code == 401
    r = client.post("/api/v1/payments/webhooks/test", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["applied"] == "captured"
    replay = client.post("/api/v1/payments/webhooks/test", content=body, headers=headers)
    assert replay.json()["duplicate"] is True
    got = client.get(f"/api/v1/orders/{order['id']}", headers=shop.auth).json()
    assert (got["status"], got["payment_state"], got["paid_total"]) == (
        "paid",
        "paid",
        got["total"],
    )
    assert len(event_types(db, "payment.captured")) == 1


def test_asynchronous_payment_that_fails_cancels_the_order(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    order = place(
        client,
        shop,
        make_cart([(shop.mat, 1, None)]),
        tenders=[{"provider": "test", "token": "tok_test_async"}],
    )
    assert level(db, shop.warehouse, shop.mat) == (9, 0)
    sandbox = get_provider("test")
    assert isinstance(sandbox, SandboxProvider)
    with db.transaction(readonly=True) as session:
        from seamline.payments.models import Payment

        reference = session.scalars(select(Payment.provider_reference)).one()
    body, headers = sandbox.confirmation_webhook(
        str(reference), amount=order["total"], currency="EUR", outcome="declined"
    )
    r = client.post("/api/v1/payments/webhooks/test", content=body, headers=headers)
    assert r.status_code == 200, r.text
    got = client.get(f"/api/v1/orders/{order['id']}", headers=shop.auth).json()
    assert got["status"] == "cancelled"
    assert got["payments"][0]["status"] == "declined"
    assert level(db, shop.warehouse, shop.mat) == (10, 0)


def test_order_queries_and_ids_refuse_what_cannot_be_an_id(client: TestClient, shop: Shop) -> None:
    """Found by fuzzing on PostgreSQL: a NUL byte in a filter reached the database (500)."""
    r = client.get("/api/v1/orders", params={"location_id": "loc_\x00x"}, headers=shop.auth)
    assert r.status_code == 422
    r = client.get("/api/v1/orders", params={"status": "shipped?"}, headers=shop.auth)
    assert r.status_code == 422
    r = client.post("/api/v1/orders/ord_x/groups/ful_%00/ready", headers=shop.auth)
    assert r.status_code == 404


def test_a_webhook_about_a_failed_checkouts_tender_is_acknowledged(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    """The tender was recorded without an order (the checkout failed and undid it): the PSP's
    later notification is acknowledged once, not refused for days."""
    tenders = [
        {"provider": "test", "token": "tok_test_success", "amount": 1000},
        {"provider": "test", "token": "tok_test_decline"},
    ]
    assert (
        pay(client, make_cart([(shop.mat, 1, None)]), shop.auth, tenders=tenders).status_code == 402
    )
    sandbox = get_provider("test")
    assert isinstance(sandbox, SandboxProvider)
    with db.transaction(readonly=True) as session:
        from seamline.payments.models import Payment

        reference = session.scalars(
            select(Payment.provider_reference).where(Payment.position == 0)
        ).one()
    body, headers = sandbox.confirmation_webhook(str(reference), amount=1000, currency="EUR")
    r = client.post("/api/v1/payments/webhooks/test", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["applied"] == "no_order"
    again = client.post("/api/v1/payments/webhooks/test", content=body, headers=headers)
    assert again.json()["duplicate"] is True


def test_a_store_key_cancels_a_web_order_only_when_it_is_all_at_its_store(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    """A web order has no selling store: a key bound to a store may cancel it only when every
    part still to fulfil is at that store (before, any store's key could cancel any web order)."""
    with db.transaction() as session:
        _, token = keys.create_key(
            session, kind="secret", name="till", scopes=["orders:write"], location_ids=[shop.store]
        )
    till = {"Authorization": f"Bearer {token}"}
    shipped = place(client, shop, make_cart([(shop.bell, 1, None)]))  # from the warehouse
    r = client.post(f"/api/v1/orders/{shipped['id']}/cancel", json={"reason": "x"}, headers=till)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "location_out_of_scope"
    assert level(db, shop.warehouse, shop.bell) == (9, 0)  # nothing released
    pickup = place(client, shop, make_cart([(shop.mat, 1, shop.store)]), key="k-pickup")
    r = client.post(f"/api/v1/orders/{pickup['id']}/cancel", json={"reason": "x"}, headers=till)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
