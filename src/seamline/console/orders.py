"""Orders in the console: the list (an associate's store first), the order with its fulfilment
timeline, and the store's actions — ready for pick-up, hand over with the pick-up code, ship
with tracking, cancel, and returns started and received in the store.

Every action calls the domain service with ``caller=user.caller``, so a store associate acting
on another store's order is refused by the service (403 ``location_out_of_scope``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from sqlalchemy import select
from starlette.responses import Response

from seamline.kit.errors import SeamlineError
from seamline.orders.returns_schemas import RETURN_REASONS

from .customers import require
from .order_actions import location_names, places, problem_text, validated
from .security import Staff, db_of
from .web import PREFIX, money, redirect, render

router = APIRouter()

PAGE = 25
STATUSES = ("placed", "paid", "partially_fulfilled", "fulfilled", "completed", "cancelled")
Cursor = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$")]


def _order_url(order_id: str) -> str:
    return f"{PREFIX}/orders/{order_id}"


def _act(back: str, notice: str, action: Callable[[], Any]) -> Response:
    """One action in its own transaction; a refusal comes back as a notice on the page."""
    try:
        action()
    except SeamlineError as exc:
        if exc.code in ("order_not_found", "return_not_found"):
            raise
        return redirect(back, error=problem_text(exc))
    return redirect(back, notice=notice)


# -- reading ---------------------------------------------------------------------------------


@router.get("/orders")
def orders_page(
    request: Request,
    user: Staff,
    status: Annotated[str, Query(max_length=24)] = "",
    location: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Cursor = None,
) -> Response:
    """Newest first. An associate sees their store's orders unless they choose ``all``."""
    from seamline.channels.models import Channel
    from seamline.orders.service import list_orders

    require(user, "orders:read")
    if location is None:
        location = user.location_ids[0] if user.location_ids else "all"
    status = status if status in STATUSES else ""
    with db_of(request).transaction(readonly=True) as session:
        page = list_orders(
            session,
            caller=user.caller,
            status=status or None,
            location_id=None if location in ("all", "") else location,
            after=cursor,
            limit=PAGE,
        )
        names = location_names(session)
        rows = session.execute(select(Channel.id, Channel.kind))
        kinds = {cid: kind for cid, kind in rows}  # noqa: C416 (a Result has keys())
    return render(
        request,
        "orders.html",
        orders=page.data,
        next_cursor=page.next_cursor,
        chosen=status,
        statuses=STATUSES,
        location=location,
        names=names,
        kinds=kinds,
    )


HISTORY_LABELS = {
    "placed": "Order placed",
    "status_changed": "Status changed",
    "ready_for_pickup": "Ready for pick-up",
    "picked_up": "Picked up by the customer",
    "shipped": "Shipped",
    "carrier_update": "Carrier update",
    "cancelled": "Cancelled",
    "pickup_expired": "Pick-up not collected in time",
    "return_requested": "Return started",
    "return_received": "Return received",
    "refunded": "Refunded",
    "shipping_refunded": "Shipping refunded",
    "exchange_paid": "Exchange difference paid",
}


def describe(
    kind: str, detail: dict[str, Any], names: dict[str, str], currency: str
) -> tuple[str, str]:
    """A history row as (label, one line of detail) for the fulfilment timeline."""
    label = HISTORY_LABELS.get(kind, kind.replace("_", " ").capitalize())
    where = names.get(str(detail.get("location_id")), "") if detail.get("location_id") else ""
    text = ""
    if kind == "status_changed":
        text = f"{str(detail.get('from', '')).replace('_', ' ')} → "
        text += str(detail.get("to", "")).replace("_", " ")
    elif kind == "placed":
        text = f"{money(detail.get('total'), currency)}" + (f" at {where}" if where else "")
    elif kind == "ready_for_pickup":
        text = f"at {where}" if where else ""
    elif kind == "shipped":
        text = f"{detail.get('carrier', '')} {detail.get('tracking_number', '')}".strip()
    elif kind == "carrier_update":
        text = str(detail.get("status", "")).replace("_", " ")
        if detail.get("detail"):
            text += f": {detail['detail']}"
    elif kind == "cancelled":
        text = str(detail.get("reason", ""))
    elif kind in ("return_requested", "return_received"):
        units = sum(int(line.get("quantity", 0)) for line in detail.get("lines", []))
        text = f"{units} unit{'s' if units != 1 else ''}" + (f" at {where}" if where else "")
        if kind == "return_received" and detail.get("refund"):
            text += f", {money(detail.get('refund'), currency)} refunded"
    elif kind in ("refunded", "shipping_refunded", "exchange_paid", "pickup_expired"):
        amount = detail.get("amount", detail.get("refunded"))
        text = money(amount, currency) if amount is not None else ""
    return label, text


@router.get("/orders/{order_id}")
def order_page(request: Request, user: Staff, order_id: str) -> Response:
    from seamline.channels.models import Channel
    from seamline.orders import returns
    from seamline.orders.service import get_order

    require(user, "orders:read")
    with db_of(request).transaction(readonly=True) as session:
        order = get_order(session, order_id)
        rets = returns.list_returns(session, order.id, limit=100).data
        names = location_names(session)
        channel = session.get(Channel, order.channel_id)
        return_places = places(session, user.caller, returns=True)
    asked: dict[str, int] = {}
    for ret in rets:
        if ret.status == "requested":
            for rl in ret.lines:
                asked[rl.order_line_id] = asked.get(rl.order_line_id, 0) + rl.quantity
    returnable = {
        line.id: max(0, line.quantity - line.quantity_returned - asked.get(line.id, 0))
        for line in order.lines
    }
    timeline = [
        (h.at, *describe(h.kind, h.detail, names, order.currency)) for h in reversed(order.history)
    ]
    can_write = user.can("orders:write")
    cancellable = can_write and order.status in ("placed", "paid")
    if order.location_id is not None:
        may_cancel = cancellable and user.caller.may_act_at(order.location_id)
    else:
        live = [g.location_id for g in order.groups if g.status not in ("cancelled", "expired")]
        may_cancel = cancellable and all(user.caller.may_act_at(loc) for loc in live)
    return render(
        request,
        "order.html",
        order=order,
        returns=rets,
        names=names,
        channel=channel,
        timeline=timeline,
        returnable=returnable,
        return_places=return_places,
        reasons=RETURN_REASONS,
        can_write=can_write,
        may_act={g.id: can_write and user.caller.may_act_at(g.location_id) for g in order.groups},
        may_cancel=may_cancel,
        may_return=can_write
        and order.status != "cancelled"
        and order.payment_state in ("paid", "partially_refunded")
        and any(returnable.values())
        and bool(return_places),
    )


# -- fulfilment ------------------------------------------------------------------------------


@router.post("/orders/{order_id}/groups/{group_id}/ready")
def ready(request: Request, user: Staff, order_id: str, group_id: str) -> Response:
    """Goods put aside: the customer is told, with their pick-up code."""
    from seamline.orders import fulfilment

    require(user, "orders:write")
    hold_days = request.app.state.settings.pickup_hold_days

    def action() -> None:
        with db_of(request).transaction() as session:
            fulfilment.ready_for_pickup(
                session, order_id, group_id, caller=user.caller, hold_days=hold_days
            )

    return _act(_order_url(order_id), "Marked ready for pick-up; the customer is told.", action)


@router.post("/orders/{order_id}/groups/{group_id}/handover")
def hand_over(
    request: Request,
    user: Staff,
    order_id: str,
    group_id: str,
    code: Annotated[str, Form(min_length=1, max_length=20)],
) -> Response:
    """The customer shows their pick-up code: it must match before the goods go."""
    from seamline.orders import fulfilment
    from seamline.orders.schemas import HandOverIn

    require(user, "orders:write")
    body = validated(HandOverIn, {"code": code})

    def action() -> None:
        with db_of(request).transaction() as session:
            fulfilment.hand_over(session, order_id, group_id, body.code, caller=user.caller)

    return _act(_order_url(order_id), "Code verified: handed over to the customer.", action)


@router.post("/orders/{order_id}/groups/{group_id}/ship")
def ship(
    request: Request,
    user: Staff,
    order_id: str,
    group_id: str,
    carrier: Annotated[str, Form(min_length=1, max_length=60)],
    tracking_number: Annotated[str, Form(min_length=1, max_length=100)],
) -> Response:
    from seamline.orders import fulfilment
    from seamline.orders.schemas import ShipIn

    require(user, "orders:write")
    body = validated(ShipIn, {"carrier": carrier, "tracking_number": tracking_number})

    def action() -> None:
        with db_of(request).transaction() as session:
            fulfilment.ship(
                session,
                order_id,
                group_id,
                carrier=body.carrier,
                tracking_number=body.tracking_number,
                caller=user.caller,
            )

    return _act(
        _order_url(order_id), f"Shipped with {body.carrier} {body.tracking_number}.", action
    )


@router.post("/orders/{order_id}/cancel")
def cancel(
    request: Request,
    user: Staff,
    order_id: str,
    reason: Annotated[str, Form(min_length=1, max_length=500)],
) -> Response:
    """Stock goes back and payments are refunded (the service does both)."""
    from seamline.orders import fulfilment
    from seamline.orders.schemas import CancelIn

    require(user, "orders:write")
    body = validated(CancelIn, {"reason": reason})

    def action() -> None:
        with db_of(request).transaction() as session:
            fulfilment.cancel(session, order_id, reason=body.reason, caller=user.caller)

    return _act(_order_url(order_id), "Order cancelled: stock restored, payments refunded.", action)


# -- returns ---------------------------------------------------------------------------------


@router.post("/orders/{order_id}/returns")
def start_return(
    request: Request,
    user: Staff,
    order_id: str,
    location_id: Annotated[str, Form(min_length=1, max_length=40)],
    line_id: Annotated[list[str], Form(max_length=100)],
    quantity: Annotated[list[int], Form(max_length=100)],
    reason: Annotated[list[str], Form(max_length=100)],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Lines and quantities the customer brings back, with why, received at this store."""
    from seamline.orders import returns
    from seamline.orders.returns_schemas import ReturnCreate

    require(user, "orders:write")
    if not (len(line_id) == len(quantity) == len(reason)):
        return redirect(_order_url(order_id), error="The return form was incomplete; reload it.")
    lines = [
        {"order_line_id": lid, "quantity": q, "reason": r}
        for lid, q, r in zip(line_id, quantity, reason, strict=True)
        if q > 0
    ]
    if not lines:
        return redirect(_order_url(order_id), error="Choose at least one item to return.")
    body = validated(ReturnCreate, {"lines": lines, "location_id": location_id, "note": note})
    created: list[str] = []

    def action() -> None:
        with db_of(request).transaction() as session:
            created.append(returns.request_return(session, order_id, body, caller=user.caller).id)

    response = _act(_order_url(order_id), "Return started: inspect and receive it.", action)
    if created:
        return redirect(
            f"{_order_url(order_id)}/returns/{created[0]}",
            notice="Return started: inspect the items, then receive it.",
        )
    return response


@router.get("/orders/{order_id}/returns/{return_id}")
def return_page(request: Request, user: Staff, order_id: str, return_id: str) -> Response:
    from seamline.kit.errors import NotFound
    from seamline.orders import returns
    from seamline.orders.service import get_order

    require(user, "orders:read")
    with db_of(request).transaction(readonly=True) as session:
        ret = returns.get_return(session, return_id)
        if ret.order_id != order_id:
            raise NotFound("no such return on this order", code="return_not_found")
        order = get_order(session, order_id)
        names = location_names(session)
    shipping_left = not any(h.kind == "shipping_refunded" for h in order.history)
    return render(
        request,
        "return.html",
        ret=ret,
        order=order,
        names=names,
        titles={line.id: line.name for line in order.lines},
        shipping_left=shipping_left and order.shipping_total > 0,
        may_receive=ret.status == "requested"
        and user.can("orders:write")
        and (ret.location_id is None or user.caller.may_act_at(ret.location_id)),
    )


@router.post("/orders/{order_id}/returns/{return_id}/receive")
def receive(
    request: Request,
    user: Staff,
    order_id: str,
    return_id: str,
    return_line_id: Annotated[list[str], Form(max_length=100)],
    disposition: Annotated[list[str], Form(max_length=100)],
    refund_shipping: Annotated[bool, Form()] = False,
) -> Response:
    """Inspected: restock or write off each line; the refund goes back to the tenders."""
    from seamline.orders import returns
    from seamline.orders.returns_schemas import ReturnReceive

    require(user, "orders:write")
    back = f"{_order_url(order_id)}/returns/{return_id}"
    if len(return_line_id) != len(disposition):
        return redirect(back, error="The receive form was incomplete; reload it.")
    data: dict[str, Any] = {
        "lines": [
            {"return_line_id": rid, "disposition": d}
            for rid, d in zip(return_line_id, disposition, strict=True)
        ],
        "refund_shipping": refund_shipping,
    }
    db = db_of(request)
    with db.transaction(readonly=True) as session:
        ret = returns.find_return(session, return_id)
        if ret.order_id != order_id:
            from seamline.kit.errors import NotFound

            raise NotFound("no such return on this order", code="return_not_found")
        if ret.location_id is None and user.location_ids:
            data["location_id"] = user.location_ids[0]
    body = validated(ReturnReceive, data)
    done: list[Any] = []

    def action() -> None:
        done.append(returns.receive_return(db, return_id, body, caller=user.caller))

    response = _act(back, "Return received.", action)
    if done:
        out = done[0]
        text = "Return received"
        if out.refund_total:
            text += f": {money(out.refund_total, out.currency)} refunded to the original payment"
        return redirect(back, notice=text + ".")
    return response
