"""Available to promise per location and per channel (safety stock, share caps), holds made for
a channel, and "pick up near me" by point or postcode with today's hours."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from seamline.db.engine import Database
from seamline.kit.clock import FrozenClock
from tests.stock_helpers import level, make_channel, make_location, make_variant, receive

HOURS = {
    "mon": [{"open": "09:00", "close": "18:00"}],
    "fri": [{"open": "10:00", "close": "02:00"}],  # closes after midnight
    "sat": [{"open": "10:00", "close": "16:00"}],
}


def _availability(
    client: TestClient, auth: dict[str, str], var: str, channel: str | None = None
) -> dict[str, object]:
    params: dict[str, str] = {"variant_id": var}
    if channel:
        params["channel_id"] = channel
    r = client.get("/api/v1/availability", params=params, headers=auth)
    assert r.status_code == 200, r.text
    data: dict[str, object] = r.json()["data"][0]
    return data


def _per_channel(data: dict[str, object]) -> dict[str, int]:
    return {c["channel_id"]: c["available"] for c in data["channels"]}  # type: ignore[attr-defined]


def _store(client: TestClient, auth: dict[str, str], handle: str, lat: float, lon: float) -> str:
    return make_location(
        client,
        auth,
        handle,
        kind="store",
        ships=True,
        pickup=True,
        coordinates={"latitude": lat, "longitude": lon},
        opening_hours=HOURS,
    )


def test_channel_rules_shape_what_each_channel_promises(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    warehouse = make_location(client, auth, "depot", ships=True)
    shop = _store(client, auth, "mitte", 52.52, 13.405)
    var = make_variant(client, auth)
    receive(client, auth, warehouse, var, 10)
    receive(client, auth, shop, var, 3)
    web = make_channel(client, auth, "web")
    market = make_channel(client, auth, "market", kind="marketplace")

    assert _per_channel(_availability(client, auth, var)) == {web: 13, market: 13}
    keep = client.put(
        f"/api/v1/channels/{web}/stock-rule", json={"keep_per_store": 2}, headers=auth
    )
    assert keep.status_code == 200, keep.text
    half = {"max_share_percent": 50, "location_ids": [warehouse]}
    assert (
        client.put(f"/api/v1/channels/{market}/stock-rule", json=half, headers=auth).status_code
        == 200
    )
    data = _availability(client, auth, var)
    assert (data["on_hand"], data["available"]) == (13, 13)
    assert _per_channel(data) == {web: 11, market: 5}  # 10 + (3 - 2); 50% of 10
    assert _per_channel(_availability(client, auth, var, market)) == {market: 5}

    # A web hold at the store may not take the two units kept for walk-ins.
    def hold(channel: str, quantity: int, ref: str, loc: str | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
        line: dict[str, object] = {"variant_id": var, "quantity": quantity, "reference": ref}
        if loc:
            line["location_id"] = loc
        r = client.post(
            "/api/v1/reservations", json={"channel_id": channel, "lines": [line]}, headers=auth
        )
        return r.status_code, r.json()

    status, body = hold(web, 2, "web-1", shop)
    assert (status, body["code"], body["available"]) == (409, "insufficient_stock", 1)
    status, body = hold(web, 1, "web-1", shop)
    assert status == 201
    assert body["data"][0]["channel_id"] == web
    # The marketplace may take at most its share, even when the units are there.
    status, body = hold(market, 6, "mkt-1")
    assert (status, body["available"]) == (409, 5)
    status, body = hold(market, 5, "mkt-1")
    assert status == 201
    assert body["data"][0]["location_id"] == warehouse  # chosen for it: its only location
    # A retry returns the same hold; its own units do not count against the cap.
    retry_status, retry = hold(market, 5, "mkt-1")
    assert (retry_status, retry["data"][0]["id"]) == (201, body["data"][0]["id"])
    # A channel limited to its locations may not hold elsewhere by naming the place.
    status, body = hold(market, 1, "mkt-2", shop)
    assert (status, body["code"]) == (422, "location_not_in_channel")
    assert [e["path"] for e in body["errors"]] == ["body.lines.0.location_id"]
    assert level(db, warehouse, var) == (10, 5)
    # Walk-ins at the store are not bound by the web's rule.
    store_sale = client.post(
        "/api/v1/reservations",
        json={"lines": [{"location_id": shop, "variant_id": var, "quantity": 2, "reference": "t"}]},
        headers=auth,
    )
    assert store_sale.status_code == 201


def test_rules_and_reads_refuse_bad_input(client: TestClient, auth: dict[str, str]) -> None:
    web = make_channel(client, auth, "web")
    var = make_variant(client, auth)
    bad = client.put(
        f"/api/v1/channels/{web}/stock-rule",
        json={"keep_per_store": -1, "max_share_percent": 0},
        headers=auth,
    )
    assert bad.status_code == 422
    paths = sorted(e["path"] for e in bad.json()["errors"])
    assert paths == ["body.keep_per_store", "body.max_share_percent"]
    unknown = client.put(
        f"/api/v1/channels/{web}/stock-rule", json={"location_ids": ["loc_nothere"]}, headers=auth
    )
    assert [e["path"] for e in unknown.json()["errors"]] == ["body.location_ids.0"]
    assert client.get("/api/v1/channels/chn_nothere/stock-rule", headers=auth).status_code == 404
    assert client.get("/api/v1/availability", headers=auth).status_code == 422
    missing = client.get("/api/v1/availability", params={"variant_id": "var_x"}, headers=auth)
    assert missing.status_code == 404
    no_place = client.post(
        "/api/v1/reservations",
        json={"lines": [{"variant_id": var, "quantity": 1, "reference": "r"}]},
        headers=auth,
    )
    assert no_place.status_code == 422
    assert [e["path"] for e in no_place.json()["errors"]] == ["body.lines.0.location_id"]


def test_pickup_near_me_by_point_and_postcode(
    client: TestClient, auth: dict[str, str], clock: FrozenClock, tmp_path: Path
) -> None:
    mitte = _store(client, auth, "mitte", 52.5200, 13.4050)
    kreuzberg = _store(client, auth, "kreuzberg", 52.4986, 13.4030)
    hamburg = _store(client, auth, "hamburg", 53.5511, 9.9937)
    make_location(client, auth, "depot", ships=True)  # not a pick-up point
    tee, cap = make_variant(client, auth, "tee"), make_variant(client, auth, "cap")
    for loc in (mitte, kreuzberg, hamburg):
        receive(client, auth, loc, tee, 2)
    receive(client, auth, kreuzberg, cap, 1)
    receive(client, auth, hamburg, cap, 5)
    # Friday 2026-11-27 23:30 in Berlin (22:30 UTC): open until 02:00.
    clock.current = datetime(2026, 11, 27, 22, 30, tzinfo=UTC)

    near = client.get(
        "/api/v1/availability/pickup",
        params={"item": [f"{tee}:2", cap], "latitude": 52.50, "longitude": 13.40},
        headers=auth,
    )
    assert near.status_code == 200, near.text
    stores = near.json()["data"]
    assert [s["location_id"] for s in stores] == [kreuzberg, hamburg]  # mitte has no cap
    assert stores[0]["distance_km"] < 1 < 200 < stores[1]["distance_km"] < 300
    assert stores[0]["today"] == [{"open": "10:00", "close": "02:00"}]
    assert stores[0]["open_now"] is True
    assert stores[0]["items"] == [
        {"variant_id": tee, "quantity": 2, "available": 2},
        {"variant_id": cap, "quantity": 1, "available": 1},
    ]
    # Saturday 01:00 local: still open from Friday's late interval.
    clock.current = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
    later = client.get(
        "/api/v1/availability/pickup",
        params={"item": tee, "latitude": 52.52, "longitude": 13.40, "radius_km": 50},
        headers=auth,
    ).json()["data"]
    assert [s["location_id"] for s in later] == [mitte, kreuzberg]
    assert later[0]["today"] == [{"open": "10:00", "close": "16:00"}]
    assert later[0]["open_now"] is True

    unknown = client.get(
        "/api/v1/availability/pickup",
        params={"item": tee, "postcode": "10997", "country": "DE"},
        headers=auth,
    )
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_postcode")
    put = client.put(
        "/api/v1/postcodes",
        json={
            "data": [
                {
                    "country": "DE",
                    "postcode": "10997",
                    "place": "Berlin Kreuzberg",
                    "coordinates": {"latitude": 52.5, "longitude": 13.43},
                }
            ]
        },
        headers=auth,
    )
    assert put.json() == {"written": 1}
    by_code = client.get(
        "/api/v1/availability/pickup",
        params={"item": cap, "postcode": "10 997", "country": "DE"},
        headers=auth,
    ).json()
    assert by_code["origin"] == {"latitude": 52.5, "longitude": 13.43}
    assert [s["location_id"] for s in by_code["data"]] == [kreuzberg, hamburg]
    half = client.get(
        "/api/v1/availability/pickup", params={"item": tee, "latitude": 1}, headers=auth
    )
    assert [e["path"] for e in half.json()["errors"]] == ["query.longitude"]
    neither = client.get("/api/v1/availability/pickup", params={"item": tee}, headers=auth)
    assert neither.json()["code"] == "origin_required"


def test_paused_channels_and_closed_stores_promise_nothing(
    client: TestClient, auth: dict[str, str]
) -> None:
    warehouse = make_location(client, auth, "depot", ships=True)
    var = make_variant(client, auth)
    receive(client, auth, warehouse, var, 10)
    paused = make_channel(client, auth, "paused")
    till = make_channel(client, auth, "till", kind="store")
    shop = make_location(client, auth, "shop", kind="store", channel_id=till)
    receive(client, auth, shop, var, 4)
    assert _per_channel(_availability(client, auth, var)) == {paused: 10, till: 4}
    nowhere = client.put(
        f"/api/v1/channels/{paused}/stock-rule", json={"location_ids": []}, headers=auth
    )
    assert nowhere.json()["location_ids"] == []
    closed = client.patch(f"/api/v1/locations/{shop}", json={"active": False}, headers=auth)
    assert closed.status_code == 200, closed.text
    # The till's own store is closed: it does not fall back to the warehouse.
    assert _per_channel(_availability(client, auth, var)) == {paused: 0, till: 0}
    refused = client.post(
        "/api/v1/reservations",
        json={"channel_id": till, "lines": [{"variant_id": var, "quantity": 1, "reference": "t"}]},
        headers=auth,
    )
    assert (refused.status_code, refused.json()["available"]) == (409, 0)
    blank = client.put(
        "/api/v1/postcodes",
        json={
            "data": [
                {"country": "DE", "postcode": " ", "coordinates": {"latitude": 1, "longitude": 1}}
            ]
        },
        headers=auth,
    )
    assert [e["path"] for e in blank.json()["errors"]] == ["body.data.0.postcode"]


def test_brand_wide_settings_refuse_store_keys(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    from seamline.auth.service import create_key

    shop = make_location(client, auth, "shop", kind="store")
    web = make_channel(client, auth, "web")
    var = make_variant(client, auth)
    with db.transaction() as session:
        _, token = create_key(
            session, kind="secret", name="shop", scopes=["inventory:write"], location_ids=[shop]
        )
    store = {"Authorization": f"Bearer {token}"}
    attempts = [
        client.put(f"/api/v1/channels/{web}/stock-rule", json={"keep_per_store": 1}, headers=store),
        client.put(
            "/api/v1/postcodes",
            json={
                "data": [
                    {
                        "country": "DE",
                        "postcode": "1",
                        "coordinates": {"latitude": 1, "longitude": 1},
                    }
                ]
            },
            headers=store,
        ),
        client.put(f"/api/v1/stock/variants/{var}/split", json={"buckets": 2}, headers=store),
    ]
    assert [(r.status_code, r.json()["code"]) for r in attempts] == [
        (403, "location_out_of_scope")
    ] * 3
    assert (
        client.get(f"/api/v1/channels/{web}/stock-rule", headers=auth).json()["keep_per_store"] == 0
    )
