"""200 buyers at once for 50 units over 3 locations: exactly 50 win, 150 get a clean 409,
nothing goes negative — with one stock row per location and with hot-SKU buckets."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.inventory.models import Reservation, StockLevel
from seamline.inventory.verify import verify
from tests.stock_helpers import level, make_channel, make_location, make_variant, receive

BUYERS = 200


@pytest.mark.parametrize("buckets", [1, 8])
def test_200_buyers_for_50_units_over_3_locations(
    live_server: str, client: TestClient, auth: dict[str, str], db: Database, buckets: int
) -> None:
    locations = [make_location(client, auth, h, ships=True) for h in ("north", "south", "east")]
    var = make_variant(client, auth)
    web = make_channel(client, auth, "web")
    if buckets > 1:
        split = client.put(
            f"/api/v1/stock/variants/{var}/split", json={"buckets": buckets}, headers=auth
        )
        assert split.status_code == 200
    for loc, units in zip(locations, (20, 20, 10), strict=True):
        receive(client, auth, loc, var, units)
    start = threading.Barrier(BUYERS)

    def buy(i: int) -> tuple[int, str]:
        body = {
            "channel_id": web,
            "ttl_seconds": 900,
            "lines": [{"variant_id": var, "quantity": 1, "reference": f"cart-{i}"}],
        }
        with httpx.Client(base_url=live_server, headers=auth, timeout=120) as http:
            start.wait()
            r = http.post("/api/v1/reservations", json=body)
        return r.status_code, r.json().get("code", "")

    with ThreadPoolExecutor(max_workers=BUYERS) as pool:
        results = list(pool.map(buy, range(BUYERS)))
    statuses = [s for s, _ in results]
    assert statuses.count(201) == 50, sorted(set(results))
    assert statuses.count(409) == 150, sorted(set(results))
    assert {c for s, c in results if s == 409} == {"insufficient_stock"}
    assert [level(db, loc, var) for loc in locations] == [(20, 20), (20, 20), (10, 10)]
    with db.transaction(readonly=True) as session:
        assert verify(session) == []
        rows = session.scalars(select(StockLevel).where(StockLevel.variant_id == var)).all()
        assert all(0 <= r.reserved <= r.on_hand for r in rows)
        held = session.scalars(select(Reservation).where(Reservation.status == "held")).all()
        assert len(held) == 50
        assert len({r.reference for r in held}) == 50
    late = client.get("/api/v1/availability", params={"variant_id": var}, headers=auth).json()
    assert late["data"][0]["available"] == 0


def test_double_submitted_holds_without_a_location_hold_once(
    live_server: str, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    """The same cart line sent twice at once, location left to Seamline: one hold, not two at
    two different locations."""
    locations = [make_location(client, auth, h, ships=True) for h in ("north", "south")]
    var = make_variant(client, auth)
    web = make_channel(client, auth, "web")
    for loc in locations:
        receive(client, auth, loc, var, 20)
    pairs = 10
    start = threading.Barrier(pairs * 2)

    def buy(i: int) -> int:
        body = {
            "channel_id": web,
            "lines": [{"variant_id": var, "quantity": 1, "reference": f"line-{i // 2}"}],
        }
        with httpx.Client(base_url=live_server, headers=auth, timeout=60) as http:
            start.wait()
            return http.post("/api/v1/reservations", json=body).status_code

    with ThreadPoolExecutor(max_workers=pairs * 2) as pool:
        statuses = list(pool.map(buy, range(pairs * 2)))
    assert statuses == [201] * (pairs * 2)
    with db.transaction(readonly=True) as session:
        held = session.scalars(select(Reservation).where(Reservation.status == "held")).all()
        assert sorted(r.reference for r in held) == sorted(f"line-{i}" for i in range(pairs))
        assert verify(session) == []


def test_mixed_requests_do_not_deadlock(
    live_server: str, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    """Requests mixing a line at a named location with a line left to the channel, racing
    each other across two locations: every answer is 201 or a clean 409, never 5xx."""
    a, b = (make_location(client, auth, h, ships=True) for h in ("aaa", "bbb"))
    var = make_variant(client, auth)
    web = make_channel(client, auth, "web")
    receive(client, auth, a, var, 10)
    receive(client, auth, b, var, 3)
    rounds = 12
    start = threading.Barrier(rounds * 2)

    def send(i: int) -> int:
        named = (b, 3) if i % 2 else (a, 10)
        body = {
            "channel_id": web,
            "lines": [
                {"location_id": named[0], "variant_id": var, "quantity": named[1],
                 "reference": f"n{i}"},
                {"variant_id": var, "quantity": 2, "reference": f"c{i}"},
            ],
        }  # fmt: skip
        with httpx.Client(base_url=live_server, headers=auth, timeout=60) as http:
            start.wait()
            return http.post("/api/v1/reservations", json=body).status_code

    with ThreadPoolExecutor(max_workers=rounds * 2) as pool:
        statuses = list(pool.map(send, range(rounds * 2)))
    assert set(statuses) <= {201, 409}, statuses
    with db.transaction(readonly=True) as session:
        assert verify(session) == []
