"""Saved lists (S8): built by scanning in a store, opened on the web, bought in parts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from seamline.db.engine import Database
from seamline.runtime import Runtime
from tests.carts.conftest import Headers, Shop, bearer, get, new_cart, quantities
from tests.catalog_helpers import events
from tests.identity.conftest import identifier


def items(body: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {i["sku"]: (i["quantity"], i["added_via"]) for i in body["items"]}


def test_scan_in_store_then_buy_part_on_the_web(
    client: TestClient,
    auth: Headers,
    pk: Headers,
    shop: Shop,
    db: Database,
    make_key: Callable[..., str],
    runtime: Runtime,
) -> None:
    ek = bearer(make_key(kind="event"))
    client.post("/v1/identify", json={"userId": "dee", "anonymousId": "web-dee"}, headers=ek)
    profile = identifier(db, "user_id", "dee").profile_id
    # The store tablet (a staff key) starts a list for the identified customer and scans.
    tablet = bearer(make_key(kind="secret", scopes=["carts:read", "carts:write"], name="tablet"))
    r = client.post(
        "/api/v1/saved-lists",
        json={"name": "Home gym ✓", "profile_id": profile, "channel_id": shop.channel},
        headers=tablet,
    )
    assert r.status_code == 201, r.text
    saved = r.json()
    url = f"/api/v1/saved-lists/{saved['id']}"
    scan = client.post(
        f"{url}/items", json={"barcode": shop.barcodes["MAT-1"], "quantity": 2}, headers=tablet
    )
    assert scan.status_code == 201, scan.text
    again = client.post(f"{url}/items", json={"barcode": shop.barcodes["MAT-1"]}, headers=tablet)
    assert again.status_code == 200
    r = client.post(
        f"{url}/items", json={"variant_id": shop.variants["KB-16"], "note": "16 kg"}, headers=tablet
    )
    assert r.status_code == 201
    assert items(r.json()) == {"MAT-1": (3, "scan"), "KB-16": (1, "api")}

    # Later, on the web: the storefront opens the list by id, moves 1 of 3 mats to its cart.
    cart = new_cart(client, pk, shop, anonymous_id="web-dee")
    mat_item = next(i for i in get_list(client, pk, saved["id"])["items"] if i["sku"] == "MAT-1")
    moved = client.post(
        f"{url}/items/{mat_item['id']}/move-to-cart",
        json={"cart_id": cart["id"], "quantity": 1},
        headers=pk,
    )
    assert moved.status_code == 200, moved.text
    assert quantities(moved.json()["cart"]) == {"MAT-1": 1}
    assert items(moved.json()["saved_list"])["MAT-1"] == (2, "scan")
    # The rest of the mats too: the item leaves the list, the cart line grows.
    rest = client.post(
        f"{url}/items/{mat_item['id']}/move-to-cart", json={"cart_id": cart["id"]}, headers=pk
    )
    assert rest.status_code == 200, rest.text
    assert "MAT-1" not in items(rest.json()["saved_list"])
    assert quantities(get(client, pk, cart["id"])) == {"MAT-1": 3}
    # Lists are found by profile (the whole customer) and by code — by staff only.
    mine = client.get(f"/api/v1/saved-lists?profile_id={profile}", headers=auth)
    assert mine.status_code == 200, mine.text
    assert [(x["id"], x["item_count"]) for x in mine.json()["data"]] == [(saved["id"], 1)]
    code = saved["share_code"].replace("-", "").lower()
    assert client.get(f"/api/v1/saved-lists/by-code/{code}", headers=pk).status_code == 403
    assert client.get(f"/api/v1/saved-lists?profile_id={profile}", headers=pk).status_code == 403
    by_code = client.get(f"/api/v1/saved-lists/by-code/{code}", headers=tablet)
    assert by_code.status_code == 200
    assert by_code.json()["id"] == saved["id"]
    types = [e.type for e in events(db, "saved_list.")]
    assert types == [
        "saved_list.created",
        "saved_list.item_added",
        "saved_list.item_changed",
        "saved_list.item_added",
        "saved_list.item_moved_to_cart",
        "saved_list.item_moved_to_cart",
    ]
    assert all(e.payload["profile_id"] == profile for e in events(db, "saved_list."))
    # The list's story is on the customer's timeline, like their carts'.
    runtime.worker().drain()
    timeline = client.get(f"/api/v1/profiles/{profile}/timeline?kind=domain", headers=auth)
    assert timeline.status_code == 200, timeline.text
    lines = [item["summary"] for item in timeline.json()["data"]]
    assert lines.count("Saved list “Home gym ✓” started") == 1
    moves = [line for line in lines if line.startswith("Moved ")]
    assert len(moves) == 2
    assert all(" from a saved list to cart crt_" in line for line in moves)
    assert "Saved list item added" in lines


def get_list(client: TestClient, headers: Headers, list_id: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/saved-lists/{list_id}", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_items_change_and_go(client: TestClient, pk: Headers, shop: Shop) -> None:
    r = client.post("/api/v1/saved-lists", json={"name": "Wish", "anonymous_id": "a"}, headers=pk)
    assert r.status_code == 201, r.text
    url = f"/api/v1/saved-lists/{r.json()['id']}"
    r = client.post(f"{url}/items", json={"variant_id": shop.variants["BAND-1"]}, headers=pk)
    item = r.json()["items"][0]
    r = client.patch(
        f"{url}/items/{item['id']}", json={"quantity": 4, "note": "für Oma"}, headers=pk
    )
    assert r.status_code == 200, r.text
    assert r.json()["items"][0]["quantity"] == 4
    assert r.json()["items"][0]["note"] == "für Oma"
    assert (
        client.patch(f"{url}/items/{item['id']}", json={"quantity": 0}, headers=pk).status_code
        == 422
    )
    too_many = client.post(
        f"{url}/items/{item['id']}/move-to-cart",
        json={"cart_id": new_cart(client, pk, shop)["id"], "quantity": 5},
        headers=pk,
    )
    assert too_many.status_code == 422
    assert too_many.json()["code"] == "more_than_listed"
    r = client.delete(f"{url}/items/{item['id']}", headers=pk)
    assert r.status_code == 200
    assert r.json()["items"] == []
    assert client.delete(f"{url}/items/{item['id']}", headers=pk).status_code == 404


def test_list_refusals(client: TestClient, pk: Headers, shop: Shop) -> None:
    no_owner = client.post("/api/v1/saved-lists", json={"name": "x"}, headers=pk)
    assert no_owner.status_code == 422
    profile = client.post(
        "/api/v1/saved-lists", json={"name": "x", "profile_id": "prf_1"}, headers=pk
    )
    assert profile.status_code == 403
    assert client.get("/api/v1/saved-lists/lst_nope", headers=pk).status_code == 404
    blank = client.post(
        "/api/v1/saved-lists", json={"name": " \u200b ", "anonymous_id": "a"}, headers=pk
    )
    assert blank.status_code == 422
