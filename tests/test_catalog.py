"""Catalog API: products with variants and prices, validation, conflicts, events, search."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seamline.catalog.models import Product, Variant
from seamline.db.engine import Database
from tests.catalog_helpers import create_product, events, product_body

EAN = "4006381333931"  # a real EAN-13 with a correct check digit


def test_create_product_with_variants_and_prices(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    body = product_body("tee", "TEE-S", "TEE-M")
    body["variants"][0].update(barcode=EAN, weight_grams=180)
    body["variants"][1]["prices"] = {
        "EUR": {"amount": 2500, "compare_at": 3000},
        "USD": {"amount": 2700},
    }
    body.update(tags=["summer", "summer", "cotton"], media=["https://media.example.com/tee.jpg"])
    response = client.post("/api/v1/products", json=body, headers=auth)
    assert response.status_code == 201, response.text
    product = response.json()
    assert product["id"].startswith("prd_")
    assert product["status"] == "draft"
    assert product["tags"] == ["summer", "cotton"]
    first, second = product["variants"]
    assert first["id"].startswith("var_")
    assert first["barcode"] == EAN
    assert first["weight_grams"] == 180
    assert second["prices"] == {
        "EUR": {"amount": 2500, "compare_at": 3000},
        "USD": {"amount": 2700, "compare_at": None},
    }
    again = client.get(f"/api/v1/products/{product['id']}", headers=auth).json()
    assert again == product
    kinds = [e.type for e in events(db)]
    assert kinds == [
        "product.created",
        "variant.created",
        "price.changed",
        "variant.created",
        "price.changed",
    ]
    assert {e.aggregate_id for e in events(db)} == {product["id"]}


def test_unicode_title_gets_a_slug_handle(client: TestClient, auth: dict[str, str]) -> None:
    body = {"title": "Ünïcode Tee — 黒", "variants": [{"sku": "UNI-1"}]}
    response = client.post("/api/v1/products", json=body, headers=auth)
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "Ünïcode Tee — 黒"
    assert response.json()["handle"] == "unicode-tee"
    found = client.get("/api/v1/products", params={"q": "UNICODE tee"}, headers=auth).json()
    assert [p["handle"] for p in found["data"]] == ["unicode-tee"]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"prices": {"EUR": {"amount": -1}}}, ["body", "variants", 0, "prices", "EUR", "amount"]),
        ({"barcode": "4006381333932"}, ["body", "variants", 0, "barcode"]),
        ({"prices": {"XYZ": {"amount": 100}}}, ["body", "variants", 0, "prices", "XYZ", "[key]"]),
        ({"weight_grams": -5}, ["body", "variants", 0, "weight_grams"]),
        ({"sku": "has space"}, ["body", "variants", 0, "sku"]),
        ({"colour": "red"}, ["body", "variants", 0, "colour"]),
    ],
    ids=["negative-price", "bad-gtin", "unknown-currency", "negative-weight", "bad-sku", "extra"],
)
def test_invalid_variants_are_refused_with_a_field_path(
    client: TestClient, auth: dict[str, str], db: Database, change: dict[str, Any], path: list[Any]
) -> None:
    body = product_body("bad", "BAD-1")
    body["variants"][0].update(change)
    response = client.post("/api/v1/products", json=body, headers=auth)
    assert response.status_code == 422, response.text
    paths = [e["path"] for e in response.json()["errors"]]
    assert ".".join(str(p) for p in path) in paths, paths
    assert events(db) == []


def test_other_barcodes_are_plain_codes(client: TestClient, auth: dict[str, str]) -> None:
    body = product_body("codes", "C-1", "C-2")
    body["variants"][0]["barcode"] = "ABC-123"  # Code 128 style: no check digit rule
    body["variants"][1]["barcode"] = "1234567"  # 7 digits is not a GTIN length
    assert client.post("/api/v1/products", json=body, headers=auth).status_code == 201


def test_huge_payloads_are_refused(client: TestClient, auth: dict[str, str]) -> None:
    body = product_body("huge", *(f"H-{i}" for i in range(101)))
    response = client.post("/api/v1/products", json=body, headers=auth)
    assert response.status_code == 422
    big = product_body("huge", "H-1", description="x" * 1_100_000)
    assert client.post("/api/v1/products", json=big, headers=auth).status_code == 413


def test_duplicate_sku_and_barcode_are_409_and_write_nothing(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    body = product_body("one", "DUP-1")
    body["variants"][0]["barcode"] = EAN
    create_product(client, auth, "one", "DUP-1")
    before = len(events(db))
    response = client.post(
        "/api/v1/products", json=product_body("two", "NEW-1", "DUP-1"), headers=auth
    )
    assert response.status_code == 409
    problem = response.json()
    assert problem["code"] == "sku_taken"
    assert problem["errors"][0]["path"] == "body.variants.1.sku"
    same_request = client.post(
        "/api/v1/products", json=product_body("three", "X-1", "X-1"), headers=auth
    )
    assert same_request.json()["code"] == "sku_taken"
    coded = product_body("four", "Y-1")
    coded["variants"][0]["barcode"] = EAN
    assert client.post("/api/v1/products", json=coded, headers=auth).status_code == 201
    coded2 = product_body("five", "Z-1")
    coded2["variants"][0]["barcode"] = EAN
    response = client.post("/api/v1/products", json=coded2, headers=auth)
    assert response.status_code == 409
    assert response.json()["code"] == "barcode_taken"
    # The same GTIN written at 14 digits is the same barcode (and so is a repeat in one request).
    longer = product_body("six", "V-1")
    longer["variants"][0]["barcode"] = EAN.rjust(14, "0")
    response = client.post("/api/v1/products", json=longer, headers=auth)
    assert (response.status_code, response.json()["code"]) == (409, "barcode_taken")
    pair = product_body("seven", "P-1", "P-2")
    pair["variants"][0]["barcode"] = "036000291452"  # UPC-A
    pair["variants"][1]["barcode"] = "0036000291452"  # the same as EAN-13
    response = client.post("/api/v1/products", json=pair, headers=auth)
    assert response.json()["errors"][0]["path"] == "body.variants.1.barcode"
    handle = client.post("/api/v1/products", json=product_body("one", "W-1"), headers=auth)
    assert handle.json()["code"] == "product_handle_taken"
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Product)) == 2
    assert [e.type for e in events(db)[before:]] == [
        "product.created",
        "variant.created",
        "price.changed",
    ]


def test_patch_product_variant_and_prices(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    product = create_product(client, auth, "mug", "MUG-1")
    variant = product["variants"][0]
    url = f"/api/v1/products/{product['id']}"
    patched = client.patch(url, json={"status": "active", "title": "Big Mug"}, headers=auth).json()
    assert (patched["status"], patched["title"]) == ("active", "Big Mug")
    n = len(events(db))
    assert client.patch(url, json={"status": "active"}, headers=auth).status_code == 200
    assert len(events(db)) == n  # nothing changed, nothing emitted
    v = client.patch(
        f"/api/v1/variants/{variant['id']}",
        json={"barcode": EAN, "weight_grams": 300},
        headers=auth,
    )
    assert v.json()["barcode"] == EAN
    cleared = client.patch(
        f"/api/v1/variants/{variant['id']}", json={"barcode": None}, headers=auth
    )
    assert cleared.json()["barcode"] is None
    prices = client.put(
        f"/api/v1/variants/{variant['id']}/prices",
        json={"prices": {"USD": {"amount": 1500}, "EUR": None}},
        headers=auth,
    )
    assert prices.json()["prices"] == {"USD": {"amount": 1500, "compare_at": None}}
    last = events(db, "price.changed")[-1]
    assert last.payload["changed"] == ["EUR", "USD"]
    added = client.post(
        f"{url}/variants", json={"sku": "MUG-2", "options": {"size": "L"}}, headers=auth
    )
    assert added.status_code == 201
    taken = client.post(f"{url}/variants", json={"sku": "MUG-2"}, headers=auth)
    assert taken.status_code == 409
    assert taken.json()["code"] == "sku_taken"
    assert client.patch("/api/v1/variants/var_nope", json={}, headers=auth).status_code == 404


def test_cursor_pagination_and_filters(client: TestClient, auth: dict[str, str]) -> None:
    ids = [create_product(client, auth, f"p-{i}", f"P-{i}")["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/products", params=params, headers=auth).json()
        seen += [p["id"] for p in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    client.patch(f"/api/v1/products/{ids[2]}", json={"status": "active"}, headers=auth)
    active = client.get("/api/v1/products", params={"status": "active"}, headers=auth).json()
    assert [p["id"] for p in active["data"]] == [ids[2]]


def test_search_by_name_sku_and_barcode(client: TestClient, auth: dict[str, str]) -> None:
    body = product_body("crepe-pan", "PAN-28")
    body["title"] = "Crêpe Pan 28cm"
    body["variants"][0]["barcode"] = "036000291452"  # UPC-A
    client.post("/api/v1/products", json=body, headers=auth)
    create_product(client, auth, "kettle", "KET-1")

    def q(term: str) -> list[str]:
        page = client.get("/api/v1/products", params={"q": term}, headers=auth).json()
        return [p["handle"] for p in page["data"]]

    assert q("crepe") == ["crepe-pan"]
    assert q("PAN 28") == ["crepe-pan"]
    assert q("PAN-28") == ["crepe-pan"]
    assert q("036000291452") == ["crepe-pan"]
    assert q("%") == []  # LIKE wildcards are literal
    assert q("kett") == ["kettle"]
    lookup = client.get("/api/v1/variants/lookup", params={"code": "0036000291452"}, headers=auth)
    assert lookup.status_code == 200, lookup.text
    assert lookup.json()["matched"] == "barcode"
    assert lookup.json()["product"]["handle"] == "crepe-pan"
    by_sku = client.get("/api/v1/variants/lookup", params={"code": "KET-1"}, headers=auth).json()
    assert by_sku["matched"] == "sku"
    missing = client.get("/api/v1/variants/lookup", params={"code": "NOPE"}, headers=auth)
    assert missing.status_code == 404
    assert missing.json()["code"] == "variant_not_found"


def _channel(client: TestClient, auth: dict[str, str], handle: str) -> str:
    response = client.post(
        "/api/v1/channels", json={"kind": "web", "name": handle, "handle": handle}, headers=auth
    )
    return str(response.json()["id"])


def test_listings_collections_and_what_storefront_keys_see(
    client: TestClient, auth: dict[str, str], db: Database, make_key: Callable[..., str]
) -> None:
    web = _channel(client, auth, "web")
    shown = create_product(client, auth, "shown", "SH-1", status="active")
    draft = create_product(client, auth, "draft", "DR-1")
    unlisted = create_product(client, auth, "unlisted", "UN-1", status="active")
    for p in (shown, draft):
        r = client.put(
            f"/api/v1/products/{p['id']}/listings/{web}", json={"published": True}, headers=auth
        )
        assert r.status_code == 200
        assert r.json()["published_at"] is not None
    assert events(db, "listing.changed")[-1].payload["channel_id"] == web
    col = client.post(
        "/api/v1/collections", json={"title": "Summer", "handle": "summer"}, headers=auth
    ).json()
    assert col["id"].startswith("col_")
    assert (
        client.put(
            f"/api/v1/collections/{col['id']}/products/{shown['id']}", headers=auth
        ).status_code
        == 204
    )
    assert (
        client.put(
            f"/api/v1/collections/{col['id']}/products/{shown['id']}", headers=auth
        ).status_code
        == 204
    )
    in_col = client.get("/api/v1/products", params={"collection": col["id"]}, headers=auth).json()
    assert [p["id"] for p in in_col["data"]] == [shown["id"]]
    assert in_col["data"][0]["collection_ids"] == [col["id"]]
    on_web = client.get("/api/v1/products", params={"channel": web}, headers=auth).json()
    assert {p["id"] for p in on_web["data"]} == {shown["id"], draft["id"]}
    # Adding twice emitted once; a deleted collection leaves its products alone.
    assert [e.type for e in events(db, "collection.")] == [
        "collection.created",
        "collection.product_added",
    ]
    gone = client.post(
        "/api/v1/collections", json={"title": "Old", "handle": "old"}, headers=auth
    ).json()
    client.put(f"/api/v1/collections/{gone['id']}/products/{draft['id']}", headers=auth)
    assert client.delete(f"/api/v1/collections/{gone['id']}", headers=auth).status_code == 204
    assert client.get(f"/api/v1/collections/{gone['id']}", headers=auth).status_code == 404
    assert client.delete(f"/api/v1/collections/{gone['id']}", headers=auth).status_code == 404
    assert (
        client.get(f"/api/v1/products/{draft['id']}", headers=auth).json()["collection_ids"] == []
    )
    assert events(db, "collection.")[-1].type == "collection.deleted"

    pk = {"Authorization": f"Bearer {make_key(kind='publishable')}"}
    visible = client.get("/api/v1/products", headers=pk).json()
    assert [p["id"] for p in visible["data"]] == [shown["id"]]
    for hidden in (draft, unlisted):
        r = client.get(f"/api/v1/products/{hidden['id']}", headers=pk)
        assert r.status_code == 404
    assert (
        client.get("/api/v1/variants/lookup", params={"code": "DR-1"}, headers=pk).status_code
        == 404
    )
    assert (
        client.get("/api/v1/variants/lookup", params={"code": "SH-1"}, headers=pk).status_code
        == 200
    )
    export = client.get("/api/v1/catalog/export", headers=pk).text
    assert "SH-1" in export
    assert "DR-1" not in export
    assert (
        client.post("/api/v1/products", json=product_body("x", "X-9"), headers=pk).status_code
        == 403
    )
    # unpublish, then unlist
    client.put(
        f"/api/v1/products/{shown['id']}/listings/{web}", json={"published": False}, headers=auth
    )
    assert client.get("/api/v1/products", headers=pk).json()["data"] == []
    assert (
        client.delete(f"/api/v1/products/{shown['id']}/listings/{web}", headers=auth).status_code
        == 204
    )
    assert (
        client.delete(f"/api/v1/products/{shown['id']}/listings/{web}", headers=auth).status_code
        == 404
    )
    assert (
        client.put(
            f"/api/v1/products/{shown['id']}/listings/chn_nope", json={}, headers=auth
        ).status_code
        == 404
    )


def test_concurrent_creation_of_one_sku_gives_one_201(
    live_server: str, auth: dict[str, str], db: Database
) -> None:
    def attempt(i: int) -> int:
        body = product_body(f"race-{i}", "RACE-SKU")
        with httpx.Client(base_url=live_server, timeout=30) as http:
            return http.post("/api/v1/products", json=body, headers=auth).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(attempt, range(16)))
    assert sorted(statuses) == [201] + [409] * 15, statuses
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Variant)) == 1
        assert session.scalar(select(func.count()).select_from(Product)) == 1


def test_postgres_has_the_trigram_index_for_name_search(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite has no trigram index")
    from sqlalchemy import text

    with db.engine.connect() as conn:
        indexdef = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_products_search_text_trgm'")
        ).scalar()
    assert indexdef is not None
    assert "gin_trgm_ops" in indexdef
