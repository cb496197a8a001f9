"""Checkout: one operation that turns a cart into an order, for every channel.

Reserve → pay → commit, in three steps, so no stock lock is held while a payment provider
answers:

1. **Reserve** (one transaction): lock the cart, price it on the server, plan the tenders,
   hold the promotions' usage (atomic against their limits), route the shipped lines and hold
   every line's stock for the payment window, and record a ``checkouts`` row in ``paying``
   with the priced snapshot. A timer releases everything if the process dies.
2. **Pay** (no transaction): each tender in order, with an idempotency key derived from the
   checkout and the tender, so a retry asks the PSP the same question. A declined or failed
   tender stops the rest, and the tenders already taken are refunded or voided.
3. **Commit** (one transaction): on success, commit the holds (sale movements), create the
   order from the snapshot, confirm the promotion usage, close the cart and emit
   ``order.placed``; on failure, release the holds and usage, reopen the cart and answer 402.

A retry with the same ``Idempotency-Key`` returns the same order (or the same refusal); a
retry of a checkout whose process died while paying resumes it. This is the one service that
opens its own transactions: the steps must commit separately.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.carts import quote as cart_quote
from seamline.carts import service as carts
from seamline.carts.models import Cart, CartLine
from seamline.db.dialect import insert_ignoring_conflict
from seamline.db.engine import Database
from seamline.db.lookup import get_or_404
from seamline.events import timers
from seamline.events.models import Timer
from seamline.inventory import reservations, reservations_many
from seamline.inventory.models import Location
from seamline.inventory.schemas import ReservationCreate, ReservationLine
from seamline.kit import clock
from seamline.kit.clock import ensure_utc
from seamline.kit.errors import Conflict, FieldError, Forbidden, SeamlineError, Unprocessable
from seamline.kit.ids import new_id
from seamline.orders import committing, placing, routing
from seamline.orders.committing import EXPIRE_TIMER, PaymentDeclined
from seamline.orders.committing import paid as _paid
from seamline.orders.committing import stored_error as _stored_error
from seamline.orders.models import Checkout, Order
from seamline.orders.schemas import CheckoutIn, OrderOut
from seamline.orders.service import order_out
from seamline.payments import service as payments
from seamline.payments.providers import get_provider, refuse_card_number
from seamline.pricing import usage

__all__ = ["EXPIRE_TIMER", "PaymentDeclined", "checkout", "expire"]

_Step = committing.Step


def _hash(data: CheckoutIn) -> str:
    return hashlib.sha256(data.model_dump_json().encode()).hexdigest()


def checkout(
    db: Database,
    cart_id: str,
    data: CheckoutIn,
    *,
    caller: Caller,
    idempotency_key: str,
    hold_seconds: int = 900,
) -> OrderOut:
    lean = True
    while True:
        try:
            with db.transaction() as session:
                step, done = _reserve(
                    session,
                    cart_id,
                    data,
                    caller,
                    idempotency_key,
                    hold_seconds=hold_seconds,
                    lean=lean,
                )
                if done is not None:
                    return done
            break
        except reservations_many.HoldFailed:
            # The multi-line hold lost a race for the units routing saw: start step 1 again,
            # holding line by line (which also explains a refusal).
            lean = False
    results = payments.take(step.checkout_id, step.tenders, step.currency)
    if not _paid(results):
        payments.undo(step.checkout_id, step.tenders, results)
    outcome, lost = committing.commit(db, step, results, caller)
    if lost:  # paid, but the holds were gone: give the money back
        payments.undo(step.checkout_id, step.tenders, results)
    if isinstance(outcome, SeamlineError):
        raise outcome
    return outcome


# -- step 1 ----------------------------------------------------------------------------------


def _replay(session: Session, found: Checkout, request_hash: str) -> OrderOut | _Step:
    if found.request_hash != request_hash:
        raise Unprocessable(
            "this Idempotency-Key was used for another checkout request",
            code="idempotency_key_reused",
        )
    if found.status == "completed" and found.order_id is not None:
        order = session.get(Order, found.order_id)
        assert order is not None
        return order_out(session, order)
    if found.status == "failed":
        raise _stored_error(found)
    # paying: the process that started it died (or is still paying); resume with the same keys.
    return _step_of(found)


def _step_of(found: Checkout) -> _Step:
    tenders = [payments.Tender(**t) for t in found.tenders]
    return _Step(found.id, tenders, str(found.quote["currency"]))


def _reserve(
    session: Session,
    cart_id: str,
    data: CheckoutIn,
    caller: Caller,
    idempotency_key: str,
    *,
    hold_seconds: int,
    lean: bool = True,
) -> tuple[_Step, OrderOut | None]:
    request_hash = _hash(data)
    found = session.scalar(
        select(Checkout).where(
            Checkout.key_id == caller.key_id, Checkout.idempotency_key == idempotency_key
        )
    )
    if found is not None:
        replay = _replay(session, found, request_hash)
        if isinstance(replay, OrderOut):
            return _Step(found.id, [], ""), replay
        return replay, None
    cart = carts.get_cart_for_update(session, cart_id)
    _check_caller(session, data, caller)
    lines = list(
        session.scalars(
            select(CartLine).where(CartLine.cart_id == cart.id).order_by(CartLine.created_at)
        )
    )
    if not lines:
        raise Unprocessable("the cart is empty", code="cart_empty")
    priced = cart_quote.price(session, cart, lines=lines)
    if priced.problems:
        raise Conflict(
            "the cart cannot be checked out as it is",
            code="cart_not_ready",
            extra={"problems": [p.__dict__ for p in priced.problems]},
        )
    if priced.exhausted_codes:
        raise Conflict(
            "a discount code has no uses left",
            code="promotion_limit_reached",
            extra={"codes": priced.exhausted_codes},
        )
    tenders = payments.plan(
        [(t.provider, t.token, t.amount, t.tendered) for t in data.tenders],
        total=priced.quote.total,
        path="body.tenders",
    )
    checkout_id = new_id("chk")
    usage.hold(
        session,
        [p.id for p in priced.applied],
        checkout_id=checkout_id,
        profile_id=cart.profile_id,
    )
    held, reasons = _hold_stock(session, cart, priced, checkout_id, lean=lean)
    snapshot = placing.snapshot(priced, held, reasons)
    session.add(
        Checkout(
            id=checkout_id,
            cart_id=cart.id,
            key_id=caller.key_id,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            status="paying",
            channel_id=cart.channel_id,
            location_id=data.location_id,
            quote=snapshot,
            tenders=[t.__dict__ for t in tenders],
            reservation_ids=[r for r, _ in held.values()],
        )
    )
    carts.mark_checking_out(session, cart, key_id=caller.key_id)
    _schedule_expiry(session, checkout_id, clock.now() + timedelta(seconds=hold_seconds + 60))
    return _Step(checkout_id, tenders, cart.currency), None


def _schedule_expiry(session: Session, checkout_id: str, fire_at: datetime) -> None:
    """The checkout's timer: a new checkout's key is new, so one insert does (no re-read);
    should it exist after all, ``timers.schedule`` moves it as it would."""
    key = f"{EXPIRE_TIMER}:{checkout_id}"
    payload = {"checkout_id": checkout_id}
    values = {
        "key": key,
        "kind": EXPIRE_TIMER,
        "payload": payload,
        "fire_at": ensure_utc(fire_at),
        "status": "pending",
        "attempts": 0,
        "created_at": clock.now(),
    }
    if not insert_ignoring_conflict(session, Timer, values, on=["key"]):
        timers.schedule(session, key, kind=EXPIRE_TIMER, fire_at=fire_at, payload=payload)


def _check_caller(session: Session, data: CheckoutIn, caller: Caller) -> None:
    for i, tender in enumerate(data.tenders):
        # Before anything is held: a card number never goes further, an unknown provider fails.
        refuse_card_number(tender.token)
        get_provider(tender.provider)
        if caller.kind == "publishable" and tender.provider not in payments.STOREFRONT_PROVIDERS:
            raise Forbidden(
                f"a publishable key cannot pay with {tender.provider!r}",
                code="tender_not_allowed",
                extra={"field": f"body.tenders.{i}.provider"},
            )
        if tender.tendered is not None and tender.provider != "manual":
            raise Unprocessable(
                "only cash at a till is tendered",
                code="tendered_not_allowed",
                errors=[FieldError(f"body.tenders.{i}.tendered", "manual cash only", "invalid")],
            )
    if data.location_id is not None:
        get_or_404(session, Location, data.location_id, what="location", code="location_not_found")
        caller.require_location(data.location_id)
    elif caller.location_ids:
        raise Unprocessable(
            "a store key checks out at its store: give location_id",
            code="location_required",
            errors=[FieldError("body.location_id", "required for a store key", "missing")],
        )


def _hold_stock(
    session: Session,
    cart: Cart,
    priced: cart_quote.PricedCart,
    checkout_id: str,
    *,
    lean: bool,
) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Hold every line; returns line id → (reservation id, location id) and the routing
    reasons by location. Pick-up lines at their store; shipped lines where routing sends them
    (or, if stock moved in between, wherever the reservation finds the units)."""
    ship = [p.line for p in priced.lines if p.line.fulfilment == "ship"]
    routes = routing.route(
        session,
        channel_id=cart.channel_id,
        lines=[routing.Wanted(line.id, line.variant_id, line.quantity) for line in ship],
        address=cart.shipping_address,
    )
    where = {line_id: r.location_id for r in routes for line_id in r.line_ids}
    reasons = {r.location_id: r.reason for r in routes}
    _, endless = routing.shipping_policy(session, cart.channel_id) if ship else (None, False)

    def request(lines: list[CartLine], routed: bool, channel: str | None) -> ReservationCreate:
        return ReservationCreate(
            lines=[
                ReservationLine(
                    location_id=(
                        line.pickup_location_id
                        if line.fulfilment == "pickup"
                        else (where[line.id] if routed else None)
                    ),
                    variant_id=line.variant_id,
                    quantity=line.quantity,
                    reference=f"{checkout_id}:{line.id}",
                )
                for line in lines
            ],
            # No per-hold timers: the checkout's own timer releases them all if it dies.
            ttl_seconds=None,
            channel_id=channel,
        )

    # The endless aisle (a store channel shipping home) holds outside the store's own rule.
    groups = [
        ([p.line for p in priced.lines if p.line.fulfilment == "pickup"], cart.channel_id),
        (ship, None if endless else cart.channel_id),
    ]
    held: dict[str, tuple[str, str]] = {}
    for lines, channel in groups:
        if not lines:
            continue
        # The lean path: every line where routing sent it, in one statement; no savepoint —
        # if it fails, step 1 starts again without it (HoldFailed).
        policy = routing.channel_policy(session, channel) if channel else None
        fast = (
            reservations_many.reserve_many(
                session, request(lines, True, channel), policy=policy, savepoint=False
            )
            if lean
            else None
        )
        if fast is not None:
            held.update(
                {line.id: (h.id, h.location_id) for h, line in zip(fast, lines, strict=True)}
            )
            continue
        try:
            with session.begin_nested():
                outs = reservations.reserve(session, request(lines, True, channel))
        except Conflict:
            if lines is not ship or channel is None:
                raise
            outs = reservations.reserve(session, request(lines, False, channel))
            reasons = {h.location_id: "stock moved while routing; held where it was" for h in outs}
        held.update({line.id: (h.id, h.location_id) for h, line in zip(outs, lines, strict=True)})
    return held, reasons


# -- a checkout whose process died -------------------------------------------------------------


def expire(session: Session, payload: dict[str, Any]) -> None:
    """Still ``paying`` long after its holds expired: the process died between paying and
    committing. Give everything back; a retry of the request would resume it before this."""
    found = session.scalars(
        select(Checkout).where(Checkout.id == payload.get("checkout_id")).with_for_update()
    ).one_or_none()
    if found is None or found.status != "paying":
        return
    # What did the PSPs do under our keys? Asking again with the same keys charges nothing
    # new; whatever was taken is given back. Before any stock row is touched (no stock lock
    # is held while a provider answers).
    tenders = [payments.Tender(**t) for t in found.tenders]
    currency = str(found.quote["currency"])
    payments.undo(found.id, tenders, payments.take(found.id, tenders, currency))
    cart = session.get(Cart, found.cart_id, with_for_update=True)
    committing.release(session, found)
    found.status = "failed"
    found.error = {
        "status": 409,
        "code": "checkout_expired",
        "detail": "the checkout did not finish within its payment window",
        "extra": {},
    }
    if cart is not None:
        carts.reopen(session, cart)
