"""Tables of the event backbone: outbox, per-consumer deliveries, timers, webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from seamline.db.base import Base, BigIntPK, Timestamped
from seamline.kit import clock


def _where(condition: str) -> dict[str, Any]:
    """A partial index on both backends."""
    return {"sqlite_where": text(condition), "postgresql_where": text(condition)}


class OutboxEvent(Base):
    """A domain event, written in the same transaction as the change it describes. Immutable."""

    __tablename__ = "outbox_events"

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    aggregate_type: Mapped[str] = mapped_column(String(50))
    aggregate_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    __table_args__ = (
        Index("ix_outbox_events_aggregate", "aggregate_type", "aggregate_id", "seq"),
        Index("ix_outbox_events_type_created", "type", "created_at"),
    )


class Delivery(Base):
    """One event for one consumer (a handler, a webhook endpoint, the stream)."""

    __tablename__ = "event_deliveries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_seq: Mapped[int] = mapped_column(ForeignKey("outbox_events.seq", ondelete="CASCADE"))
    consumer: Mapped[str] = mapped_column(String(120))
    # "<aggregate_type>:<aggregate_id>", copied so the per-aggregate ordering check is one index.
    aggregate_key: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=clock.now)
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    done_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("event_seq", "consumer"),
        # Partial indexes: done rows pile up as history and must not slow the hot queries.
        Index("ix_event_deliveries_pending", "event_seq", **_where("status = 'pending'")),
        Index(
            "ix_event_deliveries_order",
            "consumer",
            "aggregate_key",
            "event_seq",
            **_where("status = 'pending'"),
        ),
        Index("ix_event_deliveries_dead", "id", **_where("status = 'dead'")),
    )


class Timer(Base):
    """A durable "later": fires once, at or after ``fire_at``, with its effect exactly once."""

    __tablename__ = "timers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    fire_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    fired_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_timers_due", "fire_at", **_where("status = 'pending'")),)


class WebhookEndpoint(Timestamped, Base):
    """A receiver of signed event deliveries."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(500), default="")
    event_types: Mapped[list[str]]
    secret_encrypted: Mapped[str] = mapped_column(Text)
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(12), default="enabled")
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    disabled_at: Mapped[datetime | None]


class WebhookAttempt(Base):
    """Every HTTP attempt to deliver an event to an endpoint, kept for the API and operators."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(100))
    attempt: Mapped[int]
    ok: Mapped[bool]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(500))
    response_excerpt: Mapped[str | None] = mapped_column(String(1000))
    duration_ms: Mapped[int]
    attempted_at: Mapped[datetime] = mapped_column(default=clock.now)
    next_retry_at: Mapped[datetime | None]
