"""Shipping rates and their price for one fulfilment group.

A rate is priced per group, never per cart: a group is one parcel stream (one warehouse, one
carrier), so its weight and value decide its price. Pick-up groups have no shipping at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seamline.pricing.common import (
    Destination,
    invalid,
    require_currency,
    require_ids,
    require_int,
    require_text,
)

ShippingKind = Literal["flat", "weight_band", "free_over"]
SHIPPING_KINDS: tuple[ShippingKind, ...] = ("flat", "weight_band", "free_over")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShippingRate:
    """A shipping price rule, in minor units of ``currency``.

    * ``flat``: always ``price``.
    * ``weight_band``: ``bands`` are ``(max_grams, price)`` with strictly increasing
      ``max_grams``; the first band whose ``max_grams`` (inclusive) holds the group's weight
      wins. A group heavier than the last band cannot use the rate.
    * ``free_over``: free when the group's merchandise after line discounts is at least
      ``free_over``, otherwise ``price``. After discounts, so a code cannot push a cart under
      the threshold and still keep free shipping.

    ``countries`` None serves every country ("rest of the world").
    """

    id: str
    name: str
    currency: str
    kind: ShippingKind
    price: int = 0
    bands: tuple[tuple[int, int], ...] = ()
    free_over: int | None = None
    countries: frozenset[str] | None = None

    def __post_init__(self) -> None:
        require_text(self.id, "shipping_rate.id")
        require_text(self.name, "shipping_rate.name")
        require_currency(self.currency, "shipping_rate.currency")
        if self.kind not in SHIPPING_KINDS:
            raise invalid("shipping_rate.kind", f"must be one of {', '.join(SHIPPING_KINDS)}")
        require_int(self.price, "shipping_rate.price", minimum=0)
        if self.countries is not None:
            require_ids(self.countries, "shipping_rate.countries")
        if self.kind == "weight_band":
            if not self.bands:
                raise invalid("shipping_rate.bands", "a weight_band rate needs bands", "missing")
            if self.price != 0:
                raise invalid("shipping_rate.price", "weight_band rates price by band")
            previous = -1
            for i, band in enumerate(self.bands):
                if not isinstance(band, tuple) or len(band) != 2:
                    raise invalid(f"shipping_rate.bands.{i}", "must be (max_grams, price)")
                require_int(band[0], f"shipping_rate.bands.{i}.max_grams", minimum=0)
                require_int(band[1], f"shipping_rate.bands.{i}.price", minimum=0)
                if band[0] <= previous:
                    raise invalid(f"shipping_rate.bands.{i}", "max_grams must increase")
                previous = band[0]
        elif self.bands:
            raise invalid("shipping_rate.bands", "only weight_band rates have bands")
        if self.kind == "free_over":
            if self.free_over is None:
                raise invalid("shipping_rate.free_over", "a free_over rate needs it", "missing")
            require_int(self.free_over, "shipping_rate.free_over", minimum=0)
        elif self.free_over is not None:
            raise invalid("shipping_rate.free_over", "only free_over rates have a threshold")

    def serves(self, destination: Destination) -> bool:
        return self.countries is None or destination.country in self.countries


def rate_price(rate: ShippingRate, *, weight_grams: int, merchandise: int) -> int | None:
    """The price of ``rate`` for a group weighing ``weight_grams`` with ``merchandise`` (minor
    units, after line discounts), or None when the rate cannot carry it (too heavy).

    Callers listing shipping options take both figures from a quote's ``GroupQuote``."""
    if rate.kind == "flat":
        return rate.price
    if rate.kind == "free_over":
        assert rate.free_over is not None  # checked in __post_init__
        return 0 if merchandise >= rate.free_over else rate.price
    for max_grams, price in rate.bands:
        if weight_grams <= max_grams:
            return price
    return None
