"""Locations: the warehouses and stores that hold stock (stock tables build on these ids)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CheckConstraint, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from seamline.db.base import Base, Timestamped

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
