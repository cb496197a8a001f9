"""Returns and exchanges, on any channel: ask, receive and inspect, settle (docs/returns.md).

A return is **requested** against an order's lines (``request_return``): never more units of a
line than were bought minus those returned or already asked back. It is **received** where it
arrives (``receive_return``): each line is inspected — ``restock`` puts the units back at the
receiving location (a ``return`` movement), ``write_off`` records them as unsellable without
touching stock — and the return is settled in the same step:

- each returned unit is credited at its share of the line's paid total (``unit_credit``: every
  unit is worth ``total // quantity``, the line's last unit absorbs the remainder, so a line
  returned in several parts credits exactly its total);
- an exchange hands over the replacement variant from the receiving location (a ``sale``
  movement) priced like the returned unit (``exchange_price``);
- the shipping charge only with ``refund_shipping`` (once per order);
- the sum is netted: a positive balance is refunded to the original tenders
  (``payments.service.refund_order``), a negative one is paid by the tenders of the receive
  request.

A receive that must take money runs in three steps, like checkout, so no stock lock is held
while a payment provider answers: assess (read-only transaction) → take the tenders (no
transaction) → settle (one transaction that re-assesses under the order's lock and gives the
money back if anything changed or failed). Receives without a payment are one transaction.
Refunds call providers inside the settling transaction (``refund_order``'s contract: short,
idempotent by key), before any stock row is locked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.catalog.models import Price
from seamline.catalog.service import find_variant
from seamline.channels.models import Channel
from seamline.db.engine import Database
from seamline.db.lookup import get_or_404
from seamline.db.pagination import keyset_page
from seamline.events.outbox import emit
from seamline.inventory import buckets, stock
from seamline.inventory.models import Location
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, Unprocessable
from seamline.kit.ids import new_id
from seamline.orders.checkout import PaymentDeclined
from seamline.orders.models import Order, OrderHistory, OrderLine, Return, ReturnLine
from seamline.orders.returns_schemas import (
    RefundOut,
    ReturnCreate,
    ReturnLineOut,
    ReturnList,
    ReturnOut,
    ReturnReceive,
)
from seamline.orders.schemas import PaymentOut
from seamline.orders.service import emit_order_event, find_order, history, refresh_status
from seamline.payments import service as payments
from seamline.payments.models import Payment, Refund
from seamline.payments.providers import PaymentResult, get_provider, refuse_card_number

REFUNDABLE_STATES = ("paid", "partially_refunded")
SHIPPING_REFUNDED = "shipping_refunded"  # the order_history kind that marks it done


# -- money -----------------------------------------------------------------------------------


def unit_credit(total: int, quantity: int, returned_before: int, returning: int) -> int:
    """What ``returning`` units of a line are worth when ``returned_before`` came back already.

    Every unit is worth ``total // quantity``; the line's last unit also takes the remainder,
    so the units of a line returned in any number of parts credit exactly ``total``."""
    per_unit = total // quantity
    credit = per_unit * returning
    if returned_before + returning == quantity:
        credit += total - per_unit * quantity
    return credit


def exchange_price(credit: int, returned_unit_price: int, new_unit_price: int, units: int) -> int:
    """The replacement's price, priced like the returned units: their credit scaled by the
    ratio of list prices (the same share of discount and tax carries over), half up. The same
    list price costs exactly the credit, so a like-for-like swap settles nothing."""
    if returned_unit_price <= 0:
        return new_unit_price * units
    return (2 * credit * new_unit_price + returned_unit_price) // (2 * returned_unit_price)


# -- reading ---------------------------------------------------------------------------------


def find_return(session: Session, return_id: str, *, for_update: bool = False) -> Return:
    return get_or_404(
        session, Return, return_id, what="return", code="return_not_found", for_update=for_update
    )


def _lines_of(session: Session, ret: Return) -> list[ReturnLine]:
    return list(
        session.scalars(
            select(ReturnLine).where(ReturnLine.return_id == ret.id).order_by(ReturnLine.id)
        )
    )


def return_out(session: Session, ret: Return) -> ReturnOut:
    order = session.get(Order, ret.order_id)
    assert order is not None
    lines = _lines_of(session, ret)
    ordered = {
        o.id: o
        for o in session.scalars(
            select(OrderLine).where(OrderLine.id.in_([line.order_line_id for line in lines]))
        )
    }
    refunds = session.scalars(
        select(Refund).where(Refund.return_id == ret.id).order_by(Refund.created_at, Refund.id)
    )
    paid = list(
        session.scalars(
            select(Payment)
            .where(Payment.checkout_id == ret.id, Payment.order_id == ret.order_id)
            .order_by(Payment.position)
        )
    )
    exchange_paid = sum(p.captured for p in paid)
    settled_lines = sum(line.refund for line in lines)
    return ReturnOut(
        id=ret.id,
        order_id=ret.order_id,
        status=ret.status,
        channel_id=ret.channel_id,
        location_id=ret.location_id,
        currency=order.currency,
        refund_total=ret.refund_total,
        # net settled = refund_total - exchange_paid = the lines' settlement + shipping
        shipping_refund=ret.refund_total - exchange_paid - settled_lines,
        exchange_paid=exchange_paid,
        note=ret.note,
        created_by=ret.created_by,
        lines=[
            ReturnLineOut(
                id=line.id,
                order_line_id=line.order_line_id,
                variant_id=ordered[line.order_line_id].variant_id,
                sku=ordered[line.order_line_id].sku,
                quantity=line.quantity,
                reason=line.reason,
                disposition=line.disposition,
                refund=line.refund,
                exchange_variant_id=line.exchange_variant_id,
            )
            for line in lines
        ],
        refunds=[RefundOut.model_validate(r, from_attributes=True) for r in refunds],
        payments=[PaymentOut.model_validate(p, from_attributes=True) for p in paid],
        created_at=ret.created_at,
        updated_at=ret.updated_at,
    )


def get_return(session: Session, return_id: str) -> ReturnOut:
    return return_out(session, find_return(session, return_id))


def list_returns(
    session: Session, order_id: str, *, after: str | None = None, limit: int = 50
) -> ReturnList:
    """An order's returns, oldest first."""
    find_order(session, order_id)
    stmt = select(Return).where(Return.order_id == order_id)
    rows, cursor = keyset_page(session, stmt, Return.id, after=after, limit=limit)
    return ReturnList(data=[return_out(session, r) for r in rows], next_cursor=cursor)


# -- shared checks ---------------------------------------------------------------------------


def _check_order(order: Order) -> None:
    if order.status == "cancelled":
        raise Conflict(f"order {order.id} is cancelled", code="order_cancelled")
    if order.payment_state not in REFUNDABLE_STATES:
        raise Conflict(
            f"order {order.id} is {order.payment_state}: only paid orders take returns",
            code="order_not_paid",
        )


def _receiving_location(session: Session, location_id: str, caller: Caller, path: str) -> Location:
    location = get_or_404(
        session, Location, location_id, what="location", code="location_not_found"
    )
    caller.require_location(location.id)
    if not (location.returns and location.active):
        raise Unprocessable(
            f"location {location.id} does not take returns",
            code="location_takes_no_returns",
            errors=[FieldError(path, "this location does not take returns", "no_returns")],
        )
    return location


def _event(session: Session, order: Order, ret: Return, event_type: str, **extra: object) -> None:
    """``return.*``: on the order's aggregate (ordered with its ``order.*`` events), naming the
    customer's profile so it lands on their timeline."""
    emit(
        session,
        event_type,
        aggregate_type="order",
        aggregate_id=order.id,
        payload={
            "return_id": ret.id,
            "order_id": order.id,
            "number": order.number,
            "profile_id": order.profile_id,
            "channel": ret.channel_id or order.channel_id,
            "location_id": ret.location_id,
            "currency": order.currency,
            "status": ret.status,
            "occurred_at": clock.now().isoformat(),
            **extra,
        },
    )


# -- asking ----------------------------------------------------------------------------------


def request_return(
    session: Session, order_id: str, data: ReturnCreate, *, caller: Caller
) -> ReturnOut:
    """Record a requested return. The order row is locked, so two requests for the same line
    cannot together ask back more than was bought."""
    order = find_order(session, order_id, for_update=True)
    _check_order(order)
    channel_id = data.channel_id
    if data.location_id is not None:
        location = _receiving_location(session, data.location_id, caller, "body.location_id")
        channel_id = channel_id or location.channel_id
    elif caller.location_ids:
        raise Unprocessable(
            "a store key takes returns at its store: give location_id",
            code="location_required",
            errors=[FieldError("body.location_id", "required for a store key", "missing")],
        )
    if data.channel_id is not None:
        get_or_404(session, Channel, data.channel_id, what="channel", code="channel_not_found")
    ordered = {
        line.id: line
        for line in session.scalars(select(OrderLine).where(OrderLine.order_id == order.id))
    }
    asked = dict(
        session.execute(
            select(ReturnLine.order_line_id, func.sum(ReturnLine.quantity))
            .join(Return, Return.id == ReturnLine.return_id)
            .where(Return.order_id == order.id, Return.status == "requested")
            .group_by(ReturnLine.order_line_id)
        ).all()
    )
    seen: set[str] = set()
    for i, line in enumerate(data.lines):
        path = f"body.lines.{i}"
        found = ordered.get(line.order_line_id)
        if found is None:
            raise Unprocessable(
                f"order {order.id} has no line {line.order_line_id!r}",
                code="order_line_not_in_order",
                errors=[FieldError(f"{path}.order_line_id", "not a line of this order")],
            )
        if line.order_line_id in seen:
            raise Unprocessable(
                f"order line {line.order_line_id} is named twice",
                code="duplicate_line",
                errors=[FieldError(f"{path}.order_line_id", "repeated", "duplicate")],
            )
        seen.add(line.order_line_id)
        left = found.quantity - found.quantity_returned - int(asked.get(found.id) or 0)
        if line.quantity > left:
            raise Conflict(
                f"line {found.id} ({found.sku}) has {left} units left to return, "
                f"{line.quantity} asked (returnable={left})",
                code="return_exceeds_purchase",
                errors=[
                    FieldError(f"{path}.quantity", f"at most {left}", "exceeds_purchase"),
                ],
                extra={"returnable": left},
            )
        if line.exchange_variant_id is not None:
            find_variant(session, line.exchange_variant_id)
            if (
                line.exchange_variant_id != found.variant_id
                and _list_price(session, line.exchange_variant_id, order.currency) is None
            ):
                raise Unprocessable(
                    f"variant {line.exchange_variant_id} has no {order.currency} price",
                    code="exchange_not_priced",
                    errors=[FieldError(f"{path}.exchange_variant_id", "no price", "not_priced")],
                )
    ret = Return(
        id=new_id("ret"),
        order_id=order.id,
        channel_id=channel_id,
        location_id=data.location_id,
        status="requested",
        note=data.note,
        created_by=caller.key_id,
    )
    session.add(ret)
    session.flush()
    rows = [
        ReturnLine(
            id=new_id("rtl"),
            return_id=ret.id,
            order_line_id=line.order_line_id,
            quantity=line.quantity,
            reason=line.reason,
            exchange_variant_id=line.exchange_variant_id,
        )
        for line in data.lines
    ]
    session.add_all(rows)
    session.flush()
    described = [_described(row, ordered[row.order_line_id]) for row in rows]
    history(
        session,
        order,
        "return_requested",
        {"return_id": ret.id, "location_id": ret.location_id, "lines": described},
        actor=caller.key_id,
    )
    _event(
        session, order, ret, "return.requested", by_mail=ret.location_id is None, lines=described
    )
    return return_out(session, ret)


def _list_price(session: Session, variant_id: str, currency: str) -> int | None:
    return session.scalar(
        select(Price.amount).where(Price.variant_id == variant_id, Price.currency == currency)
    )


def _described(row: ReturnLine, ordered: OrderLine) -> dict[str, object]:
    return {
        "return_line_id": row.id,
        "order_line_id": row.order_line_id,
        "sku": ordered.sku,
        "variant_id": ordered.variant_id,
        "quantity": row.quantity,
        "reason": row.reason,
        "exchange_variant_id": row.exchange_variant_id,
        "disposition": row.disposition,
        "refund_minor": row.refund,
    }


# -- receiving: assessing --------------------------------------------------------------------


@dataclass
class _Line:
    row: ReturnLine
    ordered: OrderLine
    disposition: str
    credit: int
    exchange_price: int


@dataclass
class _Assessment:
    """What receiving a return will do, computed from the current rows."""

    order: Order
    ret: Return
    location_id: str
    lines: list[_Line]
    shipping: int
    tenders: list[payments.Tender] = field(default_factory=list)

    @property
    def net(self) -> int:
        return sum(x.credit - x.exchange_price for x in self.lines) + self.shipping

    @property
    def refund(self) -> int:
        return max(0, self.net)

    @property
    def due(self) -> int:
        return max(0, -self.net)

    @property
    def attempt(self) -> str:
        """The payment attempt's id: the same request asks the PSP the same question."""
        spec = repr([(t.provider, t.token, t.amount, t.tendered, t.position) for t in self.tenders])
        return f"{self.ret.id}.{hashlib.sha256(spec.encode()).hexdigest()[:12]}"


def _assess(
    session: Session, return_id: str, data: ReturnReceive, caller: Caller, *, lock: bool
) -> _Assessment:
    ret = find_return(session, return_id)
    order = find_order(session, ret.order_id, for_update=lock)
    if lock:  # the order first, then its return: every writer locks in that order
        session.refresh(ret, with_for_update=True)
    if ret.status != "requested":
        raise Conflict(
            f"return {ret.id} is already {ret.status}",
            code="return_cancelled" if ret.status == "cancelled" else "return_already_received",
        )
    _check_order(order)
    if ret.location_id is not None:
        if data.location_id is not None and data.location_id != ret.location_id:
            raise Unprocessable(
                f"return {ret.id} is received at {ret.location_id}",
                code="location_mismatch",
                errors=[FieldError("body.location_id", f"must be {ret.location_id}", "mismatch")],
            )
        location_id = ret.location_id
    elif data.location_id is not None:
        location_id = data.location_id
    else:
        raise Unprocessable(
            "a return by mail is received at a location: give location_id",
            code="location_required",
            errors=[FieldError("body.location_id", "required for a return by mail", "missing")],
        )
    _receiving_location(session, location_id, caller, "body.location_id")
    rows = {row.id: row for row in _lines_of(session, ret)}
    dispositions: dict[str, str] = {}
    for i, line in enumerate(data.lines):
        path = f"body.lines.{i}.return_line_id"
        if line.return_line_id not in rows:
            raise Unprocessable(
                f"return {ret.id} has no line {line.return_line_id!r}",
                code="return_line_not_in_return",
                errors=[FieldError(path, "not a line of this return")],
            )
        if line.return_line_id in dispositions:
            raise Unprocessable(
                f"return line {line.return_line_id} is named twice",
                code="duplicate_line",
                errors=[FieldError(path, "repeated", "duplicate")],
            )
        dispositions[line.return_line_id] = line.disposition
    missing = [row_id for row_id in rows if row_id not in dispositions]
    if missing:
        raise Unprocessable(
            f"give a disposition for every line of the return (missing: {', '.join(missing)})",
            code="disposition_required",
            errors=[FieldError("body.lines", f"missing {', '.join(missing)}", "missing")],
        )
    ordered = {
        o.id: o for o in session.scalars(select(OrderLine).where(OrderLine.order_id == order.id))
    }
    returned = {line_id: o.quantity_returned for line_id, o in ordered.items()}
    lines = []
    for row in rows.values():
        o = ordered[row.order_line_id]
        if returned[o.id] + row.quantity > o.quantity:
            raise Conflict(
                f"line {o.id} ({o.sku}) has {o.quantity - returned[o.id]} units left to return",
                code="return_exceeds_purchase",
                extra={"returnable": o.quantity - returned[o.id]},
            )
        credit = unit_credit(o.total, o.quantity, returned[o.id], row.quantity)
        returned[o.id] += row.quantity
        price = 0
        if row.exchange_variant_id == o.variant_id:
            price = credit
        elif row.exchange_variant_id is not None:
            listed = _list_price(session, row.exchange_variant_id, order.currency)
            if listed is None:
                raise Conflict(
                    f"variant {row.exchange_variant_id} has no {order.currency} price any more",
                    code="exchange_not_priced",
                )
            price = exchange_price(credit, o.unit_price, listed, row.quantity)
        lines.append(_Line(row, o, dispositions[row.id], credit, price))
    shipping = 0
    if data.refund_shipping:
        done = session.scalar(
            select(func.count())
            .select_from(OrderHistory)
            .where(OrderHistory.order_id == order.id, OrderHistory.kind == SHIPPING_REFUNDED)
        )
        if done:
            raise Conflict(
                f"the shipping of order {order.id} was refunded already",
                code="shipping_already_refunded",
                errors=[FieldError("body.refund_shipping", "refunded already", "refunded")],
            )
        shipping = max(0, order.total - sum(o.total for o in ordered.values()))
    found = _Assessment(order, ret, location_id, lines, shipping)
    if found.refund > order.paid_total - order.refunded_total:
        raise Conflict(
            f"{found.refund} is more than the {order.paid_total - order.refunded_total} "
            "left to refund on the order",
            code="refund_exceeds_payments",
        )
    found.tenders = _plan_tenders(session, found, data)
    _check_exchange_stock(session, found)
    return found


def _plan_tenders(
    session: Session, found: _Assessment, data: ReturnReceive
) -> list[payments.Tender]:
    if found.due == 0:
        if data.tenders:
            raise Unprocessable(
                "nothing is due from the customer on this return",
                code="no_payment_due",
                errors=[FieldError("body.tenders", "leave it out", "not_needed")],
            )
        return []
    for i, tender in enumerate(data.tenders):
        refuse_card_number(tender.token)
        get_provider(tender.provider)
        if tender.tendered is not None and tender.provider != "manual":
            raise Unprocessable(
                "only cash at a till is tendered",
                code="tendered_not_allowed",
                errors=[FieldError(f"body.tenders.{i}.tendered", "manual cash only", "invalid")],
            )
    planned = payments.plan(
        [(t.provider, t.token, t.amount, t.tendered) for t in data.tenders],
        total=found.due,
        path="body.tenders",
    )
    # After the order's own tenders, so refunds later treat them as the newest.
    last = session.scalar(
        select(func.max(Payment.position)).where(Payment.order_id == found.order.id)
    )
    base = 0 if last is None else last + 1
    return [replace(t, position=t.position + base) for t in planned]


def _check_exchange_stock(session: Session, found: _Assessment) -> None:
    """Before any money is taken: the replacements are free at the receiving location now.
    (The sale itself is conditional again when it happens.)"""
    wanted: dict[str, int] = {}
    for x in found.lines:
        if x.row.exchange_variant_id is not None:
            variant = x.row.exchange_variant_id
            wanted[variant] = wanted.get(variant, 0) + x.row.quantity
    for variant_id, quantity in sorted(wanted.items()):
        now = buckets.totals(session, found.location_id, variant_id)
        # Restocked units of the same variant come back first and may be handed over again.
        back = sum(
            x.row.quantity
            for x in found.lines
            if x.disposition == "restock" and x.ordered.variant_id == variant_id
        )
        if now.available + back < quantity:
            raise stock.insufficient(found.location_id, variant_id, now.available, quantity)


# -- receiving: paying and settling ----------------------------------------------------------


@dataclass(frozen=True)
class _Taken:
    attempt: str
    tenders: list[payments.Tender]
    results: list[PaymentResult]


def receive_return(
    db: Database, return_id: str, data: ReturnReceive, *, caller: Caller
) -> ReturnOut:
    """Receive, inspect and settle a return (opens its own transactions: see the module)."""
    taken: _Taken | None = None
    if data.tenders:
        with db.transaction(readonly=True) as session:
            found = _assess(session, return_id, data, caller, lock=False)
            attempt, tenders, currency = found.attempt, found.tenders, found.order.currency
        taken = _take(attempt, tenders, currency)
    try:
        with db.transaction() as session:
            return _settle(session, return_id, data, caller, taken)
    except BaseException:
        if taken is not None:
            _give_back(db, taken)
        raise


def _take(attempt: str, tenders: list[payments.Tender], currency: str) -> _Taken:
    """Take the exchange difference, outside any transaction. A till settles at once: any
    tender not captured (declined, failed, or asynchronous) gives back what was taken."""
    results = payments.take(attempt, tenders, currency)
    if len(results) == len(tenders) and all(r.status == "captured" for r in results):
        return _Taken(attempt, tenders, results)
    payments.undo(attempt, tenders, results)
    last = results[-1] if results else None
    raise PaymentDeclined(
        "the payment was declined" if last and last.status == "declined" else "payment failed",
        extra={
            "decline_code": last.decline_code if last else None,
            "tender": len(results) - 1,
            "retryable": bool(last and last.retryable),
        },
    )


def _give_back(db: Database, taken: _Taken) -> None:
    """The settlement failed after the tenders were taken: give the money back — unless a
    concurrent identical request settled with this very payment (same attempt, same PSP
    reference), which then belongs to that return."""
    references = [r.provider_reference for r in taken.results if r.provider_reference]
    with db.transaction(readonly=True) as session:
        kept = session.scalar(
            select(func.count())
            .select_from(Payment)
            .where(Payment.provider_reference.in_(references))
        )
    if not kept:
        payments.undo(taken.attempt, taken.tenders, taken.results)


def _settle(
    session: Session,
    return_id: str,
    data: ReturnReceive,
    caller: Caller,
    taken: _Taken | None,
) -> ReturnOut:
    found = _assess(session, return_id, data, caller, lock=True)
    order, ret = found.order, found.ret
    if taken is not None and (found.attempt != taken.attempt or found.tenders != taken.tenders):
        raise Conflict(
            "the amount due changed while paying; the payment was given back, try again",
            code="return_changed",
        )
    # 1. Money: refunds (provider calls) before any stock row is locked.
    refunds: list[Refund] = []
    if found.refund:
        refunds = payments.refund_order(
            session,
            order.id,
            found.refund,
            reason=f"return {ret.id}",
            return_id=ret.id,
            key=f"{ret.id}:refund",
        )
        order.refunded_total += found.refund
        order.payment_state = (
            "refunded" if order.refunded_total >= order.paid_total else "partially_refunded"
        )
    paid: list[Payment] = []
    if taken is not None:
        paid = payments.record(session, ret.id, taken.tenders, taken.results, order_id=order.id)
        order.paid_total += found.due
    # 2. Stock, in (variant, kind) order at the one receiving location.
    moves: list[tuple[str, int, str, ReturnLine]] = []
    for x in found.lines:
        if x.disposition == "restock":
            moves.append((x.ordered.variant_id, x.row.quantity, "return", x.row))
        if x.row.exchange_variant_id is not None:
            moves.append((x.row.exchange_variant_id, -x.row.quantity, "sale", x.row))
    for variant_id, delta, kind, row in sorted(moves, key=lambda m: (m[0], -m[1])):
        stock.move(
            session,
            found.location_id,
            variant_id,
            delta,
            kind=kind,
            reason=f"return {ret.id}: {row.reason}" if kind == "return" else f"exchange {ret.id}",
            caller=caller,
            reference=row.id,
        )
    # 3. The records.
    for x in found.lines:
        x.row.disposition = x.disposition
        x.row.refund = x.credit - x.exchange_price
        x.ordered.quantity_returned += x.row.quantity
    ret.location_id = found.location_id
    ret.refund_total = found.refund
    ret.status = "refunded" if found.refund else "received"
    session.flush()
    described = [_described(x.row, x.ordered) for x in found.lines]
    history(
        session,
        order,
        "return_received",
        {
            "return_id": ret.id,
            "location_id": found.location_id,
            "lines": described,
            "refund": found.refund,
            "exchange_paid": found.due if taken is not None else 0,
        },
        actor=caller.key_id,
    )
    if found.shipping:
        history(
            session,
            order,
            SHIPPING_REFUNDED,
            {"return_id": ret.id, "amount": found.shipping},
            actor=caller.key_id,
        )
    if paid:
        history(
            session,
            order,
            "exchange_paid",
            {"return_id": ret.id, "amount": found.due, "payments": [p.id for p in paid]},
            actor=caller.key_id,
        )
    _event(
        session,
        order,
        ret,
        "return.received",
        lines=described,
        refund_minor=found.refund,
        shipping_refund_minor=found.shipping,
        exchange_paid_minor=found.due if taken is not None else 0,
    )
    _refunded(session, order, ret, refunds, caller)
    refresh_status(session, order, actor=caller.key_id)
    session.flush()
    return return_out(session, ret)


def _refunded(
    session: Session, order: Order, ret: Return, refunds: Sequence[Refund], caller: Caller
) -> None:
    """One ``order.refunded`` per refund (one per original tender it went back to)."""
    if not refunds:
        return
    methods = dict(
        session.execute(
            select(Payment.id, Payment.method).where(
                Payment.id.in_([r.payment_id for r in refunds])
            )
        ).all()
    )
    history(
        session,
        order,
        "refunded",
        {
            "return_id": ret.id,
            "amount": sum(r.amount for r in refunds),
            "refunds": [
                {
                    "refund_id": r.id,
                    "payment_id": r.payment_id,
                    "method": methods.get(r.payment_id),
                    "amount": r.amount,
                }
                for r in refunds
            ],
        },
        actor=caller.key_id,
    )
    for r in refunds:
        emit_order_event(
            session,
            order,
            "order.refunded",
            amount_minor=r.amount,
            refund_id=r.id,
            payment_id=r.payment_id,
            method=methods.get(r.payment_id),
            return_id=ret.id,
            channel=ret.channel_id or order.channel_id,
        )
