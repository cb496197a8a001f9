"""Stock and reservation routes: resolve the caller, call one service function, return."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
from seamline.inventory import reservations, stock, transfers
from seamline.inventory.schemas import (
    ID_PATTERN,
    AdjustmentCreate,
    CountCreate,
    MovementOut,
    ReceiptCreate,
    ReservationCreate,
    ReservationExtend,
    ReservationList,
    ReservationOut,
    SplitOut,
    SplitSet,
    StockLevelOut,
    TransferCreate,
    TransferOut,
    TransferReceive,
    TransferStatus,
    VariantStockOut,
)
from seamline.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

MISSING = problem(404, "No such location, variant or reservation")
CONFLICT = problem(409, "Not enough stock, a stale count, or a settled hold")
router = APIRouter(tags=["inventory"])

StockIdQuery = Annotated[str | None, Query(max_length=40, pattern=ID_PATTERN)]
VariantPath = Annotated[str, Path(max_length=40, pattern=ID_PATTERN)]
ReservationPath = Annotated[str, Path(max_length=40, pattern=ID_PATTERN)]
TransferPath = Annotated[str, Path(max_length=40, pattern=ID_PATTERN)]


@router.post(
    "/stock/receipts",
    status_code=status.HTTP_201_CREATED,
    responses={**MISSING, **CONFLICT},
    **scoped("inventory:write"),
)
def receive(body: ReceiptCreate, db: DB, caller: CurrentCaller) -> StockLevelOut:
    """Units arrived at a location: a `receipt` movement."""
    with db.transaction() as session:
        return stock.receive(session, body, caller=caller)


@router.post(
    "/stock/adjustments",
    status_code=status.HTTP_201_CREATED,
    responses={**MISSING, **CONFLICT},
    **scoped("inventory:write"),
)
def adjust(body: AdjustmentCreate, db: DB, caller: CurrentCaller) -> StockLevelOut:
    """Correct stock with a reason; removing units never touches reserved ones (409)."""
    with db.transaction() as session:
        return stock.adjust(session, body, caller=caller)


@router.post(
    "/stock/counts",
    status_code=status.HTTP_201_CREATED,
    responses={**MISSING, **CONFLICT},
    **scoped("inventory:write"),
)
def count(body: CountCreate, db: DB, caller: CurrentCaller) -> StockLevelOut:
    """An absolute count; refused with 409 `stale_count` unless `expected_on_hand` is current."""
    with db.transaction() as session:
        return stock.count(session, body, caller=caller)


@router.get("/stock/variants/{variant_id}", responses=MISSING, **scoped("inventory:read"))
def variant_stock(variant_id: VariantPath, db: DB) -> VariantStockOut:
    """On hand, reserved and available per location and in total."""
    with db.transaction(readonly=True) as session:
        return stock.variant_stock(session, variant_id)


@router.put("/stock/variants/{variant_id}/split", responses=MISSING, **scoped("inventory:write"))
def split(variant_id: VariantPath, body: SplitSet, db: DB, caller: CurrentCaller) -> SplitOut:
    """Keep a hot variant's stock in several rows per location so concurrent holds do not
    queue on one row; reads stay exact. `buckets: 1` turns it off."""
    with db.transaction() as session:
        return stock.split(session, variant_id, body.buckets, caller=caller)


@router.get("/stock/movements", **scoped("inventory:read"))
def movements(
    db: DB,
    variant_id: StockIdQuery = None,
    location_id: StockIdQuery = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=18, pattern=r"^[0-9]+$", description="`next_cursor` of the previous page."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[MovementOut]:
    """The movement ledger, oldest first."""
    with db.transaction(readonly=True) as session:
        rows, next_cursor = stock.movements(
            session,
            variant_id=variant_id,
            location_id=location_id,
            cursor=int(cursor) if cursor else None,
            limit=limit,
        )
        return Page[MovementOut](data=rows, next_cursor=next_cursor)


@router.post(
    "/reservations",
    status_code=status.HTTP_201_CREATED,
    responses={**MISSING, **CONFLICT},
    **scoped("inventory:write"),
)
def reserve(body: ReservationCreate, db: DB, caller: CurrentCaller) -> ReservationList:
    """Hold every line or none; 409 `insufficient_stock` states what is available."""
    with db.transaction() as session:
        return ReservationList(data=reservations.reserve(session, body, caller=caller))


@router.get("/reservations/{reservation_id}", responses=MISSING, **scoped("inventory:read"))
def get_reservation(reservation_id: ReservationPath, db: DB) -> ReservationOut:
    with db.transaction(readonly=True) as session:
        return reservations.get_reservation(session, reservation_id)


@router.post(
    "/reservations/{reservation_id}/extend",
    responses={**MISSING, **CONFLICT},
    **scoped("inventory:write"),
)
def extend(
    reservation_id: ReservationPath, body: ReservationExtend, db: DB, caller: CurrentCaller
) -> ReservationOut:
    with db.transaction() as session:
        return reservations.extend(session, reservation_id, body.ttl_seconds, caller=caller)


@router.post(
    "/reservations/{reservation_id}/release",
    responses={**MISSING, **CONFLICT},
    **scoped("inventory:write"),
)
def release(reservation_id: ReservationPath, db: DB, caller: CurrentCaller) -> ReservationOut:
    with db.transaction() as session:
        return reservations.release(session, reservation_id, caller=caller)


@router.post(
    "/reservations/{reservation_id}/commit",
    responses={**MISSING, **CONFLICT},
    **scoped("inventory:write"),
)
def commit(reservation_id: ReservationPath, db: DB, caller: CurrentCaller) -> ReservationOut:
    """Turn the hold into a `sale` movement."""
    with db.transaction() as session:
        return reservations.commit(session, reservation_id, caller=caller)


@router.post(
    "/stock/transfers",
    status_code=status.HTTP_201_CREATED,
    responses={**MISSING, **CONFLICT},
    **scoped("inventory:write"),
)
def create_transfer(body: TransferCreate, db: DB, caller: CurrentCaller) -> TransferOut:
    """Send units to another location: they leave now and are in transit until received."""
    with db.transaction() as session:
        return transfers.create(session, body, caller=caller)


@router.get("/stock/transfers", **scoped("inventory:read"))
def list_transfers(
    db: DB,
    location_id: StockIdQuery = None,
    transfer_status: Annotated[TransferStatus | None, Query(alias="status")] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=40, pattern=ID_PATTERN, description="`next_cursor` of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[TransferOut]:
    """Transfers from or to a location, oldest first."""
    with db.transaction(readonly=True) as session:
        rows, next_cursor = transfers.list_transfers(
            session, location_id=location_id, status=transfer_status, cursor=cursor, limit=limit
        )
        return Page[TransferOut](data=rows, next_cursor=next_cursor)


@router.get("/stock/transfers/{transfer_id}", responses=MISSING, **scoped("inventory:read"))
def get_transfer(transfer_id: TransferPath, db: DB) -> TransferOut:
    with db.transaction(readonly=True) as session:
        return transfers.get(session, transfer_id)


@router.post(
    "/stock/transfers/{transfer_id}/receive",
    responses={**MISSING, **CONFLICT},
    **scoped("inventory:write"),
)
def receive_transfer(
    transfer_id: TransferPath, body: TransferReceive, db: DB, caller: CurrentCaller
) -> TransferOut:
    """The units arrived (all, or the quantities given per variant)."""
    with db.transaction() as session:
        return transfers.receive(session, transfer_id, body, caller=caller)


@router.post(
    "/stock/transfers/{transfer_id}/cancel",
    responses={**MISSING, **CONFLICT},
    **scoped("inventory:write"),
)
def cancel_transfer(transfer_id: TransferPath, db: DB, caller: CurrentCaller) -> TransferOut:
    """Call the units back to the source."""
    with db.transaction() as session:
        return transfers.cancel(session, transfer_id, caller=caller)
