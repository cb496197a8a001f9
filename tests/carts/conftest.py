"""Fixtures for the cart tests: a shop (a web channel, products listed on it with EUR prices, a
pick-up store with stock), storefront and staff keys, and small helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seamline.db.engine import Database
from seamline.runtime import Runtime
from tests.catalog_helpers import events
from tests.stock_helpers import make_channel, make_location, receive

Headers = dict[str, str]


@dataclass
class Shop:
    channel: str
    variants: dict[str, str]  # SKU → variant id
    barcodes: dict[str, str]  # SKU → barcode
    store: str
    warehouse: str


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def pk(make_key: Callable[..., str]) -> Headers:
    """A storefront (publishable) key."""
    return bearer(make_key(kind="publishable", name="storefront"))


@pytest.fixture
def shop(client: TestClient, auth: Headers) -> Shop:
    channel = make_channel(client, auth, "web")
    variants: dict[str, str] = {}
    barcodes = {"KB-16": "4006381333931", "MAT-1": "96385074", "BAND-1": "036000291452"}
    for handle, sku, amount, grams in (
        ("kettlebell", "KB-16", 4999, 16000),
        ("yoga-mat", "MAT-1", 2500, 1200),
        ("band", "BAND-1", 999, 100),
    ):
        body = {
            "title": handle.replace("-", " ").title(),
            "handle": handle,
            "status": "active",
            "variants": [
                {
                    "sku": sku,
                    "barcode": barcodes[sku],
                    "weight_grams": grams,
                    "prices": {"EUR": {"amount": amount}},
                }
            ],
        }
        r = client.post("/api/v1/products", json=body, headers=auth)
        assert r.status_code == 201, r.text
        product = r.json()
        variants[sku] = product["variants"][0]["id"]
        listed = client.put(
            f"/api/v1/products/{product['id']}/listings/{channel}",
            json={"published": True},
            headers=auth,
        )
        assert listed.status_code == 200, listed.text
    store = make_location(
        client, auth, "mitte", kind="store", pickup=True, city="Berlin", postcode="10115"
    )
    warehouse = make_location(client, auth, "central", ships=True)
    receive(client, auth, store, variants["KB-16"], 2)
    receive(client, auth, store, variants["MAT-1"], 5)
    receive(client, auth, warehouse, variants["KB-16"], 50)
    return Shop(channel, variants, barcodes, store, warehouse)


def new_cart(client: TestClient, headers: Headers, shop: Shop, **body: Any) -> dict[str, Any]:
    payload = {"channel_id": shop.channel, "currency": "EUR", **body}
    if "anonymous_id" not in payload and "profile_id" not in payload:
        payload["anonymous_id"] = "device-a"
    r = client.post("/api/v1/carts", json=payload, headers=headers)
    assert r.status_code in (200, 201), r.text
    cart: dict[str, Any] = r.json()
    return cart


def add(
    client: TestClient,
    headers: Headers,
    cart_id: str,
    variant_id: str,
    quantity: int = 1,
    **kw: Any,
) -> Any:
    body = {"variant_id": variant_id, "quantity": quantity, **kw}
    return client.post(f"/api/v1/carts/{cart_id}/lines", json=body, headers=headers)


def get(client: TestClient, headers: Headers, cart_id: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/carts/{cart_id}", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def quantities(cart: dict[str, Any]) -> dict[str, int]:
    return {line["sku"]: line["quantity"] for line in cart["lines"]}


def cart_events(db: Database, cart_id: str | None = None) -> list[Any]:
    found = events(db, "cart.")
    return [e for e in found if cart_id is None or e.aggregate_id == cart_id]


def drain(runtime: Runtime) -> None:
    runtime.worker().drain()
