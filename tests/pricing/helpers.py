"""Shared helpers for the pricing configuration tests."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.identity.models import Profile
from seamline.kit import clock
from seamline.kit.ids import new_id
from seamline.pricing.loader import code_key
from seamline.pricing.models import Promotion

PROMOTIONS = "/api/v1/promotions"
TAX_RATES = "/api/v1/tax-rates"
TAX_SETTINGS = "/api/v1/tax-settings"
SHIPPING_RATES = "/api/v1/shipping-rates"


def make_profile(db: Database, cluster_id: str | None = None) -> str:
    """A profile row (its own cluster unless ``cluster_id`` names another's)."""
    profile_id = new_id("prf")
    with db.transaction() as session:
        session.add(Profile(id=profile_id, cluster_id=cluster_id or profile_id))
    return profile_id


def promotion(client: TestClient, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"name": "Summer", "kind": "percentage", "value": 1000, **fields}
    response = client.post(PROMOTIONS, json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def event_types(db: Database, prefix: str) -> list[str]:
    with db.transaction(readonly=True) as session:
        rows = session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq))
        return [r.type for r in rows if r.type.startswith(prefix)]


def events_of(db: Database, event_type: str) -> list[dict[str, Any]]:
    with db.transaction(readonly=True) as session:
        rows = session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == event_type).order_by(OutboxEvent.seq)
        )
        return [dict(r.payload) for r in rows]


def paths(response: Any) -> list[str]:
    return [e["path"] for e in response.json().get("errors", [])]


def make_promotion(db: Database, **fields: Any) -> str:
    """A promotion row written directly (10 % off everything unless ``fields`` say more)."""
    promotion_id = new_id("promo")
    code = fields.pop("code", None)
    now = clock.now()
    with db.transaction() as session:
        values: dict[str, Any] = {
            "id": promotion_id,
            "name": "Test",
            "code": code,
            "code_key": code_key(code) if code else None,
            "kind": "percentage",
            "value": 1000,
            "applies_to": "all",
            "target_ids": [],
            "min_subtotal": 0,
            "used_count": 0,
            "active": True,
            "created_at": now,
            "updated_at": now,
        }
        session.add(Promotion(**{**values, **fields}))
    return promotion_id
