"""The pure pricing engine for carts and checkout: no database, no HTTP, no clock.

Services load promotions, tax rates and shipping rates from their tables, build these frozen
inputs and call :func:`price_cart`; the rules are documented in :mod:`seamline.pricing.engine`.
"""

from __future__ import annotations

from seamline.pricing.common import (
    CurrencyMismatch,
    Destination,
    Line,
    PricingContext,
    PricingInputError,
    ShippingUnavailable,
)
from seamline.pricing.engine import (
    AppliedPromotion,
    GroupQuote,
    LineDiscount,
    LineQuote,
    Quote,
    RejectedCode,
    TaxLine,
    price_cart,
)
from seamline.pricing.promotions import AppliesTo, Promotion, PromotionKind, RejectionReason
from seamline.pricing.shipping import ShippingKind, ShippingRate, rate_price
from seamline.pricing.tax import TaxConfig, TaxRate

__all__ = [
    "AppliedPromotion",
    "AppliesTo",
    "CurrencyMismatch",
    "Destination",
    "GroupQuote",
    "Line",
    "LineDiscount",
    "LineQuote",
    "PricingContext",
    "PricingInputError",
    "Promotion",
    "PromotionKind",
    "Quote",
    "RejectedCode",
    "RejectionReason",
    "ShippingKind",
    "ShippingRate",
    "ShippingUnavailable",
    "TaxConfig",
    "TaxLine",
    "TaxRate",
    "price_cart",
    "rate_price",
]
