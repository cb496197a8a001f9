"""Reservations: holds on stock for a cart or order line — reserve, extend, release, commit,
and expiry through a durable timer.

A hold is one conditional update of one stock bucket (``buckets.hold``); the reservation row
records the bucket so its release or sale touches the same row. The happy path of a reserve is
that update, the reservation insert, its timer and its event: nothing is read first. Lookups
happen only to explain a failure (404 or 409).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.catalog.service import find_variant
from seamline.db.dialect import insert_ignoring_conflict, lock_for_transaction
from seamline.db.lookup import get_or_404
from seamline.events import timers
from seamline.inventory import availability, buckets
from seamline.inventory.availability import Policy
from seamline.inventory.models import Location, Reservation
from seamline.inventory.schemas import ReservationCreate, ReservationLine, ReservationOut
from seamline.inventory.stock import (
    EXPIRE_KIND,
    changed,
    check_target,
    expire_key,
    insufficient,
    location_totals,
    record,
)
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, ServiceBusy, Unprocessable
from seamline.kit.ids import new_id

LIVE = text("status = 'held'")


def reservation_out(r: Reservation) -> ReservationOut:
    return ReservationOut(
        id=r.id,
        location_id=r.location_id,
        variant_id=r.variant_id,
        quantity=r.quantity,
        reference=r.reference,
        channel_id=r.channel_id,
        status=r.status,
        expires_at=r.expires_at,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


@dataclass
class _Hold:
    """One line being held: where, and under which rule."""

    index: int
    line: ReservationLine
    expires_at: datetime | None
    policy: Policy | None
    in_order: bool = False  # the request holds this location and variant more than once


def _live_hold(
    session: Session, reference: str, variant_id: str, location_id: str | None
) -> Reservation | None:
    stmt = select(Reservation).where(
        Reservation.reference == reference,
        Reservation.variant_id == variant_id,
        Reservation.status == "held",
    )
    if location_id is not None:
        stmt = stmt.where(Reservation.location_id == location_id)
    return session.scalars(stmt.order_by(Reservation.created_at)).first()


def _same_hold(existing: Reservation, quantity: int, index: int) -> ReservationOut:
    if existing.quantity != quantity:
        raise Conflict(
            f"reference {existing.reference!r} already holds {existing.quantity} units "
            f"({existing.id}); release it or extend it instead",
            code="reservation_exists",
            errors=[FieldError(f"body.lines.{index}.quantity", "differs from the hold", "taken")],
        )
    return reservation_out(existing)


def _keep(session: Session, policy: Policy | None, location_id: str) -> int:
    if policy is None:
        return 0
    if location_id not in policy.kinds:
        location = session.get(Location, location_id)
        return policy.keep(location) if location is not None else 0
    return policy.keep_at(location_id)


def _hold_at(
    session: Session, hold: _Hold, location_id: str, *, wait: bool = True
) -> ReservationOut | None:
    """Hold the line at one location; None if the units are not there (nothing changed)."""
    line = hold.line
    keep = _keep(session, hold.policy, location_id)
    held = buckets.hold(
        session,
        location_id,
        line.variant_id,
        line.quantity,
        keep=keep,
        wait=wait,
        in_order=hold.in_order,
    )
    if held is None:
        return None
    now = clock.now()
    reservation_id = new_id("res")
    inserted = insert_ignoring_conflict(
        session,
        Reservation,
        {
            "id": reservation_id,
            "location_id": location_id,
            "variant_id": line.variant_id,
            "quantity": line.quantity,
            "reference": line.reference,
            "bucket": held.bucket,
            "channel_id": hold.policy.channel_id if hold.policy else None,
            "status": "held",
            "expires_at": hold.expires_at,
            "created_at": now,
            "updated_at": now,
        },
        on=["reference", "location_id", "variant_id"],
        where=LIVE,
    )
    if not inserted:
        # A concurrent identical request held it first: give the units back, return its hold.
        buckets.unhold(session, location_id, line.variant_id, held.bucket, line.quantity)
        existing = _live_hold(session, line.reference, line.variant_id, location_id)
        if existing is None:  # released in between; the caller may simply retry
            raise Conflict("the hold changed concurrently; retry", code="reservation_conflict")
        return _same_hold(existing, line.quantity, hold.index)
    if hold.expires_at is not None:
        timers.schedule(
            session,
            expire_key(reservation_id),
            kind=EXPIRE_KIND,
            fire_at=hold.expires_at,
            payload={"reservation_id": reservation_id},
        )
    changed(session, held, "reserve", delta_reserved=line.quantity)
    return ReservationOut(
        id=reservation_id,
        location_id=location_id,
        variant_id=line.variant_id,
        quantity=line.quantity,
        reference=line.reference,
        channel_id=hold.policy.channel_id if hold.policy else None,
        status="held",
        expires_at=hold.expires_at,
        created_at=now,
        updated_at=now,
    )


def _at_location(session: Session, hold: _Hold, caller: Caller | None) -> ReservationOut:
    line = hold.line
    assert line.location_id is not None
    if caller is not None:
        caller.require_location(line.location_id)
    policy = hold.policy
    if policy is not None and policy.restricted and line.location_id not in policy.location_ids:
        raise Unprocessable(
            f"channel {policy.channel_id} does not sell from {line.location_id}",
            code="location_not_in_channel",
            errors=[FieldError(f"body.lines.{hold.index}.location_id", "not a channel location")],
        )
    done = _hold_at(session, hold, line.location_id)
    if done is not None:
        return done
    check_target(session, line.location_id, line.variant_id, None)
    existing = _live_hold(session, line.reference, line.variant_id, line.location_id)
    if existing is not None:
        return _same_hold(existing, line.quantity, hold.index)
    now = buckets.totals(session, line.location_id, line.variant_id)
    keep = _keep(session, hold.policy, line.location_id)
    raise insufficient(
        line.location_id, line.variant_id, max(0, now.available - keep), line.quantity
    )


@dataclass
class _Plan:
    """Where a line left to the channel will be held: its candidates, best first (as read)."""

    candidates: list[str]
    levels: dict[tuple[str, str], tuple[int, int]]

    @property
    def first(self) -> str:
        return self.candidates[0] if self.candidates else ""


def _plan(session: Session, hold: _Hold, caller: Caller | None) -> _Plan:
    """The channel's locations that have the units as read now, most available first."""
    line, policy = hold.line, hold.policy
    assert policy is not None
    levels = location_totals(session, [line.variant_id])
    allowed = [loc for loc in policy.location_ids if caller is None or caller.may_act_at(loc)]

    def free(loc: str) -> int:
        on_hand, reserved = levels.get((loc, line.variant_id), (0, 0))
        return on_hand - reserved - policy.keep_at(loc)

    ranked = sorted(allowed, key=lambda x: (-free(x), x))
    return _Plan([loc for loc in ranked if free(loc) > 0], levels)


def _not_enough(session: Session, hold: _Hold, plan: _Plan) -> Conflict:
    line, policy = hold.line, hold.policy
    assert policy is not None
    find_variant(session, line.variant_id)  # an unknown variant is a 404, not a 409
    promised = policy.promise(
        {loc: on_hand - reserved for (loc, var), (on_hand, reserved) in plan.levels.items()}
    )
    return Conflict(
        f"only {promised} of variant {line.variant_id} available on channel "
        f"{policy.channel_id}, {line.quantity} requested (available={promised})",
        code="insufficient_stock",
        errors=[FieldError(f"body.lines.{hold.index}.quantity", "not available", "insufficient")],
        extra={"available": promised},
    )


def _anywhere(session: Session, hold: _Hold, plan: _Plan, *, holding: bool) -> ReservationOut:
    """Hold a line left to the channel at one of its candidate locations.

    A request never waits for a stock row out of the one lock order, so requests cannot
    deadlock each other; a multi-line request whose planned units were taken while it waited
    gets 503 (retry) rather than waiting out of order."""
    if not plan.candidates:
        raise _not_enough(session, hold, plan)
    if not holding:
        # Nothing locked yet: try every candidate without waiting, best first, then wait on
        # them in location order — every waiter waits in the same order, so no cycle.
        for location_id in plan.candidates:
            done = _hold_at(session, hold, location_id, wait=False)
            if done is not None:
                return done
        for location_id in sorted(plan.candidates):
            done = _hold_at(session, hold, location_id)
            if done is not None:
                return done
        raise _not_enough(session, hold, _plan(session, hold, None))
    # Rows already locked: wait only at the planned location, which is in the request's lock
    # order; elsewhere try without waiting, and give up with a retryable answer.
    done = _hold_at(session, hold, plan.first)
    if done is not None:
        return done
    for location_id in plan.candidates[1:]:
        done = _hold_at(session, hold, location_id, wait=False)
        if done is not None:
            return done
    raise ServiceBusy(
        "the stock this request planned on was taken while it waited; retry",
        code="concurrent_update",
        headers={"Retry-After": "1"},
    )


def _check_share(session: Session, policy: Policy, data: ReservationCreate) -> None:
    """A channel capped to a share of the stock may not take more than its share now.

    Read-based: two concurrent holds may together pass the cap by a few units; the units
    themselves are still never oversold (each hold is conditional)."""
    wanted: dict[str, int] = {}
    for line in data.lines:
        if _live_hold(session, line.reference, line.variant_id, line.location_id) is not None:
            continue  # a retry: that hold is already counted as reserved
        wanted[line.variant_id] = wanted.get(line.variant_id, 0) + line.quantity
    levels = location_totals(session, list(wanted))
    for variant_id, quantity in wanted.items():
        promised = policy.promise(
            {
                loc: on_hand - reserved
                for (loc, var), (on_hand, reserved) in levels.items()
                if var == variant_id
            }
        )
        if quantity > promised:
            raise Conflict(
                f"channel {policy.channel_id} may promise {promised} of variant {variant_id} "
                f"(its share is {policy.share_percent}%), {quantity} requested "
                f"(available={promised})",
                code="insufficient_stock",
                extra={"available": promised},
            )


def reserve(
    session: Session, data: ReservationCreate, *, caller: Caller | None = None
) -> list[ReservationOut]:
    """Hold every line or none (the caller's transaction rolls back on the first 409).

    Lines left to the channel are placed first (at the location with most available, as read);
    then every line takes its stock rows in one fixed order — by location, then variant — so
    two multi-line reservations do not deadlock. A line whose reference already holds the same
    units returns that hold (a retried request reserves nothing twice); one request may not
    name the same reference and variant twice.
    """
    for i, line in enumerate(data.lines):
        if line.location_id is None and data.channel_id is None:
            raise Unprocessable(
                "a line without location_id needs a channel_id to choose a location",
                code="location_required",
                errors=[FieldError(f"body.lines.{i}.location_id", "required", "missing")],
            )
    seen: dict[tuple[str, str], int] = {}
    for i, line in enumerate(data.lines):
        if (line.reference, line.variant_id) in seen:
            raise Unprocessable(
                f"line {seen[(line.reference, line.variant_id)]} already holds variant "
                f"{line.variant_id} for reference {line.reference!r}",
                code="duplicate_line",
                errors=[FieldError(f"body.lines.{i}.reference", "repeated", "duplicate")],
            )
        seen[(line.reference, line.variant_id)] = i
    policy = availability.channel_policy(session, data.channel_id) if data.channel_id else None
    # Lines left to the channel: the unique index covers (reference, location, variant), so two
    # identical requests could pick different locations. Serialize them by reference — all of
    # a request's such locks first, sorted, before any stock row is touched.
    for key in sorted(
        f"hold:{line.reference}:{line.variant_id}" for line in data.lines if not line.location_id
    ):
        lock_for_transaction(session, key)
    if policy is not None and policy.share_percent < 100:
        _check_share(session, policy, data)
    expires_at = clock.now() + timedelta(seconds=data.ttl_seconds) if data.ttl_seconds else None
    results: dict[int, ReservationOut] = {}
    plans: dict[int, _Plan] = {}
    where: dict[int, str] = {}
    for i, line in enumerate(data.lines):
        if line.location_id is not None:
            where[i] = line.location_id
            continue
        existing = _live_hold(session, line.reference, line.variant_id, None)
        if existing is not None:  # a retry: the hold it made
            results[i] = _same_hold(existing, line.quantity, i)
            continue
        plans[i] = _plan(session, _Hold(i, line, expires_at, policy), caller)
        where[i] = plans[i].first
    # Every line now has a location: hold them in one fixed order, (location, variant).
    order = sorted(where, key=lambda i: (where[i], data.lines[i].variant_id))
    pairs = [(where[i], data.lines[i].variant_id) for i in order]
    repeated = {pair for pair in pairs if pairs.count(pair) > 1}
    holding = False
    for i in order:
        line = data.lines[i]
        hold = _Hold(i, line, expires_at, policy, (where[i], line.variant_id) in repeated)
        if i in plans:
            results[i] = _anywhere(session, hold, plans[i], holding=holding)
        else:
            results[i] = _at_location(session, hold, caller)
        holding = True
    return [results[i] for i in range(len(data.lines))]


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


def claim(session: Session, reservation_id: str, status: str) -> Reservation | None:
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


def let_go(session: Session, reservation: Reservation, cause: str) -> None:
    """Give a claimed hold's units back to its bucket."""
    level = buckets.unhold(
        session,
        reservation.location_id,
        reservation.variant_id,
        reservation.bucket,
        reservation.quantity,
    )
    if level is None:  # the CHECK constraints make this unreachable; refuse rather than drift
        raise Conflict("reserved units are missing", code="reservation_inconsistent")
    changed(session, level, cause, delta_reserved=-reservation.quantity)


def release(
    session: Session, reservation_id: str, *, caller: Caller | None = None
) -> ReservationOut:
    reservation = _held(session, reservation_id, caller, allow_overdue=True)
    claimed = claim(session, reservation.id, "released")
    if claimed is None:
        raise _not_held(session, reservation.id)
    let_go(session, claimed, "release")
    if claimed.expires_at is not None:  # a hold without a TTL has no timer
        timers.cancel(session, expire_key(claimed.id))
    return reservation_out(claimed)


def commit(
    session: Session, reservation_id: str, *, caller: Caller | None = None
) -> ReservationOut:
    """Turn held units into a sale: ``reserved -= q`` and ``on_hand -= q`` in one update."""
    reservation = _held(session, reservation_id, caller)
    claimed = claim(session, reservation.id, "committed")
    if claimed is None:
        raise _not_held(session, reservation.id)
    level = buckets.unhold(
        session,
        claimed.location_id,
        claimed.variant_id,
        claimed.bucket,
        claimed.quantity,
        sale=True,
    )
    if level is None:
        raise Conflict("reserved units are missing", code="reservation_inconsistent")
    record(
        session,
        claimed.location_id,
        claimed.variant_id,
        -claimed.quantity,
        kind="sale",
        reason=None,
        caller=caller,
        reference=claimed.reference,
    )
    session.flush()
    changed(
        session,
        level,
        "sale",
        delta_on_hand=-claimed.quantity,
        delta_reserved=-claimed.quantity,
    )
    if claimed.expires_at is not None:  # a hold without a TTL has no timer
        timers.cancel(session, expire_key(claimed.id))
    return reservation_out(claimed)
