"""Customer tables around the identity graph: consent, metrics, preferences, the domain-event
timeline, privacy requests and duplicate review decisions.

Every table that belongs to one person leads its primary key with ``profile_id`` (the future
distribution key, as in models.py). Rows are stored on a *profile*; reads combine the profiles
of the cluster, so merges and unmerges never rewrite them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from seamline.db.base import Base, JSONDoc

CONSENT_CHANNELS = ("email", "sms", "push", "whatsapp", "phone")
CONSENT_PURPOSES = ("marketing", "transactional")
CONSENT_STATES = ("granted", "denied")
CONSENT_LEVELS = ("single", "confirmed")


def _among(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ConsentChange(Base):
    """One change of consent, kept forever (the history). ``effective_at`` is when the person
    gave or withdrew it (may be earlier than ``recorded_at``, e.g. a paper form)."""

    __tablename__ = "consent_changes"

    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20))
    level: Mapped[str | None] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(80))
    effective_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    changed_by: Mapped[str | None] = mapped_column(String(80))
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        CheckConstraint(_among("channel", CONSENT_CHANNELS), name="channel_known"),
        CheckConstraint(_among("purpose", CONSENT_PURPOSES), name="purpose_known"),
        CheckConstraint(_among("state", CONSENT_STATES), name="state_known"),
        CheckConstraint(f"level IS NULL OR {_among('level', CONSENT_LEVELS)}", name="level_known"),
        # The history pages in recorded order (recorded_at strictly increases per cluster).
        Index("ix_consent_changes_profile_time", "profile_id", "recorded_at"),
    )


class Consent(Base):
    """The current consent of one profile for (channel, purpose): its latest change."""

    __tablename__ = "consents"

    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    level: Mapped[str | None] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(80))
    effective_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    change_id: Mapped[str] = mapped_column(String(40))


class CustomerOrder(Base):
    """One purchase attributed to a profile, from whichever source reported it first (a tracked
    ``Order Completed`` call, or the order domain). ``order_key`` deduplicates sources."""

    __tablename__ = "customer_orders"

    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), primary_key=True)
    order_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    source: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str | None] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    placed_at: Mapped[datetime]
    event_id: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (
        UniqueConstraint("order_key"),
        CheckConstraint("total_minor >= 0", name="total_not_negative"),
        CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= total_minor", name="refund_within_total"
        ),
    )


class ProfileMetric(Base):
    """Purchase metrics of one profile in one currency, kept up to date incrementally."""

    __tablename__ = "profile_metrics"

    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    orders_count: Mapped[int] = mapped_column(default=0)
    total_spent_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    first_purchase_at: Mapped[datetime | None]
    last_purchase_at: Mapped[datetime | None]


class ChannelActivity(Base):
    """When a profile was first and last seen on a channel, and how often."""

    __tablename__ = "channel_activity"

    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(40), primary_key=True)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    events_count: Mapped[int] = mapped_column(default=0)


class ProfilePreference(Base):
    """A preference set for the person (size, favourite store, preferred contact channel) or
    their assigned advisor; the latest setting across the cluster wins on read."""

    __tablename__ = "profile_preferences"

    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONDoc, nullable=True)
    set_at: Mapped[datetime]
    set_by: Mapped[str | None] = mapped_column(String(80))
    source: Mapped[str] = mapped_column(String(80))


class TimelineEntry(Base):
    """A domain event (cart, order, return, support, messaging …) on the profile it concerns."""

    __tablename__ = "timeline_entries"

    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(80))
    occurred_at: Mapped[datetime]
    channel: Mapped[str | None] = mapped_column(String(40))
    aggregate_type: Mapped[str] = mapped_column(String(40))
    aggregate_id: Mapped[str] = mapped_column(String(80))
    summary: Mapped[str] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        UniqueConstraint("event_id", "profile_id"),
        # The timeline's keyset order (time, id), so a page is an index range, not a sort.
        Index("ix_timeline_entries_profile_time", "profile_id", "occurred_at", "id"),
    )


class PrivacyRequest(Base):
    """An export or erase request: who asked, when, for which profiles, and what was done."""

    __tablename__ = "privacy_requests"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    profile_id: Mapped[str] = mapped_column(String(40), index=True)
    # The cluster when the request ran; an erased cluster keeps its id (no identifier is left
    # to re-resolve it), so "is this profile erased?" is one indexed lookup by cluster.
    cluster_id: Mapped[str] = mapped_column(String(40), index=True)
    profile_ids: Mapped[list[str]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(20))
    requested_by: Mapped[str | None] = mapped_column(String(80))
    reason: Mapped[str | None] = mapped_column(String(500))
    requested_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        CheckConstraint("kind IN ('export', 'erase')", name="kind_known"),
        CheckConstraint("status IN ('completed', 'failed')", name="status_known"),
    )


class ErasedIdentifier(Base):
    """A keyed hash of an erased identifier: a late event carrying it must not silently
    recreate the person. Only the hash is kept, never the value."""

    __tablename__ = "erased_identifiers"

    kind: Mapped[str] = mapped_column(String(80), primary_key=True)
    value_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(40))
    erased_at: Mapped[datetime]


class DuplicateDecision(Base):
    """A reviewer's decision on a suggested duplicate pair, so it is not suggested again.

    The pair is the two clusters' canonical profiles when the decision was made (ordered:
    a < b); it keeps holding whichever clusters those profiles belong to later (duplicates.py).
    ``merge_id`` is the staff merge a ``merged`` decision made."""

    __tablename__ = "duplicate_decisions"

    profile_a_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    profile_b_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    decision: Mapped[str] = mapped_column(String(20))
    score: Mapped[float | None]
    reason: Mapped[str | None] = mapped_column(String(500))
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_at: Mapped[datetime]
    merge_id: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (
        CheckConstraint("profile_a_id < profile_b_id", name="ordered_pair"),
        CheckConstraint("decision IN ('dismissed', 'merged')", name="decision_known"),
    )
