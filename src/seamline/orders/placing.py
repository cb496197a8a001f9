"""Building an order from a checkout's frozen snapshot: what the customer agreed to (names,
SKUs, unit prices, discounts, tax per line; shipping per group; where each line is held)
becomes the order's lines and fulfilment groups, never re-priced."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from seamline.carts import quote as cart_quote
from seamline.kit.ids import new_id, read_aloud_code
from seamline.orders.models import FulfilmentGroup, Order, OrderLine


def snapshot(
    priced: cart_quote.PricedCart, held: dict[str, tuple[str, str]], reasons: dict[str, str]
) -> dict[str, Any]:
    """What the customer agreed to, frozen: the order is built from this, not re-priced."""
    q = priced.quote
    by_line = {lq.line_id: lq for lq in q.lines}
    shipping = {g.fulfilment_group: g.shipping - g.shipping_discount for g in q.groups}
    return {
        "currency": q.currency,
        "prices_include_tax": q.prices_include_tax,
        "subtotal": q.subtotal,
        "discount_total": q.discount_total + q.shipping_discount_total,
        "shipping_total": q.shipping_total,
        "shipping_discount_total": q.shipping_discount_total,
        "tax_total": q.tax_total,
        "total": q.total,
        "codes": list(priced.cart.codes),
        "promotions": [
            {
                "promotion_id": a.promotion_id,
                "code": a.code,
                "kind": a.kind,
                "discount": a.discount,
                "shipping_discount": a.shipping_discount,
            }
            for a in q.applied
        ],
        "shipping": shipping,
        "reasons": reasons,
        "lines": [
            {
                "line_id": p.line.id,
                "variant_id": p.variant.id,
                "sku": p.variant.sku,
                "name": (p.product.title + (f" — {p.variant.title}" if p.variant.title else ""))[
                    :300
                ],
                "quantity": p.line.quantity,
                "unit_price": by_line[p.line.id].subtotal // p.line.quantity,
                "subtotal": by_line[p.line.id].subtotal,
                "discount": by_line[p.line.id].discount,
                "tax": by_line[p.line.id].tax,
                "total": by_line[p.line.id].total,
                "fulfilment": p.line.fulfilment,
                "reservation_id": held[p.line.id][0],
                "location_id": held[p.line.id][1],
            }
            for p in priced.lines
        ],
    }


def groups_and_lines(
    session: Session, order: Order, snap: dict[str, Any]
) -> tuple[list[FulfilmentGroup], list[OrderLine]]:
    """One fulfilment group per (kind, location); the shipping charge goes on the first
    shipped group (the customer pays one charge even when the order ships from two places)."""
    groups: dict[tuple[str, str], FulfilmentGroup] = {}
    shipping_left = int(snap["shipping"].get(cart_quote.SHIP, 0))
    reasons: dict[str, str] = snap.get("reasons") or {}
    rows: list[OrderLine] = []
    for line in snap["lines"]:
        kind = "pickup" if line["fulfilment"] == "pickup" else "ship"
        key = (kind, line["location_id"])
        group = groups.get(key)
        if group is None:
            group = FulfilmentGroup(
                id=new_id("ful"),
                order_id=order.id,
                kind=kind,
                location_id=line["location_id"],
                status="pending",
                shipping=shipping_left if kind == "ship" else 0,
                routing_reason=(
                    "picked up at the customer's chosen store"
                    if kind == "pickup"
                    else reasons.get(line["location_id"], "")
                ),
                pickup_code=read_aloud_code() if kind == "pickup" else None,
            )
            if kind == "ship":
                shipping_left = 0
            groups[key] = group
            session.add(group)
        line_row = OrderLine(
            id=new_id("orl"),
            order_id=order.id,
            group_id=group.id,
            variant_id=line["variant_id"],
            sku=line["sku"],
            name=line["name"],
            quantity=line["quantity"],
            unit_price=line["unit_price"],
            subtotal=line["subtotal"],
            discount=line["discount"],
            tax=line["tax"],
            total=line["total"],
            reservation_id=line["reservation_id"],
            quantity_fulfilled=0,
            quantity_returned=0,
        )
        session.add(line_row)
        rows.append(line_row)
    session.flush()
    return list(groups.values()), rows
