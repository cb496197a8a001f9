"""Reservations: one conditional update per hold, idempotent by reference, commit/release/extend,
expiry through durable timers, and no oversell under concurrent requests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.events.models import OutboxEvent, Timer
from seamline.inventory import reservations as holds
from seamline.inventory.models import Reservation
from seamline.inventory.schemas import ReservationCreate, ReservationLine
from seamline.kit.clock import FrozenClock
from seamline.runtime import Runtime
from tests.catalog_helpers import events
from tests.stock_helpers import level, make_location, make_variant, receive, reserve


def reservations(db: Database) -> list[tuple[str, str, int]]:
    with db.transaction(readonly=True) as session:
        return [
            (r.reference, r.status, r.quantity)
            for r in session.scalars(select(Reservation).order_by(Reservation.created_at))
        ]


def test_reserve_commit_release(client: TestClient, auth: dict[str, str], db: Database) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    receive(client, auth, loc, var, 10)
    r = reserve(client, auth, [(loc, var, 3, "cart-1"), (loc, var, 2, "cart-2")], ttl=600)
    assert r.status_code == 201, r.text
    first, second = r.json()["data"]
    assert (first["status"], first["quantity"], first["reference"]) == ("held", 3, "cart-1")
    assert first["expires_at"] is not None
    assert level(db, loc, var) == (10, 5)
    stock = client.get(f"/api/v1/stock/variants/{var}", headers=auth).json()
    assert (stock["reserved"], stock["available"]) == (5, 5)

    committed = client.post(f"/api/v1/reservations/{first['id']}/commit", headers=auth)
    assert committed.status_code == 200
    assert committed.json()["status"] == "committed"
    assert level(db, loc, var) == (7, 2)
    moves = client.get("/api/v1/stock/movements", params={"variant_id": var}, headers=auth)
    assert [(m["kind"], m["quantity"], m["reference"]) for m in moves.json()["data"]][-1] == (
        "sale",
        -3,
        "cart-1",
    )
    again = client.post(f"/api/v1/reservations/{first['id']}/commit", headers=auth)
    assert (again.status_code, again.json()["code"]) == (409, "reservation_committed")

    released = client.post(f"/api/v1/reservations/{second['id']}/release", headers=auth)
    assert released.json()["status"] == "released"
    assert level(db, loc, var) == (7, 0)
    assert (
        client.post(f"/api/v1/reservations/{second['id']}/release", headers=auth).status_code == 409
    )
    got = client.get(f"/api/v1/reservations/{second['id']}", headers=auth).json()
    assert got["status"] == "released"
    assert client.get("/api/v1/reservations/res_nope", headers=auth).status_code == 404
    with db.transaction(readonly=True) as session:
        statuses = {t.key: t.status for t in session.scalars(select(Timer))}
    assert statuses == {
        f"reservation:{first['id']}:expire": "cancelled",
        f"reservation:{second['id']}:expire": "cancelled",
    }


def test_reserve_more_than_available_writes_nothing(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    other = make_variant(client, auth, "hat")
    receive(client, auth, loc, var, 5)
    receive(client, auth, loc, other, 1)
    before = len(events(db))
    # The second line fails: the first (already held) must be undone with it.
    r = reserve(client, auth, [(loc, var, 2, "cart-1"), (loc, other, 2, "cart-1")], ttl=60)
    assert r.status_code == 409
    assert r.json()["code"] == "insufficient_stock"
    assert "available=1" in r.json()["detail"]
    assert level(db, loc, var) == (5, 0)
    assert level(db, loc, other) == (1, 0)
    assert reservations(db) == []
    assert len(events(db)) == before
    with db.transaction(readonly=True) as session:
        assert session.scalars(select(Timer)).all() == []
    missing = reserve(client, auth, [(loc, make_variant(client, auth, "sock"), 1, "c")])
    assert (missing.status_code, missing.json()["code"]) == (409, "insufficient_stock")


def test_reserve_is_idempotent_by_reference(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    receive(client, auth, loc, var, 5)
    first = reserve(client, auth, [(loc, var, 2, "cart-9")], ttl=60)
    retry = reserve(client, auth, [(loc, var, 2, "cart-9")], ttl=60)
    assert first.status_code == retry.status_code == 201
    assert first.json()["data"][0]["id"] == retry.json()["data"][0]["id"]
    assert level(db, loc, var) == (5, 2)
    changed = reserve(client, auth, [(loc, var, 3, "cart-9")], ttl=60)
    assert (changed.status_code, changed.json()["code"]) == (409, "reservation_exists")
    # Once released, the reference may hold again.
    client.post(f"/api/v1/reservations/{first.json()['data'][0]['id']}/release", headers=auth)
    assert reserve(client, auth, [(loc, var, 3, "cart-9")]).status_code == 201
    assert level(db, loc, var) == (5, 3)


def test_changes_emit_inventory_changed_in_the_same_transaction(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    receive(client, auth, loc, var, 4)
    before = len(events(db, "inventory.changed"))
    line = ReservationLine(location_id=loc, variant_id=var, quantity=1, reference="c")

    def reserve_then_fail() -> None:
        with db.transaction() as session:
            holds.reserve(session, ReservationCreate(lines=[line], ttl_seconds=60))
            event = session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.type == "inventory.changed")
                .order_by(OutboxEvent.seq.desc())
            ).first()
            assert event is not None
            assert event.payload["cause"] == "reserve"
            assert event.aggregate_id == f"{loc}:{var}"
            assert (event.payload["on_hand"], event.payload["reserved"]) == (4, 1)
            assert event.payload["available"] == 3
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        reserve_then_fail()
    # Rolled back together: no hold, no event, no timer.
    assert level(db, loc, var) == (4, 0)
    assert reservations(db) == []
    assert len(events(db, "inventory.changed")) == before
    with db.transaction() as session:
        holds.reserve(session, ReservationCreate(lines=[line], ttl_seconds=60))
    assert level(db, loc, var) == (4, 1)
    assert len(events(db, "inventory.changed")) == before + 1


def test_extend_and_expiry_release_exactly_once(
    client: TestClient, auth: dict[str, str], db: Database, clock: FrozenClock, runtime: Runtime
) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    receive(client, auth, loc, var, 5)
    short = reserve(client, auth, [(loc, var, 2, "cart-a")], ttl=60).json()["data"][0]
    kept = reserve(client, auth, [(loc, var, 1, "cart-b")], ttl=60).json()["data"][0]
    extended = client.post(
        f"/api/v1/reservations/{kept['id']}/extend", json={"ttl_seconds": 3600}, headers=auth
    )
    assert extended.status_code == 200, extended.text
    assert extended.json()["expires_at"] > kept["expires_at"]
    bad = client.post(
        f"/api/v1/reservations/{kept['id']}/extend", json={"ttl_seconds": 0}, headers=auth
    )
    assert bad.status_code == 422
    assert [e["path"] for e in bad.json()["errors"]] == ["body.ttl_seconds"]

    worker = runtime.worker()
    worker.drain()
    assert level(db, loc, var) == (5, 3)  # nothing due yet
    clock.advance(seconds=61)
    too_late = client.post(f"/api/v1/reservations/{short['id']}/commit", headers=auth)
    assert (too_late.status_code, too_late.json()["code"]) == (409, "reservation_expired")
    worker.drain()
    worker.drain()
    assert level(db, loc, var) == (5, 1)
    assert client.get(f"/api/v1/reservations/{short['id']}", headers=auth).json()["status"] == (
        "expired"
    )
    assert client.get(f"/api/v1/reservations/{kept['id']}", headers=auth).json()["status"] == (
        "held"
    )
    expiries = [e for e in events(db, "inventory.changed") if e.payload["cause"] == "expire"]
    assert len(expiries) == 1
    clock.advance(hours=2)
    worker.drain()
    assert level(db, loc, var) == (5, 0)
    assert [s for _, s, _ in reservations(db)] == ["expired", "expired"]
    assert len([e for e in events(db, "inventory.changed") if e.payload["cause"] == "expire"]) == 2


def test_concurrent_reserves_never_oversell(
    live_server: str, auth: dict[str, str], client: TestClient, db: Database
) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    receive(client, auth, loc, var, 10)

    def attempt(i: int) -> int:
        body = {
            "lines": [{"location_id": loc, "variant_id": var, "quantity": 1, "reference": f"c{i}"}],
            "ttl_seconds": 600,
        }
        with httpx.Client(base_url=live_server, headers=auth, timeout=60) as http:
            return http.post("/api/v1/reservations", json=body).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(attempt, range(50)))
    assert codes.count(201) == 10, codes
    assert codes.count(409) == 40, codes
    assert level(db, loc, var) == (10, 10)
    assert len([r for r in reservations(db) if r[1] == "held"]) == 10


def test_one_request_may_not_hold_a_line_twice(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    receive(client, auth, loc, var, 10)
    twice = reserve(client, auth, [(loc, var, 2, "dup"), (loc, var, 2, "dup")])
    assert (twice.status_code, twice.json()["code"]) == (422, "duplicate_line")
    assert [e["path"] for e in twice.json()["errors"]] == ["body.lines.1.reference"]
    assert level(db, loc, var) == (10, 0)
    # Two lines on one location and variant with different references are two holds.
    pair = reserve(client, auth, [(loc, var, 2, "a"), (loc, var, 3, "b")])
    assert pair.status_code == 201
    assert level(db, loc, var) == (10, 5)
