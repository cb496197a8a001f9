"""Carts and saved lists.

A cart belongs to a profile or to an anonymous id, remembers the channel it began on, and has a
share code people can read aloud (``K7Q-M2P``) so an associate or an advisor can open it. Prices
are never stored on a cart: every read prices it anew on the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from seamline.db.base import Base, JSONDoc, Timestamped, one_of
from seamline.kit import clock

CART_STATUSES = ("open", "checking_out", "completed", "merged", "abandoned")
FULFILMENTS = ("ship", "pickup")
MAX_LINE_QUANTITY = 999


class Cart(Timestamped, Base):
    __tablename__ = "carts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    share_code: Mapped[str] = mapped_column(String(7), unique=True)
    profile_id: Mapped[str | None] = mapped_column(ForeignKey("profiles.id"))
    anonymous_id: Mapped[str | None] = mapped_column(String(255))
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default="open")
    email: Mapped[str | None] = mapped_column(String(320))
    # {"name", "line1", "line2", "city", "region", "postcode", "country", "phone"}
    shipping_address: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, nullable=True)
    shipping_rate_id: Mapped[str | None] = mapped_column(String(40))
    codes: Mapped[list[str]] = mapped_column(default=list)  # discount codes as entered
    merged_into_id: Mapped[str | None] = mapped_column(String(40))
    order_id: Mapped[str | None] = mapped_column(String(40))
    # Bumped on every change, so a device can tell its copy is stale (ETag / If-Match).
    version: Mapped[int] = mapped_column(default=1)
    updated_by: Mapped[str | None] = mapped_column(String(40))  # API key id of the last change

    __table_args__ = (
        CheckConstraint(one_of("status", CART_STATUSES), name="status_known"),
        CheckConstraint("profile_id IS NOT NULL OR anonymous_id IS NOT NULL", name="has_owner"),
        # One open cart per recognised customer: the same cart on every device.
        Index(
            "uq_carts_open_profile",
            "profile_id",
            unique=True,
            sqlite_where=text("status = 'open' AND profile_id IS NOT NULL"),
            postgresql_where=text("status = 'open' AND profile_id IS NOT NULL"),
        ),
        Index("ix_carts_anonymous", "anonymous_id", "status"),
    )


class CartLine(Timestamped, Base):
    __tablename__ = "cart_lines"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    cart_id: Mapped[str] = mapped_column(ForeignKey("carts.id", ondelete="CASCADE"), index=True)
    variant_id: Mapped[str] = mapped_column(ForeignKey("variants.id"))
    quantity: Mapped[int]
    fulfilment: Mapped[str] = mapped_column(String(10), default="ship")
    pickup_location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"))
    added_by: Mapped[str | None] = mapped_column(String(40))  # API key id

    __table_args__ = (
        CheckConstraint(f"quantity > 0 AND quantity <= {MAX_LINE_QUANTITY}", name="quantity_range"),
        CheckConstraint(one_of("fulfilment", FULFILMENTS), name="fulfilment_known"),
        CheckConstraint(
            "(fulfilment = 'pickup') = (pickup_location_id IS NOT NULL)", name="pickup_has_store"
        ),
    )


class SavedList(Timestamped, Base):
    """A wishlist or shopping list: follows its owner, shareable by code, built by scanning."""

    __tablename__ = "saved_lists"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    share_code: Mapped[str] = mapped_column(String(7), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    profile_id: Mapped[str | None] = mapped_column(ForeignKey("profiles.id"), index=True)
    anonymous_id: Mapped[str | None] = mapped_column(String(255), index=True)
    channel_id: Mapped[str | None] = mapped_column(ForeignKey("channels.id"))

    __table_args__ = (
        CheckConstraint("profile_id IS NOT NULL OR anonymous_id IS NOT NULL", name="has_owner"),
    )


class SavedListItem(Base):
    __tablename__ = "saved_list_items"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    list_id: Mapped[str] = mapped_column(ForeignKey("saved_lists.id", ondelete="CASCADE"))
    variant_id: Mapped[str] = mapped_column(ForeignKey("variants.id"))
    quantity: Mapped[int] = mapped_column(default=1)
    note: Mapped[str] = mapped_column(String(500), default="")
    added_via: Mapped[str] = mapped_column(String(20), default="api")  # api | scan
    added_at: Mapped[datetime] = mapped_column(default=clock.now)

    __table_args__ = (
        UniqueConstraint("list_id", "variant_id"),
        CheckConstraint(f"quantity > 0 AND quantity <= {MAX_LINE_QUANTITY}", name="quantity_range"),
    )
