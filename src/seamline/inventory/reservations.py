"""Reservations: holds on stock for a cart or order line — reserve, extend, release, commit,
and expiry through a durable timer. Every change is one conditional update."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.db.lookup import get_or_404
from seamline.events import timers
from seamline.inventory.models import Reservation, StockLevel, StockMovement
from seamline.inventory.schemas import (
    ReservationCreate,
    ReservationOut,
    StockLevelOut,
)
from seamline.inventory.stock import (
    EXPIRE_KIND,
    _changed,
    _check_target,
    _current,
    _insufficient,
    _level_out,
    _where,
    expire_key,
)
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError
from seamline.kit.ids import new_id


def reservation_out(r: Reservation) -> ReservationOut:
    return ReservationOut(
        id=r.id,
        location_id=r.location_id,
        variant_id=r.variant_id,
        quantity=r.quantity,
        reference=r.reference,
        status=r.status,
        expires_at=r.expires_at,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def _live_hold(
    session: Session, reference: str, location_id: str, variant_id: str
) -> Reservation | None:
    return session.scalar(
        select(Reservation).where(
            Reservation.reference == reference,
            Reservation.location_id == location_id,
            Reservation.variant_id == variant_id,
            Reservation.status == "held",
        )
    )


def _shift_reserved(
    session: Session, location_id: str, variant_id: str, quantity: int, *, sale: bool = False
) -> StockLevelOut | None:
    """``reserved += quantity`` (negative releases); with ``sale`` also ``on_hand += quantity``.

    One conditional update: a hold takes only available units; a release or sale only what is
    reserved. Returns None when the condition fails.
    """
    values: dict[str, Any] = {
        "reserved": StockLevel.reserved + quantity,
        "updated_at": clock.now(),
    }
    stmt = update(StockLevel).where(_where(location_id, variant_id))
    if quantity > 0:
        stmt = stmt.where(StockLevel.on_hand - StockLevel.reserved >= quantity)
    else:
        stmt = stmt.where(StockLevel.reserved >= -quantity)
    if sale:
        values["on_hand"] = StockLevel.on_hand + quantity
        stmt = stmt.where(StockLevel.on_hand >= -quantity)
    row = session.execute(
        stmt.values(**values).returning(StockLevel.on_hand, StockLevel.reserved)
    ).first()
    if row is None:
        return None
    return _level_out(location_id, variant_id, int(row[0]), int(row[1]))


def reserve(
    session: Session, data: ReservationCreate, *, caller: Caller | None = None
) -> list[ReservationOut]:
    """Hold every line or none (the caller's transaction rolls back on the first 409).

    Lines lock their stock rows in one fixed order — by location, then variant — so two
    multi-line reservations can never deadlock. A line whose reference already holds the same
    units returns that hold (a retried request reserves nothing twice).
    """
    order = sorted(
        range(len(data.lines)),
        key=lambda i: (data.lines[i].location_id, data.lines[i].variant_id),
    )
    now = clock.now()
    expires_at = now + timedelta(seconds=data.ttl_seconds) if data.ttl_seconds else None
    results: dict[int, ReservationOut] = {}
    for i in order:
        line = data.lines[i]
        _check_target(session, line.location_id, line.variant_id, caller)
        existing = _live_hold(session, line.reference, line.location_id, line.variant_id)
        if existing is not None:
            results[i] = _same_hold(existing, line.quantity, i)
            continue
        level = _shift_reserved(session, line.location_id, line.variant_id, line.quantity)
        if level is None:
            on_hand, reserved = _current(session, line.location_id, line.variant_id)
            raise _insufficient(
                line.location_id, line.variant_id, on_hand - reserved, line.quantity
            )
        reservation = Reservation(
            id=new_id("res"),
            location_id=line.location_id,
            variant_id=line.variant_id,
            quantity=line.quantity,
            reference=line.reference,
            status="held",
            expires_at=expires_at,
            created_at=now,
            updated_at=now,
        )
        savepoint = session.begin_nested()
        try:
            session.add(reservation)
            session.flush()
            savepoint.commit()
        except IntegrityError:
            # A concurrent identical request held it first: give the units back, return its hold.
            savepoint.rollback()
            _shift_reserved(session, line.location_id, line.variant_id, -line.quantity)
            existing = _live_hold(session, line.reference, line.location_id, line.variant_id)
            if existing is None:
                raise
            results[i] = _same_hold(existing, line.quantity, i)
            continue
        if expires_at is not None:
            timers.schedule(
                session,
                expire_key(reservation.id),
                kind=EXPIRE_KIND,
                fire_at=expires_at,
                payload={"reservation_id": reservation.id},
            )
        _changed(session, level, "reserve")
        results[i] = reservation_out(reservation)
    return [results[i] for i in range(len(data.lines))]


def _same_hold(existing: Reservation, quantity: int, index: int) -> ReservationOut:
    if existing.quantity != quantity:
        raise Conflict(
            f"reference {existing.reference!r} already holds {existing.quantity} units "
            f"({existing.id}); release it or extend it instead",
            code="reservation_exists",
            errors=[FieldError(f"body.lines.{index}.quantity", "differs from the hold", "taken")],
        )
    return reservation_out(existing)


def find_reservation(
    session: Session, reservation_id: str, *, for_update: bool = False
) -> Reservation:
    return get_or_404(
        session,
        Reservation,
        reservation_id,
        what="reservation",
        code="reservation_not_found",
        for_update=for_update,
    )


def get_reservation(session: Session, reservation_id: str) -> ReservationOut:
    return reservation_out(find_reservation(session, reservation_id))


def _claim(session: Session, reservation_id: str, status: str) -> Reservation | None:
    """Move a held reservation to ``status`` (conditional: only one caller wins)."""
    claimed = session.execute(
        update(Reservation)
        .where(Reservation.id == reservation_id, Reservation.status == "held")
        .values(status=status, updated_at=clock.now())
        .returning(Reservation.id)
    ).first()
    if claimed is None:
        return None
    reservation = session.get(Reservation, reservation_id, populate_existing=True)
    assert reservation is not None
    return reservation


def _held(
    session: Session, reservation_id: str, caller: Caller | None, *, allow_overdue: bool = False
) -> Reservation:
    reservation = find_reservation(session, reservation_id)
    if caller is not None:
        caller.require_location(reservation.location_id)
    if reservation.status != "held":
        raise Conflict(
            f"reservation {reservation.id} is {reservation.status}",
            code=f"reservation_{reservation.status}",
        )
    if (
        not allow_overdue
        and reservation.expires_at is not None
        and reservation.expires_at <= clock.now()
    ):
        raise Conflict(f"reservation {reservation.id} has expired", code="reservation_expired")
    return reservation


def _not_held(session: Session, reservation_id: str) -> Conflict:
    status = find_reservation(session, reservation_id).status
    return Conflict(f"reservation {reservation_id} is {status}", code=f"reservation_{status}")


def extend(
    session: Session, reservation_id: str, ttl_seconds: int, *, caller: Caller | None = None
) -> ReservationOut:
    """Move the expiry to ``ttl_seconds`` from now (a commitment without expiry gets one)."""
    reservation = _held(session, reservation_id, caller)
    expires_at = clock.now() + timedelta(seconds=ttl_seconds)
    moved = session.execute(
        update(Reservation)
        .where(Reservation.id == reservation.id, Reservation.status == "held")
        .values(expires_at=expires_at, updated_at=clock.now())
        .returning(Reservation.id)
    ).first()
    if moved is None:
        raise _not_held(session, reservation.id)
    timers.schedule(
        session,
        expire_key(reservation.id),
        kind=EXPIRE_KIND,
        fire_at=expires_at,
        payload={"reservation_id": reservation.id},
    )
    session.refresh(reservation)
    return reservation_out(reservation)


def _let_go(session: Session, reservation: Reservation, cause: str) -> None:
    level = _shift_reserved(
        session, reservation.location_id, reservation.variant_id, -reservation.quantity
    )
    if level is None:  # the CHECK constraints make this unreachable; refuse rather than drift
        raise Conflict("reserved units are missing", code="reservation_inconsistent")
    _changed(session, level, cause)


def release(
    session: Session, reservation_id: str, *, caller: Caller | None = None
) -> ReservationOut:
    reservation = _held(session, reservation_id, caller, allow_overdue=True)
    claimed = _claim(session, reservation.id, "released")
    if claimed is None:
        raise _not_held(session, reservation.id)
    _let_go(session, claimed, "release")
    timers.cancel(session, expire_key(claimed.id))
    return reservation_out(claimed)


def commit(
    session: Session, reservation_id: str, *, caller: Caller | None = None
) -> ReservationOut:
    """Turn held units into a sale: ``reserved -= q`` and ``on_hand -= q`` in one update."""
    reservation = _held(session, reservation_id, caller)
    claimed = _claim(session, reservation.id, "committed")
    if claimed is None:
        raise _not_held(session, reservation.id)
    level = _shift_reserved(
        session, claimed.location_id, claimed.variant_id, -claimed.quantity, sale=True
    )
    if level is None:
        raise Conflict("reserved units are missing", code="reservation_inconsistent")
    session.add(
        StockMovement(
            location_id=claimed.location_id,
            variant_id=claimed.variant_id,
            kind="sale",
            quantity=-claimed.quantity,
            reason="",
            actor=caller.key_id if caller is not None else None,
            reference=claimed.reference,
            created_at=clock.now(),
        )
    )
    session.flush()
    _changed(session, level, "sale")
    timers.cancel(session, expire_key(claimed.id))
    return reservation_out(claimed)
