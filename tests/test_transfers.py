"""Transfers: units leave the source, are in transit, and arrive (or come back); bad input
changes nothing."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from seamline.db.engine import Database
from seamline.inventory.verify import verify
from tests.catalog_helpers import events
from tests.stock_helpers import level, make_location, make_variant, receive, reserve


def _transfer(
    client: TestClient, auth: dict[str, str], src: str, dst: str, lines: list[tuple[str, int]]
) -> dict[str, object]:
    r = client.post(
        "/api/v1/stock/transfers",
        json={
            "from_location_id": src,
            "to_location_id": dst,
            "lines": [{"variant_id": v, "quantity": q} for v, q in lines],
            "reason": "restock the store",
        },
        headers=auth,
    )
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


def _stock(client: TestClient, auth: dict[str, str], var: str) -> dict[str, object]:
    body: dict[str, object] = client.get(f"/api/v1/stock/variants/{var}", headers=auth).json()
    return body


def test_units_travel_through_in_transit(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    src, dst = make_location(client, auth, "depot"), make_location(client, auth, "shop")
    var = make_variant(client, auth)
    receive(client, auth, src, var, 10)

    sent = _transfer(client, auth, src, dst, [(var, 4)])
    assert sent["status"] == "in_transit"
    assert level(db, src, var) == (6, 0)
    assert level(db, dst, var) == (0, 0)
    view = _stock(client, auth, var)
    assert (view["on_hand"], view["in_transit"]) == (6, 4)
    incoming = {x["location_id"]: x["incoming"] for x in view["locations"]}  # type: ignore[attr-defined]
    assert incoming == {src: 0, dst: 4}

    got = client.post(f"/api/v1/stock/transfers/{sent['id']}/receive", json={}, headers=auth)
    assert got.status_code == 200, got.text
    assert got.json()["status"] == "received"
    assert got.json()["lines"] == [{"variant_id": var, "quantity": 4, "received_quantity": 4}]
    assert level(db, dst, var) == (4, 0)
    assert _stock(client, auth, var)["in_transit"] == 0
    again = client.post(f"/api/v1/stock/transfers/{sent['id']}/receive", json={}, headers=auth)
    assert (again.status_code, again.json()["code"]) == (409, "transfer_settled")
    assert level(db, dst, var) == (4, 0)

    kinds = [
        (e.payload["location_id"], e.payload["cause"], e.payload["delta_on_hand"])
        for e in events(db, "inventory.changed")
    ]
    assert kinds[-2:] == [(src, "transfer_out", -4), (dst, "transfer_in", 4)]
    assert [e.type for e in events(db, "transfer.")] == ["transfer.sent", "transfer.received"]
    with db.transaction(readonly=True) as session:
        assert verify(session) == []


def test_short_arrival_and_cancel(client: TestClient, auth: dict[str, str], db: Database) -> None:
    src, dst = make_location(client, auth, "depot"), make_location(client, auth, "shop")
    var = make_variant(client, auth)
    receive(client, auth, src, var, 10)

    lost = _transfer(client, auth, src, dst, [(var, 5)])
    too_many = client.post(
        f"/api/v1/stock/transfers/{lost['id']}/receive",
        json={"lines": [{"variant_id": var, "quantity": 6}]},
        headers=auth,
    )
    assert too_many.status_code == 422
    assert [e["path"] for e in too_many.json()["errors"]] == ["body.lines.0.quantity"]
    for lines in ([{"variant_id": var, "quantity": 2}, {"variant_id": var, "quantity": 0}], []):
        bad = client.post(
            f"/api/v1/stock/transfers/{lost['id']}/receive", json={"lines": lines}, headers=auth
        )
        assert bad.status_code == 422, bad.text
    assert client.get(f"/api/v1/stock/transfers/{lost['id']}", headers=auth).json()["status"] == (
        "in_transit"
    )
    short = client.post(
        f"/api/v1/stock/transfers/{lost['id']}/receive",
        json={"lines": [{"variant_id": var, "quantity": 3}]},
        headers=auth,
    )
    assert short.json()["lines"][0]["received_quantity"] == 3
    assert (level(db, src, var), level(db, dst, var)) == ((5, 0), (3, 0))

    back = _transfer(client, auth, src, dst, [(var, 2)])
    cancelled = client.post(f"/api/v1/stock/transfers/{back['id']}/cancel", headers=auth)
    assert cancelled.json()["status"] == "cancelled"
    assert level(db, src, var) == (5, 0)
    listed = client.get(
        "/api/v1/stock/transfers", params={"location_id": dst, "status": "cancelled"}, headers=auth
    ).json()
    assert [t["id"] for t in listed["data"]] == [back["id"]]
    with db.transaction(readonly=True) as session:
        assert verify(session) == []


def test_bad_transfers_change_nothing(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    src, dst = make_location(client, auth, "depot"), make_location(client, auth, "shop")
    a, b = make_variant(client, auth, "tee"), make_variant(client, auth, "cap")
    receive(client, auth, src, a, 5)
    receive(client, auth, src, b, 1)
    assert reserve(client, auth, [(src, b, 1, "cart-1")]).status_code == 201
    before = len(events(db))

    def post(body: dict[str, object]) -> tuple[int, str, list[str]]:
        r = client.post("/api/v1/stock/transfers", json=body, headers=auth)
        problem = r.json()
        return r.status_code, problem.get("code", ""), [e["path"] for e in problem["errors"]]

    line = [{"variant_id": a, "quantity": 1}]
    assert post({"from_location_id": src, "to_location_id": src, "lines": line}) == (
        422,
        "same_location",
        ["body.to_location_id"],
    )
    zero = [{"variant_id": a, "quantity": 0}]
    assert post({"from_location_id": src, "to_location_id": dst, "lines": zero})[0] == 422
    twice = line + line
    assert post({"from_location_id": src, "to_location_id": dst, "lines": twice})[1] == (
        "duplicate_line"
    )
    unknown = {"from_location_id": src, "to_location_id": "loc_nothere", "lines": line}
    assert post(unknown)[:2] == (404, "location_not_found")
    # The second line needs a reserved unit: the whole transfer is refused, the first line too.
    greedy = [{"variant_id": a, "quantity": 2}, {"variant_id": b, "quantity": 1}]
    status, code, _ = post({"from_location_id": src, "to_location_id": dst, "lines": greedy})
    assert (status, code) == (409, "insufficient_stock")
    assert (level(db, src, a), level(db, src, b)) == ((5, 0), (1, 1))
    assert len(events(db)) == before
    assert client.get("/api/v1/stock/transfers", headers=auth).json()["data"] == []


def test_store_keys_send_only_from_their_store(
    client: TestClient, auth: dict[str, str], make_key: Callable[..., str], db: Database
) -> None:
    src, dst = make_location(client, auth, "depot"), make_location(client, auth, "shop")
    var = make_variant(client, auth)
    receive(client, auth, src, var, 3)
    with db.transaction() as session:
        from seamline.auth.service import create_key

        _, token = create_key(
            session, kind="secret", name="shop", scopes=["inventory:write"], location_ids=[dst]
        )
    shop = {"Authorization": f"Bearer {token}"}
    body = {
        "from_location_id": src,
        "to_location_id": dst,
        "lines": [{"variant_id": var, "quantity": 1}],
    }
    refused = client.post("/api/v1/stock/transfers", json=body, headers=shop)
    assert (refused.status_code, refused.json()["code"]) == (403, "location_out_of_scope")
    sent = _transfer(client, auth, src, dst, [(var, 1)])
    # The shop receives what arrives at its door.
    got = client.post(f"/api/v1/stock/transfers/{sent['id']}/receive", json={}, headers=shop)
    assert got.status_code == 200, got.text
    assert level(db, dst, var) == (1, 0)
