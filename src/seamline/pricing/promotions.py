"""Promotions: what they are, who may use them, and which lines they reach.

The rules of stacking, ordering and allocation live in :mod:`seamline.pricing.engine` (its module
docstring is the reference); this module only answers "may this promotion apply to this cart, and
if not, why not" with a stable reason code a storefront can translate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from seamline.pricing.common import (
    BASIS_POINTS,
    Line,
    PricingContext,
    invalid,
    is_pickup,
    require_aware,
    require_currency,
    require_ids,
    require_int,
    require_text,
)

PromotionKind = Literal["percentage", "fixed_amount", "free_shipping"]
AppliesTo = Literal["all", "products", "collections"]
RejectionReason = Literal[
    "unknown_code",
    "not_started",
    "expired",
    "wrong_channel",
    "not_your_code",
    "not_applicable",
    "min_subtotal_not_met",
    "not_combinable",
]

KINDS: tuple[PromotionKind, ...] = ("percentage", "fixed_amount", "free_shipping")
TARGETS: tuple[AppliesTo, ...] = ("all", "products", "collections")


def normalize_code(code: str) -> str:
    """Codes match case-insensitively and ignore surrounding spaces: customers type "summer10 "
    from a poster, and refusing it over case would be hostile, not secure."""
    return code.strip().casefold()


@dataclass(frozen=True, slots=True, kw_only=True)
class Promotion:
    """A discount rule. ``value`` is basis points for ``percentage`` (1500 = 15 %), minor units
    of ``currency`` for ``fixed_amount``, and 0 for ``free_shipping``.

    ``code`` None means automatic. ``min_subtotal`` is compared with the subtotal of the lines the
    promotion reaches, before any discount. Usage limits are counted and enforced by the caller
    (they need the database); they are carried here so one object describes the promotion.
    """

    id: str
    kind: PromotionKind
    value: int = 0
    code: str | None = None
    applies_to: AppliesTo = "all"
    target_ids: frozenset[str] = frozenset()  # product ids or collection ids, per applies_to
    min_subtotal: int = 0
    currency: str | None = None  # required for fixed_amount and for a min_subtotal above 0
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    channels: frozenset[str] | None = None  # None: every channel
    profile_id: str | None = None  # a code (or offer) that belongs to one customer
    usage_limit: int | None = None
    usage_limit_per_profile: int | None = None

    def __post_init__(self) -> None:
        require_text(self.id, "promotion.id")
        if self.kind not in KINDS:
            raise invalid("promotion.kind", f"must be one of {', '.join(KINDS)}")
        if self.kind == "percentage":
            require_int(self.value, "promotion.value", minimum=1, maximum=BASIS_POINTS)
        elif self.kind == "fixed_amount":
            require_int(self.value, "promotion.value", minimum=1)
        elif self.value != 0:
            raise invalid("promotion.value", "free_shipping promotions carry no value")
        if self.code is not None:
            require_text(self.code, "promotion.code")
        if self.applies_to not in TARGETS:
            raise invalid("promotion.applies_to", f"must be one of {', '.join(TARGETS)}")
        require_ids(self.target_ids, "promotion.target_ids")
        if (self.applies_to == "all") != (not self.target_ids):
            raise invalid("promotion.target_ids", "must be empty for 'all' and non-empty otherwise")
        require_int(self.min_subtotal, "promotion.min_subtotal", minimum=0)
        if self.currency is not None:
            require_currency(self.currency, "promotion.currency")
        elif self.kind == "fixed_amount" or self.min_subtotal > 0:
            raise invalid("promotion.currency", "an amount needs its currency", "missing")
        require_aware(self.starts_at, "promotion.starts_at")
        require_aware(self.ends_at, "promotion.ends_at")
        if self.starts_at and self.ends_at and self.starts_at >= self.ends_at:
            raise invalid("promotion.ends_at", "must be after starts_at")
        if self.channels is not None:
            require_ids(self.channels, "promotion.channels")
        for name in ("usage_limit", "usage_limit_per_profile"):
            limit = getattr(self, name)
            if limit is not None:
                require_int(limit, f"promotion.{name}", minimum=1)

    @property
    def automatic(self) -> bool:
        return self.code is None

    @property
    def discounts_lines(self) -> bool:
        return self.kind != "free_shipping"

    def reaches(self, line: Line) -> bool:
        """Whether this promotion targets ``line`` (``collections``: any shared collection)."""
        if self.applies_to == "all":
            return True
        if self.applies_to == "products":
            return line.product_id in self.target_ids
        return not self.target_ids.isdisjoint(line.collection_ids)


def rejection(
    promotion: Promotion, lines: Sequence[Line], context: PricingContext
) -> RejectionReason | None:
    """The first rule ``promotion`` breaks for this cart, or None if it may apply.

    Checked in a fixed order so the reason is stable and the most useful one comes first: time
    window, channel, owner, then the cart itself (does it reach any line; for free shipping, any
    line that ships), then the minimum spend.
    """
    if promotion.starts_at is not None and context.now < promotion.starts_at:
        return "not_started"
    if promotion.ends_at is not None and context.now >= promotion.ends_at:
        return "expired"
    if promotion.channels is not None and context.channel not in promotion.channels:
        return "wrong_channel"
    if promotion.profile_id is not None and promotion.profile_id != context.profile_id:
        return "not_your_code"
    reached = [line for line in lines if promotion.reaches(line)]
    if promotion.kind == "free_shipping":
        shipped = [line for line in reached if not is_pickup(line.fulfilment_group)]
        if not shipped:
            return "not_applicable"
    elif not reached:
        return "not_applicable"
    if sum(line.subtotal for line in reached) < promotion.min_subtotal:
        return "min_subtotal_not_met"
    return None
