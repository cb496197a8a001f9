"""Checkouts, orders, their lines, fulfilment groups, history, and returns.

An order copies what the customer agreed to (names, SKUs, unit prices, discounts, tax) so later
catalogue changes never rewrite it. Money is integer minor units in the order's currency.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from seamline.db.base import Base, BigIntPK, JSONDoc, Timestamped, one_of
from seamline.kit import clock

CHECKOUT_STATUSES = ("reserving", "paying", "completed", "failed")
ORDER_STATUSES = (
    "placed",
    "paid",
    "partially_fulfilled",
    "fulfilled",
    "completed",
    "cancelled",
)
PAYMENT_STATES = ("unpaid", "pending", "paid", "partially_refunded", "refunded")
GROUP_KINDS = ("ship", "pickup")
GROUP_STATUSES = (
    "pending",
    "ready_for_pickup",
    "picked_up",
    "shipped",
    "delivered",
    "expired",
    "cancelled",
)
RETURN_STATUSES = ("requested", "received", "refunded", "cancelled")
DISPOSITIONS = ("restock", "write_off")


class Checkout(Timestamped, Base):
    """One attempt to turn a cart into an order: reserve → pay → commit, across transactions.

    The row is what lets a retry (same idempotency key) return the same order, and what the
    worker's sweep uses (``expires_at``, while ``paying``) to release the stock and void the
    payments of an attempt whose process died.
    """

    __tablename__ = "checkouts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    cart_id: Mapped[str] = mapped_column(ForeignKey("carts.id"), index=True)
    key_id: Mapped[str] = mapped_column(String(40))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="reserving")
    channel_id: Mapped[str] = mapped_column(String(40))
    location_id: Mapped[str | None] = mapped_column(String(40))
    quote: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tenders: Mapped[list[Any]] = mapped_column(JSONDoc, default=list)
    reservation_ids: Mapped[list[str]] = mapped_column(default=list)
    order_id: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, nullable=True)
    # When a checkout still ``paying`` is given up (its holds' window and a minute more).
    expires_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(one_of("status", CHECKOUT_STATUSES), name="status_known"),
        Index("uq_checkouts_key", "key_id", "idempotency_key", unique=True),
        # Only the checkouts in flight: the sweep's index stays as small as they are few.
        Index(
            "ix_checkouts_paying_expires_at",
            "expires_at",
            postgresql_where=text("status = 'paying'"),
            sqlite_where=text("status = 'paying'"),
        ),
    )


class Order(Timestamped, Base):
    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    number: Mapped[int] = mapped_column(unique=True)
    checkout_id: Mapped[str] = mapped_column(String(40), unique=True)
    cart_id: Mapped[str | None] = mapped_column(String(40))
    profile_id: Mapped[str | None] = mapped_column(ForeignKey("profiles.id"), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"))
    # The store where it was placed (a till, an endless-aisle sale), if any.
    location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"))
    placed_by: Mapped[str | None] = mapped_column(String(40))  # API key id
    status: Mapped[str] = mapped_column(String(24), default="placed")
    payment_state: Mapped[str] = mapped_column(String(24), default="unpaid")
    currency: Mapped[str] = mapped_column(String(3))
    prices_include_tax: Mapped[bool] = mapped_column(default=False)
    subtotal: Mapped[int]
    discount_total: Mapped[int]
    shipping_total: Mapped[int]
    tax_total: Mapped[int]
    total: Mapped[int]
    paid_total: Mapped[int] = mapped_column(default=0)
    refunded_total: Mapped[int] = mapped_column(default=0)
    shipping_address: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, nullable=True)
    codes: Mapped[list[str]] = mapped_column(default=list)
    promotions: Mapped[list[Any]] = mapped_column(JSONDoc, default=list)
    cancelled_reason: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (
        CheckConstraint(one_of("status", ORDER_STATUSES), name="status_known"),
        CheckConstraint(one_of("payment_state", PAYMENT_STATES), name="payment_state_known"),
        CheckConstraint("total >= 0 AND refunded_total <= paid_total", name="money_sane"),
    )


class FulfilmentGroup(Timestamped, Base):
    """Lines that leave one location one way: shipped (from a warehouse or a store) or picked
    up at a store (verified by a pick-up code)."""

    __tablename__ = "fulfilment_groups"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    shipping_rate_id: Mapped[str | None] = mapped_column(String(40))
    shipping: Mapped[int] = mapped_column(default=0)
    routing_reason: Mapped[str] = mapped_column(String(500), default="")
    pickup_code: Mapped[str | None] = mapped_column(String(7))
    pickup_expires_at: Mapped[datetime | None]
    carrier: Mapped[str | None] = mapped_column(String(60))
    tracking_number: Mapped[str | None] = mapped_column(String(100), index=True)
    carrier_status: Mapped[str | None] = mapped_column(String(60))

    __table_args__ = (
        CheckConstraint(one_of("kind", GROUP_KINDS), name="kind_known"),
        CheckConstraint(one_of("status", GROUP_STATUSES), name="status_known"),
    )


class OrderLine(Base):
    __tablename__ = "order_lines"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("fulfilment_groups.id"))
    variant_id: Mapped[str] = mapped_column(ForeignKey("variants.id"))
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int]
    unit_price: Mapped[int]
    subtotal: Mapped[int]
    discount: Mapped[int]
    tax: Mapped[int]
    total: Mapped[int]
    quantity_fulfilled: Mapped[int] = mapped_column(default=0)
    quantity_returned: Mapped[int] = mapped_column(default=0)
    reservation_id: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (
        CheckConstraint(
            "quantity > 0 AND quantity_fulfilled BETWEEN 0 AND quantity "
            "AND quantity_returned BETWEEN 0 AND quantity",
            name="quantities_sane",
        ),
    )


class OrderHistory(Base):
    """Everything that happened to an order, in order: status changes, payments, fulfilment,
    carrier updates, returns — what the console's fulfilment timeline shows."""

    __tablename__ = "order_history"

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str | None] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(default=clock.now)


class Return(Timestamped, Base):
    __tablename__ = "returns"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    channel_id: Mapped[str | None] = mapped_column(String(40))
    # The store receiving it; None for a return by mail (received at a warehouse later).
    location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"))
    status: Mapped[str] = mapped_column(String(12), default="requested")
    refund_total: Mapped[int] = mapped_column(default=0)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (CheckConstraint(one_of("status", RETURN_STATUSES), name="status_known"),)


class ReturnLine(Base):
    __tablename__ = "return_lines"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    return_id: Mapped[str] = mapped_column(ForeignKey("returns.id"), index=True)
    order_line_id: Mapped[str] = mapped_column(ForeignKey("order_lines.id"))
    quantity: Mapped[int]
    reason: Mapped[str] = mapped_column(String(40))
    disposition: Mapped[str | None] = mapped_column(String(12))
    refund: Mapped[int] = mapped_column(default=0)
    # An exchange: the variant sent instead (priced and settled on the return).
    exchange_variant_id: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "disposition IS NULL OR " + one_of("disposition", DISPOSITIONS),
            name="disposition_known",
        ),
    )
