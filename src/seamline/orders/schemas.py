"""Checkout input and order output."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from seamline.kit.schemas import JSON_TEXT_PATTERN, NAME_PATTERN

MAX_MINOR = 10**12
Id = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z]{2,4}_[0-9a-z]{1,34}$")]


class TenderIn(BaseModel):
    """One way of paying. ``token`` is a provider token (``tok_test_success``, a Stripe payment
    method id) — never a card number — or, for the ``manual`` provider at a till, ``cash`` or
    ``card_present``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    provider: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
    token: Annotated[str, Field(min_length=1, max_length=255, pattern=NAME_PATTERN)]
    amount: Annotated[int, Field(ge=1, le=MAX_MINOR)] | None = Field(
        default=None, description="Minor units; leave it out on the last tender to pay the rest."
    )
    tendered: Annotated[int, Field(ge=1, le=MAX_MINOR)] | None = Field(
        default=None, description="Cash handed over at a till (change is given back)."
    )


class CheckoutIn(BaseModel):
    """Turn the cart into an order. Amounts come from the server's pricing of the cart; a
    client cannot send prices or totals."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tenders: Annotated[list[TenderIn], Field(min_length=1, max_length=10)]
    location_id: Id | None = Field(
        default=None,
        description="The store where the sale happens (a till, an endless-aisle order).",
    )


class OrderLineOut(BaseModel):
    id: str
    variant_id: str
    sku: str
    name: str
    quantity: int
    unit_price: int
    subtotal: int
    discount: int
    tax: int
    total: int
    quantity_fulfilled: int
    quantity_returned: int
    group_id: str


class FulfilmentGroupOut(BaseModel):
    id: str
    kind: str
    location_id: str
    status: str
    shipping: int
    routing_reason: str
    pickup_code: str | None
    pickup_expires_at: datetime | None
    carrier: str | None
    tracking_number: str | None
    carrier_status: str | None


class PaymentOut(BaseModel):
    id: str
    provider: str
    method: str
    status: str
    amount: int
    captured: int
    refunded: int
    change_due: int | None
    decline_code: str | None


class HistoryOut(BaseModel):
    kind: str
    detail: dict[str, Any]
    actor: str | None
    at: datetime


class OrderOut(BaseModel):
    id: str
    number: int
    status: str
    payment_state: str
    channel_id: str
    location_id: str | None
    profile_id: str | None
    email: str | None
    cart_id: str | None
    currency: str
    prices_include_tax: bool
    subtotal: int
    discount_total: int
    shipping_total: int
    tax_total: int
    total: int
    paid_total: int
    refunded_total: int
    codes: list[str]
    promotions: list[dict[str, Any]]
    shipping_address: dict[str, Any] | None
    lines: list[OrderLineOut]
    groups: list[FulfilmentGroupOut]
    payments: list[PaymentOut]
    history: list[HistoryOut]
    created_at: datetime
    updated_at: datetime


class OrderSummary(BaseModel):
    id: str
    number: int
    status: str
    payment_state: str
    channel_id: str
    profile_id: str | None
    currency: str
    total: int
    created_at: datetime


class OrderList(BaseModel):
    data: list[OrderSummary]
    next_cursor: str | None = None


class HandOverIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    code: Annotated[
        str,
        Field(min_length=1, max_length=20, pattern=NAME_PATTERN, description="The pick-up code."),
    ]


class ShipIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    carrier: Annotated[str, Field(min_length=1, max_length=60, pattern=NAME_PATTERN)]
    tracking_number: Annotated[
        str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._/-]*$")
    ]


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: Annotated[str, Field(min_length=1, max_length=500, pattern=NAME_PATTERN)]


class CarrierEventIn(BaseModel):
    """A carrier's status update for a shipment (a generic inbound webhook)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tracking_number: Annotated[
        str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._/-]*$")
    ]
    status: Annotated[
        str,
        Field(
            min_length=1,
            max_length=60,
            pattern=r"^[a-z_]+$",
            description="e.g. in_transit, out_for_delivery, delivered, exception",
        ),
    ]
    carrier: Annotated[str, Field(min_length=1, max_length=60, pattern=NAME_PATTERN)] | None = None
    occurred_at: datetime | None = None
    detail: Annotated[str, Field(max_length=500, pattern=JSON_TEXT_PATTERN)] | None = None
