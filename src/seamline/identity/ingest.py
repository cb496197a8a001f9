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
from typing import Any, cast

from sqlalchemy import Table, insert, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from seamline.db.engine import EMITTED
from seamline.events.models import Delivery, OutboxEvent
from seamline.events.outbox import STREAM_CONSUMER, STREAM_ENABLED
from seamline.events.registry import consumers_for
from seamline.identity import normalize, privacy, resolution
from seamline.identity.models import (
    NAME_MAX,
    Identifier,
    IdentityLink,
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
    come; a replayed call stores nothing and is still acknowledged.

    A batch is written in bulk — one duplicate check, one identifier lookup, one multi-row
    insert each for new identifiers, events, traits and outbox rows — while identity is still
    resolved call by call in batch order, so the result is the one per-call storage gives.
    """
    result = IngestResult()
    prepared = _prepare(session, calls, key_id, received_at, rules, result)
    if not prepared:
        return result
    found = _ensure_identifiers(session, prepared, key_id)
    stored = _insert_events(session, prepared, found, key_id, received_at)
    kept = [p for p in prepared if p.event_id in stored]
    result.duplicates += len(prepared) - len(kept)
    _insert_traits(session, kept)
    links = _Links(session, kept, found, rules)
    seen: dict[str, tuple[datetime, datetime]] = {}
    for p in kept:
        links.record(p, key_id)
        for value in p.values:
            ident_id = found[value.key][0]
            first, last = seen.get(ident_id, (p.timestamp, p.timestamp))
            seen[ident_id] = (min(first, p.timestamp), max(last, p.timestamp))
        result.stored.append(p.event_id)
    links.flush()
    _emit_tracked(session, kept)
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


@dataclass
class _Prepared:
    """One call ready to store: its message id, corrected time, channel and identifiers."""

    incoming: Incoming
    message_id: str
    timestamp: datetime
    channel: str | None
    primary: IdentifierValue
    values: list[IdentifierValue]
    event_id: str = field(default_factory=lambda: new_id("tev"))
    profile_id: str = ""
    name: str | None = None


def _prepare(
    session: Session,
    calls: Sequence[Incoming],
    key_id: str,
    received_at: datetime,
    rules: IdentityRules,
    result: IngestResult,
) -> list[_Prepared]:
    """The calls not stored before (one query for the batch) nor repeated in the batch."""
    message_ids = [incoming.call.message_id or new_id("msg") for incoming in calls]
    known: set[str] = set()
    wanted = sorted(set(message_ids))
    for start in range(0, len(wanted), _CHUNK):
        known.update(
            session.scalars(
                select(TrackedEvent.message_id).where(
                    TrackedEvent.write_key_id == key_id,
                    TrackedEvent.message_id.in_(wanted[start : start + _CHUNK]),
                )
            )
        )
    candidates: list[_Prepared] = []
    checks: list[tuple[IdentifierValue, list[IdentifierValue]]] = []
    for incoming, message_id in zip(calls, message_ids, strict=True):
        if message_id in known:
            result.duplicates += 1
            continue
        known.add(message_id)
        call = incoming.call
        timestamp = corrected_timestamp(call.timestamp, incoming.sent_at, received_at)
        primary, values = _identifiers(call, rules)
        candidates.append(
            _Prepared(incoming, message_id, timestamp, _channel(call), primary, values)
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
            select(Identifier.kind, Identifier.value, Identifier.id, Identifier.profile_id).where(
                tuple_(Identifier.kind, Identifier.value).in_(chunk)
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
    found = _lookup(session, keys)
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
    session.flush()
    session.execute(insert(_table(Profile)), profiles)
    session.execute(insert(_table(Identifier)), identifiers)
    return found


def _insert_events(
    session: Session,
    prepared: Sequence[_Prepared],
    found: Found,
    key_id: str,
    received_at: datetime,
) -> set[str]:
    """One multi-row insert; returns the ids stored (a concurrent delivery of the same message
    may have stored it first: the unique index decides)."""
    rows = []
    for p in prepared:
        p.profile_id = found[p.primary.key][1]
        row = _event_row(
            p.incoming.call, p.incoming, p.event_id, p.profile_id, key_id, p.message_id, p.timestamp
        )
        row["received_at"] = received_at
        p.name = row["name"]
        rows.append(row)
    table = _table(TrackedEvent)
    module: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
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
    if rows:
        session.execute(insert(_table(ProfileTrait)), rows)


class _Links:
    """The batch's co-occurrence pairs, checked against the stored links in one query; a call
    only re-resolves when it brings a new pair or a more recent observation of one that can
    change a cluster.

    Newer observations are written in bulk: stored links are updated on their ORM rows (one
    flush) and new ones are kept until ``flush`` inserts them in one statement — before any
    resolution reads the graph, and at the end of the batch. Clusters are read once per batch
    (again after a resolution), so the settled check costs no query per call.
    """

    def __init__(
        self, session: Session, kept: Sequence[_Prepared], found: Found, rules: IdentityRules
    ) -> None:
        self.session, self.found, self.rules = session, found, rules
        self.pairs: dict[str, list[tuple[str, str]]] = {}
        for p in kept:
            linking = sorted({found[v.key][0] for v in p.values if v.valid and rules.links(v.kind)})
            if len(linking) > 1:
                self.pairs[p.event_id] = list(combinations(linking, 2))
        self.rows: dict[tuple[str, str], IdentityLink] = {}
        self.known = self._load(self._all_pairs())
        self.locked = False
        self.settled: dict[str, bool] = {}
        self.new: dict[tuple[str, str], tuple[datetime, str]] = {}  # not inserted yet
        self.inserted: set[tuple[str, str]] = set()  # inserted by this batch
        self.clusters: dict[str, str] | None = None  # identifier id -> cluster id

    def _all_pairs(self) -> list[tuple[str, str]]:
        return sorted({pair for pairs in self.pairs.values() for pair in pairs})

    def _load(
        self, pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[datetime, str]]:
        known: dict[tuple[str, str], tuple[datetime, str]] = {}
        self.rows = {}
        for start in range(0, len(pairs), _CHUNK):
            # ORM objects, kept so a newer observation updates them without a query.
            rows = self.session.scalars(
                select(IdentityLink)
                .where(
                    tuple_(IdentityLink.identifier_a_id, IdentityLink.identifier_b_id).in_(
                        pairs[start : start + _CHUNK]
                    )
                )
                .execution_options(populate_existing=True)
            )
            for r in rows:
                pair = (r.identifier_a_id, r.identifier_b_id)
                known[pair] = (r.observed_at, r.message_id)
                self.rows[pair] = r
        return known

    def _stale(
        self, pairs: Sequence[tuple[str, str]], observed: tuple[datetime, str]
    ) -> list[tuple[str, str]]:
        return [pair for pair in pairs if pair not in self.known or self.known[pair] < observed]

    def record(self, p: _Prepared, key_id: str) -> None:
        pairs = self.pairs.get(p.event_id)
        if not pairs:
            return
        observed = (p.timestamp, p.message_id)
        if not self._stale(pairs, observed):
            return
        if not self.locked:
            # Under the lock, the stored links are re-read: another transaction may have moved them.
            resolution.lock_graph(self.session)
            self.locked = True
            self.known = self._load(self._all_pairs())
            stale = self._stale(pairs, observed)
            if not stale:
                return
        else:
            stale = self._stale(pairs, observed)
        self._observe(stale, observed)
        linking = sorted({a for pair in pairs for a in pair})
        if self._settled(linking):
            return
        self.flush()  # resolution reads the links from the database
        self.settled.clear()  # clusters may change below
        self.clusters = None
        trigger = resolution.Trigger(p.incoming.call_type, p.message_id, key_id)
        resolution.resolve(self.session, linking, trigger=trigger, rules=self.rules)

    def _observe(self, stale: Sequence[tuple[str, str]], observed: tuple[datetime, str]) -> None:
        """``resolution.record_links`` for these pairs, deferred: what it stores, in bulk."""
        for pair in stale:
            self.known[pair] = observed
            if pair in self.new:
                self.new[pair] = max(self.new[pair], observed)
                continue
            link = self.rows.get(pair)
            if link is None and pair in self.inserted:
                link = self.session.get(IdentityLink, pair)
                if link is not None:
                    self.rows[pair] = link
            if link is None:
                self.new[pair] = observed
            elif (link.observed_at, link.message_id) < observed:
                link.observed_at, link.message_id = observed

    def flush(self) -> None:
        """Insert the new links in one statement (and flush the updated ones)."""
        if self.new:
            rows = [
                {
                    "identifier_a_id": a,
                    "identifier_b_id": b,
                    "observed_at": observed_at,
                    "message_id": message_id,
                    "decision": "linked",
                }
                for (a, b), (observed_at, message_id) in sorted(self.new.items())
            ]
            self.session.flush()
            self.session.execute(insert(_table(IdentityLink)), rows)
            self.inserted.update(self.new)
            self.new = {}
        self.session.flush()

    def _settled(self, identifier_ids: Sequence[str]) -> bool:
        """Whether re-resolving around these identifiers can change nothing: they are all in
        one cluster, and no refused (or blocked) link touches it.

        Then their component is that cluster and holds at most one value of each unique kind,
        so the rule accepts (or skips) every edge in any order — a new or more recent
        observation inside it moves no profile, refuses no link and adds no merge. The answer
        is kept per cluster until a resolution runs.
        """
        if self.clusters is None:
            ids = sorted({a for pair in self._all_pairs() for a in pair})
            self.clusters = {}
            for start in range(0, len(ids), _CHUNK):
                rows = self.session.execute(
                    select(Identifier.id, Profile.cluster_id)
                    .join(Profile, Profile.id == Identifier.profile_id)
                    .where(Identifier.id.in_(ids[start : start + _CHUNK]))
                )
                self.clusters.update((row[0], row[1]) for row in rows)
        clusters = {self.clusters.get(i) for i in identifier_ids}
        if len(clusters) != 1:
            return False
        cluster = clusters.pop()
        if cluster is None:
            return False
        if cluster not in self.settled:
            self.settled[cluster] = _unrefused(self.session, cluster)
        return self.settled[cluster]


def _unrefused(session: Session, cluster: str) -> bool:
    """Whether no refused link touches a member of the cluster."""
    members = (
        select(Identifier.id)
        .join(Profile, Profile.id == Identifier.profile_id)
        .where(Profile.cluster_id == cluster)
    )
    refused = session.scalar(
        select(IdentityLink.identifier_a_id)
        .where(
            IdentityLink.decision == "refused",
            or_(
                IdentityLink.identifier_a_id.in_(members),
                IdentityLink.identifier_b_id.in_(members),
            ),
        )
        .limit(1)
    )
    return refused is None


def _emit_tracked(session: Session, kept: Sequence[_Prepared]) -> None:
    """``customer.event_tracked`` for every stored call, as ``outbox.emit`` writes it, in two
    multi-row inserts (the events, then their deliveries) instead of two per call."""
    if not kept:
        return
    now = clock.now()
    events = _table(OutboxEvent)
    rows = [
        {
            "id": new_id("evt"),
            "type": EVENT_TRACKED,
            "aggregate_type": "profile",
            "aggregate_id": p.profile_id,
            "payload": {
                "event_id": p.event_id,
                "message_id": p.message_id,
                "type": p.incoming.call_type,
                "name": p.name,
                "profile_id": p.profile_id,
                "timestamp": p.timestamp.isoformat(),
                "channel": p.channel,
            },
            "created_at": now,
        }
        for p in kept
    ]
    stmt = insert(events).returning(events.c.seq, sort_by_parameter_order=True)
    seqs = list(session.execute(stmt, rows).scalars())
    names = [c.name for c in consumers_for(EVENT_TRACKED)]
    if session.info.get(STREAM_ENABLED):
        names.append(STREAM_CONSUMER)
    if names:
        deliveries = [
            {
                "event_seq": seq,
                "consumer": name,
                "aggregate_key": f"profile:{p.profile_id}",
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for seq, p in zip(seqs, kept, strict=True)
            for name in names
        ]
        session.execute(insert(_table(Delivery)), deliveries)
    session.info[EMITTED] = True


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
