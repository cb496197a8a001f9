"""Pricing configuration: promotions and their usage, tax rates, shipping rates.

The calculation itself is pure (engine.py and friends); these tables are what it is fed with.
Money is integer minor units with a currency; rates are basis points (1500 = 15%).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from seamline.db.base import Base, JSONDoc, Timestamped, one_of
from seamline.kit import clock

PROMOTION_KINDS = ("percentage", "fixed_amount", "free_shipping")
PROMOTION_TARGETS = ("all", "products", "collections")
USAGE_STATUSES = ("held", "used", "released")
SHIPPING_KINDS = ("flat", "weight_band", "free_over")


class Promotion(Timestamped, Base):
    """A discount: automatic (no code) or entered as a code, on every channel unless limited."""

    __tablename__ = "promotions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Stored as typed, matched folded (``normalize_code``: trimmed, case-folded): ``code_key``
    # is unique.
    code: Mapped[str | None] = mapped_column(String(64))
    code_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[int] = mapped_column(default=0)  # basis points or minor units
    applies_to: Mapped[str] = mapped_column(String(20), default="all")
    target_ids: Mapped[list[str]] = mapped_column(default=list)
    min_subtotal: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str | None] = mapped_column(String(3))
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    channel_ids: Mapped[list[str] | None] = mapped_column(JSONDoc, nullable=True)
    profile_id: Mapped[str | None] = mapped_column(ForeignKey("profiles.id"), index=True)
    usage_limit: Mapped[int | None]
    usage_limit_per_profile: Mapped[int | None]
    # Units of the limit taken by held or used checkouts (conditional UPDATE keeps it honest).
    used_count: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        CheckConstraint(one_of("kind", PROMOTION_KINDS), name="kind_known"),
        CheckConstraint(one_of("applies_to", PROMOTION_TARGETS), name="target_known"),
        CheckConstraint("value >= 0 AND min_subtotal >= 0", name="amounts_positive"),
        CheckConstraint(
            "usage_limit IS NULL OR (used_count <= usage_limit)", name="within_usage_limit"
        ),
        CheckConstraint("used_count >= 0", name="used_count_positive"),
    )


class PromotionUsage(Base):
    """One checkout's use of a promotion: held while it pays, then used or released."""

    __tablename__ = "promotion_usages"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    promotion_id: Mapped[str] = mapped_column(ForeignKey("promotions.id"))
    checkout_id: Mapped[str] = mapped_column(String(40))
    profile_id: Mapped[str | None] = mapped_column(String(40))
    order_id: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(12), default="held")
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)

    __table_args__ = (
        UniqueConstraint("promotion_id", "checkout_id"),
        CheckConstraint(one_of("status", USAGE_STATUSES), name="status_known"),
        Index("ix_promotion_usages_profile", "promotion_id", "profile_id"),
    )


class TaxRate(Timestamped, Base):
    """A rate for a country, or a region of it (replacing the country rate unless combinable)."""

    __tablename__ = "tax_rates"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    country: Mapped[str] = mapped_column(String(2))
    region: Mapped[str | None] = mapped_column(String(100))
    rate: Mapped[int]  # basis points
    name: Mapped[str] = mapped_column(String(100))
    combinable: Mapped[bool] = mapped_column(default=False)

    __table_args__ = (
        UniqueConstraint("country", "region", "name"),
        CheckConstraint("rate >= 0 AND rate <= 10000", name="rate_range"),
    )


class TaxSettings(Base):
    """Brand-wide: are catalogue prices tax-inclusive, and is shipping taxed (one row)."""

    __tablename__ = "tax_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    prices_include_tax: Mapped[bool] = mapped_column(default=False)
    tax_shipping: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class ShippingRate(Timestamped, Base):
    """A way to ship a fulfilment group: flat, by weight band, or free over a threshold."""

    __tablename__ = "shipping_rates"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(20))
    price: Mapped[int] = mapped_column(default=0)
    # [[max_grams, price], ...] ascending, for weight bands.
    bands: Mapped[list[Any]] = mapped_column(JSONDoc, default=list)
    free_over: Mapped[int | None]
    countries: Mapped[list[str] | None] = mapped_column(JSONDoc, nullable=True)  # None: everywhere
    active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        CheckConstraint(one_of("kind", SHIPPING_KINDS), name="kind_known"),
        CheckConstraint("price >= 0", name="price_positive"),
    )
