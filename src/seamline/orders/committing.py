"""Step 3 of checkout (``orders/checkout.py``): the paid holds become an order, or a failed
payment gives everything back.

One transaction, lean: the holds are committed in three multi-row statements
(``inventory/reservations_settle.py``), the order's rows are inserted table by table, and the
checkout's events go out together (``outbox.emit_rows``: ``emit_many`` in two INSERTs). When a
hold is gone (the payment took longer than the hold), that transaction is rolled back whole
and a second one records the failure — the happy path needs no savepoint. The step is
idempotent (the checkout row, locked first, says whether it already happened), so it is retried
in-process when PostgreSQL aborts it for a deadlock or a serialization failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.carts import service as carts
from seamline.carts.models import Cart
from seamline.db.engine import Database
from seamline.db.sequences import next_value_expression
from seamline.events.outbox import Pending, emit_rows
from seamline.inventory import reservations_settle
from seamline.inventory.models import Location
from seamline.kit import clock
from seamline.kit.errors import Conflict, SeamlineError
from seamline.kit.ids import new_id
from seamline.orders import placing
from seamline.orders.models import Checkout, Order
from seamline.orders.schemas import OrderOut
from seamline.orders.service import history, order_out
from seamline.payments import service as payments
from seamline.payments.providers import PaymentResult
from seamline.pricing import usage

log = structlog.get_logger("seamline.checkout")

EXPIRE_TIMER = "checkout.expire"
# A commit aborted by PostgreSQL (deadlock, serialization failure) is run again this often.
COMMIT_RETRIES = 2
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


class PaymentDeclined(SeamlineError):
    status, title, code = 402, "Payment required", "payment_declined"


@dataclass(frozen=True)
class Step:
    checkout_id: str
    tenders: list[payments.Tender]
    currency: str


class _HoldLost(Exception):
    """A hold is no longer held (its window passed while paying): roll the commit back."""


def paid(results: Sequence[PaymentResult]) -> bool:
    return bool(results) and all(r.succeeded or r.pending for r in results)


def stored_error(found: Checkout) -> SeamlineError:
    error = found.error or {}
    cls = PaymentDeclined if error.get("status") == 402 else Conflict
    return cls(
        str(error.get("detail", "this checkout failed")),
        code=str(error.get("code", "checkout_failed")),
        extra=dict(error.get("extra", {})),
    )


T = TypeVar("T")


def retrying(db: Database, work: Callable[[Session], T], *, what: str) -> T:
    """``work`` in a transaction, run again (up to ``COMMIT_RETRIES`` times) when PostgreSQL
    aborted it for a deadlock or a serialization failure; ``work`` must be idempotent."""
    for attempt in range(COMMIT_RETRIES + 1):
        try:
            with db.transaction() as session:
                return work(session)
        except DBAPIError as exc:
            state = getattr(exc.orig, "sqlstate", None)
            if state not in RETRYABLE_SQLSTATES or attempt == COMMIT_RETRIES:
                raise
            log.info("checkout_commit_retried", step=what, sqlstate=state, attempt=attempt + 1)
    raise AssertionError("unreachable")  # pragma: no cover


def commit(
    db: Database, step: Step, results: Sequence[PaymentResult], caller: Caller
) -> tuple[OrderOut | SeamlineError, bool]:
    """The order, or the refusal; and whether money taken must be given back (the holds were
    lost — the payment window passed — or the checkout was expired meanwhile)."""
    try:
        return retrying(db, lambda s: _finish(s, step, results, caller), what="commit")
    except _HoldLost:
        return retrying(db, lambda s: _expired(s, step, results), what="expired")


def sold_at(session: Session, location_id: str | None) -> str | None:
    """The sales channel of the store an order is placed at (a till, the endless aisle): the
    order is that store's sale, whatever device the cart was built on. ``None`` for orders not
    placed at a location, or at one without a store channel."""
    if location_id is None:
        return None
    return session.scalar(
        select(Location.channel_id).where(
            Location.id == location_id, Location.channel_id.is_not(None)
        )
    )


def _lock(
    session: Session, step: Step, results: Sequence[PaymentResult]
) -> tuple[Checkout, Cart, tuple[OrderOut | SeamlineError, bool] | None]:
    """The checkout and its cart, both locked, in one statement."""
    found, cart = session.execute(
        select(Checkout, Cart)
        .join(Cart, Cart.id == Checkout.cart_id)
        .where(Checkout.id == step.checkout_id)
        .with_for_update(of=[Checkout.__table__, Cart.__table__])
    ).one()
    if found.status == "completed" and found.order_id is not None:
        order = session.get(Order, found.order_id)
        assert order is not None
        return found, cart, (order_out(session, order), False)
    if found.status == "failed":
        return found, cart, (stored_error(found), paid(results))
    return found, cart, None


def _finish(
    session: Session, step: Step, results: Sequence[PaymentResult], caller: Caller
) -> tuple[OrderOut | SeamlineError, bool]:
    found, cart, done = _lock(session, step, results)
    if done is not None:
        return done
    if not paid(results):
        return _fail(session, found, cart, step, results), False
    try:
        return _place(session, found, cart, step, results, caller), False
    except Conflict as exc:  # a hold is gone, or a promotion's use: undo all of it
        raise _HoldLost from exc


def _expired(
    session: Session, step: Step, results: Sequence[PaymentResult]
) -> tuple[OrderOut | SeamlineError, bool]:
    found, cart, done = _lock(session, step, results)
    if done is not None:
        return done
    release(session, found)
    found.status = "failed"
    found.error = {
        "status": 409,
        "code": "checkout_expired",
        "detail": "the payment took longer than the stock could be held; nothing was charged",
        "extra": {},
    }
    carts.reopen(session, cart)
    return stored_error(found), True


def release(session: Session, found: Checkout) -> None:
    """Give back the checkout's holds (in lock order, in one statement) and its promotion
    uses (when its quote applied any)."""
    reservations_settle.release_many(session, found.reservation_ids)
    if (found.quote or {}).get("promotions", True):
        usage.release(session, found.id)


def _fail(
    session: Session,
    found: Checkout,
    cart: Cart,
    step: Step,
    results: Sequence[PaymentResult],
) -> SeamlineError:
    release(session, found)
    payments.record(session, found.id, step.tenders, results, order_id=None)
    last = results[-1] if results else None
    error = PaymentDeclined(
        "the payment was declined" if last and last.status == "declined" else "payment failed",
        extra={
            "decline_code": last.decline_code if last else None,
            "tender": len(results) - 1,
            "retryable": bool(last and last.retryable),
        },
    )
    found.status = "failed"
    found.error = {
        "status": 402,
        "code": error.code,
        "detail": error.detail,
        "extra": error.extra,
    }
    carts.reopen(session, cart)
    return error


def _order_event(order: Order, event_type: str, **payload: Any) -> Pending:
    """``order.*`` as ``orders.service.emit_order_event`` writes it, for ``emit_rows``."""
    return Pending(
        event_type,
        "order",
        order.id,
        {
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


def _place(
    session: Session,
    found: Checkout,
    cart: Cart,
    step: Step,
    results: Sequence[PaymentResult],
    caller: Caller,
) -> OrderOut:
    snap = found.quote
    events: list[Pending] = []
    reservations_settle.commit_many(session, found.reservation_ids, events=events)
    taken = sum(t.amount for t, r in zip(step.tenders, results, strict=True) if r.succeeded)
    values = {
        "id": new_id("ord"),
        "number": next_value_expression(session, "order_number"),
        "checkout_id": found.id,
        "cart_id": cart.id,
        "profile_id": cart.profile_id,
        "email": cart.email,
        "channel_id": sold_at(session, found.location_id) or cart.channel_id,
        "location_id": found.location_id,
        "placed_by": caller.key_id,
        "status": "paid" if taken == snap["total"] else "placed",
        "payment_state": "paid" if taken == snap["total"] else "pending",
        "currency": snap["currency"],
        "prices_include_tax": snap["prices_include_tax"],
        "subtotal": snap["subtotal"],
        "discount_total": snap["discount_total"],
        "shipping_total": snap["shipping_total"],
        "tax_total": snap["tax_total"],
        "total": snap["total"],
        "paid_total": taken,
        "shipping_address": cart.shipping_address,
        "codes": snap["codes"],
        "promotions": snap["promotions"],
    }
    # One statement that draws the number (``nextval`` on PostgreSQL) and returns the row.
    order = session.scalars(insert(Order).values(**values).returning(Order)).one()
    groups, lines = placing.groups_and_lines(session, order, snap)
    recorded = payments.record(session, found.id, step.tenders, results, order_id=order.id)
    if snap["promotions"]:  # no promotion applied: no use was held
        usage.confirm(session, found.id, order.id)
    found.status, found.order_id = "completed", order.id
    carts.mark_completed(session, cart, order_id=order.id, key_id=caller.key_id, events=events)
    placed = history(
        session,
        order,
        "placed",
        {"channel": order.channel_id, "location_id": order.location_id, "total": order.total},
        actor=caller.key_id,
    )
    events.append(
        _order_event(
            order,
            "order.placed",
            total_minor=order.total,
            placed_at=clock.now().isoformat(),
            location_id=order.location_id,
            placed_by=caller.key_id,
            cart_id=cart.id,
            lines=len(snap["lines"]),
        )
    )
    emit_rows(session, events)
    return order_out(
        session,
        order,
        loaded=(
            sorted(lines, key=lambda x: x.id),
            sorted(groups, key=lambda g: g.id),
            recorded,
            [placed],
        ),
    )
