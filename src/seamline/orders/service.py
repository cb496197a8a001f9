"""Orders: reading them, their history, and the state machine.

Order status: ``placed`` (payment pending) → ``paid`` → ``partially_fulfilled`` → ``fulfilled``
→ ``completed``; ``cancelled`` from ``placed`` or ``paid`` (nothing handed over yet). The status
follows from the order's fulfilment groups and payments (``refresh_status``), so no action can
leave the two out of step. Every change writes an ``order_history`` row and, where others care,
an ``order.*`` event naming the customer's profile so it lands on their timeline.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.db.lookup import get_or_404
from seamline.db.pagination import keyset_page
from seamline.events.outbox import emit
from seamline.kit import clock
from seamline.orders.models import FulfilmentGroup, Order, OrderHistory, OrderLine
from seamline.orders.schemas import (
    FulfilmentGroupOut,
    HistoryOut,
    OrderLineOut,
    OrderList,
    OrderOut,
    OrderSummary,
    PaymentOut,
)
from seamline.payments.models import Payment

DONE_GROUPS = ("picked_up", "shipped", "delivered")
CLOSED_GROUPS = ("cancelled", "expired")


def find_order(session: Session, order_id: str, *, for_update: bool = False) -> Order:
    return get_or_404(
        session, Order, order_id, what="order", code="order_not_found", for_update=for_update
    )


def history(
    session: Session, order: Order, kind: str, detail: dict[str, Any], *, actor: str | None
) -> OrderHistory:
    row = OrderHistory(order_id=order.id, kind=kind, detail=detail, actor=actor, at=clock.now())
    session.add(row)
    return row


def emit_order_event(session: Session, order: Order, event_type: str, **payload: Any) -> None:
    """``order.*`` for webhooks, the stream, and the customer's timeline (``profile_id``)."""
    emit(
        session,
        event_type,
        aggregate_type="order",
        aggregate_id=order.id,
        payload={
            "order_id": order.id,
            "number": order.number,
            "profile_id": order.profile_id,
            "channel": order.channel_id,
            "currency": order.currency,
            "status": order.status,
            "occurred_at": clock.now().isoformat(),
            **payload,
        },
    )


def refresh_status(session: Session, order: Order, *, actor: str | None) -> None:
    """Derive the order's status from its groups and payments; record a change."""
    if order.status == "cancelled":
        return
    groups = list(
        session.scalars(select(FulfilmentGroup).where(FulfilmentGroup.order_id == order.id))
    )
    live = [g for g in groups if g.status not in CLOSED_GROUPS]
    done = [g for g in live if g.status in DONE_GROUPS]
    if live and len(done) == len(live):
        handed = all(g.status in ("picked_up", "delivered") for g in live)
        status = "completed" if handed and order.payment_state == "paid" else "fulfilled"
    elif done:
        status = "partially_fulfilled"
    elif order.payment_state in ("paid", "partially_refunded", "refunded"):
        status = "paid"
    else:
        status = "placed"
    if status != order.status:
        before, order.status = order.status, status
        history(session, order, "status_changed", {"from": before, "to": status}, actor=actor)
        emit_order_event(session, order, f"order.{status}", previous_status=before)


def order_out(
    session: Session,
    order: Order,
    *,
    loaded: tuple[list[OrderLine], list[FulfilmentGroup], list[Payment], list[OrderHistory]]
    | None = None,
) -> OrderOut:
    """The order as the API shows it; ``loaded`` skips the reads when the caller holds the
    rows it just wrote (checkout)."""
    if loaded is not None:
        lines, groups, payments, events = loaded
    else:
        lines = list(
            session.scalars(
                select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.id)
            )
        )
        groups = list(
            session.scalars(
                select(FulfilmentGroup)
                .where(FulfilmentGroup.order_id == order.id)
                .order_by(FulfilmentGroup.id)
            )
        )
        payments = list(
            session.scalars(
                select(Payment).where(Payment.order_id == order.id).order_by(Payment.position)
            )
        )
        events = list(
            session.scalars(
                select(OrderHistory)
                .where(OrderHistory.order_id == order.id)
                .order_by(OrderHistory.seq)
            )
        )
    return OrderOut(
        id=order.id,
        number=order.number,
        status=order.status,
        payment_state=order.payment_state,
        channel_id=order.channel_id,
        location_id=order.location_id,
        profile_id=order.profile_id,
        email=order.email,
        cart_id=order.cart_id,
        currency=order.currency,
        prices_include_tax=order.prices_include_tax,
        subtotal=order.subtotal,
        discount_total=order.discount_total,
        shipping_total=order.shipping_total,
        tax_total=order.tax_total,
        total=order.total,
        paid_total=order.paid_total,
        refunded_total=order.refunded_total,
        codes=list(order.codes),
        promotions=list(order.promotions),
        shipping_address=order.shipping_address,
        lines=[OrderLineOut.model_validate(line, from_attributes=True) for line in lines],
        groups=[FulfilmentGroupOut.model_validate(g, from_attributes=True) for g in groups],
        payments=[PaymentOut.model_validate(p, from_attributes=True) for p in payments],
        history=[HistoryOut.model_validate(h, from_attributes=True) for h in events],
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


def get_order(session: Session, order_id: str) -> OrderOut:
    return order_out(session, find_order(session, order_id))


def list_orders(
    session: Session,
    *,
    caller: Caller,
    profile_id: str | None = None,
    status: str | None = None,
    location_id: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> OrderList:
    """Newest first. ``profile_id`` lists the whole identity cluster's orders."""
    from seamline.identity.models import Profile

    stmt = select(Order)
    if profile_id is not None:
        cluster = select(Profile.cluster_id).where(Profile.id == profile_id).scalar_subquery()
        members = select(Profile.id).where(Profile.cluster_id == cluster)
        stmt = stmt.where(Order.profile_id.in_(members))
    if status is not None:
        stmt = stmt.where(Order.status == status)
    if location_id is not None:
        groups = select(FulfilmentGroup.order_id).where(FulfilmentGroup.location_id == location_id)
        stmt = stmt.where((Order.location_id == location_id) | Order.id.in_(groups))
    rows, cursor = keyset_page(session, stmt, Order.id, after=after, limit=limit, descending=True)
    return OrderList(
        data=[OrderSummary.model_validate(o, from_attributes=True) for o in rows],
        next_cursor=cursor,
    )


def customer_returns(session: Session, profile_id: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """The newest returns of the whole identity cluster of ``profile_id`` (for the 360)."""
    from seamline.identity.models import Profile
    from seamline.orders.models import Return

    cluster = select(Profile.cluster_id).where(Profile.id == profile_id).scalar_subquery()
    members = select(Profile.id).where(Profile.cluster_id == cluster)
    rows = session.execute(
        select(Return, Order.number, Order.currency)
        .join(Order, Order.id == Return.order_id)
        .where(Order.profile_id.in_(members))
        .order_by(Return.id.desc())
        .limit(limit)
    )
    return [
        {
            "id": ret.id,
            "order_id": ret.order_id,
            "order_number": number,
            "status": ret.status,
            "refund_total": ret.refund_total,
            "currency": currency,
            "created_at": ret.created_at,
        }
        for ret, number, currency in rows
    ]
