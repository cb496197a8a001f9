"""What the console's stock pages read and do, on top of the inventory services.

Every write goes through the domain service with the staff member's ``Caller``: the services
themselves refuse a store associate acting at another store (403 ``location_out_of_scope`` —
``stock.receive``/``adjust``/``count`` through ``check_target``, ``transfers.create`` for the
source, ``transfers.receive`` for the destination), so nothing here re-implements that rule.
This module only turns form fields into the services' inputs (a scanned code into a variant,
invalid input into a 422 the console shows) and reads the figures the pages show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from geopy.distance import great_circle
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.catalog.models import Product, Variant
from seamline.inventory.models import Location, StockLevel
from seamline.inventory.schemas import WEEKDAYS
from seamline.kit.errors import FieldError, Unprocessable

M = TypeVar("M", bound=BaseModel)

STOCK_PAGE = 100


def build(model: type[M], path: dict[str, str] | None = None, **fields: Any) -> M:
    """``model(**fields)``, a pydantic refusal turned into a 422 the console can show.

    ``path`` renames the schema's fields to the form's (``variant_id`` → ``code``)."""
    try:
        return model(**fields)
    except ValidationError as exc:
        names = path or {}
        errors = [
            FieldError(
                ".".join(names.get(str(p), str(p)) for p in e["loc"]) or "form",
                e["msg"],
                e["type"],
            )
            for e in exc.errors()
        ]
        raise Unprocessable("some fields are invalid", errors=errors) from exc


# -- locations -------------------------------------------------------------------------------


def all_locations(session: Session) -> list[Location]:
    """Every location, active first, then stores before warehouses, by name."""
    return list(
        session.scalars(
            select(Location).order_by(
                Location.active.desc(), Location.kind.desc(), Location.name, Location.id
            )
        )
    )


def own_first(locations: list[Location], caller: Caller) -> list[Location]:
    """The caller's own locations (an associate's stores) first, the others after."""
    mine = [x for x in locations if x.id in caller.location_ids]
    return mine + [x for x in locations if x.id not in caller.location_ids]


def origin_of(locations: list[Location], caller: Caller) -> Location | None:
    """Where distances are measured from: the associate's own store, else the first store,
    else the first warehouse — among locations with coordinates."""
    placed = [x for x in locations if x.latitude is not None and x.longitude is not None]
    for location_id in caller.location_ids:
        for x in placed:
            if x.id == location_id:
                return x
    stores = [x for x in placed if x.kind == "store" and x.active]
    warehouses = [x for x in placed if x.kind == "warehouse" and x.active]
    first = stores or warehouses or placed
    return first[0] if first else None


def distance_km(a: Location, b: Location) -> float | None:
    if None in (a.latitude, a.longitude, b.latitude, b.longitude):
        return None
    return float(great_circle((a.latitude, a.longitude), (b.latitude, b.longitude)).km)


def pickup_today(location: Location, now: datetime) -> tuple[bool, str]:
    """Whether the location could hand goods over later today (pickup store, active, still
    open or opening later), and a short explanation. Stock is checked by the caller."""
    if not location.active:
        return False, "closed (inactive)"
    if not location.pickup:
        return False, "no pickup here"
    local = now.astimezone(ZoneInfo(location.time_zone))
    today = WEEKDAYS[local.weekday()]
    yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
    hhmm = local.strftime("%H:%M")
    for raw in location.opening_hours.get(yesterday, []):
        if raw["close"] <= raw["open"] and raw["close"] != "24:00" and hhmm < raw["close"]:
            return True, f"open until {raw['close']}"
    for raw in location.opening_hours.get(today, []):
        overnight = raw["close"] == "24:00" or raw["close"] <= raw["open"]
        if overnight or hhmm < raw["close"]:
            return True, f"{raw['open']} to {raw['close']}"
    return False, "closed today"


# -- stock at a location ---------------------------------------------------------------------


@dataclass(frozen=True)
class StockRow:
    variant_id: str
    sku: str
    barcode: str | None
    variant_title: str
    options: dict[str, Any]
    product_id: str
    product_title: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


def stock_at(
    session: Session, location_id: str, *, after: str | None = None, limit: int = STOCK_PAGE
) -> tuple[list[StockRow], str | None]:
    """The variants held at a location (summed over buckets in one statement), by variant id,
    a page at a time."""
    stmt = (
        select(
            StockLevel.variant_id,
            func.sum(StockLevel.on_hand),
            func.sum(StockLevel.reserved),
        )
        .where(StockLevel.location_id == location_id)
        .group_by(StockLevel.variant_id)
        .order_by(StockLevel.variant_id)
        .limit(limit + 1)
    )
    if after:
        stmt = stmt.where(StockLevel.variant_id > after)
    levels = session.execute(stmt).all()
    more = len(levels) > limit
    levels = levels[:limit]
    info = {
        row.id: row
        for row in session.execute(
            select(
                Variant.id,
                Variant.sku,
                Variant.barcode,
                Variant.title,
                Variant.options,
                Product.id.label("product_id"),
                Product.title.label("product_title"),
            )
            .join(Product, Product.id == Variant.product_id)
            .where(Variant.id.in_([str(r[0]) for r in levels]))
        )
    }
    rows = []
    for variant_id, on_hand, reserved in levels:
        v = info.get(variant_id)
        if v is None:
            continue
        rows.append(
            StockRow(
                variant_id=str(variant_id),
                sku=v.sku,
                barcode=v.barcode,
                variant_title=v.title,
                options=dict(v.options or {}),
                product_id=v.product_id,
                product_title=v.product_title,
                on_hand=int(on_hand),
                reserved=int(reserved),
            )
        )
    return rows, (str(levels[-1][0]) if more and levels else None)


def units_per_location(session: Session) -> dict[str, tuple[int, int]]:
    """(on_hand, reserved) over every variant, per location."""
    rows = session.execute(
        select(
            StockLevel.location_id, func.sum(StockLevel.on_hand), func.sum(StockLevel.reserved)
        ).group_by(StockLevel.location_id)
    )
    return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}


def skus_of(session: Session, variant_ids: set[str]) -> dict[str, tuple[str, str]]:
    """Variant id → (SKU, product title), for the ledger and transfers."""
    if not variant_ids:
        return {}
    rows = session.execute(
        select(Variant.id, Variant.sku, Product.title)
        .join(Product, Product.id == Variant.product_id)
        .where(Variant.id.in_(sorted(variant_ids)))
    )
    return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}


def staff_names(session: Session, ids: set[str]) -> dict[str, str]:
    """Who did a movement (the ledger's ``actor`` is a staff user or an API key id)."""
    from seamline.staff.models import StaffUser

    if not ids:
        return {}
    rows = session.execute(select(StaffUser.id, StaffUser.name).where(StaffUser.id.in_(ids)))
    return {str(r[0]): str(r[1]) for r in rows}
