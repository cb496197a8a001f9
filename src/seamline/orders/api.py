"""Order routes (thin: resolve the caller, call one service, return a schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
from seamline.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT
from seamline.orders import fulfilment, service
from seamline.orders.schemas import (
    CancelIn,
    CarrierEventIn,
    HandOverIn,
    OrderList,
    OrderOut,
    ShipIn,
)
from seamline.settings import Settings

router = APIRouter(prefix="/orders", tags=["orders"])

Cursor = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$")]
QueryId = Annotated[str | None, Query(max_length=40, pattern=r"^[a-z]{2,4}_[0-9a-z]{1,34}$")]
OrderStatus = Literal[
    "placed", "paid", "partially_fulfilled", "fulfilled", "completed", "cancelled"
]


@router.get("", **scoped("orders:read"))
def list_orders(
    db: DB,
    caller: CurrentCaller,
    profile_id: QueryId = None,
    status: OrderStatus | None = None,
    location_id: QueryId = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> OrderList:
    """Newest first; ``profile_id`` lists the orders of the customer's whole identity cluster."""
    with db.transaction(readonly=True) as session:
        return service.list_orders(
            session,
            caller=caller,
            profile_id=profile_id,
            status=status,
            location_id=location_id,
            after=cursor,
            limit=limit,
        )


@router.get("/{order_id}", responses=problem(404, "No such order"), **scoped("orders:read"))
def get_order(order_id: str, db: DB) -> OrderOut:
    with db.transaction(readonly=True) as session:
        return service.get_order(session, order_id)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


GROUP = "/{order_id}/groups/{group_id}"


@router.post(
    f"{GROUP}/ready",
    responses=problem(409, "Not a pick-up group awaiting preparation"),
    **scoped("orders:write"),
)
def ready_for_pickup(
    order_id: str, group_id: str, request: Request, db: DB, caller: CurrentCaller
) -> OrderOut:
    """Mark a pick-up ready: the customer is told with their pick-up code."""
    with db.transaction() as session:
        return fulfilment.ready_for_pickup(
            session,
            order_id,
            group_id,
            caller=caller,
            hold_days=_settings(request).pickup_hold_days,
        )


@router.post(
    f"{GROUP}/handover",
    responses=problem(422, "The pick-up code does not match"),
    **scoped("orders:write"),
)
def hand_over(
    order_id: str, group_id: str, body: HandOverIn, db: DB, caller: CurrentCaller
) -> OrderOut:
    """Verify the customer's pick-up code and hand the goods over."""
    with db.transaction() as session:
        return fulfilment.hand_over(session, order_id, group_id, body.code, caller=caller)


@router.post(f"{GROUP}/ship", **scoped("orders:write"))
def ship(order_id: str, group_id: str, body: ShipIn, db: DB, caller: CurrentCaller) -> OrderOut:
    """Ship a group (from a warehouse or, ship-from-store, from a store) with its tracking."""
    with db.transaction() as session:
        return fulfilment.ship(
            session,
            order_id,
            group_id,
            carrier=body.carrier,
            tracking_number=body.tracking_number,
            caller=caller,
        )


@router.post(
    "/{order_id}/cancel",
    responses=problem(409, "Part of the order was handed over already"),
    **scoped("orders:write"),
)
def cancel(order_id: str, body: CancelIn, db: DB, caller: CurrentCaller) -> OrderOut:
    """Cancel: stock goes back, captured payments are refunded to their tenders."""
    with db.transaction() as session:
        return fulfilment.cancel(session, order_id, reason=body.reason, caller=caller)


carrier_router = APIRouter(tags=["orders"])


@carrier_router.post(
    "/carrier-events",
    responses=problem(404, "No shipment has that tracking number"),
    **scoped("orders:write"),
)
def carrier_event(body: CarrierEventIn, db: DB, caller: CurrentCaller) -> OrderOut:
    """A carrier status update (in transit, out for delivery, delivered…) for a shipment."""
    with db.transaction() as session:
        return fulfilment.carrier_update(
            session,
            tracking_number=body.tracking_number,
            status=body.status,
            carrier=body.carrier,
            occurred_at=body.occurred_at,
            detail=body.detail,
            caller=caller,
        )
