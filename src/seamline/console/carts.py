"""Cart by code: a store associate (or an agent) opens the cart a customer reads out, changes
it with them, and checks it out at the till or as an endless-aisle order for home delivery.

Every change goes through the same cart services as the API (``caller=user.caller``), so the
customer's device sees it at once. Each form carries the cart ``version`` it was rendered
from, sent as ``If-Match``: a form older than the cart is refused with a clear notice.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from sqlalchemy import select
from starlette.responses import Response

from seamline.carts.models import MAX_LINE_QUANTITY
from seamline.kit.errors import NotFound, SeamlineError, Unprocessable

from .customers import require
from .order_actions import location_names, places, problem_text, to_minor, validated
from .security import Staff, db_of
from .web import PREFIX, redirect, render

router = APIRouter()

Version = Annotated[int, Form(ge=0, le=2**31)]
STALE = (
    "This cart changed since the page was opened (perhaps the customer edited it on their "
    "device). Here is the latest cart: check it and try again."
)


def _cart_url(cart_id: str) -> str:
    return f"{PREFIX}/carts/{cart_id}"


def _if_match(version: int) -> str:
    return f'"{version}"'


def _act(cart_id: str, notice: str, action: Any) -> Response:
    """Run one cart change in one transaction; a refusal comes back as a notice on the cart."""
    from seamline.carts.service import CartVersionMismatch

    try:
        action()
    except CartVersionMismatch:
        return redirect(_cart_url(cart_id), error=STALE)
    except SeamlineError as exc:
        if exc.status == 404 and exc.code == "cart_not_found":
            raise
        return redirect(_cart_url(cart_id), error=problem_text(exc))
    return redirect(_cart_url(cart_id), notice=notice)


# -- finding ---------------------------------------------------------------------------------


@router.get("/carts")
def find(
    request: Request, user: Staff, code: Annotated[str, Query(max_length=40)] = ""
) -> Response:
    """The big cart-code box; with ``code``, the cart (or a friendly not-found, 404)."""
    from seamline.carts import sharing

    require(user, "carts:read")
    code = code.strip()
    if not code:
        return render(request, "carts.html", code="", missing=False)
    cart_id = None
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 -]{2,14}", code):
        with db_of(request).transaction(readonly=True) as session:
            try:
                cart_id = sharing.cart_by_code(session, code, caller=user.caller).id
            except NotFound:
                cart_id = None
    if cart_id is None:
        return render(request, "carts.html", status=404, code=code, missing=True)
    return redirect(_cart_url(cart_id))


@router.get("/carts/{cart_id}")
def cart_page(request: Request, user: Staff, cart_id: str) -> Response:
    from seamline.carts import service, view
    from seamline.channels.models import Channel
    from seamline.inventory import stock
    from seamline.kit.ids import new_id

    require(user, "carts:read")
    with db_of(request).transaction(readonly=True) as session:
        cart = service.find_cart(session, cart_id)
        out = view.render(session, cart)
        has_ship = any(line.fulfilment == "ship" for line in out.lines)
        options = service.shipping_options(session, cart.id).data if has_ship else []
        pickup = places(session, user.caller, pickup=True)
        pickup = [p for p in pickup if p.kind == "store"]
        tills = [p for p in places(session, user.caller, sells_in_person=True) if p.kind == "store"]
        names = location_names(session)
        levels = stock.location_totals(session, sorted({line.variant_id for line in out.lines}))
        available = {
            (loc, var): max(0, on_hand - reserved)
            for (loc, var), (on_hand, reserved) in levels.items()
        }
        home = session.scalar(select(Channel.location_id).where(Channel.id == cart.channel_id))
    default_till = next((t.id for t in tills if t.id in user.location_ids), None)
    if default_till is None and user.location_ids and tills:
        default_till = tills[0].id
    return render(
        request,
        "cart.html",
        cart=out,
        options=options,
        pickup_stores=pickup,
        tills=tills,
        default_till=default_till or home or "",
        names=names,
        available=available,
        address=out.shipping_address or {},
        max_quantity=MAX_LINE_QUANTITY,
        checkout_key=new_id("csl"),
        editable=out.status == "open" and user.can("carts:write"),
        can_checkout=out.status == "open" and user.can("checkout:write"),
    )


# -- lines -----------------------------------------------------------------------------------


def _fulfilment(value: str) -> dict[str, Any]:
    """``ship`` or ``pickup:<location id>`` from a select."""
    kind, _, location = value.partition(":")
    if kind == "pickup":
        return {"fulfilment": "pickup", "pickup_location_id": location or None}
    return {"fulfilment": "ship"}


@router.post("/carts/{cart_id}/lines")
def add_line(
    request: Request,
    user: Staff,
    cart_id: str,
    version: Version,
    code: Annotated[str, Form(min_length=1, max_length=64)],
    quantity: Annotated[int, Form(ge=1, le=MAX_LINE_QUANTITY)] = 1,
    fulfilment: Annotated[str, Form(max_length=60)] = "ship",
) -> Response:
    """Add by SKU or scanned barcode (the catalogue tries the SKU first, then barcodes)."""
    from seamline.carts import lines
    from seamline.carts.schemas import LineAdd

    require(user, "carts:write")
    body = validated(
        LineAdd, {"barcode": code.strip(), "quantity": quantity, **_fulfilment(fulfilment)}
    )

    def action() -> None:
        with db_of(request).transaction() as session:
            lines.add_line(session, cart_id, body, caller=user.caller, if_match=_if_match(version))

    return _act(cart_id, f"Added {quantity} x {code.strip()}.", action)


@router.post("/carts/{cart_id}/lines/{line_id}")
def update_line(
    request: Request,
    user: Staff,
    cart_id: str,
    line_id: str,
    version: Version,
    quantity: Annotated[int | None, Form(ge=1, le=MAX_LINE_QUANTITY)] = None,
    fulfilment: Annotated[str | None, Form(max_length=60)] = None,
) -> Response:
    """Change a line's quantity, or where it is fulfilled (ship / pick up at a store)."""
    from seamline.carts import lines
    from seamline.carts.schemas import LineUpdate

    require(user, "carts:write")
    data: dict[str, Any] = {}
    if quantity is not None:
        data["quantity"] = quantity
    if fulfilment:
        data.update(_fulfilment(fulfilment))
    body = validated(LineUpdate, data)

    def action() -> None:
        with db_of(request).transaction() as session:
            lines.update_line(
                session, cart_id, line_id, body, caller=user.caller, if_match=_if_match(version)
            )

    return _act(cart_id, "Line updated.", action)


@router.post("/carts/{cart_id}/lines/{line_id}/remove")
def remove_line(
    request: Request, user: Staff, cart_id: str, line_id: str, version: Version
) -> Response:
    from seamline.carts import lines

    require(user, "carts:write")

    def action() -> None:
        with db_of(request).transaction() as session:
            lines.remove_line(
                session, cart_id, line_id, caller=user.caller, if_match=_if_match(version)
            )

    return _act(cart_id, "Line removed.", action)


# -- codes and shipping ----------------------------------------------------------------------


@router.post("/carts/{cart_id}/codes")
def add_code(
    request: Request,
    user: Staff,
    cart_id: str,
    version: Version,
    code: Annotated[str, Form(min_length=1, max_length=64)],
) -> Response:
    """Keep the code on the cart; the quote on the page says whether it applies, or why not."""
    from seamline.carts import service
    from seamline.carts.schemas import CodeAdd

    require(user, "carts:write")
    body = validated(CodeAdd, {"code": code})

    def action() -> None:
        with db_of(request).transaction() as session:
            service.add_code(
                session, cart_id, body, caller=user.caller, if_match=_if_match(version)
            )

    return _act(cart_id, f"Code {body.code} entered.", action)


@router.post("/carts/{cart_id}/codes/remove")
def remove_code(
    request: Request,
    user: Staff,
    cart_id: str,
    version: Version,
    code: Annotated[str, Form(min_length=1, max_length=64)],
) -> Response:
    from seamline.carts import service

    require(user, "carts:write")

    def action() -> None:
        with db_of(request).transaction() as session:
            service.remove_code(
                session, cart_id, code, caller=user.caller, if_match=_if_match(version)
            )

    return _act(cart_id, "Code removed.", action)


ADDRESS_FIELDS = ("name", "line1", "line2", "city", "region", "postcode", "country", "phone")


@router.post("/carts/{cart_id}/shipping")
def set_shipping(
    request: Request,
    user: Staff,
    cart_id: str,
    version: Version,
    email: Annotated[str, Form(max_length=320)] = "",
    shipping_rate_id: Annotated[str, Form(max_length=40)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    line1: Annotated[str, Form(max_length=200)] = "",
    line2: Annotated[str, Form(max_length=200)] = "",
    city: Annotated[str, Form(max_length=100)] = "",
    region: Annotated[str, Form(max_length=100)] = "",
    postcode: Annotated[str, Form(max_length=12)] = "",
    country: Annotated[str, Form(max_length=2)] = "",
    phone: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Set the email, the delivery address and the shipping rate (blank fields are left as
    they are; an address is sent whole once its name is filled in)."""
    from seamline.carts import service
    from seamline.carts.schemas import ShippingSet

    require(user, "carts:write")
    typed = {
        "name": name,
        "line1": line1,
        "line2": line2,
        "city": city,
        "region": region,
        "postcode": postcode,
        "country": country.upper(),
        "phone": phone,
    }
    data: dict[str, Any] = {}
    if email.strip():
        data["email"] = email.strip()
    if shipping_rate_id.strip():
        data["shipping_rate_id"] = shipping_rate_id.strip()
    if any(v.strip() for v in typed.values()):
        data["address"] = {k: v.strip() for k, v in typed.items() if v.strip()}
    if not data:
        return redirect(_cart_url(cart_id), error="Nothing to change: fill in a field first.")
    body = validated(ShippingSet, data)

    def action() -> None:
        with db_of(request).transaction() as session:
            service.set_shipping(
                session, cart_id, body, caller=user.caller, if_match=_if_match(version)
            )

    return _act(cart_id, "Delivery details saved.", action)


# -- checkout --------------------------------------------------------------------------------


@router.post("/carts/{cart_id}/checkout")
def checkout(
    request: Request,
    user: Staff,
    cart_id: str,
    version: Version,
    key: Annotated[str, Form(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    mode: Annotated[str, Form(pattern=r"^(till|delivery)$")] = "till",
    tender: Annotated[str, Form(pattern=r"^(cash|card_present|test)$")] = "cash",
    tendered: Annotated[str, Form(max_length=20)] = "",
    token: Annotated[str, Form(max_length=100)] = "",
    location_id: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Check out at the till (cash with change, card-present, or a test-card token), or place
    the cart for home delivery from the store (the endless aisle). ``key`` is the form's
    idempotency key: a double submit returns the same order."""
    from seamline.carts import service as carts
    from seamline.carts.models import CartLine
    from seamline.carts.service import CartVersionMismatch
    from seamline.orders import checkout as checkout_service
    from seamline.orders.schemas import CheckoutIn

    require(user, "checkout:write")
    db = db_of(request)
    try:
        # What the form needs to explain a refusal in the associate's terms; the version the
        # form showed is checked by checkout itself, with the cart locked.
        with db.transaction(readonly=True) as session:
            cart = carts.find_cart(session, cart_id)
            carts.require_open(cart)
            currency = cart.currency
            fulfilments = set(
                session.scalars(select(CartLine.fulfilment).where(CartLine.cart_id == cart.id))
            )
            has_address = bool(cart.shipping_address)
        where = location_id.strip() or None
        if mode == "delivery":
            if where is None:
                raise Unprocessable("choose the store that places this delivery order")
            if "pickup" in fulfilments:
                raise Unprocessable(
                    "a delivery order ships every line: switch the pick-up lines to ship first"
                )
            if not has_address:
                raise Unprocessable("set the customer's delivery address first")
        spec: dict[str, Any]
        if tender == "test":
            spec = {"provider": "test", "token": token.strip() or "tok_test_success"}
        else:
            spec = {"provider": "manual", "token": tender}
            if tender == "cash" and tendered.strip():
                spec["tendered"] = to_minor(tendered, currency, path="tendered")
        body = validated(CheckoutIn, {"tenders": [spec], "location_id": where})
        settings = request.app.state.settings
        order = checkout_service.checkout(
            db,
            cart_id,
            body,
            caller=user.caller,
            idempotency_key=f"console:{key}",
            hold_seconds=settings.checkout_hold_seconds,
            if_match=_if_match(version),
        )
    except CartVersionMismatch:
        return redirect(_cart_url(cart_id), error=STALE)
    except SeamlineError as exc:
        if exc.code == "cart_not_found":
            raise
        return redirect(_cart_url(cart_id), error=problem_text(exc))
    from .web import money

    change = sum(p.change_due or 0 for p in order.payments)
    notice = f"Order #{order.number} placed: {money(order.total, order.currency)}."
    if change:
        notice += f" Change due: {money(change, order.currency)}."
    return redirect(f"{PREFIX}/orders/{order.id}", notice=notice)
