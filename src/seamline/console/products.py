"""Product lookup for the shop floor, and one variant's page with its stock everywhere.

One box takes a scanned barcode (a keyboard-wedge scanner types the code and Enter), a SKU or a
name: an exact code goes straight to the variant, a name lists the matching products. The
variant page draws every location's stock as a server-rendered SVG — distance rings around the
associate's own store (or the first store), each location a labelled dot — next to a table of
the same figures for screen readers and keyboards, and both follow the live stock stream
(``/console/products/{id}/stream``, the hub of ``inventory/stream.py``) through static/stock.js.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from seamline.inventory.models import Location
from seamline.kit import clock
from seamline.kit.errors import NotFound

from . import inventory_actions as actions
from .customers import require
from .security import ConsoleUser, Staff, db_of
from .web import PREFIX, redirect, render

router = APIRouter()

SEARCH_PAGE = 25

# The picture: a square of distance rings around the origin, north up.
MAP_WIDTH, MAP_HEIGHT = 520, 400
CENTER_X, CENTER_Y = 260, 200
OUTER_RADIUS = 165
RING_STEPS_KM = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
MAX_RINGS = 4
UNPLACED_ROW_HEIGHT = 40  # locations without coordinates sit in a row under the rings
OK, WARN, BAD = "#17794a", "#a15c00", "#b42318"


@router.get("/products")
def lookup(
    request: Request, user: Staff, q: Annotated[str, Query(max_length=200)] = ""
) -> Response:
    """A scanned barcode or a typed SKU opens its variant; anything else searches names."""
    from seamline.catalog.service import list_products, lookup_variant

    require(user, "catalog:read")
    query = q.strip()
    products: list[Any] = []
    more = False
    if query:
        with db_of(request).transaction(readonly=True) as session:
            try:
                match = lookup_variant(session, query, caller=user.caller)
            except NotFound:
                match = None
            if match is None:
                products, cursor = list_products(
                    session, caller=user.caller, q=query, limit=SEARCH_PAGE
                )
                more = cursor is not None
        if match is not None:
            return redirect(f"{PREFIX}/products/{match.variant.id}")
    return render(request, "products.html", query=query, products=products, more=more)


@dataclass
class Place:
    """One location on the variant page: its figures, where it sits, and its dot."""

    id: str
    name: str
    kind: str
    city: str
    active: bool
    is_origin: bool
    distance_km: float | None
    on_hand: int
    reserved: int
    incoming: int
    pickup_open: bool  # a pickup store open (or opening) later today
    pickup_note: str
    x: float = 0.0
    y: float = 0.0

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    @property
    def pickup_today(self) -> bool:
        return self.pickup_open and self.available > 0

    @property
    def dot_radius(self) -> float:
        return dot_radius(self.available)

    @property
    def fill(self) -> str:
        return dot_fill(self.available)

    @property
    def label_right(self) -> bool:
        # Labels point away from the centre, so neighbours' labels do not run into each other,
        # unless a label on the left would run off the picture (about 7 px per character).
        room_on_left = self.x - self.dot_radius - 6 - 7 * (len(self.name) + 7)
        return self.x >= CENTER_X or room_on_left < 0


def dot_radius(available: int) -> float:
    """Bigger with more units (kept in step with static/stock.js)."""
    return round(6 + min(12.0, 2.2 * math.sqrt(max(available, 0))), 1)


def dot_fill(available: int) -> str:
    """Green with stock, amber when 1 or 2 are left, red with none (the label says the number)."""
    return BAD if available <= 0 else WARN if available <= 2 else OK


def bearing(origin: Location, other: Location) -> float:
    """The initial compass bearing from ``origin`` to ``other``, radians clockwise from north."""
    assert origin.latitude is not None
    assert origin.longitude is not None
    assert other.latitude is not None
    assert other.longitude is not None
    p1, p2 = math.radians(origin.latitude), math.radians(other.latitude)
    dl = math.radians(other.longitude - origin.longitude)
    return math.atan2(
        math.sin(dl) * math.cos(p2),
        math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl),
    )


def rings_for(farthest: float) -> tuple[float, int]:
    """A round ring step (km) and how many rings reach ``farthest``."""
    for step in RING_STEPS_KM:
        if farthest <= step * MAX_RINGS:
            return step, max(1, math.ceil(farthest / step))
    return RING_STEPS_KM[-1], MAX_RINGS


def stock_picture(session: Session, variant_id: str, user: ConsoleUser) -> dict[str, Any]:
    """Every location with this variant's figures, laid out around the origin."""
    from seamline.inventory import stock

    everything = actions.all_locations(session)
    figures = stock.variant_stock(session, variant_id)
    levels = {x.location_id: x for x in figures.locations}
    origin = actions.origin_of(everything, user.caller)
    now = clock.now()
    shown = [x for x in everything if x.active or x.id in levels]
    places: list[Place] = []
    for x in shown:
        level = levels.get(x.id)
        pickup_open, note = actions.pickup_today(x, now)
        places.append(
            Place(
                id=x.id,
                name=x.name,
                kind=x.kind,
                city=x.city,
                active=x.active,
                is_origin=origin is not None and x.id == origin.id,
                distance_km=(
                    round(d, 1)
                    if origin is not None and (d := actions.distance_km(origin, x)) is not None
                    else None
                ),
                on_hand=level.on_hand if level else 0,
                reserved=level.reserved if level else 0,
                incoming=level.incoming if level else 0,
                pickup_open=pickup_open,
                pickup_note=note,
            )
        )
    places.sort(key=lambda p: (p.distance_km is None, p.distance_km or 0.0, p.name, p.id))
    by_id = {x.id: x for x in shown}
    farthest = max((p.distance_km or 0.0 for p in places), default=0.0) or 1.0
    step, count = rings_for(farthest)
    outer_km = step * count
    unplaced = [p for p in places if p.distance_km is None]
    for p in places:
        if p.distance_km is None or origin is None:
            continue
        # A square-root scale: the stores of one city spread out, far ones still fit.
        r = OUTER_RADIUS * math.sqrt(p.distance_km / outer_km)
        angle = bearing(origin, by_id[p.id]) if p.distance_km > 0 else 0.0
        p.x = round(CENTER_X + r * math.sin(angle), 1)
        p.y = round(CENTER_Y - r * math.cos(angle), 1)
    height = MAP_HEIGHT + (UNPLACED_ROW_HEIGHT if unplaced else 0)
    for i, p in enumerate(unplaced):
        p.x = 30 + (i % 4) * 125
        p.y = MAP_HEIGHT + 10 + (i // 4) * UNPLACED_ROW_HEIGHT
    if unplaced:
        height += (len(unplaced) - 1) // 4 * UNPLACED_ROW_HEIGHT
    rings = [
        {"km": _km(step * (i + 1)), "r": round(OUTER_RADIUS * math.sqrt((i + 1) / count), 1)}
        for i in range(count)
    ]
    return {
        "places": places,
        "origin": origin.name if origin is not None else None,
        "rings": rings,
        "unplaced": bool(unplaced),
        "width": MAP_WIDTH,
        "height": height,
        "cx": CENTER_X,
        "cy": CENTER_Y,
        "totals": figures,
    }


def _km(value: float) -> str:
    return f"{value:g} km"


@router.get("/products/{variant_id}")
def variant_page(request: Request, user: Staff, variant_id: str) -> Response:
    from seamline.catalog.render import render_variant
    from seamline.catalog.service import find_variant, get_product

    require(user, "catalog:read")
    with db_of(request).transaction(readonly=True) as session:
        found = find_variant(session, variant_id)
        variant = render_variant(session, found)
        product = get_product(session, found.product_id, caller=user.caller)
        picture = stock_picture(session, found.id, user) if user.can("inventory:read") else None
    return render(
        request,
        "product.html",
        variant=variant,
        product=product,
        picture=picture,
        stream_url=f"{PREFIX}/products/{variant.id}/stream",
    )


CONSOLE_STREAM_SECONDS = 60.0


@router.get("/products/{variant_id}/stream")
async def variant_stream(
    request: Request,
    user: Staff,
    variant_id: str,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", pattern=r"^[0-9]{1,18}$")
    ] = None,
) -> Response:
    """This variant's stock changes at every location as Server-Sent Events, for a signed-in
    member with ``inventory:read``: the API stream's messages (stream_api.py), relayed from the
    process's hub with the console session instead of an API key."""
    from seamline.catalog.service import find_variant
    from seamline.inventory.stream import StockFilter, StockStreamHub
    from seamline.inventory.stream_api import (
        PING_SECONDS,
        SEND_TIMEOUT_SECONDS,
        SHUTDOWN_GRACE_SECONDS,
        Feed,
        StockEventResponse,
        StreamUnavailable,
    )

    require(user, "inventory:read")

    def known() -> str:
        with db_of(request).transaction(readonly=True) as session:
            return find_variant(session, variant_id).id

    found = await run_in_threadpool(known)
    hub: StockStreamHub | None = getattr(request.app.state, "stock_stream", None)
    if hub is None or not hub.running:
        raise StreamUnavailable("the stock stream is not running in this process")
    after = int(last_event_id) if last_event_id is not None else None
    # A console stream lasts a minute: the browser then reconnects (Last-Event-ID, nothing
    # missed), and the session is checked again — a signed-out or disabled member's page
    # stops updating within a minute, not after the API stream's quarter of an hour.
    feed = Feed(
        hub, StockFilter(variant_ids=frozenset({found})), after, seconds=CONSOLE_STREAM_SECONDS
    )
    return StockEventResponse(
        feed.events(),
        ping=PING_SECONDS,
        send_timeout=SEND_TIMEOUT_SECONDS,
        shutdown_event=feed.shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
        data_sender_callable=feed.close_on_shutdown,
    )
