"""Available to promise: per variant in total, per location and per channel (after the channel's
safety stock rules), and "pick up near me".

Definitions (docs/inventory.md states them for users):

- location ``available = on_hand - reserved`` (summed over the location's buckets);
- a channel's ``available = floor(share% * Σ over its locations of max(0, available - keep))``
  where ``keep`` is the rule's units kept back at a store or a warehouse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from geopy.distance import great_circle
from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.catalog.service import find_variant
from seamline.channels import service as channels
from seamline.channels.models import Channel
from seamline.db.config_cache import ConfigCache
from seamline.inventory import postcodes, stock
from seamline.inventory.buckets import Totals
from seamline.inventory.models import ChannelStockRule, Location
from seamline.inventory.schemas import (
    WEEKDAYS,
    ChannelAvailability,
    ChannelStockRuleOut,
    ChannelStockRuleSet,
    Coordinates,
    Opening,
    PickupItem,
    PickupList,
    PickupStore,
    VariantAvailability,
)
from seamline.kit import clock
from seamline.kit.errors import FieldError, Unprocessable


@dataclass(frozen=True)
class Policy:
    """How one channel promises stock: where from, what it leaves behind, its share."""

    channel_id: str
    location_ids: list[str]
    keep_per_store: int = 0
    keep_per_warehouse: int = 0
    share_percent: int = 100
    kinds: dict[str, str] = field(default_factory=dict)
    # An explicit list (a rule's location_ids, or a store channel's own store) also limits
    # where holds named by location may be placed; the default list does not.
    restricted: bool = False
    ruled: bool = False  # the channel has a stock rule of its own

    def keep(self, location: Location) -> int:
        return self.keep_per_store if location.kind == "store" else self.keep_per_warehouse

    def keep_at(self, location_id: str) -> int:
        kind = self.kinds.get(location_id, "warehouse")
        return self.keep_per_store if kind == "store" else self.keep_per_warehouse

    def promise(self, available_by_location: dict[str, int]) -> int:
        pooled = sum(
            max(0, available_by_location.get(loc, 0) - self.keep_at(loc))
            for loc in self.location_ids
        )
        return pooled * self.share_percent // 100


def _rule_out(channel_id: str, rule: ChannelStockRule | None) -> ChannelStockRuleOut:
    return ChannelStockRuleOut(
        channel_id=channel_id,
        location_ids=rule.location_ids if rule else None,
        keep_per_store=rule.keep_per_store if rule else 0,
        keep_per_warehouse=rule.keep_per_warehouse if rule else 0,
        max_share_percent=rule.max_share_percent if rule else 100,
    )


def get_rule(session: Session, channel_id: str) -> ChannelStockRuleOut:
    channels.get_channel(session, channel_id)
    return _rule_out(channel_id, session.get(ChannelStockRule, channel_id))


def set_rule(
    session: Session, channel_id: str, data: ChannelStockRuleSet, *, caller: Caller | None = None
) -> ChannelStockRuleOut:
    """Brand-wide: keys limited to locations may not change a channel's rule."""
    if caller is not None:
        caller.require_location(None)
    channels.get_channel(session, channel_id)
    if data.location_ids is not None:
        for i, location_id in enumerate(data.location_ids):
            if session.get(Location, location_id) is None:
                raise Unprocessable(
                    f"no location {location_id}",
                    code="location_not_found",
                    errors=[FieldError(f"body.location_ids.{i}", "no such location", "unknown")],
                )
    rule = session.get(ChannelStockRule, channel_id, with_for_update=True)
    if rule is None:
        rule = ChannelStockRule(channel_id=channel_id)
        session.add(rule)
    # An empty list means "sells from nowhere" (a paused channel), unlike null (the default).
    rule.location_ids = (
        list(dict.fromkeys(data.location_ids)) if data.location_ids is not None else None
    )
    rule.keep_per_store = data.keep_per_store
    rule.keep_per_warehouse = data.keep_per_warehouse
    rule.max_share_percent = data.max_share_percent
    rule.updated_at = clock.now()
    session.flush()
    return _rule_out(channel_id, rule)


def _active_locations(session: Session) -> list[Location]:
    return list(
        session.scalars(select(Location).where(Location.active).order_by(Location.id)).all()
    )


@dataclass(frozen=True)
class Site:
    """An active location as policies and routing need it: a plain value, cached per process
    (``active_sites``)."""

    id: str
    name: str
    kind: str
    ships: bool
    latitude: float | None
    longitude: float | None


# Channels, locations and channel stock rules change rarely and are read by every cart change
# and checkout: each process keeps the active sites and the channels' policies for two seconds
# (``db/config_cache.py``; a change made through this process is seen at once).
_topology = ConfigCache("topology", (Channel, Location, ChannelStockRule), seconds=2.0)


def active_sites(session: Session) -> list[Site]:
    """The active locations, by id (from this process's cache when fresh)."""

    def load() -> list[Site]:
        return [
            Site(loc.id, loc.name, loc.kind, loc.ships, loc.latitude, loc.longitude)
            for loc in _active_locations(session)
        ]

    return _topology.get(session, "sites", load)


def policy(
    session: Session, channel: Channel, locations: Sequence[Location | Site] | None = None
) -> Policy:
    """The channel's rule, with its default locations: a store channel sells its own store's
    stock; any other channel sells from every active location that ships."""
    rule = session.get(ChannelStockRule, channel.id)
    everywhere = locations if locations is not None else active_sites(session)
    kinds = {loc.id: loc.kind for loc in everywhere}
    restricted = True
    if rule is not None and rule.location_ids is not None:
        sources = [loc for loc in rule.location_ids if loc in kinds]
    else:
        # A store channel sells its own store's stock — none while that store is inactive.
        store = channel.location_id or session.scalar(
            select(Location.id).where(Location.channel_id == channel.id)
        )
        if store is not None:
            sources = [store] if store in kinds else []
        else:
            sources = [loc.id for loc in everywhere if loc.ships]
            restricted = False
    return Policy(
        channel_id=channel.id,
        location_ids=sources,
        keep_per_store=rule.keep_per_store if rule else 0,
        keep_per_warehouse=rule.keep_per_warehouse if rule else 0,
        share_percent=rule.max_share_percent if rule else 100,
        kinds=kinds,
        restricted=restricted,
        ruled=rule is not None,
    )


def channel_policy(session: Session, channel_id: str) -> Policy:
    """The channel's policy (from this process's cache when fresh; a transaction that changed
    a channel, a location or a rule reads it afresh)."""
    return _topology.get(
        session,
        ("policy", channel_id),
        lambda: policy(session, channels.get_channel(session, channel_id)),
    )


def availability(
    session: Session, variant_ids: list[str], *, channel_id: str | None = None
) -> list[VariantAvailability]:
    """Available to promise per variant: in total, per location and per channel (one channel
    if ``channel_id`` is given, otherwise every active channel)."""
    variant_ids = list(dict.fromkeys(variant_ids))
    for variant_id in variant_ids:
        find_variant(session, variant_id)
    locations = _active_locations(session)
    if channel_id is not None:
        chosen = [channels.get_channel(session, channel_id)]
    else:
        chosen = list(
            session.scalars(select(Channel).where(Channel.active).order_by(Channel.id)).all()
        )
    policies = [policy(session, c, locations) for c in chosen]
    levels = stock.location_totals(session, variant_ids)
    out = []
    for variant_id in variant_ids:
        per_location = [
            stock.totals_out(Totals(loc, var, on_hand, reserved))
            for (loc, var), (on_hand, reserved) in levels.items()
            if var == variant_id
        ]
        by_location = {x.location_id: x.available for x in per_location}
        on_hand = sum(x.on_hand for x in per_location)
        reserved = sum(x.reserved for x in per_location)
        out.append(
            VariantAvailability(
                variant_id=variant_id,
                on_hand=on_hand,
                reserved=reserved,
                available=on_hand - reserved,
                locations=per_location,
                channels=[
                    ChannelAvailability(channel_id=p.channel_id, available=p.promise(by_location))
                    for p in policies
                ],
            )
        )
    return out


# -- pick up near me -------------------------------------------------------------------------


def _interval_today(opening: Opening, day: datetime) -> tuple[datetime, datetime]:
    """An interval as local datetimes; a close at or before the open ends the next day
    (equal times: open around the clock)."""
    start = datetime.combine(day.date(), _clock_time(opening.open), tzinfo=day.tzinfo)
    end = datetime.combine(day.date(), _clock_time(opening.close), tzinfo=day.tzinfo)
    if opening.close == "24:00" or end <= start:
        end += timedelta(days=1)
    return start, end


def _clock_time(value: str) -> time:
    if value == "24:00":
        return time(0, 0)
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def hours_today(location: Location, now: datetime) -> tuple[list[Opening], bool]:
    """Today's intervals in the location's time zone, and whether it is open at ``now``
    (yesterday's interval may run past midnight)."""
    local = now.astimezone(ZoneInfo(location.time_zone))
    today = WEEKDAYS[local.weekday()]
    yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
    intervals = [Opening(**i) for i in location.opening_hours.get(today, [])]
    open_now = False
    for day_offset, key in ((0, today), (-1, yesterday)):
        anchor = local + timedelta(days=day_offset)
        for raw in location.opening_hours.get(key, []):
            start, end = _interval_today(Opening(**raw), anchor)
            if start <= local < end:
                open_now = True
    return intervals, open_now


def pickup_near(
    session: Session,
    items: list[tuple[str, int]],
    *,
    origin: Coordinates | None = None,
    postcode: str | None = None,
    country: str | None = None,
    channel_id: str | None = None,
    radius_km: float | None = None,
    limit: int = 10,
) -> PickupList:
    """Stores that can hand over ``quantity`` of every requested variant now, nearest first."""
    if origin is None:
        if not postcode or not country:
            raise Unprocessable(
                "give latitude and longitude, or postcode and country",
                code="origin_required",
                errors=[FieldError("query.latitude", "or postcode and country", "missing")],
            )
        origin = postcodes.locate(session, country, postcode)
    wanted: dict[str, int] = {}
    for variant_id, quantity in items:
        find_variant(session, variant_id)
        wanted[variant_id] = wanted.get(variant_id, 0) + quantity
    stores = list(
        session.scalars(
            select(Location).where(
                Location.active,
                Location.pickup,
                Location.latitude.is_not(None),
                Location.longitude.is_not(None),
            )
        ).all()
    )
    rule = channel_policy(session, channel_id) if channel_id else None
    levels = stock.location_totals(session, list(wanted))
    now = clock.now()
    found = []
    point = (origin.latitude, origin.longitude)
    for store in stores:
        assert store.latitude is not None
        assert store.longitude is not None
        keep = rule.keep(store) if rule else 0
        lines = []
        for variant_id, quantity in wanted.items():
            on_hand, reserved = levels.get((store.id, variant_id), (0, 0))
            lines.append(
                PickupItem(
                    variant_id=variant_id,
                    quantity=quantity,
                    available=max(0, on_hand - reserved - keep),
                )
            )
        if any(line.available < line.quantity for line in lines):
            continue
        distance = great_circle(point, (store.latitude, store.longitude)).km
        if radius_km is not None and distance > radius_km:
            continue
        today, open_now = hours_today(store, now)
        found.append(
            PickupStore(
                location_id=store.id,
                name=store.name,
                handle=store.handle,
                address_line1=store.address_line1,
                city=store.city,
                postcode=store.postcode,
                country=store.country,
                coordinates=Coordinates(latitude=store.latitude, longitude=store.longitude),
                distance_km=round(distance, 3),
                time_zone=store.time_zone,
                today=today,
                open_now=open_now,
                items=lines,
            )
        )
    found.sort(key=lambda s: (s.distance_km, s.location_id))
    return PickupList(origin=origin, data=found[:limit])
