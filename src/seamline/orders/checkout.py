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
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.carts import quote as cart_quote
from seamline.carts import service as carts
from seamline.carts.models import Cart, CartLine
from seamline.db.engine import Database
from seamline.db.lookup import get_or_404
from seamline.events.outbox import Pending, emit_rows
from seamline.inventory import availability, reservations, reservations_many
from seamline.inventory.models import Location
from seamline.inventory.schemas import ReservationCreate, ReservationLine
from seamline.kit import clock
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

__all__ = ["EXPIRE_TIMER", "PaymentDeclined", "checkout", "checkout_replay", "expire"]

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
    if_match: str | None = None,
) -> OrderOut:
    """The order (see the module's docstring); ``checkout_replay`` also says whether it is
    the answer to an earlier request with this key."""
    return checkout_replay(
        db,
        cart_id,
        data,
        caller=caller,
        idempotency_key=idempotency_key,
        hold_seconds=hold_seconds,
        if_match=if_match,
    )[0]


def checkout_replay(
    db: Database,
    cart_id: str,
    data: CheckoutIn,
    *,
    caller: Caller,
    idempotency_key: str,
    hold_seconds: int = 900,
    if_match: str | None = None,
) -> tuple[OrderOut, bool]:
    """The order, and True when it was placed by an earlier request with this key.
    ``if_match``: the cart version the buyer saw (412 ``cart_version_mismatch`` otherwise)."""
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
                    if_match=if_match,
                )
                if done is not None:
                    return done, True
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
    return outcome, False


# -- step 1 ----------------------------------------------------------------------------------


def _key_reused() -> Unprocessable:
    return Unprocessable(
        "this Idempotency-Key was used for another checkout request",
        code="idempotency_key_reused",
    )


def _lock_cart(
    session: Session, cart_id: str, caller: Caller, idempotency_key: str
) -> tuple[Cart, list[CartLine], Checkout | None]:
    """One statement: the cart, locked (``FOR UPDATE``), its lines in the order they were
    added, and the checkout this key has already started, if any (for whichever cart)."""
    rows = session.execute(
        select(Cart, CartLine, Checkout)
        .outerjoin(CartLine, CartLine.cart_id == Cart.id)
        .outerjoin(
            Checkout,
            and_(Checkout.key_id == caller.key_id, Checkout.idempotency_key == idempotency_key),
        )
        .where(Cart.id == cart_id)
        .order_by(CartLine.created_at, CartLine.id)
        .with_for_update(of=Cart)
    ).all()
    if not rows:
        carts.find_cart(session, cart_id)  # the 404, as every cart route answers it
    lines = [row[1] for row in rows if row[1] is not None]
    return rows[0][0], lines, rows[0][2]


def _started(session: Session, caller: Caller, idempotency_key: str) -> Checkout | None:
    return session.scalar(
        select(Checkout).where(
            Checkout.key_id == caller.key_id, Checkout.idempotency_key == idempotency_key
        )
    )


def _replay(session: Session, found: Checkout, request_hash: str) -> OrderOut | _Step:
    if found.request_hash != request_hash:
        raise _key_reused()
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
    if_match: str | None = None,
) -> tuple[_Step, OrderOut | None]:
    request_hash = _hash(data)
    cart, lines, found = _lock_cart(session, cart_id, caller, idempotency_key)
    if found is None and cart.status != "open":
        # A request with this key may have started the checkout while this one waited for
        # the cart's lock (read committed: this statement sees what has committed since).
        found = _started(session, caller, idempotency_key)
    if found is not None:
        if found.cart_id != cart.id:
            raise _key_reused()
        replay = _replay(session, found, request_hash)
        if isinstance(replay, OrderOut):
            return _Step(found.id, [], ""), replay
        return replay, None
    carts.require_open(cart)
    carts.require_version(cart, if_match)
    _check_caller(session, data, caller)
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
    events: list[Pending] = []
    held, reasons = _hold_stock(session, cart, priced, checkout_id, lean=lean, events=events)
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
            # If the process dies while paying, the worker's sweep gives everything back then.
            expires_at=clock.now() + timedelta(seconds=hold_seconds + EXPIRY_GRACE_SECONDS),
        )
    )
    carts.mark_checking_out(session, cart, key_id=caller.key_id, events=events)
    emit_rows(session, events)
    return _Step(checkout_id, tenders, cart.currency), None


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
    events: list[Pending],
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
        policy = availability.channel_policy(session, channel) if channel else None
        fast = (
            reservations_many.reserve_many(
                session,
                request(lines, True, channel),
                policy=policy,
                savepoint=False,
                events=events,
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

# A checkout still paying this long after its holds' window is given up.
EXPIRY_GRACE_SECONDS = 60
# Checkouts expired per sweep transaction; the sweep runs at most this often per worker.
SWEEP_BATCH = 50
SWEEP_EVERY = timedelta(seconds=30)


def expired_ids(session: Session, *, limit: int = SWEEP_BATCH) -> list[str]:
    """Checkouts still ``paying`` past their ``expires_at``, oldest first (a partial index
    holds only the paying ones)."""
    return list(
        session.scalars(
            select(Checkout.id)
            .where(Checkout.status == "paying", Checkout.expires_at < clock.now())
            .order_by(Checkout.expires_at)
            .limit(limit)
        )
    )


def expire(session: Session, payload: dict[str, Any]) -> None:
    """Still ``paying`` long after its holds expired: the process died between paying and
    committing. Give everything back; a retry of the request would resume it before this."""
    found = session.scalars(
        select(Checkout).where(Checkout.id == payload.get("checkout_id")).with_for_update()
    ).one_or_none()
    if found is None or found.status != "paying":
        return
    # (Checkouts started before expires_at existed are expired by their timer, as then.)
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
