"""Locations: validation, the store ↔ channel link, events, and location-limited keys."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from seamline.auth import service as keys
from seamline.db.engine import Database
from tests.catalog_helpers import events


def body(handle: str = "berlin", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "store",
        "name": "Berlin Mitte",
        "handle": handle,
        "country": "DE",
        "time_zone": "Europe/Berlin",
        "postcode": "10115",
        "coordinates": {"latitude": 52.53, "longitude": 13.38},
        "opening_hours": {
            "sat": [{"open": "10:00", "close": "16:00"}],
            "mon": [{"open": "14:00", "close": "19:00"}, {"open": "09:00", "close": "12:00"}],
        },
        "pickup": True,
        "sells_in_person": True,
        **extra,
    }


def store_channel(
    client: TestClient, auth: dict[str, str], handle: str, kind: str = "store"
) -> str:
    r = client.post(
        "/api/v1/channels", json={"kind": kind, "name": handle, "handle": handle}, headers=auth
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_create_and_read_a_store(client: TestClient, auth: dict[str, str], db: Database) -> None:
    response = client.post("/api/v1/locations", json=body(), headers=auth)
    assert response.status_code == 201, response.text
    loc = response.json()
    assert loc["id"].startswith("loc_")
    assert list(loc["opening_hours"]) == ["mon", "sat"]
    assert loc["opening_hours"]["mon"][0] == {"open": "09:00", "close": "12:00"}
    assert (loc["pickup"], loc["ships"], loc["returns"]) == (True, False, False)
    assert client.get(f"/api/v1/locations/{loc['id']}", headers=auth).json() == loc
    assert [e.type for e in events(db, "location.")] == ["location.created"]
    dup = client.post("/api/v1/locations", json=body(), headers=auth)
    assert dup.status_code == 409
    assert dup.json()["code"] == "location_handle_taken"
    listed = client.get("/api/v1/locations", params={"kind": "store"}, headers=auth).json()
    assert [x["id"] for x in listed["data"]] == [loc["id"]]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"coordinates": {"latitude": 91, "longitude": 0}}, "body.coordinates.latitude"),
        ({"coordinates": {"latitude": 0, "longitude": -180.5}}, "body.coordinates.longitude"),
        ({"time_zone": "Mars/Olympus"}, "body.time_zone"),
        ({"country": "XX"}, "body.country"),
        (
            {"opening_hours": {"mon": [{"open": "25:00", "close": "18:00"}]}},
            "body.opening_hours.mon.0.open",
        ),
        ({"opening_hours": {"funday": []}}, "body.opening_hours.funday.[key]"),
        ({"kind": "depot"}, "body.kind"),
    ],
    ids=["lat", "lon", "tz", "country", "hours", "weekday", "kind"],
)
def test_invalid_locations_are_refused(
    client: TestClient, auth: dict[str, str], change: dict[str, Any], path: str
) -> None:
    response = client.post("/api/v1/locations", json=body(**change), headers=auth)
    assert response.status_code == 422, response.text
    assert path in [e["path"] for e in response.json()["errors"]]


def test_store_channel_link_stays_consistent(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    first = store_channel(client, auth, "store-1")
    second = store_channel(client, auth, "store-2")
    web = store_channel(client, auth, "web", kind="web")
    loc = client.post("/api/v1/locations", json=body(channel_id=first), headers=auth).json()
    assert loc["channel_id"] == first
    assert client.get(f"/api/v1/channels/{first}", headers=auth).json()["location_id"] == loc["id"]

    url = f"/api/v1/locations/{loc['id']}"
    moved = client.patch(url, json={"channel_id": second}, headers=auth).json()
    assert moved["channel_id"] == second
    assert client.get(f"/api/v1/channels/{first}", headers=auth).json()["location_id"] is None
    assert client.get(f"/api/v1/channels/{second}", headers=auth).json()["location_id"] == loc["id"]

    other = client.post("/api/v1/locations", json=body("hamburg"), headers=auth).json()
    taken = client.patch(
        f"/api/v1/locations/{other['id']}", json={"channel_id": second}, headers=auth
    )
    assert taken.status_code == 409
    assert taken.json()["code"] == "channel_already_linked"
    wrong_kind = client.patch(
        f"/api/v1/locations/{other['id']}", json={"channel_id": web}, headers=auth
    )
    assert wrong_kind.status_code == 422
    assert wrong_kind.json()["code"] == "channel_link_invalid"
    warehouse = client.post(
        "/api/v1/locations", json=body("wh", kind="warehouse", channel_id=first), headers=auth
    )
    assert warehouse.status_code == 422
    missing = client.patch(url, json={"channel_id": "chn_missing"}, headers=auth)
    assert missing.status_code == 404
    # a failed request leaves the link as it was
    assert client.get(f"/api/v1/channels/{second}", headers=auth).json()["location_id"] == loc["id"]

    cleared = client.patch(url, json={"channel_id": None}, headers=auth).json()
    assert cleared["channel_id"] is None
    assert client.get(f"/api/v1/channels/{second}", headers=auth).json()["location_id"] is None
    assert [e.type for e in events(db, "location.")][-1] == "location.updated"


def test_location_limited_key_changes_only_its_own(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    own = client.post("/api/v1/locations", json=body("own"), headers=auth).json()
    other = client.post("/api/v1/locations", json=body("other"), headers=auth).json()
    with db.transaction() as session:
        _, token = keys.create_key(
            session,
            kind="secret",
            name="store",
            scopes=["inventory:read", "inventory:write"],
            location_ids=[own["id"]],
        )
    limited = {"Authorization": f"Bearer {token}"}
    ok = client.patch(f"/api/v1/locations/{own['id']}", json={"name": "Own Store"}, headers=limited)
    assert ok.status_code == 200
    assert ok.json()["name"] == "Own Store"
    refused = client.patch(
        f"/api/v1/locations/{other['id']}", json={"name": "Mine now"}, headers=limited
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "location_out_of_scope"
    created = client.post("/api/v1/locations", json=body("new"), headers=limited)
    assert created.status_code == 403
    assert (
        client.get(f"/api/v1/locations/{other['id']}", headers=limited).status_code == 200
    )  # reads all


def test_patch_without_changes_emits_nothing(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    loc = client.post("/api/v1/locations", json=body(), headers=auth).json()
    n = len(events(db))
    same = client.patch(
        f"/api/v1/locations/{loc['id']}",
        json={"name": "Berlin Mitte", "pickup": True},
        headers=auth,
    )
    assert same.status_code == 200
    assert len(events(db)) == n
