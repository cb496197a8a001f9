"""Building blocks shared by the pricing modules: typed input errors, integer rounding, the
largest-remainder allocator, and the inputs that are neither promotions, taxes nor shipping
(cart lines, the destination, the pricing context).

Everything here works on integers in minor units. Babel's currency precision is deliberately not
used for arithmetic: an amount in minor units already carries the exponent (1 yen, 1 cent and
1 fils are each "1"), so rounding to the minor unit is right for every currency. Babel is used
only to refuse a code that is not ISO 4217, before it could silently pass through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from babel.numbers import is_currency

from seamline.kit.errors import FieldError, Unprocessable

BASIS_POINTS = 10_000  # 100 % in basis points: 1500 means 15 %.
PICKUP_PREFIX = "pickup:"


class PricingInputError(Unprocessable):
    """An input the engine refuses to price (negative price, zero quantity, rate out of range,
    duplicate id...). Raised rather than clamped: a silently "fixed" price is a wrong price."""

    code = "invalid_pricing_input"


class CurrencyMismatch(Unprocessable):
    """An amount in another currency than the cart's. Converting is a business decision (rates,
    rounding, who bears the spread) that a pure engine must not take on its own."""

    code = "currency_mismatch"


class ShippingUnavailable(Unprocessable):
    """The chosen shipping rate cannot serve this group (wrong country, too heavy, a pick-up
    group, no destination). The caller should offer the customer another rate."""

    code = "shipping_rate_unavailable"


def invalid(path: str, message: str, code: str = "invalid") -> PricingInputError:
    """A :class:`PricingInputError` pointing at one field, e.g. ``line.quantity``."""
    return PricingInputError(f"{path}: {message}", errors=[FieldError(path, message, code)])


def require_int(value: object, path: str, *, minimum: int = 0, maximum: int | None = None) -> None:
    """Refuse anything but a true ``int`` in range (``bool`` and ``float`` included: a float
    amount is exactly the bug integer minor units exist to prevent)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(path, "must be an integer", "not_integer")
    if value < minimum:
        raise invalid(path, f"must be at least {minimum}", "too_small")
    if maximum is not None and value > maximum:
        raise invalid(path, f"must be at most {maximum}", "too_large")


def require_text(value: object, path: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise invalid(path, "must be a non-empty string", "blank")


def require_ids(value: object, path: str) -> None:
    """Id sets are ``frozenset``s so inputs stay hashable and cannot change under the engine."""
    if not isinstance(value, frozenset) or not all(isinstance(v, str) for v in value):
        raise invalid(path, "must be a frozenset of strings", "not_a_set")


def require_currency(value: object, path: str) -> None:
    if not isinstance(value, str) or len(value) != 3 or not value.isupper():
        raise invalid(path, "must be an upper-case ISO 4217 code", "not_a_currency")
    if not is_currency(value):
        raise invalid(path, f"{value} is not an ISO 4217 currency", "not_a_currency")


def require_aware(value: datetime | None, path: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise invalid(path, "must be a timezone-aware datetime", "naive_datetime")


def half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half up (half away from zero: every amount here is
    non-negative), in exact integer arithmetic. Commercial rounding is what invoices and tax
    authorities in the EU, UK, Canada and most US states expect; banker's rounding would
    surprise an accountant checking a receipt by hand."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("half_up works on non-negative amounts and a positive denominator")
    return (2 * numerator + denominator) // (2 * denominator)


def allocate(amount: int, weights: Sequence[int]) -> list[int]:
    """Split ``amount`` in proportion to ``weights`` so the parts sum exactly to ``amount``.

    Each part starts at the floor of its exact share; the units left over go one each to the
    parts with the largest fractional remainders (ties: the earlier part, so results are
    stable). When ``amount <= sum(weights)`` no part exceeds its weight: a share below its weight
    rounds up to at most the weight, and a share equal to its weight has no remainder.
    """
    if amount < 0 or any(w < 0 for w in weights):
        raise ValueError("allocate works on non-negative amounts and weights")
    base = sum(weights)
    if amount == 0:
        return [0] * len(weights)
    if base == 0:
        raise ValueError("cannot allocate a positive amount over zero weights")
    shares = [amount * w // base for w in weights]
    remainders = [amount * w % base for w in weights]
    left = amount - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        shares[i] += 1
    return shares


def is_pickup(group: str) -> bool:
    """Pick-up groups (``pickup:<location_id>``) never carry shipping."""
    return group.startswith(PICKUP_PREFIX)


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One cart line. ``unit_price`` is in the cart's currency, in minor units, and includes tax
    exactly when :attr:`TaxConfig.prices_include_tax` says so."""

    line_id: str
    variant_id: str
    product_id: str
    unit_price: int
    quantity: int
    collection_ids: frozenset[str] = frozenset()
    weight_grams: int | None = None  # per unit; None counts as 0 g (as Shopify does)
    fulfilment_group: str = "ship"  # "ship", "ship:<location_id>" or "pickup:<location_id>"

    def __post_init__(self) -> None:
        require_text(self.line_id, "line.line_id")
        require_text(self.variant_id, "line.variant_id")
        require_text(self.product_id, "line.product_id")
        require_int(self.unit_price, "line.unit_price", minimum=0)
        require_int(self.quantity, "line.quantity", minimum=1)
        require_ids(self.collection_ids, "line.collection_ids")
        if self.weight_grams is not None:
            require_int(self.weight_grams, "line.weight_grams", minimum=0)
        require_text(self.fulfilment_group, "line.fulfilment_group")
        if is_pickup(self.fulfilment_group) and not self.fulfilment_group[len(PICKUP_PREFIX) :]:
            raise invalid("line.fulfilment_group", "pickup:<location_id> needs a location")

    @property
    def subtotal(self) -> int:
        return self.unit_price * self.quantity

    @property
    def total_weight_grams(self) -> int:
        return (self.weight_grams or 0) * self.quantity


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """Where goods go (or, for a pick-up group, where they are handed over). ``region`` uses the
    same notation as :attr:`TaxRate.region` (the ISO 3166-2 suffix is recommended: "BC", "CA")."""

    country: str  # ISO 3166-1 alpha-2, upper case
    region: str | None = None
    postcode: str | None = None

    def __post_init__(self) -> None:
        if not (
            isinstance(self.country, str) and len(self.country) == 2 and self.country.isupper()
        ):
            raise invalid("destination.country", "must be an upper-case ISO 3166-1 alpha-2 code")
        if self.region is not None:
            require_text(self.region, "destination.region")


@dataclass(frozen=True, slots=True, kw_only=True)
class PricingContext:
    """Who is buying, where, when, and which codes they typed. ``now`` is passed in (from
    ``seamline.kit.clock.now()``) so a quote is a pure function of its inputs and replayable."""

    currency: str
    now: datetime
    channel: str
    profile_id: str | None = None
    codes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require_currency(self.currency, "context.currency")
        require_aware(self.now, "context.now")
        require_text(self.channel, "context.channel")
        if not isinstance(self.codes, tuple) or not all(isinstance(c, str) for c in self.codes):
            raise invalid("context.codes", "must be a tuple of strings", "not_a_tuple")
