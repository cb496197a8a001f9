"""Rules of stock: the movement ledger, absolute counts, and what each location holds.

The database decides whether units are there, never a value read earlier: holds are one
conditional ``UPDATE … RETURNING``, and writers that need several rows lock them in one order
(``inventory/buckets.py``). CHECK constraints on ``stock_levels`` back
``0 <= reserved <= on_hand``. Every ``on_hand`` change writes one ledger movement in the same
transaction. Services never commit.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.catalog.service import find_variant
from seamline.db.pagination import keyset_page
from seamline.events.outbox import emit
from seamline.inventory import buckets
from seamline.inventory.buckets import Totals
from seamline.inventory.models import (
    MAX_BUCKETS,
    StockLevel,
    StockMovement,
    Transfer,
    TransferLine,
)
from seamline.inventory.schemas import (
    AdjustmentCreate,
    CountCreate,
    LocationStockOut,
    MovementOut,
    ReceiptCreate,
    SplitOut,
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


def totals_out(t: Totals) -> StockLevelOut:
    return _level_out(t.location_id, t.variant_id, t.on_hand, t.reserved)


def changed(
    session: Session,
    t: Totals,
    cause: str,
    *,
    delta_on_hand: int = 0,
    delta_reserved: int = 0,
) -> StockLevelOut:
    """Emit ``inventory.changed`` for a location's stock of a variant; returns its totals.

    ``delta_*`` are exact. The totals are the location's after this change as this transaction
    sees it; on a split (hot) SKU a concurrent change to another bucket may commit in between,
    so subscribers that need the current figure re-read it (the SSE stream does).
    """
    level = totals_out(t)
    emit(
        session,
        "inventory.changed",
        aggregate_type="stock",
        aggregate_id=f"{t.location_id}:{t.variant_id}",
        payload={
            **level.model_dump(),
            "delta_on_hand": delta_on_hand,
            "delta_reserved": delta_reserved,
            "cause": cause,
        },
    )
    return level


def check_target(
    session: Session, location_id: str, variant_id: str, caller: Caller | None
) -> None:
    find_location(session, location_id)
    if caller is not None:
        caller.require_location(location_id)
    find_variant(session, variant_id)


def insufficient(location_id: str, variant_id: str, available: int, wanted: int) -> Conflict:
    return Conflict(
        f"only {available} available of variant {variant_id} at {location_id}, "
        f"{wanted} requested (available={available})",
        code="insufficient_stock",
        extra={"available": available},
    )


def record(
    session: Session,
    location_id: str,
    variant_id: str,
    quantity: int,
    *,
    kind: str,
    reason: str | None,
    caller: Caller | None,
    reference: str | None,
) -> None:
    """Append one movement to the ledger."""
    session.add(
        StockMovement(
            location_id=location_id,
            variant_id=variant_id,
            kind=kind,
            quantity=quantity,
            reason=reason or "",
            actor=caller.key_id if caller is not None else None,
            reference=reference,
            created_at=clock.now(),
        )
    )


def move(
    session: Session,
    location_id: str,
    variant_id: str,
    delta: int,
    *,
    kind: str,
    reason: str | None,
    caller: Caller | None,
    reference: str | None,
) -> StockLevelOut:
    """Add ``delta`` to ``on_hand`` (removing only free units) and write its movement."""
    if delta > 0:
        result = buckets.add(session, location_id, variant_id, delta)
    else:
        removed = buckets.remove(session, location_id, variant_id, -delta)
        if removed is None:
            now = buckets.totals(session, location_id, variant_id)
            raise insufficient(location_id, variant_id, now.available, -delta)
        result = removed
    record(
        session,
        location_id,
        variant_id,
        delta,
        kind=kind,
        reason=reason,
        caller=caller,
        reference=reference,
    )
    session.flush()
    return changed(session, result, kind, delta_on_hand=delta)


def receive(
    session: Session, data: ReceiptCreate, *, caller: Caller | None = None
) -> StockLevelOut:
    check_target(session, data.location_id, data.variant_id, caller)
    return move(
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
    check_target(session, data.location_id, data.variant_id, caller)
    return move(
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
    check_target(session, data.location_id, data.variant_id, caller)
    if data.counted == data.expected_on_hand:
        # A count that confirms the belief changes nothing; it still must be current.
        now = buckets.totals(session, data.location_id, data.variant_id)
        if now.on_hand == data.expected_on_hand:
            return totals_out(now)
    result, swapped = buckets.swap_on_hand(
        session, data.location_id, data.variant_id, data.expected_on_hand, data.counted
    )
    if not swapped:
        if result.on_hand != data.expected_on_hand:
            raise Conflict(
                f"on_hand is {result.on_hand}, not {data.expected_on_hand}: recount "
                f"(on_hand={result.on_hand})",
                code="stale_count",
                errors=[
                    FieldError("body.expected_on_hand", f"currently {result.on_hand}", "stale")
                ],
                extra={"on_hand": result.on_hand},
            )
        raise Conflict(
            f"{result.reserved} units are reserved; a count of {data.counted} cannot hold them",
            code="count_below_reserved",
            errors=[
                FieldError("body.counted", f"below reserved ({result.reserved})", "below_reserved")
            ],
        )
    delta = data.counted - data.expected_on_hand
    record(
        session,
        data.location_id,
        data.variant_id,
        delta,
        kind="count",
        reason=data.reason,
        caller=caller,
        reference=None,
    )
    session.flush()
    return changed(session, result, "count", delta_on_hand=delta)


def in_transit_to(session: Session, variant_id: str) -> dict[str, int]:
    """Units of a variant on their way to each location."""
    rows = session.execute(
        select(Transfer.to_location_id, func.sum(TransferLine.quantity))
        .join(TransferLine, TransferLine.transfer_id == Transfer.id)
        .where(TransferLine.variant_id == variant_id, Transfer.status == "in_transit")
        .group_by(Transfer.to_location_id)
    )
    return {str(r[0]): int(r[1]) for r in rows}


def location_totals(
    session: Session, variant_ids: list[str]
) -> dict[tuple[str, str], tuple[int, int]]:
    """(location, variant) → (on_hand, reserved), summed over buckets in ONE statement, so the
    figures come from one snapshot even while holds land on other buckets."""
    rows = session.execute(
        select(
            StockLevel.location_id,
            StockLevel.variant_id,
            func.sum(StockLevel.on_hand),
            func.sum(StockLevel.reserved),
        )
        .where(StockLevel.variant_id.in_(variant_ids))
        .group_by(StockLevel.location_id, StockLevel.variant_id)
        .order_by(StockLevel.location_id)
    )
    return {(str(r[0]), str(r[1])): (int(r[2]), int(r[3])) for r in rows}


def variant_stock(session: Session, variant_id: str) -> VariantStockOut:
    find_variant(session, variant_id)
    incoming = in_transit_to(session, variant_id)
    levels = []
    for (location_id, _), (on_hand, reserved) in location_totals(session, [variant_id]).items():
        levels.append(
            LocationStockOut(
                location_id=location_id,
                variant_id=variant_id,
                on_hand=on_hand,
                reserved=reserved,
                available=on_hand - reserved,
                incoming=incoming.pop(location_id, 0),
            )
        )
    for location_id, units in sorted(incoming.items()):  # nothing there yet, units on the way
        levels.append(
            LocationStockOut(
                location_id=location_id,
                variant_id=variant_id,
                on_hand=0,
                reserved=0,
                available=0,
                incoming=units,
            )
        )
    on_hand = sum(x.on_hand for x in levels)
    reserved = sum(x.reserved for x in levels)
    return VariantStockOut(
        variant_id=variant_id,
        on_hand=on_hand,
        reserved=reserved,
        available=on_hand - reserved,
        in_transit=sum(x.incoming for x in levels),
        buckets=buckets.split_count(session, variant_id),
        locations=levels,
    )


def split(
    session: Session, variant_id: str, count: int, *, caller: Caller | None = None
) -> SplitOut:
    """Keep a hot variant's stock in ``count`` rows per location (1 turns splitting off).

    It changes every location's rows, so keys limited to locations may not do it."""
    if caller is not None:
        caller.require_location(None)
    find_variant(session, variant_id)
    if not 1 <= count <= MAX_BUCKETS:
        raise ValueError(f"buckets must be 1 … {MAX_BUCKETS}")
    buckets.resplit(session, variant_id, count)
    return SplitOut(variant_id=variant_id, buckets=count)


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
