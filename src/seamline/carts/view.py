"""A cart as the API shows it: its lines with SKU and title, priced anew on the server."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seamline.carts.models import Cart, CartLine
from seamline.carts.quote import PricedCart, price
from seamline.carts.schemas import (
    AppliedOut,
    CartLineOut,
    CartOut,
    CartSummary,
    ChannelRef,
    GroupOut,
    LineDiscountOut,
    ProblemOut,
    QuoteOut,
    RejectedOut,
    TaxOut,
)
from seamline.catalog.models import Product, Variant
from seamline.channels.models import Channel
from seamline.pricing.loader import code_key

# The reason shown for an entered code whose promotion has no use left.
USAGE_LIMIT_REACHED = "usage_limit_reached"


def cart_lines(session: Session, cart_id: str) -> list[CartLine]:
    """The cart's lines in the order they were added."""
    return list(
        session.scalars(
            select(CartLine)
            .where(CartLine.cart_id == cart_id)
            .order_by(CartLine.created_at, CartLine.id)
        )
    )


def titles(session: Session, variant_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """variant id → (SKU, "Product title - variant title")."""
    if not variant_ids:
        return {}
    rows = session.execute(
        select(Variant.id, Variant.sku, Variant.title, Product.title)
        .join(Product, Product.id == Variant.product_id)
        .where(Variant.id.in_(sorted(set(variant_ids))))
    ).all()
    out = {}
    for variant_id, sku, variant_title, product_title in rows:
        title = f"{product_title} - {variant_title}" if variant_title else product_title
        out[variant_id] = (sku, title)
    return out


def _quote_out(priced: PricedCart) -> QuoteOut:
    quote = priced.quote
    exhausted = {code_key(c) for c in priced.exhausted_codes}
    rejected = [
        RejectedOut(
            code=r.code,
            reason=USAGE_LIMIT_REACHED if code_key(r.code) in exhausted else r.reason,
            promotion_id=r.promotion_id,
        )
        for r in quote.rejected
    ]
    return QuoteOut(
        currency=quote.currency,
        prices_include_tax=quote.prices_include_tax,
        subtotal=quote.subtotal,
        discount_total=quote.discount_total,
        shipping_total=quote.shipping_total,
        shipping_discount_total=quote.shipping_discount_total,
        tax_total=quote.tax_total,
        total=quote.total,
        applied=[
            AppliedOut(
                promotion_id=a.promotion_id,
                code=a.code,
                kind=a.kind,
                discount=a.discount,
                shipping_discount=a.shipping_discount,
            )
            for a in quote.applied
        ],
        rejected=rejected,
        taxes=[
            TaxOut(name=t.name, country=t.country, region=t.region, rate=t.rate, amount=t.amount)
            for t in quote.taxes
        ],
        groups=[
            GroupOut(
                fulfilment_group=g.fulfilment_group,
                pickup=g.pickup,
                pickup_location_id=g.fulfilment_group.partition(":")[2] or None,
                shipping_rate_id=g.shipping_rate_id,
                weight_grams=g.weight_grams,
                shipping=g.shipping,
                shipping_discount=g.shipping_discount,
                shipping_tax=g.shipping_tax,
                total=g.total,
            )
            for g in quote.groups
        ],
    )


def render(session: Session, cart: Cart, *, lines: list[CartLine] | None = None) -> CartOut:
    """The cart with its lines, the full quote and the problems checkout would refuse."""
    if lines is None:
        lines = cart_lines(session, cart.id)
    priced = price(session, cart, lines=lines)
    quoted = {q.line_id: q for q in priced.quote.lines}
    names = titles(session, [line.variant_id for line in lines])
    channel = session.get(Channel, cart.channel_id)
    assert channel is not None  # a foreign key
    out_lines = []
    for line in lines:
        sku, title = names.get(line.variant_id, ("", ""))
        q = quoted.get(line.id)
        out_lines.append(
            CartLineOut(
                id=line.id,
                variant_id=line.variant_id,
                sku=sku,
                title=title,
                quantity=line.quantity,
                fulfilment=line.fulfilment,
                pickup_location_id=line.pickup_location_id,
                added_by=line.added_by,
                priced=q is not None,
                unit_price=q.subtotal // line.quantity if q is not None else None,
                subtotal=q.subtotal if q else 0,
                discount=q.discount if q else 0,
                discounts=[
                    LineDiscountOut(promotion_id=d.promotion_id, amount=d.amount)
                    for d in (q.discounts if q else ())
                ],
                tax=q.tax if q else 0,
                total=q.total if q else 0,
            )
        )
    return CartOut(
        id=cart.id,
        share_code=cart.share_code,
        status=cart.status,
        channel=ChannelRef(id=channel.id, kind=channel.kind, name=channel.name),
        currency=cart.currency,
        profile_id=cart.profile_id,
        anonymous_id=cart.anonymous_id,
        email=cart.email,
        shipping_address=cart.shipping_address,
        shipping_rate_id=cart.shipping_rate_id,
        codes=list(cart.codes),
        merged_into_id=cart.merged_into_id,
        order_id=cart.order_id,
        version=cart.version,
        updated_by=cart.updated_by,
        created_at=cart.created_at,
        updated_at=cart.updated_at,
        lines=out_lines,
        quote=_quote_out(priced),
        problems=[
            ProblemOut(code=p.code, detail=p.detail, line_id=p.line_id) for p in priced.problems
        ],
    )


def summaries(session: Session, carts: Sequence[Cart]) -> list[CartSummary]:
    """Carts without their quote (lists of carts): counts of lines and items."""
    ids = [c.id for c in carts]
    counts: dict[str, tuple[int, int]] = {}
    if ids:
        rows = session.execute(
            select(CartLine.cart_id, func.count(), func.sum(CartLine.quantity))
            .where(CartLine.cart_id.in_(ids))
            .group_by(CartLine.cart_id)
        )
        counts = {cart_id: (int(n), int(q or 0)) for cart_id, n, q in rows}
    return [
        CartSummary(
            id=c.id,
            share_code=c.share_code,
            status=c.status,
            channel_id=c.channel_id,
            currency=c.currency,
            profile_id=c.profile_id,
            anonymous_id=c.anonymous_id,
            email=c.email,
            merged_into_id=c.merged_into_id,
            order_id=c.order_id,
            version=c.version,
            line_count=counts.get(c.id, (0, 0))[0],
            item_count=counts.get(c.id, (0, 0))[1],
            created_at=c.created_at,
            updated_at=c.updated_at,
        )
        for c in carts
    ]
