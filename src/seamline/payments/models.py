"""Payments (tenders) and refunds as Seamline records them; the PSP keeps the money.

Only provider tokens and references are stored — never a card number.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from seamline.db.base import Base, JSONDoc, Timestamped, one_of
from seamline.kit import clock

PAYMENT_STATUSES = (
    "pending",
    "authorized",
    "captured",
    "processing",
    "requires_action",
    "declined",
    "failed",
    "voided",
)


class Payment(Timestamped, Base):
    """One tender of a checkout (card, cash, card-present, later gift card and points)."""

    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    checkout_id: Mapped[str] = mapped_column(String(40), index=True)
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"), index=True)
    position: Mapped[int] = mapped_column(default=0)  # order of the tenders in the request
    provider: Mapped[str] = mapped_column(String(40))
    method: Mapped[str] = mapped_column(String(40))
    provider_reference: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int]
    captured: Mapped[int] = mapped_column(default=0)
    refunded: Mapped[int] = mapped_column(default=0)
    change_due: Mapped[int | None]
    decline_code: Mapped[str | None] = mapped_column(String(60))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)

    __table_args__ = (
        CheckConstraint(one_of("status", PAYMENT_STATUSES), name="status_known"),
        CheckConstraint(
            "amount > 0 AND captured BETWEEN 0 AND amount AND refunded BETWEEN 0 AND captured",
            name="amounts_sane",
        ),
        Index("ix_payments_reference", "provider", "provider_reference"),
    )


class Refund(Base):
    __tablename__ = "refunds"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    return_id: Mapped[str | None] = mapped_column(String(40))
    amount: Mapped[int]
    status: Mapped[str] = mapped_column(String(12))
    provider_reference: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)


class PaymentWebhookEvent(Base):
    """Provider webhook events already applied: a replay changes nothing."""

    __tablename__ = "payment_webhook_events"

    provider: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(60))
    received_at: Mapped[datetime] = mapped_column(default=clock.now)
