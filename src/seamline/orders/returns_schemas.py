"""Return and exchange input and output (rules in ``returns.py``, explained in docs/returns.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from seamline.kit.schemas import JSON_TEXT_PATTERN
from seamline.orders.schemas import PaymentOut, TenderIn

ID_PATTERN = r"^[a-z]{2,5}_[a-z0-9]{1,34}$"
Id = Annotated[str, Field(min_length=4, max_length=40, pattern=ID_PATTERN)]

# Why the customer brings it back (a documented, closed vocabulary).
RETURN_REASONS = (
    "damaged",
    "wrong_item",
    "not_as_described",
    "changed_mind",
    "too_small",
    "too_large",
    "other",
)
Reason = Literal[
    "damaged",
    "wrong_item",
    "not_as_described",
    "changed_mind",
    "too_small",
    "too_large",
    "other",
]
Disposition = Literal["restock", "write_off"]


class ReturnLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    order_line_id: Id
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    reason: Reason
    exchange_variant_id: Id | None = Field(
        default=None,
        description="Exchange: this variant is handed over instead of a refund when the return "
        "is received (the price difference is settled then).",
    )


class ReturnCreate(BaseModel):
    """Ask to return lines of an order. ``location_id`` is the store that receives it; leave
    it out for a return by mail (received later at a location named on receipt)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    lines: Annotated[list[ReturnLineIn], Field(min_length=1, max_length=100)]
    location_id: Id | None = None
    channel_id: Id | None = Field(
        default=None,
        description="Where the return was asked for; defaults to the receiving store's channel.",
    )
    note: Annotated[str, Field(max_length=2000, pattern=JSON_TEXT_PATTERN)] = ""


class ReceiveLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    return_line_id: Id
    disposition: Disposition


class ReturnReceive(BaseModel):
    """The return arrived and was inspected: one disposition per return line, then it is
    settled (refund, and for exchanges the replacement handed over and any difference)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    lines: Annotated[list[ReceiveLineIn], Field(min_length=1, max_length=100)]
    location_id: Id | None = Field(
        default=None,
        description="Where it is received: required for a return by mail; for a store return "
        "it may only repeat the return's store.",
    )
    refund_shipping: bool = Field(
        default=False, description="Also refund the order's shipping charge (once per order)."
    )
    tenders: Annotated[list[TenderIn], Field(max_length=10)] = Field(
        default_factory=list,
        description="How the customer pays the difference when an exchange costs more than "
        "the returned items' credit; must cover it exactly.",
    )


class ReturnLineOut(BaseModel):
    id: str
    order_line_id: str
    variant_id: str
    sku: str
    quantity: int
    reason: str
    disposition: str | None
    refund: int = Field(
        description="Settled for this line, minor units: the returned units' paid amount minus "
        "the exchange price; negative when the customer paid the difference."
    )
    exchange_variant_id: str | None


class RefundOut(BaseModel):
    id: str
    payment_id: str
    amount: int
    status: str
    created_at: datetime


class ReturnOut(BaseModel):
    id: str
    order_id: str
    status: str
    channel_id: str | None
    location_id: str | None = Field(
        description="The receiving location (null: by mail, not received yet)."
    )
    currency: str
    refund_total: int
    shipping_refund: int
    exchange_paid: int
    note: str
    created_by: str | None
    lines: list[ReturnLineOut]
    refunds: list[RefundOut]
    payments: list[PaymentOut] = Field(description="Tenders taken for exchange differences.")
    created_at: datetime
    updated_at: datetime


class ReturnList(BaseModel):
    data: list[ReturnOut]
    next_cursor: str | None = None
