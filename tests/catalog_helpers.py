"""Shared helpers for the catalog tests."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.events.models import OutboxEvent


def product_body(handle: str, *skus: str, **extra: Any) -> dict[str, Any]:
    variants = [
        {"sku": sku, "options": {"size": f"S{i}"}, "prices": {"EUR": {"amount": 1999}}}
        for i, sku in enumerate(skus or (f"{handle.upper()}-1",))
    ]
    return {
        "title": handle.replace("-", " ").title(),
        "handle": handle,
        "variants": variants,
        **extra,
    }


def create_product(
    client: TestClient, auth: dict[str, str], handle: str, *skus: str, **extra: Any
) -> dict[str, Any]:
    response = client.post(
        "/api/v1/products", json=product_body(handle, *skus, **extra), headers=auth
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def events(db: Database, prefix: str = "") -> list[OutboxEvent]:
    with db.transaction(readonly=True) as session:
        rows = list(session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq)))
        session.expunge_all()
    return [e for e in rows if e.type.startswith(prefix)]
