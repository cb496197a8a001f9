"""Cart lines: adding (by variant or barcode), changing, removing; the pick-up rule.

Adding a variant already in the cart with the same fulfilment (and pick-up store) adds to that
line. Pick-up is allowed only at an active store with the pickup capability, on the cart's
channel, that can promise the line's whole quantity right now (409 ``pickup_unavailable`` with
``available``); a key limited to locations may choose only its own stores.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.carts.models import MAX_LINE_QUANTITY, Cart, CartLine
from seamline.carts.schemas import LineAdd, LineUpdate
from seamline.carts.service import changed, lock_cart
from seamline.catalog import service as catalog
from seamline.db.lookup import not_found, usable_id
from seamline.inventory import availability, stock
from seamline.inventory.models import Location
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, Unprocessable
from seamline.kit.ids import new_id

MAX_LINES = 100


def _key(caller: Caller | None) -> str | None:
    return caller.key_id if caller is not None else None


def _location(session: Session, location_id: str) -> Location:
    location = session.get(Location, location_id) if usable_id(location_id) else None
    if location is None:
        raise not_found("location", location_id, "location_not_found")
    return location


def check_pickup(
    session: Session,
    cart: Cart,
    *,
    location_id: str,
    variant_id: str,
    quantity: int,
    caller: Caller | None,
    path: str = "body.pickup_location_id",
) -> None:
    """Pick-up only at an active store with the pickup capability, on the cart's channel, that
    can promise ``quantity`` now (409 ``pickup_unavailable`` with ``available``). A key limited
    to locations may choose only its own stores."""
    location = _location(session, location_id)
    if caller is not None:
        caller.require_location(location.id)
    if not (location.active and location.kind == "store" and location.pickup):
        raise Conflict(
            f"{location.name} does not offer pick-up",
            code="pickup_unavailable",
            errors=[FieldError(path, "not an active store with pick-up", "not_pickup")],
            extra={"available": 0},
        )
    policy = availability.channel_policy(session, cart.channel_id)
    if policy.restricted and location.id not in policy.location_ids:
        raise Conflict(
            f"{location.name} does not sell for this cart's channel",
            code="pickup_unavailable",
            errors=[FieldError(path, "not a location of the cart's channel", "not_in_channel")],
            extra={"available": 0},
        )
    on_hand, reserved = stock.location_totals(session, [variant_id]).get(
        (location.id, variant_id), (0, 0)
    )
    available = max(0, on_hand - reserved - policy.keep(location))
    if available < quantity:
        raise Conflict(
            f"{location.name} can hand over {available} now, not {quantity}",
            code="pickup_unavailable",
            errors=[FieldError(path, f"only {available} available", "insufficient_stock")],
            extra={"available": available},
        )


def _resolve_variant(session: Session, data: LineAdd, caller: Caller | None) -> str:
    if data.barcode is not None:
        return catalog.lookup_variant(session, data.barcode, caller=caller).variant.id
    assert data.variant_id is not None  # the schema demands one of them
    return catalog.find_variant(session, data.variant_id).id


def _same_line(
    session: Session, cart_id: str, variant_id: str, fulfilment: str, location_id: str | None
) -> CartLine | None:
    stmt = select(CartLine).where(
        CartLine.cart_id == cart_id,
        CartLine.variant_id == variant_id,
        CartLine.fulfilment == fulfilment,
    )
    if location_id is None:
        stmt = stmt.where(CartLine.pickup_location_id.is_(None))
    else:
        stmt = stmt.where(CartLine.pickup_location_id == location_id)
    return session.scalars(stmt).first()


def _too_many(quantity: int) -> Unprocessable:
    return Unprocessable(
        f"a line holds at most {MAX_LINE_QUANTITY} units ({quantity} asked)",
        code="line_quantity_exceeded",
        errors=[FieldError("body.quantity", f"at most {MAX_LINE_QUANTITY} in one line", "too_big")],
    )


def line_detail(line: CartLine) -> dict[str, Any]:
    return {
        "line_id": line.id,
        "variant_id": line.variant_id,
        "quantity": line.quantity,
        "fulfilment": line.fulfilment,
        "pickup_location_id": line.pickup_location_id,
    }


def put_line(
    session: Session,
    cart: Cart,
    *,
    variant_id: str,
    quantity: int,
    fulfilment: str,
    pickup_location_id: str | None,
    caller: Caller | None,
) -> tuple[CartLine, bool]:
    """Add ``quantity`` of a variant to a locked cart: onto the line with the same variant and
    fulfilment when there is one, else as a new line. Returns ``(line, new)``."""
    line = _same_line(session, cart.id, variant_id, fulfilment, pickup_location_id)
    total = quantity + (line.quantity if line else 0)
    if total > MAX_LINE_QUANTITY:
        raise _too_many(total)
    if fulfilment == "pickup":
        assert pickup_location_id is not None
        check_pickup(
            session,
            cart,
            location_id=pickup_location_id,
            variant_id=variant_id,
            quantity=total,
            caller=caller,
        )
    if line is not None:
        line.quantity = total
        line.updated_at = clock.now()
        session.flush()
        changed(session, cart, "cart.line_changed", line_detail(line), key_id=_key(caller))
        return line, False
    count = len(session.scalars(select(CartLine.id).where(CartLine.cart_id == cart.id)).all())
    if count >= MAX_LINES:
        raise Conflict(f"a cart holds at most {MAX_LINES} lines", code="too_many_lines")
    now = clock.now()
    line = CartLine(
        id=new_id("crl"),
        cart_id=cart.id,
        variant_id=variant_id,
        quantity=quantity,
        fulfilment=fulfilment,
        pickup_location_id=pickup_location_id,
        added_by=_key(caller),
        created_at=now,
        updated_at=now,
    )
    session.add(line)
    session.flush()
    changed(session, cart, "cart.line_added", line_detail(line), key_id=_key(caller))
    return line, True


def add_line(
    session: Session,
    cart_id: str,
    data: LineAdd,
    *,
    caller: Caller | None,
    if_match: str | None = None,
) -> tuple[Cart, bool]:
    """Add a line (or more of an existing one). Returns ``(cart, new_line)``."""
    cart = lock_cart(session, cart_id, if_match=if_match)
    variant_id = _resolve_variant(session, data, caller)
    _, new = put_line(
        session,
        cart,
        variant_id=variant_id,
        quantity=data.quantity,
        fulfilment=data.fulfilment,
        pickup_location_id=data.pickup_location_id,
        caller=caller,
    )
    return cart, new


def _find_line(session: Session, cart: Cart, line_id: str) -> CartLine:
    line = session.get(CartLine, line_id) if usable_id(line_id) else None
    if line is None or line.cart_id != cart.id:
        raise not_found("cart line", line_id, "cart_line_not_found")
    return line


def update_line(
    session: Session,
    cart_id: str,
    line_id: str,
    data: LineUpdate,
    *,
    caller: Caller | None,
    if_match: str | None = None,
) -> Cart:
    """Change a line's quantity and/or fulfilment. Moving it onto the fulfilment of another
    line of the same variant joins the two (quantities added: both were chosen on purpose)."""
    cart = lock_cart(session, cart_id, if_match=if_match)
    line = _find_line(session, cart, line_id)
    fulfilment = data.fulfilment or line.fulfilment
    location_id = (
        data.pickup_location_id if data.fulfilment is not None else line.pickup_location_id
    )
    quantity = data.quantity if data.quantity is not None else line.quantity
    moved = (fulfilment, location_id) != (line.fulfilment, line.pickup_location_id)
    if not moved and quantity == line.quantity:
        return cart
    other = (
        _same_line(session, cart.id, line.variant_id, fulfilment, location_id) if moved else None
    )
    total = quantity + (other.quantity if other else 0)
    if total > MAX_LINE_QUANTITY:
        raise _too_many(total)
    if fulfilment == "pickup" and (moved or quantity > line.quantity):
        assert location_id is not None
        check_pickup(
            session,
            cart,
            location_id=location_id,
            variant_id=line.variant_id,
            quantity=total,
            caller=caller,
        )
    if other is not None:
        other.quantity = total
        other.updated_at = clock.now()
        removed = line.id
        session.delete(line)
        session.flush()
        detail = {**line_detail(other), "joined_line_id": removed}
    else:
        line.quantity = quantity
        line.fulfilment = fulfilment
        line.pickup_location_id = location_id
        line.updated_at = clock.now()
        session.flush()
        detail = line_detail(line)
    changed(session, cart, "cart.line_changed", detail, key_id=_key(caller))
    return cart


def remove_line(
    session: Session,
    cart_id: str,
    line_id: str,
    *,
    caller: Caller | None,
    if_match: str | None = None,
) -> Cart:
    cart = lock_cart(session, cart_id, if_match=if_match)
    line = _find_line(session, cart, line_id)
    detail = line_detail(line)
    session.delete(line)
    session.flush()
    changed(session, cart, "cart.line_removed", detail, key_id=_key(caller))
    return cart
