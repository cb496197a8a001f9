"""The customer 360 read: a cluster's profiles, identifiers, resolved traits and timeline.

A cluster is read from the profile the caller names: ``profiles`` by ``cluster_id``, then every
child table by ``profile_id IN (…)``. Nothing is denormalised; see docs/identity.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from seamline.db.lookup import get_or_404
from seamline.identity.models import Identifier, Profile, ProfileTrait, TrackedEvent
from seamline.kit.errors import BadRequest
from seamline.kit.pagination import MAX_LIMIT

LATEST_EVENTS = 20
# How a trait's current value is chosen from its history (docs/identity.md, "Traits").
LATEST, FIRST = "latest", "first"
TRAIT_STRATEGIES: dict[str, str] = {"created_at": FIRST, "createdAt": FIRST}


def get_profile(session: Session, profile_id: str) -> Profile:
    return get_or_404(session, Profile, profile_id, what="profile", code="profile_not_found")


def cluster_members(session: Session, cluster_id: str) -> list[str]:
    return list(
        session.scalars(
            select(Profile.id).where(Profile.cluster_id == cluster_id).order_by(Profile.id)
        )
    )


def resolve_traits(
    rows: Sequence[ProfileTrait], strategies: dict[str, str] = TRAIT_STRATEGIES
) -> dict[str, dict[str, Any]]:
    """Each trait's current value: the most recent observation by event time (``latest``), or
    the earliest (``first``); ties go to the observation stored last (its id)."""
    chosen: dict[str, ProfileTrait] = {}
    for row in rows:
        held = chosen.get(row.name)
        if held is None:
            chosen[row.name] = row
            continue
        if strategies.get(row.name, LATEST) == FIRST:
            better = (row.observed_at, held.id) < (held.observed_at, row.id)
        else:
            better = (row.observed_at, row.id) > (held.observed_at, held.id)
        if better:
            chosen[row.name] = row
    return {
        name: {
            "value": row.value,
            "observed_at": row.observed_at,
            "source": row.source,
            "profile_id": row.profile_id,
            "strategy": strategies.get(name, LATEST),
        }
        for name, row in sorted(chosen.items())
    }


def _event(row: TrackedEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "profile_id": row.profile_id,
        "message_id": row.message_id,
        "type": row.type,
        "name": row.name,
        "category": row.category,
        "channel": row.channel,
        "timestamp": row.timestamp,
        "received_at": row.received_at,
        "properties": row.properties,
        "traits": row.traits,
    }


def _encode(row: TrackedEvent) -> str:
    micros = int(row.timestamp.timestamp() * 1_000_000)
    return f"{micros}_{row.id}"


def _decode(cursor: str) -> tuple[datetime, str]:
    micros, _, event_id = cursor.partition("_")
    try:
        stamp = datetime.fromtimestamp(int(micros) / 1_000_000, UTC)
    except (ValueError, OverflowError, OSError):
        raise BadRequest("the cursor is not one this API gave", code="invalid_cursor") from None
    if not event_id:
        raise BadRequest("the cursor is not one this API gave", code="invalid_cursor")
    return stamp, event_id


def timeline(
    session: Session,
    members: Sequence[str],
    *,
    cursor: str | None = None,
    limit: int = LATEST_EVENTS,
    type_: str | None = None,
    channel: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The cluster's tracked events, newest first by (event time, id).

    A keyset over two columns (``keyset_page`` takes one): the cursor is the last row's
    event time in microseconds and its id.
    """
    limit = max(1, min(limit, MAX_LIMIT))
    stmt = select(TrackedEvent).where(TrackedEvent.profile_id.in_(members))
    if type_ is not None:
        stmt = stmt.where(TrackedEvent.type == type_)
    if channel is not None:
        stmt = stmt.where(TrackedEvent.channel == channel)
    if cursor is not None:
        stamp, event_id = _decode(cursor)
        stmt = stmt.where(
            or_(
                TrackedEvent.timestamp < stamp,
                and_(TrackedEvent.timestamp == stamp, TrackedEvent.id < event_id),
            )
        )
    stmt = stmt.order_by(TrackedEvent.timestamp.desc(), TrackedEvent.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    next_cursor = _encode(rows[limit - 1]) if len(rows) > limit else None
    return [_event(r) for r in rows[:limit]], next_cursor


def customer_360(session: Session, profile_id: str) -> dict[str, Any]:
    """The whole cluster of ``profile_id``: members, identifiers, traits, latest events."""
    profile = get_profile(session, profile_id)
    members = cluster_members(session, profile.cluster_id)
    identifiers = session.scalars(
        select(Identifier)
        .where(Identifier.profile_id.in_(members))
        .order_by(Identifier.kind, Identifier.value)
    )
    traits = list(session.scalars(select(ProfileTrait).where(ProfileTrait.profile_id.in_(members))))
    events, _ = timeline(session, members, limit=LATEST_EVENTS)
    return {
        "profile_id": profile.id,
        "cluster_id": profile.cluster_id,
        "profile_ids": members,
        "identifiers": [
            {
                "kind": i.kind,
                "value": i.value,
                "valid": i.valid,
                "profile_id": i.profile_id,
                "source_channel": i.source_channel,
                "first_seen": i.first_seen,
                "last_seen": i.last_seen,
            }
            for i in identifiers
        ],
        "traits": resolve_traits(traits),
        "events": events,
    }
