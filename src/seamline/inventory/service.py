"""Rules of locations: warehouses and stores, their hours and capabilities, and the link between
a store and its store channel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.channels import service as channels
from seamline.db.lookup import get_or_404
from seamline.db.pagination import keyset_page
from seamline.events.outbox import emit
from seamline.inventory.models import Location
from seamline.inventory.schemas import (
    WEEKDAYS,
    Coordinates,
    LocationCreate,
    LocationOut,
    LocationUpdate,
    Opening,
)
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, Unprocessable
from seamline.kit.ids import new_id

PLAIN_FIELDS = (
    "name",
    "address_line1",
    "address_line2",
    "city",
    "region",
    "postcode",
    "country",
    "time_zone",
    "ships",
    "pickup",
    "returns",
    "sells_in_person",
    "active",
)


def to_out(location: Location) -> LocationOut:
    coordinates = (
        Coordinates(latitude=location.latitude, longitude=location.longitude)
        if location.latitude is not None and location.longitude is not None
        else None
    )
    return LocationOut(
        id=location.id,
        kind=location.kind,
        name=location.name,
        handle=location.handle,
        address_line1=location.address_line1,
        address_line2=location.address_line2,
        city=location.city,
        region=location.region,
        postcode=location.postcode,
        country=location.country,
        coordinates=coordinates,
        time_zone=location.time_zone,
        opening_hours={
            day: [Opening(**i) for i in hours] for day, hours in location.opening_hours.items()
        },
        ships=location.ships,
        pickup=location.pickup,
        returns=location.returns,
        sells_in_person=location.sells_in_person,
        channel_id=location.channel_id,
        active=location.active,
        created_at=location.created_at,
        updated_at=location.updated_at,
    )


def _snapshot(location: Location) -> dict[str, Any]:
    return to_out(location).model_dump(mode="json", exclude={"created_at", "updated_at"})


def _hours(hours: Mapping[Any, list[Opening]]) -> dict[str, list[dict[str, str]]]:
    """Stored in weekday order, intervals sorted by opening time."""
    return {
        day: sorted((i.model_dump() for i in hours[day]), key=lambda i: i["open"])
        for day in WEEKDAYS
        if day in hours
    }


def _handle_taken(handle: str) -> Conflict:
    return Conflict(
        f"a location with handle {handle!r} exists",
        code="location_handle_taken",
        errors=[FieldError("body.handle", "already taken", "taken")],
    )


def find_location(session: Session, location_id: str, *, for_update: bool = False) -> Location:
    return get_or_404(
        session,
        Location,
        location_id,
        what="location",
        code="location_not_found",
        for_update=for_update,
    )


def _link(session: Session, location: Location, channel_id: str | None) -> None:
    """Move the store-channel link: the old channel forgets the location, the new one learns it.

    Only stores sell through a channel, and only a store channel sells at a store.
    """
    if channel_id == location.channel_id:
        return
    if channel_id is not None:
        channel = channels.get_channel(session, channel_id)
        problem = None
        if location.kind != "store":
            problem = "only store locations link to a channel"
        elif channel.kind != "store":
            problem = f"channel {channel.id} is a {channel.kind} channel, not a store channel"
        if problem:
            raise Unprocessable(
                problem,
                code="channel_link_invalid",
                errors=[FieldError("body.channel_id", problem, "invalid_link")],
            )
        holder = session.scalar(select(Location.id).where(Location.channel_id == channel_id))
        if holder is not None:
            raise Conflict(
                f"channel {channel_id} already sells at location {holder}",
                code="channel_already_linked",
                errors=[FieldError("body.channel_id", "linked elsewhere", "taken")],
            )
    if location.channel_id is not None:
        channels.link_location(session, location.channel_id, None)
    location.channel_id = channel_id
    if channel_id is not None:
        channels.link_location(session, channel_id, location.id)


def create_location(
    session: Session, data: LocationCreate, *, caller: Caller | None = None
) -> LocationOut:
    """Register a warehouse or store; a key limited to locations cannot add new ones."""
    if caller is not None:
        caller.require_location(None)
    if session.scalar(select(Location.id).where(Location.handle == data.handle)):
        raise _handle_taken(data.handle)
    now = clock.now()
    location = Location(
        id=new_id("loc"),
        kind=data.kind,
        name=data.name,
        handle=data.handle,
        address_line1=data.address_line1 or "",
        address_line2=data.address_line2 or "",
        city=data.city or "",
        region=data.region or "",
        postcode=data.postcode or "",
        country=data.country,
        latitude=data.coordinates.latitude if data.coordinates else None,
        longitude=data.coordinates.longitude if data.coordinates else None,
        time_zone=data.time_zone,
        opening_hours=_hours(data.opening_hours or {}),
        ships=bool(data.ships),
        pickup=bool(data.pickup),
        returns=bool(data.returns),
        sells_in_person=bool(data.sells_in_person),
        channel_id=None,
        active=True,
        created_at=now,
        updated_at=now,
    )
    session.add(location)
    try:
        session.flush()
    except IntegrityError as exc:
        raise _handle_taken(data.handle) from exc
    _link(session, location, data.channel_id)
    session.flush()
    emit(
        session,
        "location.created",
        aggregate_type="location",
        aggregate_id=location.id,
        payload=_snapshot(location),
    )
    return to_out(location)


def update_location(
    session: Session, location_id: str, data: LocationUpdate, *, caller: Caller | None = None
) -> LocationOut:
    """Change the fields sent; ``null`` unlinks ``channel_id`` and is ignored elsewhere. A key
    limited to locations may change only its own."""
    location = find_location(session, location_id, for_update=True)
    if caller is not None:
        caller.require_location(location.id)
    before = _snapshot(location)
    sent = data.model_fields_set
    for field in PLAIN_FIELDS:
        value = getattr(data, field, None)
        if field in sent and value is not None:
            setattr(location, field, value)
    if data.coordinates is not None:
        location.latitude = data.coordinates.latitude
        location.longitude = data.coordinates.longitude
    if data.opening_hours is not None:
        location.opening_hours = _hours(data.opening_hours)
    if "channel_id" in sent:
        _link(session, location, data.channel_id)
    if _snapshot(location) != before:
        location.updated_at = clock.now()
        session.flush()
        emit(
            session,
            "location.updated",
            aggregate_type="location",
            aggregate_id=location.id,
            payload=_snapshot(location),
        )
    return to_out(location)


def get_location(session: Session, location_id: str) -> LocationOut:
    return to_out(find_location(session, location_id))


def list_locations(
    session: Session, *, kind: str | None = None, cursor: str | None = None, limit: int = 50
) -> tuple[list[LocationOut], str | None]:
    stmt = select(Location)
    if kind:
        stmt = stmt.where(Location.kind == kind)
    rows, next_cursor = keyset_page(session, stmt, Location.id, after=cursor or None, limit=limit)
    return [to_out(r) for r in rows], next_cursor
