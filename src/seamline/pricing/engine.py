"""The pure pricing engine: cart lines, promotions, taxes and shipping in; an exact quote out.

No database, no HTTP, no clock: :func:`price_cart` is a function of its arguments, so the same
inputs always give the same quote (a stored order can be re-priced and compared byte for byte).
Every amount is an ``int`` in minor units of ``context.currency``.

Rules
=====

Eligibility. A promotion may apply when ``starts_at <= now < ends_at`` (either end open when
None), the channel is listed (None: every channel), its ``profile_id`` (if any) is the buyer's,
it reaches at least one line (for free shipping: one line in a shipped group), and the subtotal
of the lines it reaches, before any discount, is at least ``min_subtotal``. An entered code that
fails is reported in ``Quote.rejected`` with the first failing reason, in this order:
``unknown_code``, ``not_started``, ``expired``, ``wrong_channel``, ``not_your_code``,
``not_applicable``, ``min_subtotal_not_met``, then ``not_combinable`` (a valid code that lost to
a better one, see stacking). Automatic promotions that do not apply are simply absent. Codes
match case-insensitively, ignoring surrounding spaces; a code entered twice counts once.

Stacking. Every eligible automatic promotion applies, plus **at most one code**. When several
valid codes are entered the engine prices the cart once with each and keeps the one that saves
the customer the most (line discounts plus shipping discounts; ties: the code entered first) —
"best for the customer", so the order of typing never costs money. Stacked automatic promotions
compound; a merchant who does not want that must not create overlapping automatic promotions.

Order and compounding. Line discounts apply in sequence, each to what the previous ones left:
percentages first, then fixed amounts (the order that gives the customer more and the one
receipts read naturally: "-15 %, then -5.00"); within a kind, automatic before code, then by
promotion id. A percentage takes ``round(rate * remaining eligible amount)``; a fixed amount
takes ``min(value, remaining eligible amount)``, so a line never goes below zero and an unused
part of a fixed amount is forfeited, not carried to other lines or to shipping.

Allocation. A discount is computed once on the eligible lines together and then split across
them by largest remainder, in proportion to what each line has left: parts are floored, and the
units left over go one each to the lines with the largest remainders (ties: cart order). The
parts therefore sum exactly to the discount and no line gets more than it has left. Each line
keeps its per-promotion parts (``LineQuote.discounts``) for refunds and returns.

Rounding. Commercial rounding, half up, in exact integer arithmetic: once per percentage
discount (on the eligible total, before allocation) and once per line and per shipping amount
for tax. Tax is rounded per line so a receipt reconciles line by line, as Shopify and Saleor do;
the tax total may therefore differ by a few minor units from the tax on the cart total.

Tax. The destination picks the rates (see :mod:`seamline.pricing.tax`: region rates replace
country rates unless ``combinable``); rates that apply together add up. Tax is computed per
line on the line's amount *after* its discounts:

* exclusive prices (``prices_include_tax=False``): ``tax = round(net * rate)``, added on top;
* inclusive prices: ``tax = gross - round(gross / (1 + rate))``, already inside the price.

Shipping is taxed the same way, on the shipping left after shipping discounts, at the rate of
its group's destination (unless ``tax_shipping=False``). A group's tax address is
``tax_destinations[group]`` when given (a store's address for ``pickup:<id>``), else
``destination``; with neither, no tax is computed for the group and its ``tax_destination`` is
None (an estimate before the address is known).

Shipping. Each shipped group is priced by the rate chosen for it in ``shipping``; a group with
no chosen rate has no shipping yet (``shipping_rate_id`` None: the caller must not take it to
checkout). Pick-up groups (``pickup:<location_id>``) never have shipping, and choosing a rate
for one is an error. A free-shipping promotion waives the whole shipping of every shipped group
that holds at least one line it reaches ("free shipping on the sofa" frees the sofa's parcel).

Invariant
=========

With ``subtotal = Σ unit_price * quantity`` over all lines, ``discount_total`` the line
discounts, ``shipping_total`` the shipping before discounts, ``shipping_discount_total`` the
shipping discounts and ``tax_total`` the tax on lines and shipping, all in minor units::

    exclusive: total = subtotal - discount_total + shipping_total - shipping_discount_total
                       + tax_total
    inclusive: total = subtotal - discount_total + shipping_total - shipping_discount_total
               (tax_total is already inside the prices and is reported, not added)

It holds exactly, as do: each line's ``total`` (``subtotal - discount``, plus ``tax`` when
exclusive), each group's ``total`` (its lines' totals plus net shipping, plus shipping tax when
exclusive), ``Σ line totals + Σ net shipping (+ shipping tax) = total``, ``Σ group totals =
total``, and ``Σ Quote.taxes = tax_total``. No amount is ever negative.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from seamline.pricing.common import (
    BASIS_POINTS,
    CurrencyMismatch,
    Destination,
    Line,
    PricingContext,
    PricingInputError,
    ShippingUnavailable,
    allocate,
    half_up,
    invalid,
    is_pickup,
)
from seamline.pricing.promotions import (
    Promotion,
    PromotionKind,
    RejectionReason,
    normalize_code,
    rejection,
)
from seamline.pricing.shipping import ShippingRate, rate_price
from seamline.pricing.tax import TaxConfig, TaxRate, tax_of

_KIND_ORDER: dict[PromotionKind, int] = {"percentage": 0, "fixed_amount": 1, "free_shipping": 2}


@dataclass(frozen=True, slots=True)
class LineDiscount:
    """The part of one promotion's discount that landed on one line."""

    promotion_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class LineQuote:
    """One line priced; ``Quote.lines`` keeps the cart's order."""

    line_id: str
    fulfilment_group: str
    subtotal: int  # unit_price * quantity
    discount: int  # Σ discounts
    discounts: tuple[LineDiscount, ...]
    tax: int
    total: int  # subtotal - discount (+ tax when prices exclude it)


@dataclass(frozen=True, slots=True)
class GroupQuote:
    """One fulfilment group (a parcel stream or a pick-up), in order of first appearance.
    ``weight_grams`` and ``merchandise`` are what :func:`rate_price` needs to list the other
    shipping options for this group."""

    fulfilment_group: str
    pickup: bool
    shipping_rate_id: str | None  # None on a shipped group: no rate chosen yet
    weight_grams: int
    merchandise: int  # Σ line subtotals - line discounts (the base of free_over rates)
    shipping: int  # before shipping discounts
    shipping_discount: int
    shipping_tax: int
    tax_destination: Destination | None
    total: int  # its lines' totals + shipping - shipping discount (+ shipping tax if exclusive)


@dataclass(frozen=True, slots=True)
class AppliedPromotion:
    """A promotion that applied, in the order it was applied (its amount may be 0)."""

    promotion_id: str
    code: str | None  # as the promotion defines it; None for automatic ones
    kind: PromotionKind
    discount: int  # on lines
    shipping_discount: int


@dataclass(frozen=True, slots=True)
class RejectedCode:
    """An entered code that did not apply, with a stable reason a storefront can translate."""

    code: str  # as entered, stripped
    reason: RejectionReason
    promotion_id: str | None  # None for unknown_code


@dataclass(frozen=True, slots=True)
class TaxLine:
    """Tax charged under one named rate, summed over lines and shipping."""

    name: str
    country: str
    region: str | None
    rate: int
    amount: int


@dataclass(frozen=True, slots=True)
class Quote:
    """The priced cart. The module docstring states the invariant its figures satisfy."""

    currency: str
    prices_include_tax: bool
    lines: tuple[LineQuote, ...]
    groups: tuple[GroupQuote, ...]
    subtotal: int
    discount_total: int
    shipping_total: int
    shipping_discount_total: int
    tax_total: int
    total: int
    applied: tuple[AppliedPromotion, ...]
    rejected: tuple[RejectedCode, ...]
    taxes: tuple[TaxLine, ...]

    @property
    def savings(self) -> int:
        return self.discount_total + self.shipping_discount_total


def price_cart(
    lines: Sequence[Line],
    *,
    promotions: Sequence[Promotion] = (),
    tax: TaxConfig,
    shipping: Mapping[str, ShippingRate] | None = None,
    destination: Destination | None = None,
    tax_destinations: Mapping[str, Destination] | None = None,
    context: PricingContext,
) -> Quote:
    """Price ``lines`` for ``context`` (see the module docstring for every rule).

    ``promotions`` are the candidates the caller loaded (automatic ones and those matching the
    entered codes, in ``context.currency``, with usage limits already checked). ``shipping`` is
    the rate chosen per shipped fulfilment group; ``destination`` is the ship-to address;
    ``tax_destinations`` overrides the tax address per group (pick-up at a store).
    """
    shipping = dict(shipping or {})
    tax_destinations = dict(tax_destinations or {})
    _validate(lines, promotions, shipping, tax_destinations, context)

    by_code = {normalize_code(p.code): p for p in promotions if p.code is not None}
    rejected: dict[str, RejectedCode] = {}
    candidates: list[tuple[str, Promotion]] = []
    seen: set[str] = set()
    for entered in context.codes:
        key = normalize_code(entered)
        if not key or key in seen:
            continue
        seen.add(key)
        promotion = by_code.get(key)
        if promotion is None:
            rejected[key] = RejectedCode(entered.strip(), "unknown_code", None)
            continue
        reason = rejection(promotion, lines, context)
        if reason is not None:
            rejected[key] = RejectedCode(entered.strip(), reason, promotion.id)
        else:
            candidates.append((key, promotion))

    automatic = [p for p in promotions if p.automatic and rejection(p, lines, context) is None]

    def run(code: Promotion | None) -> Quote:
        active = [*automatic, code] if code is not None else automatic
        return _compute(lines, active, tax, shipping, destination, tax_destinations, context)

    if not candidates:
        quote = run(None)
    else:
        best_key, best = candidates[0][0], run(candidates[0][1])
        for key, promotion in candidates[1:]:
            trial = run(promotion)
            if trial.savings > best.savings:
                best_key, best = key, trial
        quote = best
        for key, promotion in candidates:
            if key != best_key:
                rejected[key] = RejectedCode(
                    _entered(context.codes, key), "not_combinable", promotion.id
                )

    order = [normalize_code(c) for c in context.codes]
    ordered = tuple(sorted(rejected.values(), key=lambda r: order.index(normalize_code(r.code))))
    return replace(quote, rejected=ordered)


def _entered(codes: Sequence[str], key: str) -> str:
    return next(c.strip() for c in codes if normalize_code(c) == key)


def _validate(
    lines: Sequence[Line],
    promotions: Sequence[Promotion],
    shipping: Mapping[str, ShippingRate],
    tax_destinations: Mapping[str, Destination],
    context: PricingContext,
) -> None:
    """Refuse inputs that are wrong together (each object already validated itself)."""
    line_ids: set[str] = set()
    for line in lines:
        if not isinstance(line, Line):
            raise invalid("lines", "must hold Line objects", "not_a_line")
        if line.line_id in line_ids:
            raise invalid("lines.line_id", f"duplicate line id {line.line_id}", "duplicate")
        line_ids.add(line.line_id)
    ids: set[str] = set()
    codes: set[str] = set()
    for promotion in promotions:
        if promotion.id in ids:
            raise invalid("promotions.id", f"duplicate promotion {promotion.id}", "duplicate")
        ids.add(promotion.id)
        if promotion.code is not None:
            key = normalize_code(promotion.code)
            if key in codes:
                raise invalid("promotions.code", f"two promotions use {key}", "duplicate")
            codes.add(key)
        if promotion.currency is not None and promotion.currency != context.currency:
            raise CurrencyMismatch(
                f"promotion {promotion.id} is in {promotion.currency}, the cart in "
                f"{context.currency}"
            )
    groups = {line.fulfilment_group for line in lines}
    for group, rate in shipping.items():
        if group not in groups:
            raise invalid(f"shipping.{group}", "no line is in this fulfilment group", "unknown")
        if rate.currency != context.currency:
            raise CurrencyMismatch(
                f"shipping rate {rate.id} is in {rate.currency}, the cart in {context.currency}"
            )
    for group in tax_destinations:
        if group not in groups:
            raise invalid(f"tax_destinations.{group}", "no line is in this group", "unknown")


def _promotion_order(promotion: Promotion) -> tuple[int, int, str]:
    return (_KIND_ORDER[promotion.kind], 0 if promotion.automatic else 1, promotion.id)


def _compute(
    lines: Sequence[Line],
    active: Sequence[Promotion],
    tax: TaxConfig,
    shipping: Mapping[str, ShippingRate],
    destination: Destination | None,
    tax_destinations: Mapping[str, Destination],
    context: PricingContext,
) -> Quote:
    """One pricing pass with a fixed set of promotions that all may apply."""
    ordered = sorted(active, key=_promotion_order)
    included = tax.prices_include_tax

    # Line discounts, in sequence, each allocated over what its lines have left.
    remaining = [line.subtotal for line in lines]
    parts: list[list[LineDiscount]] = [[] for _ in lines]
    line_amounts = dict.fromkeys((p.id for p in ordered), 0)
    for promotion in ordered:
        if not promotion.discounts_lines:
            continue
        reached = [i for i, line in enumerate(lines) if promotion.reaches(line)]
        base = sum(remaining[i] for i in reached)
        if promotion.kind == "percentage":
            amount = half_up(base * promotion.value, BASIS_POINTS)
        else:
            amount = min(promotion.value, base)
        for i, share in zip(
            reached, allocate(amount, [remaining[i] for i in reached]), strict=True
        ):
            if share:
                remaining[i] -= share
                parts[i].append(LineDiscount(promotion.id, share))
        line_amounts[promotion.id] = amount

    tax_parts: dict[TaxRate, int] = {}

    def taxed(amount: int, rates: tuple[TaxRate, ...]) -> int:
        charged = tax_of(amount, sum(r.rate for r in rates), included=included)
        if charged:
            for rate, share in zip(rates, allocate(charged, [r.rate for r in rates]), strict=True):
                tax_parts[rate] = tax_parts.get(rate, 0) + share
        return charged

    group_names = list(dict.fromkeys(line.fulfilment_group for line in lines))
    shipping_amounts = dict.fromkeys((p.id for p in ordered), 0)
    line_quotes: dict[int, LineQuote] = {}
    group_quotes: list[GroupQuote] = []
    for group in group_names:
        members = [i for i, line in enumerate(lines) if line.fulfilment_group == group]
        tax_destination = tax_destinations.get(group, destination)
        rates = tax.rates_for(tax_destination)
        group_total = 0
        for i in members:
            line_tax = taxed(remaining[i], rates)
            line_total = remaining[i] + (0 if included else line_tax)
            group_total += line_total
            line_quotes[i] = LineQuote(
                line_id=lines[i].line_id,
                fulfilment_group=group,
                subtotal=lines[i].subtotal,
                discount=lines[i].subtotal - remaining[i],
                discounts=tuple(parts[i]),
                tax=line_tax,
                total=line_total,
            )
        weight = sum(lines[i].total_weight_grams for i in members)
        merchandise = sum(remaining[i] for i in members)
        rate = shipping.get(group)
        price = 0
        if rate is not None:
            price = _shipping_price(group, rate, destination, weight, merchandise)
        waived = 0
        if price:
            for promotion in ordered:
                if promotion.kind == "free_shipping" and any(
                    promotion.reaches(lines[i]) for i in members
                ):
                    waived = price
                    shipping_amounts[promotion.id] += price
                    break
        shipping_tax = taxed(price - waived, rates) if tax.tax_shipping else 0
        group_total += price - waived + (0 if included else shipping_tax)
        group_quotes.append(
            GroupQuote(
                fulfilment_group=group,
                pickup=is_pickup(group),
                shipping_rate_id=rate.id if rate is not None else None,
                weight_grams=weight,
                merchandise=merchandise,
                shipping=price,
                shipping_discount=waived,
                shipping_tax=shipping_tax,
                tax_destination=tax_destination,
                total=group_total,
            )
        )

    subtotal = sum(line.subtotal for line in lines)
    in_cart_order = [line_quotes[i] for i in range(len(lines))]
    discount_total = sum(q.discount for q in in_cart_order)
    shipping_total = sum(g.shipping for g in group_quotes)
    shipping_discount_total = sum(g.shipping_discount for g in group_quotes)
    tax_total = sum(q.tax for q in in_cart_order) + sum(g.shipping_tax for g in group_quotes)
    total = subtotal - discount_total + shipping_total - shipping_discount_total
    if not included:
        total += tax_total
    return Quote(
        currency=context.currency,
        prices_include_tax=included,
        lines=tuple(in_cart_order),
        groups=tuple(group_quotes),
        subtotal=subtotal,
        discount_total=discount_total,
        shipping_total=shipping_total,
        shipping_discount_total=shipping_discount_total,
        tax_total=tax_total,
        total=total,
        applied=tuple(
            AppliedPromotion(
                promotion_id=p.id,
                code=p.code,
                kind=p.kind,
                discount=line_amounts[p.id],
                shipping_discount=shipping_amounts[p.id],
            )
            for p in ordered
        ),
        rejected=(),
        taxes=tuple(
            TaxLine(name=r.name, country=r.country, region=r.region, rate=r.rate, amount=a)
            for r, a in tax_parts.items()
        ),
    )


def _shipping_price(
    group: str,
    rate: ShippingRate,
    destination: Destination | None,
    weight: int,
    merchandise: int,
) -> int:
    if is_pickup(group):
        raise ShippingUnavailable(f"{group} is picked up: it has no shipping rate")
    if destination is None:
        raise ShippingUnavailable(f"shipping rate {rate.id} needs a destination")
    if not rate.serves(destination):
        raise ShippingUnavailable(f"shipping rate {rate.id} does not ship to {destination.country}")
    price = rate_price(rate, weight_grams=weight, merchandise=merchandise)
    if price is None:
        raise ShippingUnavailable(f"shipping rate {rate.id} cannot carry {weight} g")
    return price


__all__ = [
    "AppliedPromotion",
    "GroupQuote",
    "LineDiscount",
    "LineQuote",
    "PricingInputError",
    "Quote",
    "RejectedCode",
    "TaxLine",
    "price_cart",
]
