"""The lean checkout path (issue 5): multi-line holds, commits and releases, the restart when the
multi-line hold loses a race, and the in-process retry of the commit step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.inventory.models import Reservation, StockMovement
from seamline.orders import committing, routing
from seamline.orders.models import FulfilmentGroup
from tests.orders.conftest import Shop, cart_status
from tests.orders.test_checkout import pay
from tests.stock_helpers import level


def _stock_events(db: Database, variant: str) -> list[dict[str, Any]]:
    with db.transaction(readonly=True) as session:
        rows = session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.type == "inventory.changed")
            .order_by(OutboxEvent.seq)
        )
        return [e.payload for e in rows if e.payload["variant_id"] == variant]


def test_a_two_line_checkout_holds_and_sells_every_line(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 2, None), (shop.mat, 1, None)])
    r = pay(client, cart, shop.auth)
    assert r.status_code == 201, r.text
    assert level(db, shop.warehouse, shop.bell) == (8, 0)
    assert level(db, shop.warehouse, shop.mat) == (9, 0)
    with db.transaction(readonly=True) as session:
        held = session.scalars(select(Reservation)).all()
        assert sorted((x.variant_id, x.quantity, x.status) for x in held) == sorted(
            [(shop.bell, 2, "committed"), (shop.mat, 1, "committed")]
        )
        sales = session.scalars(select(StockMovement).where(StockMovement.kind == "sale")).all()
        assert sorted((m.variant_id, m.quantity) for m in sales) == sorted(
            [(shop.bell, -2), (shop.mat, -1)]
        )
    # As the per-line path reports them: the hold, then the sale, with the totals after each.
    events = _stock_events(db, shop.bell)
    assert [(e["cause"], e["on_hand"], e["reserved"]) for e in events[-2:]] == [
        ("reserve", 10, 2),
        ("sale", 8, 0),
    ]
    assert (events[-1]["delta_on_hand"], events[-1]["delta_reserved"]) == (-2, -2)


def test_two_lines_of_one_variant_report_the_totals_after_each(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    """Two holds on the same stock row (the same variant twice): one statement sells both, and
    each event still carries the totals after its own line."""
    cart = make_cart([(shop.bell, 1, None), (shop.bell, 2, None)])
    r = pay(client, cart, shop.auth)
    assert r.status_code == 201, r.text
    assert level(db, shop.warehouse, shop.bell) == (7, 0)
    sales = [e for e in _stock_events(db, shop.bell) if e["cause"] == "sale"]
    assert [(e["on_hand"], e["reserved"]) for e in sales] in (
        [(9, 2), (7, 0)],
        [(8, 1), (7, 0)],
    )


def test_a_declined_payment_releases_every_line(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 2, None), (shop.mat, 1, shop.store)])
    r = pay(client, cart, shop.auth, tenders=[{"provider": "test", "token": "tok_test_decline"}])
    assert r.status_code == 402, r.text
    assert level(db, shop.warehouse, shop.bell) == (10, 0)
    assert level(db, shop.store, shop.mat) == (3, 0)
    assert cart_status(db, cart) == "open"
    with db.transaction(readonly=True) as session:
        assert {x.status for x in session.scalars(select(Reservation))} == {"released"}
    released = [e for e in _stock_events(db, shop.mat) if e["cause"] == "release"]
    assert [(e["location_id"], e["reserved"], e["delta_reserved"]) for e in released] == [
        (shop.store, 0, -1)
    ]


def test_a_lost_race_for_the_routed_units_starts_step_one_again(
    client: TestClient,
    db: Database,
    shop: Shop,
    make_cart: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Routing saw the units at the store, but they are gone when the hold runs: the multi-line
    hold fails, step 1 starts again line by line and holds where the units are."""
    real = routing.route

    def stale(session: Any, **kwargs: Any) -> list[routing.Route]:
        routes = real(session, **kwargs)
        return [routing.Route(shop.store, r.line_ids, r.reason) for r in routes]

    monkeypatch.setattr(routing, "route", stale)
    cart = make_cart([(shop.bell, 5, None)])  # the store has 3
    r = pay(client, cart, shop.auth)
    assert r.status_code == 201, r.text
    assert level(db, shop.warehouse, shop.bell) == (5, 0)
    assert level(db, shop.store, shop.bell) == (3, 0)
    with db.transaction(readonly=True) as session:
        group = session.scalars(select(FulfilmentGroup)).one()
        assert group.location_id == shop.warehouse
        assert group.routing_reason == "stock moved while routing; held where it was"


class _Deadlock(Exception):
    sqlstate = "40P01"


def test_the_commit_step_is_retried_after_a_deadlock(
    client: TestClient,
    db: Database,
    shop: Shop,
    make_cart: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = committing._finish
    calls = []

    def deadlocks_once(session: Any, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            real(session, *args)  # did everything, then PostgreSQL aborted the transaction
            raise DBAPIError("UPDATE stock_levels …", {}, _Deadlock())
        return real(session, *args)

    monkeypatch.setattr(committing, "_finish", deadlocks_once)
    cart = make_cart([(shop.bell, 2, None), (shop.mat, 1, None)])
    r = pay(client, cart, shop.auth)
    assert r.status_code == 201, r.text
    assert len(calls) == 2
    assert level(db, shop.warehouse, shop.bell) == (8, 0)
    assert cart_status(db, cart) == "completed"


def test_a_commit_that_keeps_deadlocking_answers_503_and_keeps_the_holds(
    client: TestClient,
    db: Database,
    shop: Shop,
    make_cart: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def deadlocks(session: Any, *args: Any) -> Any:
        raise DBAPIError("UPDATE stock_levels …", {}, _Deadlock())

    monkeypatch.setattr(committing, "_finish", deadlocks)
    cart = make_cart([(shop.bell, 2, None)])
    r = pay(client, cart, shop.auth)
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "concurrent_update"
    assert level(db, shop.warehouse, shop.bell) == (10, 2)  # a retry with the key resumes
    monkeypatch.undo()
    again = pay(client, cart, shop.auth)
    assert again.status_code == 201, again.text
    assert level(db, shop.warehouse, shop.bell) == (8, 0)


def test_a_split_sku_is_held_line_by_line_in_the_same_transaction(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    """A hot SKU split over buckets takes the per-line hold (a random unlocked bucket); the
    multi-line statement locks nothing for it and checkout goes on without starting again."""
    r = client.put(
        f"/api/v1/stock/variants/{shop.bell}/split", json={"buckets": 4}, headers=shop.auth
    )
    assert r.status_code == 200, r.text
    cart = make_cart([(shop.bell, 3, None), (shop.mat, 1, None)])
    r = pay(client, cart, shop.auth)
    assert r.status_code == 201, r.text
    assert level(db, shop.warehouse, shop.bell) == (7, 0)
    assert level(db, shop.warehouse, shop.mat) == (9, 0)
    assert cart_status(db, cart) == "completed"
