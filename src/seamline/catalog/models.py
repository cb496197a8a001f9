"""Catalog tables: products, variants (SKU, barcode), prices, channel listings, collections."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from seamline.db.base import Base, Timestamped

PRODUCT_STATUSES = ("draft", "active", "archived")


class Product(Timestamped, Base):
    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    handle: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), index=True)
    tags: Mapped[list[str]] = mapped_column(default=list)
    media: Mapped[list[str]] = mapped_column(default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Lower-case, accent-free title, handle and tags: what name search matches against.
    search_text: Mapped[str] = mapped_column(String(1200), index=True)

    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in PRODUCT_STATUSES) + ")",
            name="status_known",
        ),
    )


class Variant(Timestamped, Base):
    __tablename__ = "variants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    # Unique when present (NULLs never collide on either backend).
    barcode: Mapped[str | None] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    weight_grams: Mapped[int | None] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        CheckConstraint("weight_grams IS NULL OR weight_grams >= 0", name="weight_not_negative"),
    )


class Price(Base):
    """One price per variant and currency, used on every channel (price lists may come later)."""

    __tablename__ = "prices"

    variant_id: Mapped[str] = mapped_column(ForeignKey("variants.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    compare_at: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("compare_at IS NULL OR compare_at >= 0", name="compare_at_not_negative"),
    )


class Listing(Base):
    """Whether a channel sells a product: published or not, and since when."""

    __tablename__ = "listings"

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), primary_key=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), primary_key=True)
    published: Mapped[bool] = mapped_column(default=False)
    published_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_listings_channel_product", "channel_id", "product_id"),)


class Collection(Timestamped, Base):
    __tablename__ = "collections"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    handle: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300))


class CollectionProduct(Base):
    __tablename__ = "collection_products"

    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), primary_key=True)
    added_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("product_id", "collection_id"),  # "which collections is it in"
    )
