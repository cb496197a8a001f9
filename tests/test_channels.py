"""The channel registry over the API: create, list, get, patch, and the events they write."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seamline.auth import service as keys
from seamline.channels import service
from seamline.channels.models import Channel
from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.kit.clock import FrozenClock

CHANNELS = "/api/v1/channels"


def create(client: TestClient, auth: dict[str, str], handle: str, **extra: Any) -> dict[str, Any]:
    body = {"kind": "web", "name": handle.title(), "handle": handle, **extra}
    response = client.post(CHANNELS, json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def events(db: Database) -> list[OutboxEvent]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq)))


def channel_count(db: Database) -> int:
    with db.transaction(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(Channel)) or 0)


def all_pages(
    client: TestClient, auth: dict[str, str], query: str = ""
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        url = f"{CHANNELS}?{query}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(url, headers=auth)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "pagination does not end"


# -- create and get ---------------------------------------------------------------------------


def test_create_returns_the_channel(client: TestClient, auth: dict[str, str]) -> None:
    body = {
        "kind": "store",
        "name": "  Berlin Mitte  ",
        "handle": "berlin-mitte",
        "location_id": "loc_berlin",
        "attributes": {"opening_hours": "10-20", "floors": 2, "tags": ["flagship"]},
    }
    response = client.post(CHANNELS, json=body, headers=auth)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"].startswith("chn_")
    assert created["name"] == "Berlin Mitte"  # surrounding spaces are trimmed
    assert created["kind"] == "store"
    assert created["handle"] == "berlin-mitte"
    assert created["location_id"] == "loc_berlin"
    assert created["active"] is True
    assert created["attributes"] == body["attributes"]
    assert created["created_at"] == created["updated_at"]
    assert created["created_at"].endswith("Z") or created["created_at"].endswith("+00:00")
    fetched = client.get(f"{CHANNELS}/{created['id']}", headers=auth)
    assert fetched.status_code == 200
    assert fetched.json() == created


@pytest.mark.parametrize("handle", ["a", "web-eu", "0", "x" * 64, "pos-1-2"])
def test_valid_handles(client: TestClient, auth: dict[str, str], handle: str) -> None:
    assert create(client, auth, handle)["handle"] == handle


@pytest.mark.parametrize("handle", ["", "-web", "web-", "Web", "web_eu", "x" * 65, "wéb"])
def test_invalid_handles(client: TestClient, auth: dict[str, str], handle: str) -> None:
    response = client.post(
        CHANNELS, json={"kind": "web", "name": "W", "handle": handle}, headers=auth
    )
    assert response.status_code == 422
    assert [e["path"] for e in response.json()["errors"]] == ["body.handle"]


# -- list -------------------------------------------------------------------------------------


def test_list_pages_with_a_cursor(client: TestClient, auth: dict[str, str]) -> None:
    ids = [create(client, auth, f"web-{i}")["id"] for i in range(7)]
    pages = all_pages(client, auth, "limit=3")
    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [c["id"] for page in pages for c in page]
    assert seen == sorted(ids)  # stable id order, no gaps, no repeats
    assert set(seen) == set(ids)


def test_list_exact_multiple_of_the_page_size_ends_cleanly(
    client: TestClient, auth: dict[str, str]
) -> None:
    for i in range(4):
        create(client, auth, f"web-{i}")
    pages = all_pages(client, auth, "limit=2")
    assert [len(p) for p in pages] == [2, 2]  # no trailing empty page


def test_list_survives_inserts_between_pages(client: TestClient, auth: dict[str, str]) -> None:
    first_ids = [create(client, auth, f"a-{i}")["id"] for i in range(3)]
    page = client.get(f"{CHANNELS}?limit=2", headers=auth).json()
    late = create(client, auth, "late")["id"]
    rest = client.get(f"{CHANNELS}?limit=10&cursor={page['next_cursor']}", headers=auth).json()
    seen = [c["id"] for c in page["data"] + rest["data"]]
    assert seen == sorted([*first_ids, late])


def test_list_filters_by_kind_across_pages(client: TestClient, auth: dict[str, str]) -> None:
    stores = {create(client, auth, f"store-{i}", kind="store")["id"] for i in range(5)}
    for i in range(4):
        create(client, auth, f"web-{i}", kind="web")
    pages = all_pages(client, auth, "kind=store&limit=2")
    assert [len(p) for p in pages] == [2, 2, 1]
    assert {c["id"] for p in pages for c in p} == stores
    assert all(c["kind"] == "store" for p in pages for c in p)
    assert all_pages(client, auth, "kind=sms") == [[]]


def test_list_filters_by_active(client: TestClient, auth: dict[str, str]) -> None:
    keep = create(client, auth, "keep")["id"]
    stop = create(client, auth, "stop")["id"]
    client.patch(f"{CHANNELS}/{stop}", json={"active": False}, headers=auth)
    active = client.get(f"{CHANNELS}?active=true", headers=auth).json()["data"]
    inactive = client.get(f"{CHANNELS}?active=false", headers=auth).json()["data"]
    assert [c["id"] for c in active] == [keep]
    assert [c["id"] for c in inactive] == [stop]


@pytest.mark.parametrize(
    ("query", "path"),
    [("limit=0", "query.limit"), ("limit=201", "query.limit"), ("cursor=BAD!", "query.cursor")],
)
def test_list_refuses_bad_paging(
    client: TestClient, auth: dict[str, str], query: str, path: str
) -> None:
    response = client.get(f"{CHANNELS}?{query}", headers=auth)
    assert response.status_code == 422
    assert [e["path"] for e in response.json()["errors"]] == [path]


def test_unknown_cursor_is_an_empty_page(client: TestClient, auth: dict[str, str]) -> None:
    create(client, auth, "web")
    response = client.get(f"{CHANNELS}?cursor=zzz", headers=auth)
    assert response.json() == {"data": [], "next_cursor": None}


# -- patch ------------------------------------------------------------------------------------


def test_patch_changes_only_what_is_sent(
    client: TestClient, auth: dict[str, str], clock: FrozenClock
) -> None:
    created = create(client, auth, "web", location_id="loc_1", attributes={"a": 1})
    clock.advance(minutes=5)
    response = client.patch(
        f"{CHANNELS}/{created['id']}", json={"name": "Web Store", "active": False}, headers=auth
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["name"] == "Web Store"
    assert patched["active"] is False
    assert patched["location_id"] == "loc_1"
    assert patched["attributes"] == {"a": 1}
    assert patched["handle"] == "web"
    assert patched["created_at"] == created["created_at"]
    assert parse(patched["updated_at"]) == parse(created["updated_at"]) + timedelta(minutes=5)
    assert client.get(f"{CHANNELS}/{created['id']}", headers=auth).json() == patched


def test_patch_null_clears_location_but_not_name(client: TestClient, auth: dict[str, str]) -> None:
    created = create(client, auth, "store", kind="store", location_id="loc_1")
    url = f"{CHANNELS}/{created['id']}"
    patched = client.patch(url, json={"location_id": None, "name": None}, headers=auth).json()
    assert patched["location_id"] is None
    assert patched["name"] == created["name"]


def test_patch_replaces_attributes(client: TestClient, auth: dict[str, str]) -> None:
    created = create(client, auth, "web", attributes={"a": 1, "b": 2})
    url = f"{CHANNELS}/{created['id']}"
    patched = client.patch(url, json={"attributes": {"c": [3]}}, headers=auth).json()
    assert patched["attributes"] == {"c": [3]}


def test_patch_refuses_invalid_fields(client: TestClient, auth: dict[str, str]) -> None:
    created = create(client, auth, "web")
    url = f"{CHANNELS}/{created['id']}"
    for body, path in [
        ({"name": ""}, "body.name"),
        ({"active": "maybe"}, "body.active"),
        ({"kind": "app"}, "body.kind"),
        ({"attributes": {"big": "x" * 20_000}}, "body.attributes"),
    ]:
        response = client.patch(url, json=body, headers=auth)
        assert response.status_code == 422, body
        assert [e["path"] for e in response.json()["errors"]] == [path], body
    assert client.get(url, headers=auth).json() == created


# -- events in the outbox ---------------------------------------------------------------------


def test_create_and_update_write_events(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    created = create(client, auth, "web-eu", location_id="loc_1")
    client.patch(f"{CHANNELS}/{created['id']}", json={"name": "EU"}, headers=auth)
    written = events(db)
    assert [e.type for e in written] == ["channel.created", "channel.updated"]
    for event in written:
        assert event.id.startswith("evt_")
        assert event.aggregate_type == "channel"
        assert event.aggregate_id == created["id"]
    assert written[0].payload == {
        "id": created["id"],
        "kind": "web",
        "name": "Web-Eu",
        "handle": "web-eu",
        "location_id": "loc_1",
        "active": True,
    }
    assert written[1].payload["name"] == "EU"


def test_events_are_visible_through_the_event_log(client: TestClient, auth: dict[str, str]) -> None:
    created = create(client, auth, "web")
    response = client.get("/api/v1/events?type=channel.", headers=auth)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [(e["type"], e["aggregate"]["id"]) for e in data] == [("channel.created", created["id"])]


def test_patch_that_changes_nothing_writes_nothing(
    client: TestClient, auth: dict[str, str], db: Database, clock: FrozenClock
) -> None:
    created = create(client, auth, "web")
    clock.advance(minutes=1)
    url = f"{CHANNELS}/{created['id']}"
    for body in ({}, {"name": created["name"]}, {"active": True, "name": None}):
        response = client.patch(url, json=body, headers=auth)
        assert response.status_code == 200
        assert response.json() == created
    assert [e.type for e in events(db)] == ["channel.created"]


def test_failed_validation_writes_nothing(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    bad_bodies: list[dict[str, Any]] = [
        {"kind": "web", "name": "W"},
        {"kind": "web", "name": "W", "handle": "w", "extra": 1},
        {"kind": "web", "name": "W", "handle": "w", "attributes": {"x": "y" * 20_000}},
    ]
    for body in bad_bodies:
        assert client.post(CHANNELS, json=body, headers=auth).status_code == 422
    assert channel_count(db) == 0
    assert events(db) == []
    created = create(client, auth, "w")
    assert (
        client.post(
            CHANNELS, json={"kind": "app", "name": "X", "handle": "w"}, headers=auth
        ).status_code
        == 409
    )
    bad = client.patch(f"{CHANNELS}/{created['id']}", json={"name": ""}, headers=auth)
    assert bad.status_code == 422
    assert channel_count(db) == 1
    assert [e.type for e in events(db)] == ["channel.created"]


def test_channel_and_event_share_one_transaction(
    client: TestClient, auth: dict[str, str], db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # If writing the event fails, the channel must not exist either (and vice versa).
    def broken_emit(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(service, "emit", broken_emit)
    response = client.post(CHANNELS, json={"kind": "web", "name": "W", "handle": "w"}, headers=auth)
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert channel_count(db) == 0
    assert events(db) == []
    monkeypatch.undo()

    created = create(client, auth, "w")
    monkeypatch.setattr(service, "emit", broken_emit)
    url = f"{CHANNELS}/{created['id']}"
    assert client.patch(url, json={"name": "Renamed"}, headers=auth).status_code == 500
    monkeypatch.undo()
    assert client.get(url, headers=auth).json()["name"] == created["name"]
    assert [e.type for e in events(db)] == ["channel.created"]


def test_a_key_limited_to_a_location_acts_only_there(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    with db.transaction() as session:
        _, token = keys.create_key(
            session,
            kind="secret",
            name="soho staff",
            scopes=["channels:read", "channels:write"],
            location_ids=["loc_soho"],
        )
    soho = {"Authorization": f"Bearer {token}"}
    brooklyn = client.post(
        "/api/v1/channels",
        json={"kind": "store", "name": "Brooklyn", "handle": "bk", "location_id": "loc_bk"},
        headers=auth,
    ).json()
    refused = client.patch(
        f"/api/v1/channels/{brooklyn['id']}", json={"active": False}, headers=soho
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "location_out_of_scope"
    assert client.get(f"/api/v1/channels/{brooklyn['id']}", headers=soho).json()["active"] is True
    elsewhere = {"kind": "store", "name": "B2", "handle": "bk2", "location_id": "loc_bk"}
    assert client.post("/api/v1/channels", json=elsewhere, headers=soho).status_code == 403
    own = {"kind": "store", "name": "Soho", "handle": "soho", "location_id": "loc_soho"}
    created = client.post("/api/v1/channels", json=own, headers=soho)
    assert created.status_code == 201
    moved = client.patch(
        f"/api/v1/channels/{created.json()['id']}", json={"location_id": "loc_bk"}, headers=soho
    )
    assert moved.status_code == 403
    renamed = client.patch(
        f"/api/v1/channels/{created.json()['id']}", json={"name": "Soho flagship"}, headers=soho
    )
    assert renamed.status_code == 200
