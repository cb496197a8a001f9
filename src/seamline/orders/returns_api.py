"""Routes for returns (thin: resolve the caller, call one service, return a schema).

Rules in ``orders/returns.py``; docs/returns.md explains them with examples.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
from seamline.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT
from seamline.orders import returns as service
from seamline.orders.returns_schemas import (
    ID_PATTERN,
    ReturnCreate,
    ReturnList,
    ReturnOut,
    ReturnReceive,
)

router = APIRouter(tags=["returns"])

IdPath = Annotated[str, Path(max_length=40, pattern=ID_PATTERN)]
Cursor = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$")]


@router.post(
    "/orders/{order_id}/returns",
    status_code=status.HTTP_201_CREATED,
    responses={
        **problem(404, "No such order, location, channel or exchange variant"),
        **problem(
            409,
            "More than was bought (minus returned) asked back, or the order is cancelled or "
            "not paid",
        ),
    },
    **scoped("orders:write"),
)
def request_return(
    order_id: IdPath, body: ReturnCreate, db: DB, caller: CurrentCaller
) -> ReturnOut:
    """Ask to return lines of an order, at a store (`location_id`) or by mail."""
    with db.transaction() as session:
        return service.request_return(session, order_id, body, caller=caller)


@router.post(
    "/returns/{return_id}/receive",
    responses={
        **problem(402, "The tender paying an exchange difference was declined; nothing kept"),
        **problem(404, "No such return or location"),
        **problem(
            409,
            "Already received, out of stock for an exchange, shipping refunded already, or "
            "the amount due changed while paying",
        ),
    },
    **scoped("orders:write"),
)
def receive_return(
    return_id: IdPath, body: ReturnReceive, db: DB, caller: CurrentCaller
) -> ReturnOut:
    """Receive and inspect a return, restock or write off each line, hand over exchanges,
    and settle: refund to the original tenders, or take the exchange difference."""
    return service.receive_return(db, return_id, body, caller=caller)


@router.get(
    "/returns/{return_id}", responses=problem(404, "No such return"), **scoped("orders:read")
)
def get_return(return_id: IdPath, db: DB) -> ReturnOut:
    with db.transaction(readonly=True) as session:
        return service.get_return(session, return_id)


@router.get(
    "/orders/{order_id}/returns", responses=problem(404, "No such order"), **scoped("orders:read")
)
def list_returns(
    order_id: IdPath,
    db: DB,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> ReturnList:
    """The order's returns, oldest first."""
    with db.transaction(readonly=True) as session:
        return service.list_returns(session, order_id, after=cursor, limit=limit)
