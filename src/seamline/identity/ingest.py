"""Storing Segment calls: deduplicate, correct the time, resolve identity, keep the event.

Each call lands on the profile of its primary identifier (``userId``, else ``anonymousId``)
and stays there: later merges move clusters, never events. Services never commit; the route's
transaction commits before the client gets its ``{"success": true}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.db.dialect import insert_ignoring_conflict
from seamline.events.outbox import emit
from seamline.identity import normalize, resolution
from seamline.identity.models import NAME_MAX, Identifier, ProfileTrait, TrackedEvent
from seamline.identity.normalize import IdentifierValue
from seamline.identity.rules import DEFAULT_RULES, IdentityRules
from seamline.identity.schemas import (
    AliasCall,
    Call,
    GroupCall,
    IdentifyCall,
    PageCall,
    ScreenCall,
    TrackCall,
)
from seamline.identity.wire import Incoming
from seamline.kit.ids import new_id

EVENT_TRACKED = "customer.event_tracked"


@dataclass
class IngestResult:
    stored: list[str] = field(default_factory=list)  # tracked event ids
    duplicates: int = 0


def corrected_timestamp(
    original: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Segment's clock-skew correction: ``receivedAt - (sentAt - timestamp)``.

    Without ``sentAt`` the device's ``timestamp`` is taken as is; without a timestamp, the
    time the server received the call. A correction out of the representable range keeps the
    device's time.
    """
    if original is None:
        return received_at
    if sent_at is None:
        return original
    try:
        return received_at - (sent_at - original)
    except OverflowError:
        return original


def record_calls(
    session: Session,
    calls: Sequence[Incoming],
    *,
    key_id: str,
    received_at: datetime,
    rules: IdentityRules = DEFAULT_RULES,
) -> IngestResult:
    """Store valid calls once each (``messageId`` per write key), resolving identity as they
    come; a replayed call stores nothing and is still acknowledged."""
    result = IngestResult()
    seen: dict[str, tuple[datetime, datetime]] = {}
    for incoming in calls:
        event_id = _record(session, incoming, key_id, received_at, rules, seen)
        if event_id is None:
            result.duplicates += 1
        else:
            result.stored.append(event_id)
    resolution.touch_seen(session, seen)
    return result


def _str(value: object, width: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= width else None


def _channel(call: Call) -> str | None:
    """``context.channel`` (Segment), else the top-level ``channel`` (RudderStack)."""
    return _str(call.context.get("channel"), 40) or _str(call.channel, 40)


def _identifiers(call: Call, rules: IdentityRules) -> tuple[IdentifierValue, list[IdentifierValue]]:
    """The call's primary identifier (the profile it lands on) and all its identifiers."""
    context = call.context
    context_traits = context.get("traits")
    traits: dict[str, Any] = dict(context_traits) if isinstance(context_traits, dict) else {}
    if isinstance(call, IdentifyCall):
        traits.update(call.traits)
    region = normalize.region_of(context, traits) or rules.default_phone_region
    user = normalize.opaque(normalize.USER_ID, call.user_id)
    anonymous = normalize.opaque(normalize.ANONYMOUS_ID, call.anonymous_id)
    values = [user, anonymous]
    if isinstance(call, AliasCall):
        # Alias joins the id a visitor had before (an anonymous id) to the user id.
        values.append(normalize.opaque(normalize.ANONYMOUS_ID, call.previous_id))
    values += normalize.from_context(context)
    values += normalize.from_traits(traits, region=region)
    unique: dict[tuple[str, str], IdentifierValue] = {}
    for value in values:
        if value is not None:
            unique.setdefault(value.key, value)
    primary = user or anonymous
    if primary is None:  # unreachable after validation; kept for the type checker
        raise ValueError("a call needs userId or anonymousId")
    return primary, list(unique.values())


def _record(
    session: Session,
    incoming: Incoming,
    key_id: str,
    received_at: datetime,
    rules: IdentityRules,
    seen: dict[str, tuple[datetime, datetime]],
) -> str | None:
    call = incoming.call
    message_id = call.message_id or new_id("msg")
    duplicate = select(TrackedEvent.id).where(
        TrackedEvent.write_key_id == key_id, TrackedEvent.message_id == message_id
    )
    if session.scalar(duplicate) is not None:
        return None
    timestamp = corrected_timestamp(call.timestamp, incoming.sent_at, received_at)
    channel = _channel(call)
    primary, values = _identifiers(call, rules)
    found = _ensure_identifiers(session, values, timestamp, channel, key_id)

    event_id = new_id("tev")
    profile_id = found[primary.key].profile_id
    row = _event_row(call, incoming, event_id, profile_id, key_id, message_id, timestamp)
    row["received_at"] = received_at
    if not insert_ignoring_conflict(session, TrackedEvent, row, on=("write_key_id", "message_id")):
        return None  # a concurrent delivery of the same message stored it first

    if isinstance(call, IdentifyCall):
        for name, value in call.traits.items():
            if len(name) <= NAME_MAX:
                session.add(
                    ProfileTrait(
                        profile_id=profile_id,
                        id=new_id("trt"),
                        name=name,
                        value=value,
                        source=f"segment:identify:{channel or 'unknown'}"[:80],
                        observed_at=timestamp,
                        event_id=event_id,
                    )
                )
    _link(session, values, found, (timestamp, message_id), incoming.call_type, key_id, rules)
    for value in values:
        ident_id = found[value.key].id
        first, last = seen.get(ident_id, (timestamp, timestamp))
        seen[ident_id] = (min(first, timestamp), max(last, timestamp))
    emit(
        session,
        EVENT_TRACKED,
        aggregate_type="profile",
        aggregate_id=profile_id,
        payload={
            "event_id": event_id,
            "message_id": message_id,
            "type": incoming.call_type,
            "name": row["name"],
            "profile_id": profile_id,
            "timestamp": timestamp.isoformat(),
            "channel": channel,
        },
    )
    return event_id


def _ensure_identifiers(
    session: Session,
    values: Sequence[IdentifierValue],
    seen_at: datetime,
    channel: str | None,
    key_id: str,
) -> dict[tuple[str, str], Identifier]:
    found = resolution.find_identifiers(session, (v.key for v in values))
    if all(v.key in found for v in values):
        return found
    resolution.lock_graph(session)
    found = resolution.find_identifiers(session, (v.key for v in values))
    for value in values:
        if value.key not in found:
            found[value.key] = resolution.create_identifier(
                session, value, seen_at=seen_at, channel=channel, key_id=key_id
            )
    return found


def _link(
    session: Session,
    values: Sequence[IdentifierValue],
    found: dict[tuple[str, str], Identifier],
    observed: tuple[datetime, str],
    call_type: str,
    key_id: str,
    rules: IdentityRules,
) -> None:
    """Record that the call's linking identifiers were seen together; re-resolve if that is
    news (a new pair, or a more recent observation of a known one)."""
    linking = sorted(
        (found[v.key] for v in values if v.valid and rules.links(v.kind)), key=lambda i: i.id
    )
    pairs = list(combinations(linking, 2))
    if not pairs or not resolution.stale_links(session, pairs, observed):
        return
    resolution.lock_graph(session)
    stale = resolution.stale_links(session, pairs, observed)
    if not stale:
        return
    resolution.record_links(session, stale, observed)
    trigger = resolution.Trigger(call_type, observed[1], key_id)
    resolution.resolve(session, [i.id for i in linking], trigger=trigger, rules=rules)


def _event_row(
    call: Call,
    incoming: Incoming,
    event_id: str,
    profile_id: str,
    key_id: str,
    message_id: str,
    timestamp: datetime,
) -> dict[str, Any]:
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    group_id = previous_id = None
    if isinstance(call, TrackCall):
        name, properties = call.event, call.properties
    elif isinstance(call, PageCall | ScreenCall):
        name, category, properties = call.name, call.category, call.properties
    elif isinstance(call, IdentifyCall):
        traits = call.traits
    elif isinstance(call, GroupCall):
        group_id, traits = str(call.group_id), call.traits
    elif isinstance(call, AliasCall):
        previous_id = str(call.previous_id)
    context = call.context
    user_agent = context.get("userAgent")
    return {
        "profile_id": profile_id,
        "id": event_id,
        "write_key_id": key_id,
        "message_id": message_id,
        "type": incoming.call_type,
        "name": name,
        "category": category,
        "user_id": None if call.user_id is None else str(call.user_id),
        "anonymous_id": None if call.anonymous_id is None else str(call.anonymous_id),
        "group_id": group_id,
        "previous_id": previous_id,
        "properties": properties,
        "traits": traits,
        "context": context,
        "timestamp": timestamp,
        "original_timestamp": call.timestamp,
        "sent_at": incoming.sent_at,
        "channel": _channel(call),
        "ip": _str(context.get("ip"), 64),
        "user_agent": user_agent if isinstance(user_agent, str) else None,
    }
