"""Hot SKUs split over several stock rows: holds, gathering the last units, re-splitting, counts
and removals stay exact, and a read summing the buckets agrees with the holds at every moment."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seamline.db.engine import Database
from seamline.inventory import reservations
from seamline.inventory.models import Reservation, StockLevel
from seamline.inventory.schemas import ReservationCreate
from seamline.inventory.verify import verify
from seamline.kit.errors import Conflict
from tests.stock_helpers import level, make_location, make_variant, receive, reserve


def _split(client: TestClient, auth: dict[str, str], var: str, n: int) -> None:
    r = client.put(f"/api/v1/stock/variants/{var}/split", json={"buckets": n}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"variant_id": var, "buckets": n}


def _rows(db: Database, loc: str, var: str) -> list[tuple[int, int, int]]:
    with db.transaction(readonly=True) as session:
        return [
            (r.bucket, r.on_hand, r.reserved)
            for r in session.scalars(
                select(StockLevel)
                .where(StockLevel.location_id == loc, StockLevel.variant_id == var)
                .order_by(StockLevel.bucket)
            )
        ]


def _clean(db: Database) -> None:
    with db.transaction(readonly=True) as session:
        assert verify(session) == []


def test_split_spreads_units_and_holds_stay_exact(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    receive(client, auth, loc, var, 10)
    _split(client, auth, var, 4)
    assert _rows(db, loc, var) == [(0, 3, 0), (1, 3, 0), (2, 2, 0), (3, 2, 0)]
    receive(client, auth, loc, var, 6)  # spread too: 2, 2, 1, 1
    assert [r[1] for r in _rows(db, loc, var)] == [5, 5, 3, 3]
    stock = client.get(f"/api/v1/stock/variants/{var}", headers=auth).json()
    assert (stock["on_hand"], stock["available"], stock["buckets"]) == (16, 16, 4)
    assert len(stock["locations"]) == 1  # one figure per location, whatever the buckets

    # 12 single-unit holds, then one of 4 that no single bucket has: gathered into one bucket.
    for i in range(12):
        assert reserve(client, auth, [(loc, var, 1, f"c{i}")]).status_code == 201
    big = reserve(client, auth, [(loc, var, 4, "big")])
    assert big.status_code == 201, big.text
    assert level(db, loc, var) == (16, 16)
    over = reserve(client, auth, [(loc, var, 1, "late")])
    assert (over.status_code, over.json()["available"]) == (409, 0)
    _clean(db)

    # Releasing and selling touch the hold's own bucket.
    held = reserve(client, auth, [(loc, var, 4, "big")]).json()["data"][0]
    sold = client.post(f"/api/v1/reservations/{held['id']}/commit", headers=auth)
    assert sold.status_code == 200
    assert level(db, loc, var) == (12, 12)
    _clean(db)


def test_resplit_keeps_holds_where_they_are(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    _split(client, auth, var, 4)
    receive(client, auth, loc, var, 8)
    ids = [
        reserve(client, auth, [(loc, var, 1, f"c{i}")]).json()["data"][0]["id"] for i in range(6)
    ]
    _split(client, auth, var, 1)
    rows = _rows(db, loc, var)
    # Bucket 0 holds every free unit; the others keep only what their holds reserve.
    assert sum(r[1] for r in rows) == 8
    assert sum(r[2] for r in rows) == 6
    assert all(on_hand == reserved for b, on_hand, reserved in rows if b > 0)
    _clean(db)
    for rid in ids:
        assert client.post(f"/api/v1/reservations/{rid}/release", headers=auth).status_code == 200
    receive(client, auth, loc, var, 1)  # a receipt after re-splitting deletes nothing, adds to 0
    assert level(db, loc, var) == (9, 0)
    _split(client, auth, var, 1)  # drained buckets are deleted
    assert _rows(db, loc, var) == [(0, 9, 0)]
    _clean(db)


def test_counts_and_removals_on_a_split_sku(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    _split(client, auth, var, 3)
    receive(client, auth, loc, var, 9)
    assert reserve(client, auth, [(loc, var, 2, "c")]).status_code == 201
    damaged = client.post(
        "/api/v1/stock/adjustments",
        json={
            "location_id": loc,
            "variant_id": var,
            "kind": "damage",
            "quantity": 7,
            "reason": "water",
        },
        headers=auth,
    )
    assert damaged.status_code == 201, damaged.text
    assert level(db, loc, var) == (2, 2)
    stale = client.post(
        "/api/v1/stock/counts",
        json={"location_id": loc, "variant_id": var, "expected_on_hand": 9, "counted": 5},
        headers=auth,
    )
    assert (stale.status_code, stale.json()["code"], stale.json()["on_hand"]) == (
        409,
        "stale_count",
        2,
    )
    counted = client.post(
        "/api/v1/stock/counts",
        json={"location_id": loc, "variant_id": var, "expected_on_hand": 2, "counted": 6},
        headers=auth,
    )
    assert counted.status_code == 201
    assert level(db, loc, var) == (6, 2)
    _clean(db)


def test_split_input_is_checked(client: TestClient, auth: dict[str, str]) -> None:
    var = make_variant(client, auth)
    for bad in (0, 65, -1):
        r = client.put(f"/api/v1/stock/variants/{var}/split", json={"buckets": bad}, headers=auth)
        assert r.status_code == 422
        assert [e["path"] for e in r.json()["errors"]] == ["body.buckets"]
    missing = client.put(
        "/api/v1/stock/variants/var_nothere/split", json={"buckets": 2}, headers=auth
    )
    assert missing.status_code == 404


def test_reads_sum_buckets_consistently_while_holds_land(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    """While buyers hold units on 8 buckets, every read of (available, held units) — one
    statement — adds up to the stock: a read never sees a bucket half-changed."""
    loc, var = make_location(client, auth), make_variant(client, auth)
    _split(client, auth, var, 8)
    receive(client, auth, loc, var, 60)
    done = threading.Event()
    seen: list[tuple[int, int]] = []

    def read() -> None:
        available = (
            select(func.sum(StockLevel.on_hand - StockLevel.reserved))
            .where(StockLevel.variant_id == var)
            .scalar_subquery()
        )
        held = (
            select(func.coalesce(func.sum(Reservation.quantity), 0))
            .where(Reservation.variant_id == var, Reservation.status == "held")
            .scalar_subquery()
        )
        while not done.is_set():
            with db.transaction(readonly=True) as session:
                row = session.execute(select(available, held)).one()
                seen.append((int(row[0]), int(row[1])))

    def buy(i: int) -> bool:
        data = ReservationCreate.model_validate(
            {
                "lines": [
                    {"location_id": loc, "variant_id": var, "quantity": 1, "reference": f"b{i}"}
                ]
            }
        )
        try:
            with db.transaction() as session:
                reservations.reserve(session, data)
            return True
        except Conflict:
            return False

    reader = threading.Thread(target=read)
    reader.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            won = sum(pool.map(buy, range(80)))
    finally:
        done.set()
        reader.join()
    assert won == 60
    assert seen
    assert all(available + held == 60 for available, held in seen), seen[:5]
    assert level(db, loc, var) == (60, 60)
    _clean(db)


def test_resplits_racing_receipts_holds_and_each_other_lose_nothing(
    live_server: str, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    """Re-splits (also two at once) while receipts and holds land: no 500, no lost unit,
    the ledger and the holds agree with the rows afterwards."""
    loc, var = make_location(client, auth), make_variant(client, auth)
    receive(client, auth, loc, var, 40)
    plan = [("split", n) for n in (8, 2, 8, 1, 16, 3)] * 2 + [("receive", 3)] * 12
    plan += [("hold", i) for i in range(12)]

    def act(step: tuple[str, int]) -> int:
        kind, n = step
        with httpx.Client(base_url=live_server, headers=auth, timeout=60) as http:
            if kind == "split":
                r = http.put(f"/api/v1/stock/variants/{var}/split", json={"buckets": n})
            elif kind == "receive":
                r = http.post(
                    "/api/v1/stock/receipts",
                    json={"location_id": loc, "variant_id": var, "quantity": n},
                )
            else:
                line = {"location_id": loc, "variant_id": var, "quantity": 2, "reference": f"h{n}"}
                r = http.post("/api/v1/reservations", json={"lines": [line]})
            return r.status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(act, plan))
    assert all(s in (200, 201) for s in statuses), statuses
    assert level(db, loc, var) == (40 + 36, 24)
    _clean(db)
