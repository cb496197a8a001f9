"""The pricing tables turned into the engine's frozen inputs — the one way carts, checkout and
orders read promotions, tax and shipping, so a cart and its order are priced alike."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from seamline.db.config_cache import ConfigCache
from seamline.pricing import models
from seamline.pricing.promotions import Promotion, normalize_code
from seamline.pricing.shipping import ShippingRate
from seamline.pricing.tax import TaxConfig, TaxRate


def code_key(code: str) -> str:
    """The stored, unique form of a code: what the engine compares (``normalize_code``)."""
    return normalize_code(code)


def to_engine(row: models.Promotion) -> Promotion:
    return Promotion(
        id=row.id,
        kind=row.kind,  # type: ignore[arg-type]  # CHECK constraint keeps it a known kind
        value=row.value,
        code=row.code,
        applies_to=row.applies_to,  # type: ignore[arg-type]
        target_ids=frozenset(row.target_ids),
        min_subtotal=row.min_subtotal,
        currency=row.currency,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        channels=None if row.channel_ids is None else frozenset(row.channel_ids),
        profile_id=row.profile_id,
        usage_limit=row.usage_limit,
        usage_limit_per_profile=row.usage_limit_per_profile,
    )


def promotion_rows(
    session: Session, *, currency: str, codes: Iterable[str], now: datetime
) -> list[models.Promotion]:
    """Active automatic promotions and the promotions of the codes entered, in ``currency``
    (or currency-free). Dates, channels, owners and limits are judged by the engine and by
    ``exhausted``; a code that matches nothing is left for the engine to call unknown."""
    keys = sorted({code_key(c) for c in codes})
    who: ColumnElement[bool] = models.Promotion.code_key.is_(None)
    if keys:
        who = or_(who, models.Promotion.code_key.in_(keys))
    rows = session.scalars(
        select(models.Promotion)
        .where(
            models.Promotion.active.is_(True),
            who,
            or_(models.Promotion.currency.is_(None), models.Promotion.currency == currency),
            # An expired automatic promotion is simply absent; an expired *code* still goes
            # to the engine, which reports it as ``expired`` rather than ``unknown_code``.
            or_(
                models.Promotion.code_key.is_not(None),
                models.Promotion.ends_at.is_(None),
                models.Promotion.ends_at > now,
            ),
        )
        .order_by(models.Promotion.id)
    )
    return list(rows)


def exhausted(row: models.Promotion) -> bool:
    """Every use the limit allows is taken (held by a checkout that is paying, or used)."""
    return row.usage_limit is not None and row.used_count >= row.usage_limit


def tax_config(session: Session) -> TaxConfig:
    settings = session.get(models.TaxSettings, 1)
    rates = session.scalars(select(models.TaxRate).order_by(models.TaxRate.id))
    return TaxConfig(
        prices_include_tax=bool(settings and settings.prices_include_tax),
        rates=tuple(
            TaxRate(
                country=r.country,
                region=r.region,
                rate=r.rate,
                name=r.name,
                combinable=r.combinable,
            )
            for r in rates
        ),
        tax_shipping=True if settings is None else settings.tax_shipping,
    )


def shipping_rate(row: models.ShippingRate) -> ShippingRate:
    return ShippingRate(
        id=row.id,
        name=row.name,
        currency=row.currency,
        kind=row.kind,  # type: ignore[arg-type]
        price=row.price,
        bands=tuple((int(b[0]), int(b[1])) for b in row.bands),
        free_over=row.free_over,
        countries=None if row.countries is None else frozenset(row.countries),
    )


def shipping_rates(session: Session, *, currency: str) -> list[ShippingRate]:
    rows = session.scalars(
        select(models.ShippingRate)
        .where(models.ShippingRate.active.is_(True), models.ShippingRate.currency == currency)
        .order_by(models.ShippingRate.price, models.ShippingRate.id)
    )
    return [shipping_rate(r) for r in rows]


# -- the configuration, cached per process -----------------------------------------------------
#
# Tax settings, tax rates and shipping rates change rarely and are read by every cart view and
# checkout: each process keeps what it read for ``CONFIG_SECONDS`` (``db/config_cache.py``).
# Promotions are never cached: their usage counts change with every checkout.

CONFIG_SECONDS = 2.0
_cache = ConfigCache(
    "pricing", (models.TaxSettings, models.TaxRate, models.ShippingRate), seconds=CONFIG_SECONDS
)


def forget_config(session: Session) -> None:
    """Drop this process's cached configuration for the session's database."""
    _cache.forget(session)


def cached_tax_config(session: Session) -> TaxConfig:
    """``tax_config``, from this process's cache when fresh."""
    return _cache.get(session, ("tax", ""), lambda: tax_config(session))


def cached_shipping_rate(session: Session, rate_id: str) -> tuple[bool, str, ShippingRate] | None:
    """The rate ``rate_id`` as (active, currency, engine rate), or None if there is none;
    from this process's cache when fresh."""

    def load() -> tuple[bool, str, ShippingRate] | None:
        row = session.get(models.ShippingRate, rate_id)
        return None if row is None else (row.active, row.currency, shipping_rate(row))

    return _cache.get(session, ("shipping_rate", rate_id), load)
