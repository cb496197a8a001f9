"""Pricing configuration written straight to its tables (the pricing API is built elsewhere)."""

from __future__ import annotations

from typing import Any

from seamline.db.engine import Database
from seamline.kit.ids import new_id
from seamline.pricing import models
from seamline.pricing.loader import code_key


def promotion(db: Database, *, code: str | None, value: int, **extra: Any) -> str:
    with db.transaction() as session:
        row = models.Promotion(
            id=new_id("promo"),
            name=code or "automatic",
            code=code,
            code_key=code_key(code) if code else None,
            kind=extra.pop("kind", "percentage"),
            value=value,
            applies_to="all",
            target_ids=[],
            min_subtotal=0,
            active=True,
            **extra,
        )
        session.add(row)
        return row.id


def shipping_rate(
    db: Database, name: str, *, currency: str = "EUR", kind: str = "flat", **extra: Any
) -> str:
    with db.transaction() as session:
        row = models.ShippingRate(
            id=new_id("shr"),
            name=name,
            currency=currency,
            kind=kind,
            price=extra.pop("price", 0),
            bands=extra.pop("bands", []),
            active=True,
            **extra,
        )
        session.add(row)
        return row.id


def tax_rate(db: Database, country: str, rate: int) -> str:
    with db.transaction() as session:
        row = models.TaxRate(id=new_id("txr"), country=country, rate=rate, name=f"VAT {country}")
        session.add(row)
        return row.id
