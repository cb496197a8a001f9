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

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.carts.models import Cart, CartLine
from seamline.catalog.models import CollectionProduct, Listing, Price, Product, Variant
from seamline.identity.models import Identifier, Profile
from seamline.inventory.models import Location
from seamline.kit import clock
from seamline.pricing import Destination, Line, PricingContext, Quote, price_cart
from seamline.pricing import models as pricing_models
from seamline.pricing.common import ShippingUnavailable
from seamline.pricing.loader import (
    cached_shipping_rate,
    cached_tax_config,
    code_key,
    exhausted,
    promotion_rows,
    to_engine,
)
from seamline.pricing.promotions import Promotion as EnginePromotion
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


def _buyer(session: Session, cart: Cart) -> str | None:
    """The profile the cart is priced for: its own, else the profile its anonymous id arrived
    on through the event API (a shopper known by their device, not logged in)."""
    if cart.profile_id is not None or cart.anonymous_id is None:
        return cart.profile_id
    return session.scalar(
        select(Identifier.profile_id).where(
            Identifier.kind == "anonymous_id", Identifier.value == cart.anonymous_id
        )
    )


def _personal_to_buyer(
    session: Session, promotions: list[EnginePromotion], buyer: str | None
) -> list[EnginePromotion]:
    """A personal code belongs to a customer, not to one of their profiles: a code issued to
    their email's profile is theirs in a cart of their account or device too (the engine
    compares one profile id, so a code of the buyer's identity cluster is handed the buyer's).
    The usage check at checkout counts over the cluster the same way (pricing/usage.py)."""
    owners = {
        p.profile_id for p in promotions if p.profile_id is not None and p.profile_id != buyer
    }
    if buyer is None or not owners:
        return promotions
    cluster = select(Profile.cluster_id).where(Profile.id == buyer).scalar_subquery()
    same = set(
        session.scalars(
            select(Profile.id).where(Profile.id.in_(sorted(owners)), Profile.cluster_id == cluster)
        )
    )
    return [
        dataclasses.replace(p, profile_id=buyer) if p.profile_id in same else p for p in promotions
    ]


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
    # One statement: each variant with its product, its price in the cart's currency, whether
    # the product is listed on the cart's channel, and one row per collection it is in.
    on_channel = (
        select(Listing.product_id)
        .where(
            Listing.product_id == Product.id,
            Listing.channel_id == cart.channel_id,
            Listing.published.is_(True),
        )
        .exists()
    )
    rows = session.execute(
        select(Variant, Product, Price.amount, on_channel, CollectionProduct.collection_id)
        .join(Product, Product.id == Variant.product_id)
        .outerjoin(Price, (Price.variant_id == Variant.id) & (Price.currency == cart.currency))
        .outerjoin(CollectionProduct, CollectionProduct.product_id == Product.id)
        .where(Variant.id.in_(variant_ids))
    ).all()
    found = {v.id: (v, p, amount) for v, p, amount, _, _ in rows}
    listed = {p.id for _, p, _, is_listed, _ in rows if is_listed}
    collections: dict[str, set[str]] = {}
    for _, p, _, _, collection_id in rows:
        if collection_id is not None:
            collections.setdefault(p.id, set()).add(collection_id)

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
    tax = cached_tax_config(session)
    destination = _destination(cart.shipping_address)
    # Only groups that have a priced line: the engine refuses a tax address for a group it
    # never sees (a pick-up line left out as a problem would otherwise fail the whole quote).
    pickups = sorted(
        {p.line.pickup_location_id for p in priced if p.line.pickup_location_id is not None}
    )
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
        rate = cached_shipping_rate(session, cart.shipping_rate_id)
        if rate is None or not rate[0] or rate[1] != cart.currency:
            problems.append(Problem("shipping_unavailable", "the chosen shipping rate is gone"))
        else:
            shipping[SHIP] = rate[2]
    elif ships:
        problems.append(Problem("no_shipping_rate", "choose a shipping rate for shipped lines"))
    buyer = _buyer(session, cart)
    context = PricingContext(
        currency=cart.currency,
        now=now,
        channel=cart.channel_id,
        profile_id=buyer,
        codes=tuple(cart.codes),
    )
    engine_promotions = _personal_to_buyer(session, [to_engine(p) for p in usable], buyer)

    def run(rates: dict[str, ShippingRate]) -> Quote:
        return price_cart(
            engine_lines,
            promotions=engine_promotions,
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
