"""The demo brand's channels, warehouse and stores, and the stock at each of them.

Three stores in New York and New Jersey and a warehouse in Secaucus, with real coordinates
(a street corner near each address), opening hours in the stores' own time zone and the
capabilities the inventory domain models: ``ships`` (the warehouse, and ship-from-store in
Soho and Jersey City), ``pickup``, ``returns``, ``sells_in_person``. Each store is linked to its
store channel.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.catalog.models import Variant
from seamline.channels import service as channels
from seamline.channels.models import Channel
from seamline.channels.schemas import ChannelCreate
from seamline.inventory import service as locations
from seamline.inventory import stock
from seamline.inventory.models import Location, StockLevel
from seamline.inventory.schemas import LocationCreate, ReceiptCreate

BRAND = "Kettle & Kin"
DEMO_CHANNELS: list[dict[str, str]] = [
    {"kind": "web", "handle": "web", "name": f"{BRAND} web store"},
    {"kind": "app", "handle": "app", "name": f"{BRAND} app"},
    {"kind": "marketplace", "handle": "marketplace", "name": "Marketplace listing"},
    {"kind": "social", "handle": "instagram", "name": "Instagram"},
    {"kind": "store", "handle": "store-soho", "name": "Soho store"},
    {"kind": "store", "handle": "store-brooklyn", "name": "Brooklyn store"},
    {"kind": "store", "handle": "store-jersey-city", "name": "Jersey City store"},
    {"kind": "email", "handle": "email", "name": "Email"},
    {"kind": "sms", "handle": "sms", "name": "SMS"},
    {"kind": "push", "handle": "push", "name": "App push"},
    {"kind": "phone", "handle": "phone", "name": "Advisor line"},
    {"kind": "chat", "handle": "chat", "name": "Web chat"},
]
# Channels the catalogue is listed on (customers buy there).
SALES_CHANNELS = (
    "web",
    "app",
    "marketplace",
    "instagram",
    "store-soho",
    "store-brooklyn",
    "store-jersey-city",
)

_STORE_HOURS: dict[str, list[dict[str, str]]] = {
    **{day: [{"open": "10:00", "close": "20:00"}] for day in ("mon", "tue", "wed", "thu", "fri")},
    "sat": [{"open": "10:00", "close": "21:00"}],
    "sun": [{"open": "11:00", "close": "18:00"}],
}
_WAREHOUSE_HOURS = {
    day: [{"open": "07:00", "close": "19:00"}] for day in ("mon", "tue", "wed", "thu", "fri")
}

WAREHOUSE = "warehouse-secaucus"
SOHO, BROOKLYN, JERSEY_CITY = "soho", "brooklyn", "jersey-city"

LOCATIONS: list[dict[str, Any]] = [
    {
        "kind": "warehouse",
        "handle": WAREHOUSE,
        "name": f"{BRAND} fulfilment centre",
        "address_line1": "500 Meadowlands Parkway",
        "city": "Secaucus",
        "region": "NJ",
        "postcode": "07094",
        "coordinates": {"latitude": 40.7897, "longitude": -74.0596},
        "opening_hours": _WAREHOUSE_HOURS,
        "ships": True,
        "pickup": False,
        "returns": True,
        "sells_in_person": False,
    },
    {
        "kind": "store",
        "handle": SOHO,
        "name": "Soho store",
        "address_line1": "134 Spring Street",
        "city": "New York",
        "region": "NY",
        "postcode": "10012",
        "coordinates": {"latitude": 40.7243, "longitude": -74.0018},
        "opening_hours": _STORE_HOURS,
        "ships": True,  # ship from store
        "pickup": True,
        "returns": True,
        "sells_in_person": True,
        "channel": "store-soho",
    },
    {
        "kind": "store",
        "handle": BROOKLYN,
        "name": "Brooklyn store",
        "address_line1": "187 Bedford Avenue",
        "city": "Brooklyn",
        "region": "NY",
        "postcode": "11211",
        "coordinates": {"latitude": 40.7173, "longitude": -73.9578},
        "opening_hours": _STORE_HOURS,
        "ships": False,
        "pickup": True,
        "returns": True,
        "sells_in_person": True,
        "channel": "store-brooklyn",
    },
    {
        "kind": "store",
        "handle": JERSEY_CITY,
        "name": "Jersey City store",
        "address_line1": "30 Montgomery Street",
        "city": "Jersey City",
        "region": "NJ",
        "postcode": "07302",
        "coordinates": {"latitude": 40.7163, "longitude": -74.0365},
        "opening_hours": _STORE_HOURS,
        "ships": True,  # ship from store
        "pickup": True,
        "returns": True,
        "sells_in_person": True,
        "channel": "store-jersey-city",
    },
]

# Deliberate gaps, so "pick up near me" and the endless aisle have something to show:
# (SKU, location handle) -> units. The story's 16 kg kettlebell is out in Soho and Jersey City
# and low in Brooklyn; the sage mat is low in Soho.
STOCK_EXCEPTIONS: dict[tuple[str, str], int] = {
    ("KK-KB-CI-16KG", SOHO): 0,
    ("KK-KB-CI-16KG", JERSEY_CITY): 0,
    ("KK-KB-CI-16KG", BROOKLYN): 2,
    ("KK-YM-EV-SAGE", SOHO): 1,
    ("KK-YM-EV-SAGE", JERSEY_CITY): 0,
    ("KK-RW-AIR", BROOKLYN): 0,
    ("KK-RW-WTR-OAK", SOHO): 0,
    ("KK-BN-ADJ", BROOKLYN): 1,
}


def ensure_channels(session: Session) -> dict[str, Channel]:
    """The brand's channels by handle (created when missing)."""
    wanted = [ChannelCreate.model_validate(spec) for spec in DEMO_CHANNELS]
    channels.ensure_channels(session, wanted)
    rows = session.scalars(select(Channel).where(Channel.handle.in_([c.handle for c in wanted])))
    return {c.handle: c for c in rows}


def ensure_locations(session: Session, by_handle: dict[str, Channel]) -> dict[str, Location]:
    """The warehouse and the three stores (created when missing), by handle."""
    existing = {
        loc.handle: loc
        for loc in session.scalars(
            select(Location).where(Location.handle.in_([s["handle"] for s in LOCATIONS]))
        )
    }
    for spec in LOCATIONS:
        if spec["handle"] in existing:
            continue
        fields = {k: v for k, v in spec.items() if k != "channel"}
        channel = spec.get("channel")
        data = LocationCreate.model_validate(
            {
                **fields,
                "country": "US",
                "time_zone": "America/New_York",
                "channel_id": by_handle[channel].id if channel else None,
            }
        )
        locations.create_location(session, data)
    return {
        loc.handle: loc
        for loc in session.scalars(
            select(Location).where(Location.handle.in_([s["handle"] for s in LOCATIONS]))
        )
    }


def stock_units(sku: str, location: dict[str, Any], rng: random.Random) -> int:
    """Units of ``sku`` at a location: plenty in the warehouse, a shelf's worth in stores."""
    if (sku, location["handle"]) in STOCK_EXCEPTIONS:
        return STOCK_EXCEPTIONS[(sku, location["handle"])]
    if location["kind"] == "warehouse":
        return rng.randint(40, 160)
    return rng.randint(3, 14)


def stock_everywhere(session: Session, location_ids: dict[str, str], *, seed: int) -> int:
    """Receive the opening stock of every variant at every location (once: a location that
    already holds stock of a variant is left alone). Returns the receipts written."""
    rng = random.Random(seed)
    variants = session.execute(select(Variant.id, Variant.sku).order_by(Variant.sku)).all()
    held = {
        (loc, var)
        for loc, var in session.execute(select(StockLevel.location_id, StockLevel.variant_id))
    }
    written = 0
    for variant_id, sku in variants:
        for spec in LOCATIONS:
            units = stock_units(sku, spec, rng)
            location_id = location_ids[spec["handle"]]
            if units == 0 or (location_id, variant_id) in held:
                continue
            receipt = ReceiptCreate(
                location_id=location_id,
                variant_id=variant_id,
                quantity=units,
                reason="opening stock",
            )
            stock.receive(session, receipt)
            written += 1
    return written
