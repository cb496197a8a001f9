"""Availability, channel stock rules, pick-up near me and postcode centroids: resolve the
caller, call one service function, return."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
from seamline.inventory import availability, postcodes
from seamline.inventory.schemas import (
    ID_PATTERN,
    AvailabilityList,
    ChannelStockRuleOut,
    ChannelStockRuleSet,
    Coordinates,
    Country,
    PickupList,
    Postcode,
    PostcodeBatch,
    PostcodesWritten,
)
from seamline.kit.errors import FieldError, Unprocessable

MISSING = problem(404, "No such variant or channel")
router = APIRouter(tags=["inventory"])

Ids = Annotated[
    list[Annotated[str, Query(max_length=40, pattern=ID_PATTERN)]],
    Query(min_length=1, max_length=100),
]
ChannelPath = Annotated[str, Path(max_length=40, pattern=ID_PATTERN)]
ITEM_PATTERN = r"^[a-z]{2,5}_[a-z0-9]{1,34}(:[1-9][0-9]{0,5})?$"  # quantities up to 999,999


@router.get("/availability", responses=MISSING, **scoped("inventory:read"))
def get_availability(
    db: DB,
    variant_id: Ids,
    channel_id: Annotated[str | None, Query(max_length=40, pattern=ID_PATTERN)] = None,
) -> AvailabilityList:
    """Available to promise per variant: in total, per location, and per channel after its
    safety stock rules (only `channel_id` if given, otherwise every active channel)."""
    with db.transaction(readonly=True) as session:
        return AvailabilityList(
            data=availability.availability(session, list(variant_id), channel_id=channel_id)
        )


@router.get("/availability/pickup", responses=MISSING, **scoped("inventory:read"))
def pickup_near(
    db: DB,
    item: Annotated[
        list[Annotated[str, Query(max_length=48, pattern=ITEM_PATTERN)]],
        Query(
            min_length=1,
            max_length=50,
            description="`variant_id` or `variant_id:quantity` (default 1); repeat per variant.",
        ),
    ],
    latitude: Annotated[float | None, Query(ge=-90, le=90)] = None,
    longitude: Annotated[float | None, Query(ge=-180, le=180)] = None,
    postcode: Annotated[Postcode | None, Query(min_length=1)] = None,
    country: Annotated[Country | None, Query()] = None,
    channel_id: Annotated[str | None, Query(max_length=40, pattern=ID_PATTERN)] = None,
    radius_km: Annotated[float | None, Query(gt=0, le=20_000)] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> PickupList:
    """Stores that can hand over every requested variant in the requested quantity, nearest
    first from a point or a postcode's centroid, with today's opening hours."""
    if (latitude is None) != (longitude is None):
        missing = "query.longitude" if longitude is None else "query.latitude"
        raise Unprocessable(
            "latitude and longitude go together",
            code="origin_incomplete",
            errors=[FieldError(missing, "required with the other coordinate", "missing")],
        )
    origin = (
        Coordinates(latitude=latitude, longitude=longitude)
        if latitude is not None and longitude is not None
        else None
    )
    items = []
    for raw in item:
        variant, _, quantity = raw.partition(":")
        items.append((variant, int(quantity) if quantity else 1))
    with db.transaction(readonly=True) as session:
        return availability.pickup_near(
            session,
            items,
            origin=origin,
            postcode=postcode,
            country=country,
            channel_id=channel_id,
            radius_km=radius_km,
            limit=limit,
        )


@router.get("/channels/{channel_id}/stock-rule", responses=MISSING, **scoped("inventory:read"))
def get_stock_rule(channel_id: ChannelPath, db: DB) -> ChannelStockRuleOut:
    """What the channel may promise (defaults when no rule was set)."""
    with db.transaction(readonly=True) as session:
        return availability.get_rule(session, channel_id)


@router.put("/channels/{channel_id}/stock-rule", responses=MISSING, **scoped("inventory:write"))
def set_stock_rule(
    channel_id: ChannelPath, body: ChannelStockRuleSet, db: DB, caller: CurrentCaller
) -> ChannelStockRuleOut:
    """Set the channel's locations, the units it leaves at each store or warehouse, and its
    share cap."""
    with db.transaction() as session:
        return availability.set_rule(session, channel_id, body, caller=caller)


@router.put("/postcodes", **scoped("inventory:write"))
def put_postcodes(body: PostcodeBatch, db: DB, caller: CurrentCaller) -> PostcodesWritten:
    """Add or replace postcode centroids for "pick up near me" (up to 1,000 per request)."""
    with db.transaction() as session:
        return PostcodesWritten(written=postcodes.put(session, body.data, caller=caller))
