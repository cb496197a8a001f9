"""Rules of tax rates, tax settings and shipping rates.

As with promotions, every write is judged by the engine's own dataclasses (``TaxRate``,
``ShippingRate``), so what the API stores is exactly what checkout can price.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.db.lookup import get_or_404
from seamline.db.pagination import keyset_page
from seamline.events.outbox import emit
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, ServiceBusy
from seamline.kit.ids import new_id
from seamline.pricing import loader
from seamline.pricing.common import PricingInputError
from seamline.pricing.models import ShippingRate, TaxRate, TaxSettings
from seamline.pricing.schemas import (
    ShippingRateCreate,
    ShippingRateUpdate,
    TaxRateCreate,
    TaxSettingsIn,
    TaxSettingsOut,
)
from seamline.pricing.service import engine_errors, require_brand_wide
from seamline.pricing.tax import TaxRate as EngineTaxRate

# -- tax rates -------------------------------------------------------------------------------


def _tax_snapshot(rate: TaxRate) -> dict[str, Any]:
    return {
        "id": rate.id,
        "country": rate.country,
        "region": rate.region,
        "rate": rate.rate,
        "name": rate.name,
        "combinable": rate.combinable,
    }


def _tax_changed(session: Session, change: str, aggregate_id: str, payload: dict[str, Any]) -> None:
    """One event type for every tax change: consumers re-read the configuration anyway."""
    emit(
        session,
        "tax.changed",
        aggregate_type="tax",
        aggregate_id=aggregate_id,
        payload={"change": change, **payload},
    )


def _rate_taken(data: TaxRateCreate) -> Conflict:
    where = data.country + (f"-{data.region}" if data.region else "")
    return Conflict(
        f"a tax rate named {data.name!r} exists for {where}",
        code="tax_rate_taken",
        errors=[FieldError("body.name", "already used in this country and region", "taken")],
    )


def create_tax_rate(
    session: Session, data: TaxRateCreate, *, caller: Caller | None = None
) -> TaxRate:
    """Add a rate; (country, region, name) is unique, a whole-country rate included."""
    require_brand_wide(caller)
    try:
        EngineTaxRate(
            country=data.country,
            region=data.region,
            rate=data.rate,
            name=data.name,
            combinable=data.combinable,
        )
    except PricingInputError as exc:
        raise engine_errors(exc, "tax_rate.", {}) from exc
    region = TaxRate.region.is_(None) if data.region is None else TaxRate.region == data.region
    same = select(TaxRate.id).where(
        TaxRate.country == data.country, region, TaxRate.name == data.name
    )
    if session.scalar(same) is not None:
        raise _rate_taken(data)
    now = clock.now()
    rate = TaxRate(
        id=new_id("txr"),
        country=data.country,
        region=data.region,
        rate=data.rate,
        name=data.name,
        combinable=data.combinable,
        created_at=now,
        updated_at=now,
    )
    session.add(rate)
    try:
        session.flush()
    except IntegrityError as exc:
        raise _rate_taken(data) from exc
    _tax_changed(session, "rate_created", rate.id, _tax_snapshot(rate))
    return rate


def list_tax_rates(
    session: Session,
    *,
    country: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[TaxRate], str | None]:
    stmt = select(TaxRate)
    if country is not None:
        stmt = stmt.where(TaxRate.country == country)
    return keyset_page(session, stmt, TaxRate.id, after=cursor or None, limit=limit)


def delete_tax_rate(session: Session, rate_id: str, *, caller: Caller | None = None) -> None:
    """Remove a rate. Orders keep the taxes they were charged (copied when placed)."""
    require_brand_wide(caller)
    rate = get_or_404(
        session, TaxRate, rate_id, what="tax rate", code="tax_rate_not_found", for_update=True
    )
    snapshot = _tax_snapshot(rate)
    session.delete(rate)
    session.flush()
    _tax_changed(session, "rate_deleted", rate_id, snapshot)


def get_tax_settings(session: Session) -> TaxSettingsOut:
    """The brand's settings; before any PUT, the defaults the loader prices with."""
    row = session.get(TaxSettings, 1)
    if row is None:
        return TaxSettingsOut(prices_include_tax=False, tax_shipping=True, updated_at=None)
    return TaxSettingsOut(
        prices_include_tax=row.prices_include_tax,
        tax_shipping=row.tax_shipping,
        updated_at=row.updated_at,
    )


def put_tax_settings(
    session: Session, data: TaxSettingsIn, *, caller: Caller | None = None
) -> TaxSettingsOut:
    """Replace the settings (one row, created on first use). No change writes nothing."""
    require_brand_wide(caller)
    row = session.get(TaxSettings, 1, with_for_update=True)
    if row is None:
        row = TaxSettings(id=1, prices_include_tax=False, tax_shipping=True)
        session.add(row)
    elif (row.prices_include_tax, row.tax_shipping) == (
        data.prices_include_tax,
        data.tax_shipping,
    ):
        return get_tax_settings(session)
    row.prices_include_tax = data.prices_include_tax
    row.tax_shipping = data.tax_shipping
    row.updated_at = clock.now()
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent first PUT created the row meanwhile
        raise ServiceBusy(
            "the tax settings changed meanwhile; retry", headers={"Retry-After": "1"}
        ) from exc
    _tax_changed(
        session,
        "settings",
        "settings",
        {"prices_include_tax": row.prices_include_tax, "tax_shipping": row.tax_shipping},
    )
    return get_tax_settings(session)


# -- shipping rates --------------------------------------------------------------------------


def _shipping_snapshot(rate: ShippingRate) -> dict[str, Any]:
    return {
        "id": rate.id,
        "name": rate.name,
        "currency": rate.currency,
        "kind": rate.kind,
        "price": rate.price,
        "bands": [list(b) for b in rate.bands],
        "free_over": rate.free_over,
        "countries": rate.countries,
        "active": rate.active,
    }


def _validate_shipping(rate: ShippingRate) -> None:
    try:
        loader.shipping_rate(rate)
    except PricingInputError as exc:
        raise engine_errors(exc, "shipping_rate.", {}) from exc


def _emit_shipping(session: Session, event_type: str, rate: ShippingRate) -> None:
    emit(
        session,
        event_type,
        aggregate_type="shipping_rate",
        aggregate_id=rate.id,
        payload=_shipping_snapshot(rate),
    )


def create_shipping_rate(
    session: Session, data: ShippingRateCreate, *, caller: Caller | None = None
) -> ShippingRate:
    """Add a rate: flat, by weight band (strictly increasing ``max_grams``) or free over."""
    require_brand_wide(caller)
    now = clock.now()
    rate = ShippingRate(
        id=new_id("shr"),
        name=data.name,
        currency=data.currency,
        kind=data.kind,
        price=data.price,
        bands=[[b.max_grams, b.price] for b in data.bands],
        free_over=data.free_over,
        countries=None if data.countries is None else sorted(set(data.countries)),
        active=data.active,
        created_at=now,
        updated_at=now,
    )
    _validate_shipping(rate)
    session.add(rate)
    session.flush()
    _emit_shipping(session, "shipping_rate.created", rate)
    return rate


def _find_shipping(session: Session, rate_id: str, *, for_update: bool = False) -> ShippingRate:
    return get_or_404(
        session,
        ShippingRate,
        rate_id,
        what="shipping rate",
        code="shipping_rate_not_found",
        for_update=for_update,
    )


def get_shipping_rate(session: Session, rate_id: str) -> ShippingRate:
    return _find_shipping(session, rate_id)


def list_shipping_rates(
    session: Session,
    *,
    active: bool | None = None,
    currency: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[ShippingRate], str | None]:
    stmt = select(ShippingRate)
    if active is not None:
        stmt = stmt.where(ShippingRate.active == active)
    if currency is not None:
        stmt = stmt.where(ShippingRate.currency == currency)
    return keyset_page(session, stmt, ShippingRate.id, after=cursor or None, limit=limit)


_SHIPPING_NULLABLE = frozenset({"free_over", "countries"})


def update_shipping_rate(
    session: Session, rate_id: str, data: ShippingRateUpdate, *, caller: Caller | None = None
) -> ShippingRate:
    """Change the fields sent (``null`` clears ``free_over`` and ``countries``); the result
    must still be a valid rate of its kind. A request that changes nothing writes nothing."""
    require_brand_wide(caller)
    rate = _find_shipping(session, rate_id, for_update=True)
    changes: dict[str, Any] = {}
    for field, value in data.model_dump(exclude_unset=True).items():
        if value is None and field not in _SHIPPING_NULLABLE:
            continue
        if field == "bands":
            value = [[b["max_grams"], b["price"]] for b in value]
        elif field == "countries" and value is not None:
            value = sorted(set(value))
        if getattr(rate, field) != value:
            changes[field] = value
    if not changes:
        return rate
    for field, value in changes.items():
        setattr(rate, field, value)
    _validate_shipping(rate)
    rate.updated_at = clock.now()
    session.flush()
    _emit_shipping(session, "shipping_rate.updated", rate)
    return rate


def deactivate_shipping_rate(
    session: Session, rate_id: str, *, caller: Caller | None = None
) -> ShippingRate:
    """Stop offering a rate (carts that chose it are asked to choose again). Idempotent."""
    return update_shipping_rate(session, rate_id, ShippingRateUpdate(active=False), caller=caller)
