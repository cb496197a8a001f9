"""Storing Segment calls: deduplicate, correct the time, resolve identity, keep the event.

Each call lands on the profile of its primary identifier (``userId``, else ``anonymousId``)
and stays there: later merges move clusters, never events. Services never commit; the route's
transaction commits before the client gets its ``{"success": true}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seamline.db import bulk
from seamline.events import outbox
from seamline.identity import graph_writes, metrics, normalize, privacy, resolution
from seamline.identity.ingest_links import Links
from seamline.identity.models import (
    NAME_MAX,
    Identifier,
    Profile,
    ProfileTrait,
    TrackedEvent,
)
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
from seamline.kit import clock
from seamline.kit.ids import new_id


def _table(model: Any) -> Table:
    """The mapped class's table, typed for Core statements."""
    return cast(Table, model.__table__)


EVENT_TRACKED = "customer.event_tracked"
_CHUNK = 500


@dataclass
class IngestResult:
    stored: list[str] = field(default_factory=list)  # tracked event ids
    duplicates: int = 0
    resolved: int = 0  # calls whose links could change a cluster (resolved once, together)


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
    received_at: datetime | Sequence[datetime],
    rules: IdentityRules = DEFAULT_RULES,
) -> IngestResult:
    """Store valid calls once each (``messageId`` per write key), resolving identity as they
    come; a replayed call stores nothing and is still acknowledged.

    ``received_at`` is when the server received the calls: one time for all of them (a
    request), or one per call (the queued drain hands over several requests at once, each
    with its own); it feeds the clock-skew correction and is stored with the event.

    A batch is written in bulk — one duplicate check, one identifier lookup, one multi-row
    insert each for new identifiers, events, traits, links and outbox rows — and identity is
    resolved once for the batch, which gives the clusters per-call resolution would.
    """
    result = IngestResult()
    if isinstance(received_at, datetime):
        times: Sequence[datetime] = [received_at] * len(calls)
    else:
        times = received_at
        if len(times) != len(calls):
            raise ValueError("one received_at per call")
    prepared = _prepare(session, calls, key_id, times, rules, result)
    if not prepared:
        return result
    found = _ensure_identifiers(session, prepared, key_id)
    stored = _insert_events(session, prepared, found, key_id)
    kept = [p for p in prepared if p.event_id in stored]
    result.duplicates += len(prepared) - len(kept)
    _insert_traits(session, kept)
    links = Links(session, kept, found, rules)
    seen: dict[str, tuple[datetime, datetime]] = {}
    for p in kept:
        links.record(p)
        for value in p.values:
            ident_id = found[value.key][0]
            first, last = seen.get(ident_id, (p.timestamp, p.timestamp))
            seen[ident_id] = (min(first, p.timestamp), max(last, p.timestamp))
        result.stored.append(p.event_id)
    result.resolved = links.resolve(key_id)
    _emit_tracked(session, kept)
    graph_writes.touch_seen(session, seen)
    # The profiles' channel activity, counted with the calls (one upsert for the batch).
    metrics.touch_channels(
        session, [(p.profile_id, p.channel, p.timestamp.astimezone(UTC)) for p in kept if p.channel]
    )
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
    user = normalize.opaque(normalize.USER_ID, call.user_id)
    anonymous = normalize.opaque(normalize.ANONYMOUS_ID, call.anonymous_id)
    values = [user, anonymous]
    if isinstance(call, AliasCall):
        # Alias joins the id a visitor had before (an anonymous id) to the user id.
        values.append(normalize.opaque(normalize.ANONYMOUS_ID, call.previous_id))
    values += normalize.from_context(context)
    if traits:  # most calls carry none (no identifiers, and no phone to read in a region)
        region = normalize.region_of(context, traits) or rules.default_phone_region
        values += normalize.from_traits(traits, region=region)
    unique: dict[tuple[str, str], IdentifierValue] = {}
    for value in values:
        if value is not None:
            unique.setdefault(value.key, value)
    primary = user or anonymous
    if primary is None:  # unreachable after validation; kept for the type checker
        raise ValueError("a call needs userId or anonymousId")
    return primary, list(unique.values())


@dataclass
class _Prepared:
    """One call ready to store: its message id, corrected time, channel and identifiers."""

    incoming: Incoming
    message_id: str
    received_at: datetime
    timestamp: datetime
    channel: str | None
    primary: IdentifierValue
    values: list[IdentifierValue]
    event_id: str = field(default_factory=lambda: new_id("tev"))
    profile_id: str = ""
    name: str | None = None


def _stored_message_ids(session: Session, key_id: str, message_ids: Sequence[str]) -> set[str]:
    """The ``message_ids`` already stored for the write key: one probe of the unique index
    (write key, message id) per id (``bulk.by_key``). The plain ``write_key_id = … AND
    message_id = ANY(…)`` let PostgreSQL scan every event of the key and filter — with no
    statistics, or in a generic plan, the key looks like the selective column — which grew
    with the table (~150 ms per check at 20,000 events)."""
    wanted = sorted(set(message_ids))
    known: set[str] = set()
    key = (TrackedEvent.write_key_id, TrackedEvent.message_id)
    for start in range(0, len(wanted), _CHUNK):
        chunk = [(key_id, m) for m in wanted[start : start + _CHUNK]]
        known.update(session.scalars(bulk.by_key(session, (TrackedEvent.message_id,), key, chunk)))
    return known


def _prepare(
    session: Session,
    calls: Sequence[Incoming],
    key_id: str,
    received_at: Sequence[datetime],
    rules: IdentityRules,
    result: IngestResult,
) -> list[_Prepared]:
    """The calls not stored before (one query for the batch) nor repeated in the batch."""
    message_ids = [incoming.call.message_id or new_id("msg") for incoming in calls]
    known = _stored_message_ids(session, key_id, message_ids)
    candidates: list[_Prepared] = []
    checks: list[tuple[IdentifierValue, list[IdentifierValue]]] = []
    for incoming, message_id, received in zip(calls, message_ids, received_at, strict=True):
        if message_id in known:
            result.duplicates += 1
            continue
        known.add(message_id)
        call = incoming.call
        timestamp = corrected_timestamp(call.timestamp, incoming.sent_at, received)
        primary, values = _identifiers(call, rules)
        candidates.append(
            _Prepared(incoming, message_id, received, timestamp, _channel(call), primary, values)
        )
        checks.append((primary, values + _suppression_only(call)))
    # An erased person: nothing is stored (one lookup for the whole batch).
    verdicts = privacy.suppressed_calls(session, checks)
    prepared = [p for p, dropped in zip(candidates, verdicts, strict=True) if not dropped]
    result.duplicates += len(candidates) - len(prepared)
    return prepared


def _suppression_only(call: Call) -> list[IdentifierValue]:
    """Identifiers checked against erasures but not stored: an alias's ``previousId`` is stored
    as an anonymous id (a device kind, which does not suppress), yet it is often the user id
    the person had before — an erased one must not come back through an alias."""
    if isinstance(call, AliasCall):
        previous = normalize.opaque(normalize.USER_ID, call.previous_id)
        if previous is not None:
            return [previous]
    return []


# (identifier id, profile id) by (kind, value)
Found = dict[tuple[str, str], tuple[str, str]]


def _lookup(session: Session, keys: Sequence[tuple[str, str]]) -> Found:
    wanted = sorted(set(keys))
    found: Found = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = session.execute(
            bulk.by_key(
                session,
                (Identifier.kind, Identifier.value, Identifier.id, Identifier.profile_id),
                (Identifier.kind, Identifier.value),
                chunk,
            )
        )
        found.update({(r[0], r[1]): (r[2], r[3]) for r in rows})
    return found


def _ensure_identifiers(session: Session, prepared: Sequence[_Prepared], key_id: str) -> Found:
    """Every identifier of the batch, creating the missing ones (under the graph lock), each on
    a new profile of its own, first seen in the first call that carries it."""
    keys = [v.key for p in prepared for v in p.values]
    found = _lookup(session, keys)
    if all(key in found for key in keys):
        return found
    resolution.lock_graph(session)
    # Under the lock, only the missing ones are looked up again (another transaction may
    # have created them since): an identifier never moves to another profile, so the ones
    # found stand, exactly as when none is missing and no lock is taken at all.
    found.update(_lookup(session, [key for key in keys if key not in found]))
    now = clock.now()
    profiles: list[dict[str, Any]] = []
    identifiers: list[dict[str, Any]] = []
    for p in prepared:
        for value in p.values:
            if value.key in found:
                continue
            profile_id, ident_id = new_id("prf"), new_id("idn")
            found[value.key] = (ident_id, profile_id)
            profiles.append(
                {"id": profile_id, "cluster_id": profile_id, "created_at": now, "updated_at": now}
            )
            identifiers.append(
                {
                    "id": ident_id,
                    "kind": value.kind,
                    "value": value.value,
                    "raw": value.raw,
                    "valid": value.valid,
                    "profile_id": profile_id,
                    "source_channel": p.channel,
                    "source_key_id": key_id,
                    "first_seen": p.timestamp,
                    "last_seen": p.timestamp,
                }
            )
    bulk.copy_rows(session, _table(Profile), profiles)
    bulk.copy_rows(session, _table(Identifier), identifiers)
    return found


def _insert_events(
    session: Session,
    prepared: Sequence[_Prepared],
    found: Found,
    key_id: str,
) -> set[str]:
    """One multi-row insert; returns the ids stored (a concurrent delivery of the same message
    may have stored it first: the unique index decides)."""
    rows = []
    for p in prepared:
        p.profile_id = found[p.primary.key][1]
        row = _event_row(
            p.incoming.call, p.incoming, p.event_id, p.profile_id, key_id, p.message_id, p.timestamp
        )
        row["received_at"] = p.received_at
        p.name = row["name"]
        rows.append(row)
    table = _table(TrackedEvent)
    if bulk.is_postgres(session):
        # COPY, in a savepoint: a concurrent delivery of one of these messages (it passed the
        # duplicate check too) makes it fail on the unique index, and the insert below decides.
        try:
            with session.begin_nested():
                bulk.copy_rows(session, table, rows)
        except IntegrityError:
            pass
        else:
            return {row["id"] for row in rows}
    module: Any = postgresql if bulk.is_postgres(session) else sqlite
    stmt = (
        module.insert(table)
        .on_conflict_do_nothing(index_elements=["write_key_id", "message_id"])
        .returning(table.c.id)
    )
    stored: set[str] = set()
    for start in range(0, len(rows), _CHUNK):
        stored.update(session.execute(stmt, rows[start : start + _CHUNK]).scalars())
    return stored


def _insert_traits(session: Session, kept: Sequence[_Prepared]) -> None:
    rows = [
        {
            "profile_id": p.profile_id,
            "id": new_id("trt"),
            "name": name,
            "value": value,
            "source": f"segment:identify:{p.channel or 'unknown'}"[:80],
            "observed_at": p.timestamp,
            "event_id": p.event_id,
        }
        for p in kept
        if isinstance(p.incoming.call, IdentifyCall)
        for name, value in p.incoming.call.traits.items()
        if len(name) <= NAME_MAX
    ]
    bulk.copy_rows(session, _table(ProfileTrait), rows)


def _emit_tracked(session: Session, kept: Sequence[_Prepared]) -> None:
    """``customer.event_tracked`` for every stored call, in two multi-row inserts."""
    outbox.emit_many(
        session,
        [
            outbox.Pending(
                EVENT_TRACKED,
                "profile",
                p.profile_id,
                {
                    "event_id": p.event_id,
                    "message_id": p.message_id,
                    "type": p.incoming.call_type,
                    "name": p.name,
                    "profile_id": p.profile_id,
                    "timestamp": p.timestamp.isoformat(),
                    "channel": p.channel,
                },
            )
            for p in kept
        ],
    )


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
