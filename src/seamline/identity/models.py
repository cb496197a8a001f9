"""Identity tables: profiles, their identifiers, the links between identifiers, merges, traits,
and the tracked events (Segment calls) stored on the profile they arrived on.

The reasoning behind this shape is in docs/identity.md ("How a cluster is stored").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from seamline.db.base import Base, JSONDoc, Timestamped

# Widths shared by the columns and the input checks that protect them.
ID_VALUE_MAX = 255
KIND_MAX = 80
NAME_MAX = 255


class Profile(Timestamped, Base):
    """The smallest unit that can be merged or unmerged; events and traits arrive on it.

    ``cluster_id`` names the cluster the profile belongs to now: the id of the cluster's
    canonical profile (itself when alone). It is derived bookkeeping, recomputed by
    resolution; the history of why lives in ``profile_merges``.
    """

    __tablename__ = "profiles"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(String(40), index=True)


class Identifier(Base):
    """One normalised identifier (``kind``, ``value``), unique across the system."""

    __tablename__ = "identifiers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(KIND_MAX))
    value: Mapped[str] = mapped_column(String(ID_VALUE_MAX))
    raw: Mapped[str] = mapped_column(Text)
    valid: Mapped[bool]
    # The profile the identifier arrived on; it never moves (clusters move, profiles do not).
    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), index=True)
    source_channel: Mapped[str | None] = mapped_column(String(40))
    source_key_id: Mapped[str | None] = mapped_column(String(40))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]

    __table_args__ = (UniqueConstraint("kind", "value"),)


class IdentityLink(Base):
    """Two identifiers seen in the same call: an edge of the identity graph.

    One row per pair keeps only the most recent observation (event time, then message id),
    which is all the resolution rule needs. ``decision`` says whether the rule used the
    edge (``linked``) or refused it because it would join two accounts (``refused``).
    """

    __tablename__ = "identity_links"

    identifier_a_id: Mapped[str] = mapped_column(ForeignKey("identifiers.id"), primary_key=True)
    identifier_b_id: Mapped[str] = mapped_column(
        ForeignKey("identifiers.id"), primary_key=True, index=True
    )
    observed_at: Mapped[datetime]
    message_id: Mapped[str] = mapped_column(String(ID_VALUE_MAX))
    decision: Mapped[str] = mapped_column(String(20), default="linked")

    __table_args__ = (
        CheckConstraint("identifier_a_id < identifier_b_id", name="ordered_pair"),
        CheckConstraint("decision IN ('linked', 'refused')", name="decision_known"),
    )


class ProfileMerge(Base):
    """A pointer joining ``profile_id`` to the cluster of ``into_profile_id``: who, when, why.

    Undoing a merge sets ``undone_at`` (the row is kept): resolution does it when a more recent
    account claims a shared identifier (``undone_reason = 'superseded'``), and unmerge does
    (``'unmerged'``, with who and why in ``evidence['unmerge']``; see merges.py).
    """

    __tablename__ = "profile_merges"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), index=True)
    into_profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), index=True)
    cluster_id: Mapped[str] = mapped_column(String(40))
    trigger: Mapped[str] = mapped_column(String(40))
    trigger_message_id: Mapped[str | None] = mapped_column(String(ID_VALUE_MAX))
    triggered_by: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(200))
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    undone_at: Mapped[datetime | None]
    undone_reason: Mapped[str | None] = mapped_column(String(40))


class ProfileTrait(Base):
    """One observed trait value with its source and time; history is kept, never overwritten."""

    __tablename__ = "profile_traits"

    # The profile leads the key so the table can be distributed by profile (Citus).
    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    value: Mapped[Any] = mapped_column(JSONDoc, nullable=True)
    source: Mapped[str] = mapped_column(String(80))
    observed_at: Mapped[datetime]
    event_id: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (Index("ix_profile_traits_profile_name", "profile_id", "name", "observed_at"),)


class TrackedEvent(Base):
    """A Segment call as received, on the profile it arrived on; never rewritten."""

    __tablename__ = "tracked_events"

    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    write_key_id: Mapped[str] = mapped_column(String(40))
    message_id: Mapped[str] = mapped_column(String(ID_VALUE_MAX))
    type: Mapped[str] = mapped_column(String(10))
    name: Mapped[str | None] = mapped_column(String(NAME_MAX))
    category: Mapped[str | None] = mapped_column(String(NAME_MAX))
    user_id: Mapped[str | None] = mapped_column(String(ID_VALUE_MAX))
    anonymous_id: Mapped[str | None] = mapped_column(String(ID_VALUE_MAX))
    group_id: Mapped[str | None] = mapped_column(String(ID_VALUE_MAX))
    previous_id: Mapped[str | None] = mapped_column(String(ID_VALUE_MAX))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Skew-corrected (see docs/identity.md); the three inputs are kept beside it.
    timestamp: Mapped[datetime]
    original_timestamp: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    received_at: Mapped[datetime]
    channel: Mapped[str | None] = mapped_column(String(40))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # messageId deduplication per write key, for as long as the event is kept.
        UniqueConstraint("write_key_id", "message_id"),
        CheckConstraint(
            "type IN ('track', 'identify', 'page', 'screen', 'group', 'alias')", name="type_known"
        ),
        Index("ix_tracked_events_profile_time", "profile_id", "timestamp"),
    )
