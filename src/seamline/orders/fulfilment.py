"""Fulfilment: ship (from a warehouse or a store), pick up in store (ready → handed over, with
a pick-up code, reminders and expiry), carrier updates, and cancellation.

Who may act: a key limited to locations (a store associate's) acts only on groups at its own
locations; an order is cancelled by a key of the location that placed it or an unrestricted
key. Every action writes the order's history and emits an ``order.*`` event naming the
customer, so the timeline and the customer's notifications follow.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.db.lookup import usable_id
from seamline.events import timers
from seamline.inventory import stock
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, NotFound, Unprocessable
from seamline.kit.ids import normalize_read_aloud
from seamline.orders.models import FulfilmentGroup, Order, OrderLine
from seamline.orders.schemas import OrderOut
from seamline.orders.service import (
    CLOSED_GROUPS,
    emit_order_event,
    find_order,
    history,
    order_out,
    refresh_status,
)
from seamline.payments import service as payments
from seamline.payments.models import Payment

log = structlog.get_logger("seamline.orders.fulfilment")

REMIND_TIMER = "pickup.remind"
EXPIRE_TIMER = "pickup.expire"
HANDED_OVER = ("picked_up", "shipped", "delivered")


def _group(session: Session, order: Order, group_id: str) -> FulfilmentGroup:
    if not usable_id(group_id):
        raise NotFound("no such fulfilment group on this order", code="fulfilment_not_found")
    group = session.scalars(
        select(FulfilmentGroup)
        .where(FulfilmentGroup.id == group_id, FulfilmentGroup.order_id == order.id)
        .with_for_update()
    ).one_or_none()
    if group is None:
        raise NotFound("no such fulfilment group on this order", code="fulfilment_not_found")
    return group


def _lines(session: Session, group: FulfilmentGroup) -> list[OrderLine]:
    return list(
        session.scalars(
            select(OrderLine).where(OrderLine.group_id == group.id).order_by(OrderLine.id)
        )
    )


def _expect(group: FulfilmentGroup, kind: str, *statuses: str) -> None:
    if group.kind != kind:
        raise Conflict(f"this is a {group.kind} group, not {kind}", code="wrong_fulfilment_kind")
    if group.status not in statuses:
        raise Conflict(
            f"the group is {group.status}", code="fulfilment_state", extra={"status": group.status}
        )


def _done(session: Session, group: FulfilmentGroup) -> None:
    for line in _lines(session, group):
        line.quantity_fulfilled = line.quantity


def _open(
    session: Session, order_id: str, group_id: str, caller: Caller
) -> tuple[Order, FulfilmentGroup]:
    order = find_order(session, order_id, for_update=True)
    if order.status == "cancelled":
        raise Conflict("the order is cancelled", code="order_cancelled")
    group = _group(session, order, group_id)
    caller.require_location(group.location_id)
    return order, group


def ready_for_pickup(
    session: Session, order_id: str, group_id: str, *, caller: Caller, hold_days: int = 7
) -> OrderOut:
    """Staff put the goods aside: the customer is told (``order.ready_for_pickup`` carries the
    pick-up code); a reminder fires a day before the hold ends, and the order expires then."""
    order, group = _open(session, order_id, group_id, caller)
    _expect(group, "pickup", "pending")
    if order.payment_state == "pending":
        raise Conflict("the payment is not confirmed yet", code="payment_pending")
    now = clock.now()
    group.status = "ready_for_pickup"
    group.pickup_expires_at = now + timedelta(days=hold_days)
    timers.schedule(
        session,
        f"{REMIND_TIMER}:{group.id}",
        kind=REMIND_TIMER,
        fire_at=group.pickup_expires_at - timedelta(days=1),
        payload={"order_id": order.id, "group_id": group.id},
    )
    timers.schedule(
        session,
        f"{EXPIRE_TIMER}:{group.id}",
        kind=EXPIRE_TIMER,
        fire_at=group.pickup_expires_at,
        payload={"order_id": order.id, "group_id": group.id},
    )
    history(
        session,
        order,
        "ready_for_pickup",
        {"group_id": group.id, "location_id": group.location_id},
        actor=caller.key_id,
    )
    emit_order_event(
        session,
        order,
        "order.ready_for_pickup",
        group_id=group.id,
        location_id=group.location_id,
        pickup_code=group.pickup_code,
        pickup_expires_at=group.pickup_expires_at.isoformat(),
    )
    return order_out(session, order)


def hand_over(
    session: Session, order_id: str, group_id: str, code: str, *, caller: Caller
) -> OrderOut:
    """The customer collects: the code they show must match (compared in constant time)."""
    order, group = _open(session, order_id, group_id, caller)
    _expect(group, "pickup", "ready_for_pickup")
    expected = group.pickup_code or ""
    if not hmac.compare_digest(normalize_read_aloud(code), expected):
        # Logged, not stored: the refusal rolls the transaction back.
        log.warning("pickup_code_rejected", order_id=order.id, group_id=group.id, key=caller.key_id)
        raise Unprocessable(
            "the pick-up code does not match this order",
            code="pickup_code_mismatch",
            errors=[FieldError("body.code", "the code on the customer's message", "mismatch")],
        )
    group.status = "picked_up"
    _done(session, group)
    timers.cancel(session, f"{REMIND_TIMER}:{group.id}")
    timers.cancel(session, f"{EXPIRE_TIMER}:{group.id}")
    history(session, order, "picked_up", {"group_id": group.id}, actor=caller.key_id)
    emit_order_event(
        session, order, "order.picked_up", group_id=group.id, location_id=group.location_id
    )
    refresh_status(session, order, actor=caller.key_id)
    return order_out(session, order)


def ship(
    session: Session,
    order_id: str,
    group_id: str,
    *,
    carrier: str,
    tracking_number: str,
    caller: Caller,
) -> OrderOut:
    order, group = _open(session, order_id, group_id, caller)
    _expect(group, "ship", "pending")
    if order.payment_state == "pending":
        raise Conflict("the payment is not confirmed yet", code="payment_pending")
    group.status = "shipped"
    group.carrier, group.tracking_number = carrier, tracking_number
    _done(session, group)
    history(
        session,
        order,
        "shipped",
        {"group_id": group.id, "carrier": carrier, "tracking_number": tracking_number},
        actor=caller.key_id,
    )
    emit_order_event(
        session,
        order,
        "order.shipped",
        group_id=group.id,
        location_id=group.location_id,
        carrier=carrier,
        tracking_number=tracking_number,
    )
    refresh_status(session, order, actor=caller.key_id)
    return order_out(session, order)


def carrier_update(
    session: Session,
    *,
    tracking_number: str,
    status: str,
    carrier: str | None,
    occurred_at: datetime | None,
    detail: str | None,
    caller: Caller,
) -> OrderOut:
    """A carrier's status for a tracking number (a generic inbound hook): kept on the group,
    on the order's history and on the customer's timeline; ``delivered`` completes it."""
    group = session.scalars(
        select(FulfilmentGroup)
        .where(FulfilmentGroup.tracking_number == tracking_number)
        .with_for_update()
    ).first()
    if group is None:
        raise NotFound("no shipment has that tracking number", code="tracking_not_found")
    order = find_order(session, group.order_id, for_update=True)
    group.carrier_status = status
    if carrier:
        group.carrier = carrier
    if status == "delivered" and group.status == "shipped":
        group.status = "delivered"
    at = (occurred_at or clock.now()).isoformat()
    info: dict[str, Any] = {"group_id": group.id, "status": status, "occurred_at": at}
    if detail:
        info["detail"] = detail
    history(session, order, "carrier_update", info, actor=caller.key_id)
    emit_order_event(
        session, order, "order.tracking_updated", **info, tracking_number=tracking_number
    )
    refresh_status(session, order, actor=caller.key_id)
    return order_out(session, order)


def _restock(
    session: Session,
    order: Order,
    lines: list[OrderLine],
    group: FulfilmentGroup,
    reason: str,
    caller: Caller | None,
) -> None:
    """Units sold at checkout go back on the shelf they left (a ``return`` movement)."""
    for line in lines:
        left = line.quantity - line.quantity_fulfilled
        if left > 0:
            stock.move(
                session,
                group.location_id,
                line.variant_id,
                left,
                kind="return",
                reason=reason,
                caller=None,
                reference=f"{order.id}:{line.id}",
            )


def cancel(session: Session, order_id: str, *, reason: str, caller: Caller | None) -> OrderOut:
    """Cancel before anything was handed over: stock back where it was sold from, captured
    payments refunded to their tenders, pending ones voided."""
    order = find_order(session, order_id, for_update=True)
    if caller is not None and order.location_id is not None:
        caller.require_location(order.location_id)
    if order.status == "cancelled":
        return order_out(session, order)
    groups = list(
        session.scalars(
            select(FulfilmentGroup).where(FulfilmentGroup.order_id == order.id).with_for_update()
        )
    )
    if caller is not None and order.location_id is None and caller.location_ids:
        # An order no store sold (web, app): a key or associate bound to stores cancels it only
        # when every part still to fulfil is at one of their stores.
        live: list[str | None] = [g.location_id for g in groups if g.status not in CLOSED_GROUPS]
        for location_id in live or [None]:
            caller.require_location(location_id)
    if any(g.status in HANDED_OVER for g in groups):
        raise Conflict(
            "part of the order has left the building; start a return instead",
            code="order_not_cancellable",
        )
    actor = caller.key_id if caller else None
    for group in groups:
        if group.status in ("cancelled", "expired"):
            continue
        _restock(session, order, _lines(session, group), group, "order cancelled", caller)
        group.status = "cancelled"
        timers.cancel(session, f"{REMIND_TIMER}:{group.id}")
        timers.cancel(session, f"{EXPIRE_TIMER}:{group.id}")
    _refund_everything(session, order, reason=f"cancelled: {reason}")
    before, order.status = order.status, "cancelled"
    order.cancelled_reason = reason[:500]
    history(session, order, "cancelled", {"reason": reason, "from": before}, actor=actor)
    emit_order_event(session, order, "order.cancelled", reason=reason, previous_status=before)
    return order_out(session, order)


def _refund_everything(session: Session, order: Order, *, reason: str) -> None:
    left = order.paid_total - order.refunded_total
    if left > 0:
        refunds = payments.refund_order(
            session, order.id, left, reason=reason, key=f"{order.id}:cancel"
        )
        order.refunded_total += left
        order.payment_state = "refunded"
        for refund in refunds:
            emit_order_event(
                session,
                order,
                "order.refunded",
                amount_minor=refund.amount,
                refund_id=refund.id,
            )
    pending = session.scalars(
        select(Payment).where(
            Payment.order_id == order.id,
            Payment.status.in_(("processing", "requires_action", "authorized")),
        )
    )
    for payment in pending:
        payment.status = "voided"


def remind(session: Session, payload: dict[str, Any]) -> None:
    """A day before an uncollected pick-up expires: ``order.pickup_reminder`` (messaging tells
    the customer, with the code, where and until when)."""
    order = session.get(Order, payload.get("order_id"))
    group = session.get(FulfilmentGroup, payload.get("group_id"))
    if order is None or group is None or group.status != "ready_for_pickup":
        return
    emit_order_event(
        session,
        order,
        "order.pickup_reminder",
        group_id=group.id,
        location_id=group.location_id,
        pickup_code=group.pickup_code,
        pickup_expires_at=group.pickup_expires_at.isoformat() if group.pickup_expires_at else None,
    )


def expire(session: Session, payload: dict[str, Any]) -> None:
    """Not collected in time: the goods go back on the shelf and the group's lines are refunded
    (the whole order is cancelled when nothing else is left on it)."""
    order = session.get(Order, payload.get("order_id"), with_for_update=True)
    if order is None:
        return
    group = _group(session, order, str(payload.get("group_id")))
    if group.status != "ready_for_pickup":
        return
    others = session.scalars(
        select(FulfilmentGroup.id).where(
            FulfilmentGroup.order_id == order.id,
            FulfilmentGroup.id != group.id,
            FulfilmentGroup.status.not_in(("cancelled", "expired")),
        )
    ).first()
    if others is None:
        cancel(session, order.id, reason="not collected in time", caller=None)
        group.status = "expired"
        return
    lines = _lines(session, group)
    _restock(session, order, lines, group, "pick-up not collected", None)
    amount = sum(line.total for line in lines)
    amount = min(amount, order.paid_total - order.refunded_total)
    if amount > 0:
        for refund in payments.refund_order(
            session, order.id, amount, reason="pick-up not collected", key=f"{group.id}:expire"
        ):
            emit_order_event(
                session, order, "order.refunded", amount_minor=refund.amount, refund_id=refund.id
            )
        order.refunded_total += amount
        order.payment_state = "partially_refunded"
    group.status = "expired"
    history(
        session, order, "pickup_expired", {"group_id": group.id, "refunded": amount}, actor=None
    )
    refresh_status(session, order, actor=None)
