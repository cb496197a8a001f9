"""Rules of stock: the movement ledger, absolute counts, and reservations that never oversell.

Every change of ``on_hand`` or ``reserved`` is ONE conditional ``UPDATE … RETURNING``: the
database decides whether the units are there, never a value read earlier. CHECK constraints on
``stock_levels`` back ``0 <= reserved <= on_hand``. Services never commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.catalog.service import find_variant
from seamline.db.dialect import insert_ignoring_conflict
from seamline.db.pagination import keyset_page
from seamline.events.outbox import emit
from seamline.inventory.models import StockLevel, StockMovement
from seamline.inventory.schemas import (
    AdjustmentCreate,
    CountCreate,
    MovementOut,
    ReceiptCreate,
    StockLevelOut,
    VariantStockOut,
)
from seamline.inventory.service import find_location
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError

EXPIRE_KIND = "reservation.expire"
ADJUSTMENT_SIGNS = {"increase": 1, "decrease": -1, "damage": -1, "return": 1}
ADJUSTMENT_MOVEMENTS = {
    "increase": "adjustment",
    "decrease": "adjustment",
    "damage": "damage",
    "return": "return",
}


def expire_key(reservation_id: str) -> str:
    return f"reservation:{reservation_id}:expire"


def _level_out(location_id: str, variant_id: str, on_hand: int, reserved: int) -> StockLevelOut:
    return StockLevelOut(
        location_id=location_id,
        variant_id=variant_id,
        on_hand=on_hand,
        reserved=reserved,
        available=on_hand - reserved,
    )


def _changed(session: Session, level: StockLevelOut, cause: str) -> None:
    emit(
        session,
        "inventory.changed",
        aggregate_type="stock",
        aggregate_id=f"{level.location_id}:{level.variant_id}",
        payload={**level.model_dump(), "cause": cause},
    )


def _check_target(
    session: Session, location_id: str, variant_id: str, caller: Caller | None
) -> None:
    find_location(session, location_id)
    if caller is not None:
        caller.require_location(location_id)
    find_variant(session, variant_id)


def _ensure_row(session: Session, location_id: str, variant_id: str) -> None:
    insert_ignoring_conflict(
        session,
        StockLevel,
        {
            "location_id": location_id,
            "variant_id": variant_id,
            "on_hand": 0,
            "reserved": 0,
            "updated_at": clock.now(),
        },
        on=["location_id", "variant_id"],
    )


def _where(location_id: str, variant_id: str) -> Any:
    return (StockLevel.location_id == location_id) & (StockLevel.variant_id == variant_id)


def _current(session: Session, location_id: str, variant_id: str) -> tuple[int, int]:
    row = session.execute(
        select(StockLevel.on_hand, StockLevel.reserved).where(_where(location_id, variant_id))
    ).first()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _insufficient(location_id: str, variant_id: str, available: int, wanted: int) -> Conflict:
    return Conflict(
        f"only {available} available of variant {variant_id} at {location_id}, "
        f"{wanted} requested (available={available})",
        code="insufficient_stock",
    )


def _move(
    session: Session,
    location_id: str,
    variant_id: str,
    delta: int,
    *,
    kind: str,
    reason: str | None,
    caller: Caller | None,
    reference: str | None,
    floor_reserved: bool = True,
) -> StockLevelOut:
    """Add ``delta`` to ``on_hand`` in one conditional update and write its movement."""
    stmt = (
        update(StockLevel)
        .where(_where(location_id, variant_id))
        .values(on_hand=StockLevel.on_hand + delta, updated_at=clock.now())
        .returning(StockLevel.on_hand, StockLevel.reserved)
    )
    if delta < 0 and floor_reserved:
        stmt = stmt.where(StockLevel.on_hand - StockLevel.reserved >= -delta)
    row = session.execute(stmt).first()
    if row is None:
        on_hand, reserved = _current(session, location_id, variant_id)
        raise _insufficient(location_id, variant_id, on_hand - reserved, -delta)
    session.add(
        StockMovement(
            location_id=location_id,
            variant_id=variant_id,
            kind=kind,
            quantity=delta,
            reason=reason or "",
            actor=caller.key_id if caller is not None else None,
            reference=reference,
            created_at=clock.now(),
        )
    )
    session.flush()
    level = _level_out(location_id, variant_id, int(row[0]), int(row[1]))
    _changed(session, level, kind)
    return level


def receive(
    session: Session, data: ReceiptCreate, *, caller: Caller | None = None
) -> StockLevelOut:
    _check_target(session, data.location_id, data.variant_id, caller)
    _ensure_row(session, data.location_id, data.variant_id)
    return _move(
        session,
        data.location_id,
        data.variant_id,
        data.quantity,
        kind="receipt",
        reason=data.reason,
        caller=caller,
        reference=data.reference,
    )


def adjust(
    session: Session, data: AdjustmentCreate, *, caller: Caller | None = None
) -> StockLevelOut:
    """Correct stock by a quantity; a decrease may not touch reserved units (409)."""
    _check_target(session, data.location_id, data.variant_id, caller)
    _ensure_row(session, data.location_id, data.variant_id)
    return _move(
        session,
        data.location_id,
        data.variant_id,
        ADJUSTMENT_SIGNS[data.kind] * data.quantity,
        kind=ADJUSTMENT_MOVEMENTS[data.kind],
        reason=data.reason,
        caller=caller,
        reference=data.reference,
    )


def count(session: Session, data: CountCreate, *, caller: Caller | None = None) -> StockLevelOut:
    """Set ``on_hand`` to ``counted`` if it still is ``expected_on_hand`` (compare-and-swap)."""
    _check_target(session, data.location_id, data.variant_id, caller)
    _ensure_row(session, data.location_id, data.variant_id)
    delta = data.counted - data.expected_on_hand
    row = session.execute(
        update(StockLevel)
        .where(
            _where(data.location_id, data.variant_id),
            StockLevel.on_hand == data.expected_on_hand,
            StockLevel.reserved <= data.counted,
        )
        .values(on_hand=data.counted, updated_at=clock.now())
        .returning(StockLevel.on_hand, StockLevel.reserved)
    ).first()
    if row is None:
        on_hand, reserved = _current(session, data.location_id, data.variant_id)
        if on_hand != data.expected_on_hand:
            raise Conflict(
                f"on_hand is {on_hand}, not {data.expected_on_hand}: recount (on_hand={on_hand})",
                code="stale_count",
                errors=[FieldError("body.expected_on_hand", f"currently {on_hand}", "stale")],
            )
        raise Conflict(
            f"{reserved} units are reserved; a count of {data.counted} cannot hold them",
            code="count_below_reserved",
            errors=[FieldError("body.counted", f"below reserved ({reserved})", "below_reserved")],
        )
    session.add(
        StockMovement(
            location_id=data.location_id,
            variant_id=data.variant_id,
            kind="count",
            quantity=delta,
            reason=data.reason or "",
            actor=caller.key_id if caller is not None else None,
            reference=None,
            created_at=clock.now(),
        )
    )
    session.flush()
    level = _level_out(data.location_id, data.variant_id, int(row[0]), int(row[1]))
    _changed(session, level, "count")
    return level


def variant_stock(session: Session, variant_id: str) -> VariantStockOut:
    find_variant(session, variant_id)
    rows = session.scalars(
        select(StockLevel)
        .where(StockLevel.variant_id == variant_id)
        .order_by(StockLevel.location_id)
    )
    levels = [_level_out(r.location_id, r.variant_id, r.on_hand, r.reserved) for r in rows]
    on_hand = sum(x.on_hand for x in levels)
    reserved = sum(x.reserved for x in levels)
    return VariantStockOut(
        variant_id=variant_id,
        on_hand=on_hand,
        reserved=reserved,
        available=on_hand - reserved,
        locations=levels,
    )


def movements(
    session: Session,
    *,
    variant_id: str | None = None,
    location_id: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> tuple[list[MovementOut], str | None]:
    """The ledger, oldest first."""
    stmt = select(StockMovement)
    if variant_id:
        stmt = stmt.where(StockMovement.variant_id == variant_id)
    if location_id:
        stmt = stmt.where(StockMovement.location_id == location_id)
    rows, next_cursor = keyset_page(session, stmt, StockMovement.id, after=cursor, limit=limit)
    return (
        [
            MovementOut(
                id=r.id,
                location_id=r.location_id,
                variant_id=r.variant_id,
                kind=r.kind,
                quantity=r.quantity,
                reason=r.reason,
                actor=r.actor,
                reference=r.reference,
                created_at=r.created_at,
            )
            for r in rows
        ],
        next_cursor,
    )
