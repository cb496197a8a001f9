"""Event and timer reactions of the orders domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.db.engine import Database
from seamline.events.registry import on_round, on_timer
from seamline.identity.erasure import ErasureScope, on_erase
from seamline.kit import clock
from seamline.orders import checkout, fulfilment
from seamline.orders.models import Order, OrderHistory, Return

log = structlog.get_logger("seamline.checkout")
_last_sweep: WeakKeyDictionary[Database, datetime] = WeakKeyDictionary()


@on_round("orders.expired_checkouts")
def sweep_expired_checkouts(db: Database) -> int:
    """At most every ``checkout.SWEEP_EVERY`` per worker: checkouts still paying past their
    ``expires_at`` — their process died — give back their holds, promotion uses and money
    (``checkout.expire``), one transaction each. Returns how many were looked at."""
    now = clock.now()
    last = _last_sweep.get(db)
    if last is not None and now - last < checkout.SWEEP_EVERY:
        return 0
    _last_sweep[db] = now
    with db.transaction() as session:
        found = checkout.expired_ids(session)
    for checkout_id in found:
        try:
            with db.transaction() as session:
                checkout.expire(session, {"checkout_id": checkout_id})
        except Exception:  # the others go on; this one is tried again next sweep
            log.exception("checkout_expiry_failed", checkout_id=checkout_id)
    return len(found)


@on_timer(checkout.EXPIRE_TIMER)
def checkout_expired(session: Session, key: str, payload: dict[str, Any]) -> None:
    """A checkout started before the sweep existed, still paying after its payment window
    (its process died): as the sweep does."""
    checkout.expire(session, payload)


@on_timer(fulfilment.REMIND_TIMER)
def pickup_reminder(session: Session, key: str, payload: dict[str, Any]) -> None:
    fulfilment.remind(session, payload)


@on_timer(fulfilment.EXPIRE_TIMER)
def pickup_expired(session: Session, key: str, payload: dict[str, Any]) -> None:
    fulfilment.expire(session, payload)


@on_erase("orders")
def erase_order_personal_data(session: Session, scope: ErasureScope) -> dict[str, int]:
    """An erased customer's orders keep their financial facts (lines, amounts, payments,
    refunds, the country that set the tax) with the personal fields blanked: email, address,
    free text that may name them."""
    orders = list(
        session.scalars(
            select(Order).where(Order.profile_id.in_(scope.profile_ids)).with_for_update()
        )
    )
    for order in orders:
        order.email = None
        if order.shipping_address is not None:
            country = order.shipping_address.get("country")
            order.shipping_address = {"country": country} if isinstance(country, str) else None
        if order.cancelled_reason:
            order.cancelled_reason = scope.redactor.text(order.cancelled_reason)
        for row in session.scalars(select(OrderHistory).where(OrderHistory.order_id == order.id)):
            row.detail = scope.redactor.json(row.detail)
        for ret in session.scalars(select(Return).where(Return.order_id == order.id)):
            ret.note = scope.redactor.text(ret.note) if ret.note else ret.note
    return {"orders": len(orders)}
