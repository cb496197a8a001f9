"""Tax rates, which of them apply at a destination, and the tax inside or on top of an amount.

Region rates follow Medusa's tax regions: a rate for the destination's region *replaces* the
country-wide rates, unless it is marked ``combinable``, in which case it adds to them. That one
flag covers the common systems:

* EU VAT: one country rate (region rates only for exceptions such as the Azores, which replace).
* Canada: GST 5 % country-wide; BC's PST 7 % is combinable (12 %); Ontario's HST 13 % replaces.
* United States: no country rate; each state's rate is a region rate.

Several rates that apply together (country rates, or combinable region rates) add up to one
combined rate. Tax is computed once on the combined rate and then split between the named rates
in proportion to their basis points, so the breakdown always sums to the tax charged.
"""

from __future__ import annotations

from dataclasses import dataclass

from seamline.pricing.common import (
    BASIS_POINTS,
    Destination,
    half_up,
    invalid,
    require_int,
    require_text,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaxRate:
    """One named rate in basis points (2000 = 20 %). ``region`` None: the whole country."""

    country: str
    rate: int
    name: str
    region: str | None = None
    combinable: bool = False  # region rates only: add to the country rate instead of replacing

    def __post_init__(self) -> None:
        if not (
            isinstance(self.country, str) and len(self.country) == 2 and self.country.isupper()
        ):
            raise invalid("tax_rate.country", "must be an upper-case ISO 3166-1 alpha-2 code")
        require_int(self.rate, "tax_rate.rate", minimum=0, maximum=BASIS_POINTS)
        require_text(self.name, "tax_rate.name")
        if self.region is not None:
            require_text(self.region, "tax_rate.region")
        if self.combinable and self.region is None:
            raise invalid("tax_rate.combinable", "only a region rate combines with the country")


@dataclass(frozen=True, slots=True, kw_only=True)
class TaxConfig:
    """How a store taxes. With ``prices_include_tax`` every unit price and shipping price is
    gross (tax inside, as EU and UK consumer prices must be shown); otherwise net (tax added,
    as in North America). ``tax_shipping``: shipping is taxed at the destination's rate, as it
    is for VAT/GST and in most US states that tax shipping at all."""

    prices_include_tax: bool
    rates: tuple[TaxRate, ...] = ()
    tax_shipping: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.rates, tuple) or not all(isinstance(r, TaxRate) for r in self.rates):
            raise invalid("tax.rates", "must be a tuple of TaxRate", "not_a_tuple")

    def rates_for(self, destination: Destination | None) -> tuple[TaxRate, ...]:
        """The rates that apply at ``destination`` (none without one: the quote is then an
        estimate before the address is known, and says so with ``tax_destination=None``)."""
        if destination is None:
            return ()
        in_country = [r for r in self.rates if r.country == destination.country]
        country_wide = [r for r in in_country if r.region is None]
        regional = [
            r for r in in_country if r.region is not None and r.region == destination.region
        ]
        if any(not r.combinable for r in regional):
            return tuple(regional)
        return (*country_wide, *regional)


def tax_of(amount: int, rate: int, *, included: bool) -> int:
    """Tax on ``amount`` at ``rate`` basis points.

    Exclusive: ``round(amount * rate)``. Inclusive: the net is rounded and the tax is what is
    left, ``amount - round(amount / (1 + rate))``, so net + tax equals the gross exactly.
    """
    if rate == 0 or amount == 0:
        return 0
    if included:
        return amount - half_up(amount * BASIS_POINTS, BASIS_POINTS + rate)
    return half_up(amount * rate, BASIS_POINTS)
