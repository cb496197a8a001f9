"""Locations: the warehouses and stores that hold stock (stock tables build on these ids)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from seamline.db.base import Base, BigIntPK, Timestamped, one_of
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
TRANSFER_STATUSES = ("in_transit", "received", "cancelled")
# A hot SKU's stock at one location may be split over up to this many rows ("buckets").
MAX_BUCKETS = 64


class StockLevel(Base):
    """What one location holds of one variant, in one or more buckets. Summed over its buckets,
    ``on_hand`` is the sum of its movements and ``reserved`` the sum of its held reservations;
    each bucket on its own keeps ``0 <= reserved <= on_hand``, so the sum does too.

    An ordinary SKU has one bucket (0). A hot SKU's units are split over several so concurrent
    holds lock different rows (see ``inventory/buckets.py``)."""

    __tablename__ = "stock_levels"

    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"), primary_key=True)
    variant_id: Mapped[str] = mapped_column(ForeignKey("variants.id"), primary_key=True, index=True)
    bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0)
    on_hand: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)

    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="reserved_within_on_hand"),
        CheckConstraint(f"bucket >= 0 AND bucket < {MAX_BUCKETS}", name="bucket_range"),
    )


class StockSplit(Base):
    """A hot SKU: its stock at every location is kept in ``buckets`` rows."""

    __tablename__ = "stock_splits"

    variant_id: Mapped[str] = mapped_column(ForeignKey("variants.id"), primary_key=True)
    buckets: Mapped[int] = mapped_column(SmallInteger)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)

    __table_args__ = (
        CheckConstraint(f"buckets >= 1 AND buckets <= {MAX_BUCKETS}", name="buckets_range"),
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
        CheckConstraint(one_of("kind", MOVEMENT_KINDS), name="kind_known"),
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
    # The stock bucket whose ``reserved`` carries this hold.
    bucket: Mapped[int] = mapped_column(SmallInteger, default=0)
    # The channel the hold was made for (its safety stock applied), if any.
    channel_id: Mapped[str | None] = mapped_column(ForeignKey("channels.id"))
    status: Mapped[str] = mapped_column(String(20), default="held")
    expires_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(one_of("status", RESERVATION_STATUSES), name="status_known"),
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


class Transfer(Timestamped, Base):
    """Stock moving between two locations: ``transfer_out`` at the source when it leaves, units
    in transit (counted in no location's ``on_hand``), ``transfer_in`` where it arrives."""

    __tablename__ = "stock_transfers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    from_location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"), index=True)
    to_location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="in_transit")
    reference: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(200), default="")
    actor: Mapped[str | None] = mapped_column(String(40))
    received_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        CheckConstraint(one_of("status", TRANSFER_STATUSES), name="status_known"),
        CheckConstraint("from_location_id <> to_location_id", name="distinct_locations"),
    )


class TransferLine(Base):
    __tablename__ = "stock_transfer_lines"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("stock_transfers.id"))
    variant_id: Mapped[str] = mapped_column(ForeignKey("variants.id"), index=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    # Set on arrival; below ``quantity`` when units were lost on the way.
    received_quantity: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("transfer_id", "variant_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "received_quantity IS NULL OR (received_quantity BETWEEN 0 AND quantity)",
            name="received_within_sent",
        ),
    )


class ChannelStockRule(Base):
    """What a channel may promise: the locations it sells from, units kept back at each store
    or warehouse (e.g. 2 per store for walk-ins), and a cap on its share of the stock."""

    __tablename__ = "channel_stock_rules"

    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), primary_key=True)
    # None: the channel's store if it has one, otherwise every active location that ships.
    location_ids: Mapped[list[str] | None] = mapped_column()
    keep_per_store: Mapped[int] = mapped_column(default=0)
    keep_per_warehouse: Mapped[int] = mapped_column(default=0)
    max_share_percent: Mapped[int] = mapped_column(SmallInteger, default=100)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)

    __table_args__ = (
        CheckConstraint("keep_per_store >= 0", name="keep_per_store_not_negative"),
        CheckConstraint("keep_per_warehouse >= 0", name="keep_per_warehouse_not_negative"),
        CheckConstraint("max_share_percent BETWEEN 1 AND 100", name="share_range"),
    )


class PostcodeCentroid(Base):
    """Where a postcode is, for "pick up near me" (imported from GeoNames postal-code files)."""

    __tablename__ = "postcode_centroids"

    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    # Upper case without spaces or dashes: "SW1A 1AA" is stored as "SW1A1AA".
    postcode: Mapped[str] = mapped_column(String(20), primary_key=True)
    place: Mapped[str] = mapped_column(String(200), default="")
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        CheckConstraint("latitude BETWEEN -90 AND 90", name="latitude_range"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="longitude_range"),
    )
