"""Where shipped lines leave from.

The rule: prefer ONE location that can send every shipped line (one parcel, one shipping
charge), the nearest to the destination when both have coordinates, otherwise the one with the
most of the goods; when no location has everything, each line goes from the location that
already serves other lines, else the nearest (or best stocked) one that has it — and the order
says why. Candidates are the channel's locations (its stock rule, minus the units it must leave
behind) that ship. Routing reads availability; the holds that follow may still lose a race, in
which case checkout lets the reservation pick any location that has the units.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from weakref import WeakKeyDictionary

from geopy.distance import great_circle
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from seamline.inventory import availability, postcodes, stock
from seamline.kit.errors import Conflict, Unprocessable


@dataclass(frozen=True)
class Wanted:
    line_id: str
    variant_id: str
    quantity: int


@dataclass(frozen=True)
class Route:
    location_id: str
    line_ids: tuple[str, ...]
    reason: str


# Postcode centroids are reference data (imported, rarely re-imported): each process keeps
# what it looked up — found or not — for a minute, per database.
_CENTROID_SECONDS = 60.0
_centroids: WeakKeyDictionary[
    Engine, dict[tuple[str, str], tuple[float, tuple[float, float] | None]]
] = WeakKeyDictionary()


def _origin(session: Session, address: dict[str, object] | None) -> tuple[float, float] | None:
    if not address:
        return None
    country, postcode = address.get("country"), address.get("postcode")
    if not isinstance(country, str) or not isinstance(postcode, str) or not postcode:
        return None
    seen = _centroids.setdefault(session.get_bind().engine, {})
    key = (country.upper(), postcodes.normalize(postcode))
    hit = seen.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < _CENTROID_SECONDS:
        return hit[1]
    origin: tuple[float, float] | None
    try:
        found = postcodes.locate(session, country, postcode)
        origin = (found.latitude, found.longitude)
    except Unprocessable:
        origin = None
    if len(seen) > 10_000:
        seen.clear()
    seen[key] = (now, origin)
    return origin


def shipping_policy(session: Session, channel_id: str) -> tuple[availability.Policy, bool]:
    """The policy shipped lines follow, and whether it is the endless aisle.

    A store channel sells its own store's stock over the counter; what it ships to a customer's
    home (the endless aisle) may come from any location that ships, unless the channel has an
    explicit stock rule naming its sources."""
    policy = availability.channel_policy(session, channel_id)
    if not policy.restricted or policy.ruled:
        return policy, False
    shipping = [site.id for site in availability.active_sites(session) if site.ships]
    return replace(policy, location_ids=shipping, restricted=False), True


def route(
    session: Session, *, channel_id: str, lines: Sequence[Wanted], address: dict[str, object] | None
) -> list[Route]:
    if not lines:
        return []
    policy, _ = shipping_policy(session, channel_id)
    sources = set(policy.location_ids)
    locations = {
        site.id: site
        for site in availability.active_sites(session)
        if site.id in sources and site.ships
    }
    levels = stock.location_totals(session, sorted({w.variant_id for w in lines}))
    wanted: dict[str, int] = {}
    for w in lines:
        wanted[w.variant_id] = wanted.get(w.variant_id, 0) + w.quantity

    def free(location_id: str, variant_id: str) -> int:
        on_hand, reserved = levels.get((location_id, variant_id), (0, 0))
        return max(0, on_hand - reserved - policy.keep_at(location_id))

    origin = _origin(session, address)

    def distance(location_id: str) -> float | None:
        loc = locations[location_id]
        if origin is None or loc.latitude is None or loc.longitude is None:
            return None
        return float(great_circle(origin, (loc.latitude, loc.longitude)).km)

    def rank(location_id: str) -> tuple[float, int, str]:
        d = distance(location_id)
        stocked = sum(free(location_id, v) for v in wanted)
        return (d if d is not None else float("inf"), -stocked, location_id)

    def why(location_id: str, lead: str) -> str:
        d = distance(location_id)
        where = locations[location_id].name
        if d is not None:
            return f"{lead}; {where} is the nearest of them ({d:.0f} km from the destination)"
        return f"{lead}; {where} holds the most of them (no coordinates for the destination)"

    complete = [loc for loc in locations if all(free(loc, v) >= q for v, q in wanted.items())]
    if complete:
        best = min(complete, key=rank)
        reason = why(best, "one location can send every line")
        return [Route(best, tuple(w.line_id for w in lines), reason)]
    chosen: dict[str, list[str]] = {}
    for w in lines:
        able = [loc for loc in locations if free(loc, w.variant_id) >= w.quantity]
        if not able:
            raise Conflict(
                f"no location can ship {w.quantity} of variant {w.variant_id}",
                code="insufficient_stock",
                extra={"line_id": w.line_id, "variant_id": w.variant_id},
            )
        already = [loc for loc in able if loc in chosen]
        pick = min(already or able, key=rank)
        chosen.setdefault(pick, []).append(w.line_id)
    lead = f"no single location holds every line; split over {len(chosen)} locations"
    return [Route(loc, tuple(ids), why(loc, lead)) for loc, ids in chosen.items()]
