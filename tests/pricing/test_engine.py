"""The pricing engine: hand-worked figures for every rule, and a property test for the invariant.

Every expected amount below was worked out by hand (the arithmetic is in the comments), so a
change in rounding, ordering or allocation shows up as a failing figure, not a shrug.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seamline.pricing import (
    CurrencyMismatch,
    Destination,
    Line,
    PricingContext,
    PricingInputError,
    Promotion,
    Quote,
    ShippingRate,
    ShippingUnavailable,
    TaxConfig,
    TaxRate,
    price_cart,
    rate_price,
)
from seamline.pricing.common import allocate, half_up
from seamline.pricing.promotions import KINDS, TARGETS
from seamline.pricing.shipping import SHIPPING_KINDS

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
NO_TAX = TaxConfig(prices_include_tax=False)
US_CA = Destination(country="US", region="CA", postcode="94103")


def ctx(*codes: str, channel: str = "web", profile_id: str | None = "prf_1") -> PricingContext:
    return PricingContext(
        currency="USD", now=NOW, channel=channel, profile_id=profile_id, codes=codes
    )


def line(
    line_id: str,
    unit_price: int,
    quantity: int = 1,
    *,
    product_id: str | None = None,
    collections: frozenset[str] = frozenset(),
    weight: int | None = None,
    group: str = "ship",
) -> Line:
    return Line(
        line_id=line_id,
        variant_id=f"var_{line_id}",
        product_id=product_id or f"prd_{line_id}",
        collection_ids=collections,
        unit_price=unit_price,
        quantity=quantity,
        weight_grams=weight,
        fulfilment_group=group,
    )


def flat(price: int, rate_id: str = "shr_flat") -> ShippingRate:
    return ShippingRate(id=rate_id, name="Standard", currency="USD", kind="flat", price=price)


def by_id(quote: Quote) -> dict[str, tuple[int, int, int, int]]:
    return {q.line_id: (q.subtotal, q.discount, q.tax, q.total) for q in quote.lines}


def reasons(quote: Quote) -> dict[str, str]:
    return {r.code: r.reason for r in quote.rejected}


# --- building blocks -------------------------------------------------------------------------


def test_half_up_rounds_halves_away_from_zero() -> None:
    assert [half_up(n, 2) for n in (0, 1, 2, 3, 5)] == [0, 1, 1, 2, 3]
    assert half_up(249, 100) == 2
    assert half_up(250, 100) == 3  # banker's rounding would give 2


def test_allocate_sums_exactly_and_gives_leftovers_to_the_largest_remainders() -> None:
    assert allocate(10, [1, 1, 1]) == [4, 3, 3]  # tie: the earlier part
    assert allocate(100, [1, 2, 3]) == [17, 33, 50]  # 16.67 / 33.33 / 50
    assert allocate(0, [5, 0]) == [0, 0]
    assert allocate(7, [7, 0, 3]) == [5, 0, 2]  # 4.9 / 0 / 2.1
    assert allocate(10, [3, 3, 4]) == [3, 3, 4]  # never more than its weight


# --- promotions ------------------------------------------------------------------------------


def test_percentage_on_a_collection_is_computed_once_and_allocated_by_largest_remainder() -> None:
    summer = frozenset({"col_summer"})
    lines = [
        line("a", 1000, 2, collections=summer),
        line("b", 3000),
        line("c", 333, 3, collections=summer | {"col_other"}),
    ]
    promo = Promotion(
        id="pro_summer",
        kind="percentage",
        value=1500,
        applies_to="collections",
        target_ids=frozenset({"col_summer"}),
    )
    quote = price_cart(lines, promotions=[promo], tax=NO_TAX, context=ctx())
    # Eligible: 2000 + 999 = 2999; 15 % = 449.85 -> 450. Shares 300.10 and 149.90: floors 300
    # and 149, the leftover unit goes to c (remainder .90 beats .10).
    assert by_id(quote) == {
        "a": (2000, 300, 0, 1700),
        "b": (3000, 0, 0, 3000),
        "c": (999, 150, 0, 849),
    }
    assert (quote.subtotal, quote.discount_total, quote.total) == (5999, 450, 5549)
    assert [(a.promotion_id, a.discount) for a in quote.applied] == [("pro_summer", 450)]


def test_fixed_amount_is_spread_over_lines_in_proportion_and_capped_at_the_cart() -> None:
    lines = [line("a", 2500), line("b", 1500), line("c", 1)]
    promo = Promotion(id="pro_ten", kind="fixed_amount", value=1000, currency="USD")
    quote = price_cart(lines, promotions=[promo], tax=NO_TAX, context=ctx())
    # 1000 over 4001: 624.84 / 374.91 / 0.25 -> floors 624, 374, 0; two units left go to b
    # (.91) then a (.84).
    assert [q.discount for q in quote.lines] == [625, 375, 0]
    assert quote.total == 3001

    big = Promotion(id="pro_big", kind="fixed_amount", value=5000, currency="USD")
    capped = price_cart(
        [line("a", 1200), line("b", 1800)], promotions=[big], tax=NO_TAX, context=ctx()
    )
    assert [q.discount for q in capped.lines] == [1200, 1800]
    assert (capped.discount_total, capped.total) == (3000, 0)
    assert capped.applied[0].discount == 3000  # the unused 2000 is forfeited


def test_fixed_amount_on_products_leaves_other_lines_alone() -> None:
    lines = [line("a", 4000, product_id="prd_sofa"), line("b", 1000, product_id="prd_lamp")]
    promo = Promotion(
        id="pro_sofa",
        kind="fixed_amount",
        value=750,
        currency="USD",
        applies_to="products",
        target_ids=frozenset({"prd_sofa"}),
    )
    quote = price_cart(lines, promotions=[promo], tax=NO_TAX, context=ctx())
    assert [q.discount for q in quote.lines] == [750, 0]
    assert quote.total == 4250


def test_automatic_promotions_stack_with_one_code_percentages_first() -> None:
    lines = [line("a", 6000), line("b", 4000)]
    auto = Promotion(id="pro_auto", kind="percentage", value=1000)
    code = Promotion(id="pro_code", kind="fixed_amount", value=500, currency="USD", code="TAKE5")
    quote = price_cart(lines, promotions=[code, auto], tax=NO_TAX, context=ctx("take5"))
    # 10 % of 10000 = 1000 (600 / 400), then 500 over the remaining 5400 / 3600 (300 / 200).
    assert [(a.promotion_id, a.discount) for a in quote.applied] == [
        ("pro_auto", 1000),
        ("pro_code", 500),
    ]
    assert [[(d.promotion_id, d.amount) for d in q.discounts] for q in quote.lines] == [
        [("pro_auto", 600), ("pro_code", 300)],
        [("pro_auto", 400), ("pro_code", 200)],
    ]
    assert quote.total == 8500
    assert quote.rejected == ()


def test_of_several_valid_codes_the_best_for_the_customer_wins() -> None:
    lines = [line("a", 10000)]
    ten = Promotion(id="pro_pct", kind="percentage", value=1000, code="TEN")
    fifteen = Promotion(id="pro_fix", kind="fixed_amount", value=1500, currency="USD", code="OFF15")
    quote = price_cart(lines, promotions=[ten, fifteen], tax=NO_TAX, context=ctx("TEN", "OFF15"))
    assert [a.promotion_id for a in quote.applied] == ["pro_fix"]
    assert quote.total == 8500
    assert [(r.code, r.reason, r.promotion_id) for r in quote.rejected] == [
        ("TEN", "not_combinable", "pro_pct")
    ]
    # A tie keeps the code typed first.
    same = Promotion(id="pro_same", kind="fixed_amount", value=1000, currency="USD", code="SAME")
    tie = price_cart(lines, promotions=[ten, same], tax=NO_TAX, context=ctx("same", "ten"))
    assert [a.promotion_id for a in tie.applied] == ["pro_same"]
    assert reasons(tie) == {"ten": "not_combinable"}


def test_codes_match_case_insensitively_and_unknown_ones_are_named() -> None:
    promo = Promotion(id="pro_s", kind="percentage", value=1000, code="Summer10")
    quote = price_cart(
        [line("a", 1000)],
        promotions=[promo],
        tax=NO_TAX,
        context=ctx(" summer10 ", "SUMMER10", "NOPE"),
    )
    assert quote.discount_total == 100
    assert quote.applied[0].code == "Summer10"
    assert [(r.code, r.reason, r.promotion_id) for r in quote.rejected] == [
        ("NOPE", "unknown_code", None)
    ]


def test_min_spend_is_measured_before_discounts_on_the_lines_reached() -> None:
    promo = Promotion(
        id="pro_min", kind="fixed_amount", value=500, currency="USD", min_subtotal=5000, code="BIG"
    )
    short = price_cart([line("a", 4999)], promotions=[promo], tax=NO_TAX, context=ctx("BIG"))
    assert reasons(short) == {"BIG": "min_subtotal_not_met"}
    assert short.total == 4999
    enough = price_cart([line("a", 5000)], promotions=[promo], tax=NO_TAX, context=ctx("BIG"))
    assert enough.rejected == ()
    assert enough.total == 4500

    only_sofa = Promotion(
        id="pro_sofa",
        kind="percentage",
        value=1000,
        code="SOFA",
        min_subtotal=5000,
        currency="USD",
        applies_to="products",
        target_ids=frozenset({"prd_sofa"}),
    )
    lines = [line("a", 3000, product_id="prd_sofa"), line("b", 9000)]
    quote = price_cart(lines, promotions=[only_sofa], tax=NO_TAX, context=ctx("SOFA"))
    assert reasons(quote) == {"SOFA": "min_subtotal_not_met"}  # only the sofa's 3000 counts


def test_time_window_is_start_inclusive_and_end_exclusive() -> None:
    early = Promotion(
        id="pro_e",
        kind="percentage",
        value=1000,
        code="EARLY",
        starts_at=NOW + timedelta(seconds=1),
    )
    over = Promotion(id="pro_o", kind="percentage", value=1000, code="OVER", ends_at=NOW)
    live = Promotion(
        id="pro_l",
        kind="percentage",
        value=1000,
        code="LIVE",
        starts_at=NOW,
        ends_at=NOW + timedelta(days=1),
    )
    quote = price_cart(
        [line("a", 1000)],
        promotions=[early, over, live],
        tax=NO_TAX,
        context=ctx("EARLY", "OVER", "LIVE"),
    )
    assert reasons(quote) == {"EARLY": "not_started", "OVER": "expired"}
    assert [a.promotion_id for a in quote.applied] == ["pro_l"]
    # An expired automatic promotion is simply absent.
    gone = Promotion(id="pro_gone", kind="percentage", value=5000, ends_at=NOW)
    assert price_cart([line("a", 1000)], promotions=[gone], tax=NO_TAX, context=ctx()).total == 1000


def test_channel_restriction() -> None:
    pos_code = Promotion(
        id="pro_pos", kind="percentage", value=2000, code="STORE", channels=frozenset({"pos"})
    )
    pos_auto = Promotion(id="pro_pa", kind="percentage", value=1000, channels=frozenset({"pos"}))
    web = price_cart(
        [line("a", 1000)], promotions=[pos_code, pos_auto], tax=NO_TAX, context=ctx("STORE")
    )
    assert reasons(web) == {"STORE": "wrong_channel"}
    assert web.total == 1000
    pos = price_cart(
        [line("a", 1000)],
        promotions=[pos_code, pos_auto],
        tax=NO_TAX,
        context=ctx("STORE", channel="pos"),
    )
    assert pos.total == 720  # 10 % -> 900, then 20 % -> 720


def test_a_code_tied_to_a_profile_works_only_for_that_customer() -> None:
    mine = Promotion(
        id="pro_mine",
        kind="fixed_amount",
        value=300,
        currency="USD",
        code="ANNA-300",
        profile_id="prf_anna",
    )
    other = price_cart([line("a", 1000)], promotions=[mine], tax=NO_TAX, context=ctx("ANNA-300"))
    guest = price_cart(
        [line("a", 1000)], promotions=[mine], tax=NO_TAX, context=ctx("ANNA-300", profile_id=None)
    )
    anna = price_cart(
        [line("a", 1000)],
        promotions=[mine],
        tax=NO_TAX,
        context=ctx("ANNA-300", profile_id="prf_anna"),
    )
    assert reasons(other) == {"ANNA-300": "not_your_code"}
    assert reasons(guest) == {"ANNA-300": "not_your_code"}
    assert (anna.rejected, anna.total) == ((), 700)


def test_a_code_that_reaches_no_line_is_not_applicable() -> None:
    promo = Promotion(
        id="pro_x",
        kind="percentage",
        value=1000,
        code="SHOES",
        applies_to="collections",
        target_ids=frozenset({"col_shoes"}),
    )
    quote = price_cart([line("a", 1000)], promotions=[promo], tax=NO_TAX, context=ctx("SHOES"))
    assert reasons(quote) == {"SHOES": "not_applicable"}


# --- shipping --------------------------------------------------------------------------------


def test_free_shipping_waives_the_groups_it_reaches_and_nothing_on_pickup() -> None:
    lines = [line("a", 2000), line("b", 3000, group="pickup:loc_store")]
    free = Promotion(id="pro_ship", kind="free_shipping", code="SHIPFREE")
    quote = price_cart(
        lines,
        promotions=[free],
        tax=NO_TAX,
        shipping={"ship": flat(599)},
        destination=US_CA,
        context=ctx("SHIPFREE"),
    )
    ship, pickup = quote.groups
    assert (ship.shipping, ship.shipping_discount, ship.total) == (599, 599, 2000)
    assert (pickup.pickup, pickup.shipping, pickup.shipping_rate_id) == (True, 0, None)
    assert (quote.shipping_total, quote.shipping_discount_total, quote.total) == (599, 599, 5000)
    assert quote.applied[0].shipping_discount == 599

    only_pickup = price_cart(
        [line("b", 3000, group="pickup:loc_store")],
        promotions=[free],
        tax=NO_TAX,
        context=ctx("SHIPFREE"),
    )
    assert reasons(only_pickup) == {"SHIPFREE": "not_applicable"}


def test_weight_bands_pick_the_first_band_that_holds_the_group() -> None:
    rate = ShippingRate(
        id="shr_w",
        name="By weight",
        currency="USD",
        kind="weight_band",
        bands=((500, 400), (2000, 800), (10000, 1500)),
    )

    def shipping_for(*lines: Line) -> int:
        quote = price_cart(
            list(lines), tax=NO_TAX, shipping={"ship": rate}, destination=US_CA, context=ctx()
        )
        return quote.groups[0].shipping

    assert shipping_for(line("a", 100, 2, weight=250)) == 400  # 500 g: the bound is inclusive
    assert shipping_for(line("a", 100, 2, weight=300)) == 800  # 600 g
    assert shipping_for(line("a", 100, 1, weight=2000), line("b", 100)) == 800  # no weight = 0 g
    assert shipping_for(line("a", 100, 5, weight=2000)) == 1500
    with pytest.raises(ShippingUnavailable):
        shipping_for(line("a", 100, 1, weight=10001))


def test_free_over_threshold_counts_merchandise_after_discounts() -> None:
    rate = ShippingRate(
        id="shr_fo",
        name="Free over 50",
        currency="USD",
        kind="free_over",
        price=700,
        free_over=5000,
    )

    def quote_for(amount: int, *promotions: Promotion) -> Quote:
        return price_cart(
            [line("a", amount)],
            promotions=list(promotions),
            tax=NO_TAX,
            shipping={"ship": rate},
            destination=US_CA,
            context=ctx(),
        )

    assert quote_for(5000).groups[0].shipping == 0
    assert quote_for(4999).total == 4999 + 700
    tenth = Promotion(id="pro_10", kind="percentage", value=1000)
    pushed_under = quote_for(5500, tenth)  # 5500 - 550 = 4950 < 5000
    assert (pushed_under.groups[0].merchandise, pushed_under.groups[0].shipping) == (4950, 700)
    assert pushed_under.total == 5650
    assert rate_price(rate, weight_grams=0, merchandise=4950) == 700


def test_shipping_rate_must_serve_the_destination_and_not_a_pickup_group() -> None:
    eu_only = ShippingRate(
        id="shr_eu",
        name="EU",
        currency="USD",
        kind="flat",
        price=900,
        countries=frozenset({"FR", "DE"}),
    )
    with pytest.raises(ShippingUnavailable):
        price_cart(
            [line("a", 100)],
            tax=NO_TAX,
            shipping={"ship": eu_only},
            destination=US_CA,
            context=ctx(),
        )
    with pytest.raises(ShippingUnavailable):
        price_cart([line("a", 100)], tax=NO_TAX, shipping={"ship": flat(100)}, context=ctx())
    with pytest.raises(ShippingUnavailable):
        price_cart(
            [line("a", 100, group="pickup:loc_1")],
            tax=NO_TAX,
            shipping={"pickup:loc_1": flat(100)},
            destination=US_CA,
            context=ctx(),
        )


def test_a_shipped_group_without_a_chosen_rate_has_no_shipping_yet() -> None:
    quote = price_cart([line("a", 100)], tax=NO_TAX, destination=US_CA, context=ctx())
    assert (quote.groups[0].shipping_rate_id, quote.groups[0].shipping) == (None, 0)


# --- tax -------------------------------------------------------------------------------------

US_TAX = TaxConfig(
    prices_include_tax=False,
    rates=(
        TaxRate(country="US", region="CA", rate=725, name="California"),
        TaxRate(country="US", region="NY", rate=400, name="New York"),
    ),
)


def test_exclusive_tax_with_a_region_rate_is_added_per_line_and_on_shipping() -> None:
    lines = [line("a", 1999), line("b", 3333, 3)]
    quote = price_cart(
        lines, tax=US_TAX, shipping={"ship": flat(1000)}, destination=US_CA, context=ctx()
    )
    # 1999 * 7.25 % = 144.93 -> 145; 9999 * 7.25 % = 724.93 -> 725; shipping 72.5 -> 73.
    assert by_id(quote) == {"a": (1999, 0, 145, 2144), "b": (9999, 0, 725, 10724)}
    assert quote.groups[0].shipping_tax == 73
    assert quote.tax_total == 943
    assert quote.total == 1999 + 9999 + 1000 + 943 == 13941
    assert [(t.name, t.amount) for t in quote.taxes] == [("California", 943)]

    oregon = price_cart(
        lines, tax=US_TAX, destination=Destination(country="US", region="OR"), context=ctx()
    )
    assert (oregon.tax_total, oregon.total) == (0, 11998)


def test_exclusive_tax_is_charged_after_discounts_and_rounds_half_up() -> None:
    quote = price_cart(
        [line("a", 20)],
        promotions=[Promotion(id="pro_half", kind="percentage", value=5000)],
        tax=TaxConfig(
            prices_include_tax=False, rates=(TaxRate(country="US", rate=2500, name="Test"),)
        ),
        destination=US_CA,
        context=ctx(),
    )
    assert by_id(quote) == {"a": (20, 10, 3, 13)}  # 10 * 25 % = 2.5 -> 3


def test_region_rates_replace_the_country_rate_unless_combinable() -> None:
    canada = TaxConfig(
        prices_include_tax=False,
        rates=(
            TaxRate(country="CA", rate=500, name="GST"),
            TaxRate(country="CA", region="BC", rate=700, name="PST", combinable=True),
            TaxRate(country="CA", region="ON", rate=1300, name="HST"),
        ),
    )

    def taxes(region: str) -> list[tuple[str, int]]:
        quote = price_cart(
            [line("a", 10001)],
            tax=canada,
            destination=Destination(country="CA", region=region),
            context=ctx(),
        )
        assert sum(t.amount for t in quote.taxes) == quote.tax_total
        return [(t.name, t.amount) for t in quote.taxes]

    # BC: 12 % of 10001 = 1200.12 -> 1200, split 5:7 -> 500 / 700.
    assert taxes("BC") == [("GST", 500), ("PST", 700)]
    assert taxes("ON") == [("HST", 1300)]  # 1300.13 -> 1300
    assert taxes("QC") == [("GST", 500)]  # 500.05 -> 500


def test_inclusive_tax_is_extracted_after_discounts_with_a_region_rate() -> None:
    portugal = TaxConfig(
        prices_include_tax=True,
        rates=(
            TaxRate(country="PT", rate=2300, name="IVA"),
            TaxRate(country="PT", region="20", rate=1600, name="IVA Açores"),
        ),
    )
    lines = [line("a", 1299), line("b", 2500, 2, product_id="prd_b")]
    promo = Promotion(
        id="pro_b",
        kind="percentage",
        value=1000,
        applies_to="products",
        target_ids=frozenset({"prd_b"}),
    )
    shipping = {"ship": ShippingRate(id="shr", name="CTT", currency="USD", kind="flat", price=499)}
    azores = price_cart(
        lines,
        promotions=[promo],
        tax=portugal,
        shipping=shipping,
        destination=Destination(country="PT", region="20"),
        context=ctx(),
    )
    # a: 1299 / 1.16 = 1119.83 -> net 1120, tax 179. b: 5000 - 500 = 4500; 4500 / 1.16 = 3879.31
    # -> net 3879, tax 621. Shipping: 499 / 1.16 = 430.17 -> 430, tax 69.
    assert by_id(azores) == {"a": (1299, 0, 179, 1299), "b": (5000, 500, 621, 4500)}
    assert azores.groups[0].shipping_tax == 69
    assert azores.tax_total == 869
    assert azores.total == 1299 + 5000 - 500 + 499 == 6298  # tax is inside, not added
    assert [(t.name, t.amount) for t in azores.taxes] == [("IVA Açores", 869)]

    mainland = price_cart(
        lines,
        promotions=[promo],
        tax=portugal,
        shipping=shipping,
        destination=Destination(country="PT"),
        context=ctx(),
    )
    # 1299 / 1.23 = 1056.10 -> 243; 4500 / 1.23 = 3658.54 -> 3659, 841; 499 / 1.23 = 405.69
    # -> 406, 93.
    assert [q.tax for q in mainland.lines] == [243, 841]
    assert mainland.tax_total == 243 + 841 + 93
    assert mainland.total == 6298


def test_a_pickup_group_is_taxed_at_the_store_and_has_no_shipping() -> None:
    lines = [line("a", 1000), line("b", 1000, group="pickup:loc_ny")]
    quote = price_cart(
        lines,
        tax=US_TAX,
        shipping={"ship": flat(500)},
        destination=US_CA,
        tax_destinations={"pickup:loc_ny": Destination(country="US", region="NY")},
        context=ctx(),
    )
    # Shipped: 1000 * 7.25 % = 72.5 -> 73, shipping 36.25 -> 36. Picked up in NY: 4 % -> 40.
    assert by_id(quote) == {"a": (1000, 0, 73, 1073), "b": (1000, 0, 40, 1040)}
    ship, pickup = quote.groups
    assert (ship.shipping, ship.shipping_tax, ship.total) == (500, 36, 1609)
    assert (pickup.shipping, pickup.shipping_tax, pickup.total) == (0, 0, 1040)
    assert quote.total == 2649


def test_without_a_destination_no_tax_is_computed_yet() -> None:
    quote = price_cart([line("a", 1000)], tax=US_TAX, context=ctx())
    assert (quote.tax_total, quote.groups[0].tax_destination) == (0, None)


# --- refused input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quantity", 0),
        ("quantity", -1),
        ("unit_price", -1),
        ("unit_price", 9.99),
        ("quantity", True),
        ("weight_grams", -5),
    ],
)
def test_bad_lines_are_refused_with_the_field(field: str, value: object) -> None:
    fields: dict[str, object] = {
        "line_id": "l",
        "variant_id": "v",
        "product_id": "p",
        "unit_price": 100,
        "quantity": 1,
        field: value,
    }
    with pytest.raises(PricingInputError) as caught:
        Line(**fields)  # type: ignore[arg-type]
    assert caught.value.status == 422
    assert caught.value.errors[0].path == f"line.{field}"


def test_rates_out_of_range_and_malformed_promotions_are_refused() -> None:
    with pytest.raises(PricingInputError):
        TaxRate(country="FR", rate=10001, name="Too much")
    with pytest.raises(PricingInputError):
        TaxRate(country="FR", rate=-1, name="Negative")
    with pytest.raises(PricingInputError):
        Promotion(id="p", kind="percentage", value=10001)
    with pytest.raises(PricingInputError):
        Promotion(id="p", kind="percentage", value=0)
    with pytest.raises(PricingInputError):
        Promotion(id="p", kind="fixed_amount", value=100)  # no currency
    with pytest.raises(PricingInputError):
        Promotion(id="p", kind="percentage", value=100, starts_at=datetime(2025, 1, 1))
    with pytest.raises(PricingInputError):
        Promotion(id="p", kind="percentage", value=100, applies_to="products")
    with pytest.raises(PricingInputError):
        ShippingRate(
            id="s", name="S", currency="USD", kind="weight_band", bands=((1000, 100), (500, 200))
        )
    with pytest.raises(PricingInputError):
        PricingContext(currency="XXQ", now=NOW, channel="web")


def test_currency_mismatches_are_refused() -> None:
    euro_rate = ShippingRate(id="s", name="S", currency="EUR", kind="flat", price=100)
    with pytest.raises(CurrencyMismatch):
        price_cart(
            [line("a", 100)],
            tax=NO_TAX,
            shipping={"ship": euro_rate},
            destination=US_CA,
            context=ctx(),
        )
    euro_off = Promotion(id="p", kind="fixed_amount", value=100, currency="EUR")
    with pytest.raises(CurrencyMismatch):
        price_cart([line("a", 100)], promotions=[euro_off], tax=NO_TAX, context=ctx())


def test_duplicate_lines_and_codes_are_refused() -> None:
    with pytest.raises(PricingInputError):
        price_cart([line("a", 100), line("a", 200)], tax=NO_TAX, context=ctx())
    twins = [
        Promotion(id="p1", kind="percentage", value=100, code="SAME"),
        Promotion(id="p2", kind="percentage", value=200, code="same"),
    ]
    with pytest.raises(PricingInputError):
        price_cart([line("a", 100)], promotions=twins, tax=NO_TAX, context=ctx())


def test_an_empty_cart_prices_to_zero() -> None:
    quote = price_cart([], tax=US_TAX, destination=US_CA, context=ctx("ANY"))
    assert (quote.subtotal, quote.total, quote.lines, quote.groups) == (0, 0, (), ())
    assert reasons(quote) == {"ANY": "unknown_code"}


# --- the invariant, on random carts ----------------------------------------------------------

GROUPS = ("ship", "ship:wh_2", "pickup:loc_1")
COLLECTIONS = ("c1", "c2", "c3")
PRODUCTS = ("p1", "p2", "p3", "p4")


@st.composite
def carts(draw: st.DrawFn) -> tuple[list[Line], dict[str, object]]:
    n = draw(st.integers(min_value=0, max_value=6))
    lines = [
        Line(
            line_id=f"l{i}",
            variant_id=f"v{i}",
            product_id=draw(st.sampled_from(PRODUCTS)),
            collection_ids=frozenset(draw(st.sets(st.sampled_from(COLLECTIONS)))),
            unit_price=draw(st.integers(min_value=0, max_value=200_000)),
            quantity=draw(st.integers(min_value=1, max_value=25)),
            weight_grams=draw(st.none() | st.integers(min_value=0, max_value=5000)),
            fulfilment_group=draw(st.sampled_from(GROUPS)),
        )
        for i in range(n)
    ]
    promotions: list[Promotion] = []
    for i in range(draw(st.integers(min_value=0, max_value=5))):
        kind = draw(st.sampled_from(KINDS))
        value = {
            "percentage": draw(st.integers(min_value=1, max_value=10_000)),
            "fixed_amount": draw(st.integers(min_value=1, max_value=300_000)),
            "free_shipping": 0,
        }[kind]
        applies_to = draw(st.sampled_from(TARGETS))
        pool = {"all": (), "products": PRODUCTS, "collections": COLLECTIONS}[applies_to]
        targets = frozenset(draw(st.sets(st.sampled_from(pool), min_size=1))) if pool else None
        offset = draw(st.sampled_from([None, -2, -1, 1, 2]))
        promotions.append(
            Promotion(
                id=f"pro_{i}",
                kind=kind,
                value=value,
                code=draw(st.sampled_from([None, f"CODE{i}"])),
                applies_to=applies_to,
                target_ids=targets or frozenset(),
                min_subtotal=draw(st.sampled_from([0, 0, 5000, 50_000])),
                currency="USD",
                starts_at=NOW + timedelta(days=offset) if offset else None,
                ends_at=NOW + timedelta(days=3) if offset else None,
                channels=draw(st.sampled_from([None, frozenset({"web"}), frozenset({"pos"})])),
                profile_id=draw(st.sampled_from([None, None, "prf_1", "prf_2"])),
            )
        )
    codes = tuple(draw(st.lists(st.sampled_from([f"code{i}" for i in range(5)] + ["NOPE"]))))
    rates = tuple(
        TaxRate(
            country=country,
            region=region,
            rate=rate,
            name=f"{country}-{region}",
            combinable=combinable and region is not None,
        )
        for country, region, rate, combinable in draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["US", "CA"]),
                    st.sampled_from([None, "R1", "R2"]),
                    st.integers(min_value=0, max_value=10_000),
                    st.booleans(),
                ),
                max_size=4,
            )
        )
    )
    shipping: dict[str, ShippingRate] = {}
    for group in sorted({line.fulfilment_group for line in lines}):
        rate_kind = draw(st.sampled_from((None, *SHIPPING_KINDS)))
        if group.startswith("pickup:") or rate_kind is None:
            continue
        price = draw(st.integers(min_value=0, max_value=50_000))
        shipping[group] = ShippingRate(
            id=f"shr_{group}",
            name=group,
            currency="USD",
            kind=rate_kind,
            price=0 if rate_kind == "weight_band" else price,
            bands=((1000, price), (10**9, price * 2)) if rate_kind == "weight_band" else (),
            free_over=draw(st.integers(min_value=0, max_value=100_000))
            if rate_kind == "free_over"
            else None,
        )
    options: dict[str, object] = {
        "promotions": promotions,
        "tax": TaxConfig(
            prices_include_tax=draw(st.booleans()), rates=rates, tax_shipping=draw(st.booleans())
        ),
        "shipping": shipping,
        "destination": Destination(
            country=draw(st.sampled_from(["US", "CA"])),
            region=draw(st.sampled_from([None, "R1", "R2"])),
        ),
        "context": PricingContext(
            currency="USD",
            now=NOW,
            channel=draw(st.sampled_from(["web", "pos"])),
            profile_id=draw(st.sampled_from([None, "prf_1"])),
            codes=codes,
        ),
    }
    return lines, options


@settings(max_examples=400, deadline=None)
@given(carts())
def test_invariant_holds_exactly_on_random_carts(
    cart: tuple[list[Line], dict[str, object]],
) -> None:
    lines, options = cart
    quote = price_cart(lines, **options)  # type: ignore[arg-type]

    subtotal = sum(line.unit_price * line.quantity for line in lines)
    assert quote.subtotal == subtotal
    expected = (
        subtotal - quote.discount_total + quote.shipping_total - quote.shipping_discount_total
    )
    if not quote.prices_include_tax:
        expected += quote.tax_total
    assert quote.total == expected

    for source, q in zip(lines, quote.lines, strict=True):
        assert q.line_id == source.line_id
        assert 0 <= q.discount <= q.subtotal == source.unit_price * source.quantity
        assert sum(d.amount for d in q.discounts) == q.discount
        assert all(d.amount > 0 for d in q.discounts)
        assert q.tax >= 0
        if quote.prices_include_tax:
            assert q.tax <= q.subtotal - q.discount
            assert q.total == q.subtotal - q.discount
        else:
            assert q.total == q.subtotal - q.discount + q.tax
    assert sum(q.discount for q in quote.lines) == quote.discount_total
    for applied in quote.applied:
        landed = sum(
            d.amount
            for q in quote.lines
            for d in q.discounts
            if d.promotion_id == applied.promotion_id
        )
        assert landed == applied.discount
    assert sum(a.shipping_discount for a in quote.applied) == quote.shipping_discount_total
    assert len([a for a in quote.applied if a.code is not None]) <= 1

    for group in quote.groups:
        assert 0 <= group.shipping_discount <= group.shipping
        assert group.shipping_tax >= 0
        if group.pickup:
            assert group.shipping == 0
    assert sum(g.total for g in quote.groups) == quote.total
    assert sum(t.amount for t in quote.taxes) == quote.tax_total
    assert all(t.amount >= 0 for t in quote.taxes)

    amounts = [
        quote.subtotal,
        quote.discount_total,
        quote.shipping_total,
        quote.shipping_discount_total,
        quote.tax_total,
        quote.total,
    ]
    assert all(a >= 0 for a in amounts)
    assert {r.reason for r in quote.rejected} <= {
        "expired",
        "not_started",
        "min_subtotal_not_met",
        "wrong_channel",
        "not_your_code",
        "unknown_code",
        "not_applicable",
        "not_combinable",
    }
