"""A cart priced on the server — the one computation the cart view, checkout and the order use.

Prices come from the catalogue (``prices`` in the cart's currency), promotions, tax and
shipping from the pricing tables (pricing/loader.py), and the arithmetic from the pure engine.
Nothing a client sends is trusted: a cart stores variants, quantities, fulfilment choices and
codes, never amounts.

Lines that cannot be bought (no price in the cart's currency, product not active or not listed
on the cart's channel) are left out of the quote and reported as problems; checkout refuses a
cart with problems. A shipping rate that cannot serve the cart (wrong country, too heavy) is
reported too, and the cart is priced without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.carts.models import Cart, CartLine
from seamline.catalog.models import CollectionProduct, Listing, Price, Product, Variant
from seamline.inventory.models import Location
from seamline.kit import clock
from seamline.pricing import Destination, Line, PricingContext, Quote, price_cart
from seamline.pricing import models as pricing_models
from seamline.pricing.common import ShippingUnavailable
from seamline.pricing.loader import (
    code_key,
    exhausted,
    promotion_rows,
    shipping_rate,
    tax_config,
    to_engine,
)
from seamline.pricing.shipping import ShippingRate

SHIP = "ship"


def group_of(line: CartLine) -> str:
    """The fulfilment group a line belongs to: ``ship``, or ``pickup:<location id>``."""
    return SHIP if line.fulfilment == "ship" else f"pickup:{line.pickup_location_id}"


@dataclass(frozen=True)
class PricedLine:
    line: CartLine
    variant: Variant
    product: Product


@dataclass(frozen=True)
class Problem:
    """Why a cart cannot be checked out as it is (stable codes)."""

    code: str  # no_price | not_available_on_channel | shipping_unavailable | no_shipping_rate
    detail: str
    line_id: str | None = None


@dataclass
class PricedCart:
    cart: Cart
    lines: list[PricedLine]  # the lines in the quote, in cart order
    quote: Quote
    problems: list[Problem] = field(default_factory=list)
    # Promotions the quote applied, as rows (checkout holds their usage).
    applied: list[pricing_models.Promotion] = field(default_factory=list)
    # Codes entered whose promotion has no use left.
    exhausted_codes: list[str] = field(default_factory=list)


def _destination(address: dict[str, object] | None) -> Destination | None:
    if not address:
        return None
    country = address.get("country")
    if not isinstance(country, str) or len(country) != 2:
        return None
    region = address.get("region")
    postcode = address.get("postcode")
    return Destination(
        country=country.upper(),
        region=region if isinstance(region, str) and region else None,
        postcode=postcode if isinstance(postcode, str) and postcode else None,
    )


def price(
    session: Session,
    cart: Cart,
    *,
    lines: Sequence[CartLine] | None = None,
    now: datetime | None = None,
) -> PricedCart:
    now = now or clock.now()
    if lines is None:
        lines = list(
            session.scalars(
                select(CartLine).where(CartLine.cart_id == cart.id).order_by(CartLine.created_at)
            )
        )
    variant_ids = sorted({line.variant_id for line in lines})
    rows = session.execute(
        select(Variant, Product, Price.amount)
        .join(Product, Product.id == Variant.product_id)
        .outerjoin(Price, (Price.variant_id == Variant.id) & (Price.currency == cart.currency))
        .where(Variant.id.in_(variant_ids))
    ).all()
    found = {v.id: (v, p, amount) for v, p, amount in rows}
    product_ids = sorted({p.id for _, p, _ in rows})
    listed = set(
        session.scalars(
            select(Listing.product_id).where(
                Listing.product_id.in_(product_ids),
                Listing.channel_id == cart.channel_id,
                Listing.published.is_(True),
            )
        )
    )
    collections: dict[str, set[str]] = {}
    for product_id, collection_id in session.execute(
        select(CollectionProduct.product_id, CollectionProduct.collection_id).where(
            CollectionProduct.product_id.in_(product_ids)
        )
    ):
        collections.setdefault(product_id, set()).add(collection_id)

    problems: list[Problem] = []
    priced: list[PricedLine] = []
    engine_lines: list[Line] = []
    for line in lines:
        variant, product, amount = found[line.variant_id]
        if product.status != "active" or product.id not in listed:
            problems.append(
                Problem(
                    "not_available_on_channel",
                    f"{variant.sku} is not for sale on this channel",
                    line.id,
                )
            )
            continue
        if amount is None:
            problems.append(
                Problem("no_price", f"{variant.sku} has no price in {cart.currency}", line.id)
            )
            continue
        priced.append(PricedLine(line, variant, product))
        engine_lines.append(
            Line(
                line_id=line.id,
                variant_id=variant.id,
                product_id=product.id,
                unit_price=int(amount),
                quantity=line.quantity,
                collection_ids=frozenset(collections.get(product.id, ())),
                weight_grams=variant.weight_grams,
                fulfilment_group=group_of(line),
            )
        )

    promotions = promotion_rows(session, currency=cart.currency, codes=cart.codes, now=now)
    spent = [p for p in promotions if exhausted(p)]
    usable = [p for p in promotions if not exhausted(p)]
    tax = tax_config(session)
    destination = _destination(cart.shipping_address)
    pickups = sorted({line.pickup_location_id for line in lines if line.pickup_location_id})
    tax_destinations: dict[str, Destination] = {}
    if pickups:
        for location in session.scalars(select(Location).where(Location.id.in_(pickups))):
            tax_destinations[f"pickup:{location.id}"] = Destination(
                country=location.country.upper(),
                region=location.region or None,
                postcode=location.postcode or None,
            )
    shipping: dict[str, ShippingRate] = {}
    ships = any(line.fulfilment_group == SHIP for line in engine_lines)
    if ships and cart.shipping_rate_id:
        rate = session.get(pricing_models.ShippingRate, cart.shipping_rate_id)
        if rate is None or not rate.active or rate.currency != cart.currency:
            problems.append(Problem("shipping_unavailable", "the chosen shipping rate is gone"))
        else:
            shipping[SHIP] = shipping_rate(rate)
    elif ships:
        problems.append(Problem("no_shipping_rate", "choose a shipping rate for shipped lines"))
    context = PricingContext(
        currency=cart.currency,
        now=now,
        channel=cart.channel_id,
        profile_id=cart.profile_id,
        codes=tuple(cart.codes),
    )

    def run(rates: dict[str, ShippingRate]) -> Quote:
        return price_cart(
            engine_lines,
            promotions=[to_engine(p) for p in usable],
            tax=tax,
            shipping=rates,
            destination=destination,
            tax_destinations=tax_destinations,
            context=context,
        )

    try:
        quote = run(dict(shipping))
    except ShippingUnavailable as exc:
        problems.append(Problem("shipping_unavailable", exc.detail))
        quote = run({})
    applied_ids = {a.promotion_id for a in quote.applied}
    keys = {p.code_key for p in spent if p.code_key}
    return PricedCart(
        cart=cart,
        lines=priced,
        quote=quote,
        problems=problems,
        applied=[p for p in usable if p.id in applied_ids],
        exhausted_codes=[c for c in cart.codes if code_key(c) in keys],
    )
