"""Locations: the warehouses and stores that hold stock (stock tables build on these ids)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Float, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from seamline.db.base import Base, BigIntPK, Timestamped
from seamline.kit import clock

LOCATION_KINDS = ("warehouse", "store")


class Location(Timestamped, Base):
    __tablename__ = "locations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(200))
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    address_line1: Mapped[str] = mapped_column(String(200), default="")
    address_line2: Mapped[str] = mapped_column(String(200), default="")
    city: Mapped[str] = mapped_column(String(100), default="")
    region: Mapped[str] = mapped_column(String(100), default="")
    postcode: Mapped[str] = mapped_column(String(20), default="")
    country: Mapped[str] = mapped_column(String(2))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    time_zone: Mapped[str] = mapped_column(String(64))
    # {"mon": [{"open": "09:00", "close": "18:00"}], ...}: local times in ``time_zone``.
    opening_hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ships: Mapped[bool] = mapped_column(default=False)
    pickup: Mapped[bool] = mapped_column(default=False)
    returns: Mapped[bool] = mapped_column(default=False)
    sells_in_person: Mapped[bool] = mapped_column(default=False)
    # The store channel that sells here (kept in step with channels.location_id).
    channel_id: Mapped[str | None] = mapped_column(ForeignKey("channels.id"), unique=True)
    active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        CheckConstraint(
            "kind IN (" + ", ".join(f"'{k}'" for k in LOCATION_KINDS) + ")", name="kind_known"
        ),
        CheckConstraint("latitude IS NULL OR (latitude BETWEEN -90 AND 90)", name="latitude_range"),
        CheckConstraint(
            "longitude IS NULL OR (longitude BETWEEN -180 AND 180)", name="longitude_range"
        ),
    )


MOVEMENT_KINDS = (
    "receipt",
    "sale",
    "return",
    "transfer_out",
    "transfer_in",
    "count",
    "adjustment",
    "damage",
)
RESERVATION_STATUSES = ("held", "committed", "released", "expired")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class StockLevel(Base):
    """What one location holds of one variant. ``on_hand`` is the sum of its movements;
    ``reserved`` is the sum of its held reservations. The database refuses anything else."""

    __tablename__ = "stock_levels"

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"), primary_key=True)
    variant_id: Mapped[str] = mapped_column(ForeignKey("variants.id"), primary_key=True, index=True)
    on_hand: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)

    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="reserved_within_on_hand"),
    )


class StockMovement(Base):
    """The append-only ledger: one row per change of ``on_hand`` (signed ``quantity``)."""

    __tablename__ = "stock_movements"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    variant_id: Mapped[str] = mapped_column(ForeignKey("variants.id"))
    kind: Mapped[str] = mapped_column(String(20))
    quantity: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(200), default="")
    actor: Mapped[str | None] = mapped_column(String(40))
    reference: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    __table_args__ = (
        CheckConstraint(_in("kind", MOVEMENT_KINDS), name="kind_known"),
        Index("ix_stock_movements_variant_location", "variant_id", "location_id", "id"),
    )


class Reservation(Base):
    """Quantity held for a reference (a cart line, an order line) at one location."""

    __tablename__ = "reservations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    variant_id: Mapped[str] = mapped_column(ForeignKey("variants.id"), index=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(20), default="held")
    expires_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(_in("status", RESERVATION_STATUSES), name="status_known"),
        # One live hold per reference, location and variant: a retried reserve finds it.
        Index(
            "uq_reservations_live_hold",
            "reference",
            "location_id",
            "variant_id",
            unique=True,
            sqlite_where=text("status = 'held'"),
            postgresql_where=text("status = 'held'"),
        ),
    )
