"""Shared helpers for the stock and reservation tests."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from seamline.db.engine import Database
from seamline.inventory import buckets
from tests.catalog_helpers import create_product


def level(db: Database, loc: str, var: str) -> tuple[int, int]:
    """(on_hand, reserved) of a location, summed over its buckets."""
    with db.transaction(readonly=True) as session:
        t = buckets.totals(session, loc, var)
        return t.on_hand, t.reserved


def make_location(
    client: TestClient, auth: dict[str, str], handle: str = "main", **extra: Any
) -> str:
    body = {
        "kind": "warehouse",
        "name": handle.title(),
        "handle": handle,
        "country": "DE",
        "time_zone": "Europe/Berlin",
        **extra,
    }
    r = client.post("/api/v1/locations", json=body, headers=auth)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def make_variant(client: TestClient, auth: dict[str, str], handle: str = "tee") -> str:
    product = create_product(client, auth, handle)
    return str(product["variants"][0]["id"])


def receive(
    client: TestClient, auth: dict[str, str], loc: str, var: str, quantity: int
) -> dict[str, Any]:
    r = client.post(
        "/api/v1/stock/receipts",
        json={"location_id": loc, "variant_id": var, "quantity": quantity},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def reserve(
    client: TestClient,
    auth: dict[str, str],
    lines: list[tuple[str, str, int, str]],
    ttl: int | None = None,
) -> Any:
    body: dict[str, Any] = {
        "lines": [
            {"location_id": loc, "variant_id": var, "quantity": q, "reference": ref}
            for loc, var, q, ref in lines
        ]
    }
    if ttl is not None:
        body["ttl_seconds"] = ttl
    return client.post("/api/v1/reservations", json=body, headers=auth)


def make_channel(client: TestClient, auth: dict[str, str], handle: str, kind: str = "web") -> str:
    r = client.post(
        "/api/v1/channels",
        json={"kind": kind, "name": handle.title(), "handle": handle},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])
