"""Identity resolution against the database: identifiers, links, clusters and merge records.

The rule itself is pure and lives in rules.py; this module finds the part of the graph a call
touched, runs the rule over it, and writes the difference: profiles' ``cluster_id``, link
decisions, merge pointers added or superseded, and a ``profile.merged`` /
``profile.unmerged`` event for each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, select, tuple_
from sqlalchemy.orm import Session

from seamline.db import bulk
from seamline.db.dialect import lock_for_transaction
from seamline.events.outbox import Pending, emit_many
from seamline.identity import graph_writes
from seamline.identity.models import Identifier, IdentityLink, Profile, ProfileMerge
from seamline.identity.normalize import IdentifierValue
from seamline.identity.rules import DEFAULT_RULES, Edge, IdentityRules, Key, partition
from seamline.kit import clock
from seamline.kit.ids import new_id


def _table(model: Any) -> Table:
    """The mapped class's table, typed for Core statements."""
    return cast(Table, model.__table__)


# Identity writes that change the graph take this lock (PostgreSQL; SQLite serialises writers).
GRAPH_LOCK = "identity.graph"
_CHUNK = 500


@dataclass(frozen=True)
class Trigger:
    """What caused a resolution: the call, its message id, and the key that sent it."""

    call: str
    message_id: str | None
    key_id: str | None
    # Why the merges this resolution makes happened, when a person said so (staff, import).
    reason: str | None = None


def lock_graph(session: Session) -> None:
    """Serialise graph changes: resolution reads a whole component, then rewrites it."""
    if not session.info.get(GRAPH_LOCK):
        lock_for_transaction(session, GRAPH_LOCK)
        session.info[GRAPH_LOCK] = True


def find_identifiers(session: Session, keys: Iterable[Key]) -> dict[Key, Identifier]:
    wanted = sorted(set(keys))
    found: dict[Key, Identifier] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = session.scalars(
            bulk.by_key(session, Identifier, (Identifier.kind, Identifier.value), chunk)
        )
        found.update({(r.kind, r.value): r for r in rows})
    return found


def create_identifier(
    session: Session,
    value: IdentifierValue,
    *,
    seen_at: datetime,
    channel: str | None,
    key_id: str | None,
) -> Identifier:
    """A new identifier on a new profile of its own (callers hold the graph lock).

    One profile per arriving identifier keeps resolution order-independent: a profile is an
    atomic unit, so two identifiers must only share one when they can never be told apart.
    """
    profile_id = new_id("prf")
    session.add(Profile(id=profile_id, cluster_id=profile_id))
    session.flush()  # no ORM relationship orders the two inserts: the profile goes first
    identifier = Identifier(
        id=new_id("idn"),
        kind=value.kind,
        value=value.value,
        raw=value.raw,
        valid=value.valid,
        profile_id=profile_id,
        source_channel=channel,
        source_key_id=key_id,
        first_seen=seen_at,
        last_seen=seen_at,
    )
    session.add(identifier)
    session.flush()
    return identifier


def stale_links(
    session: Session, pairs: Sequence[tuple[Identifier, Identifier]], observed: tuple[datetime, str]
) -> list[tuple[str, str]]:
    """The pairs (as ordered id pairs) whose stored observation is older than ``observed``."""
    ordered = [tuple(sorted((a.id, b.id))) for a, b in pairs if a.id != b.id]
    if not ordered:
        return []
    rows = session.execute(
        select(
            IdentityLink.identifier_a_id,
            IdentityLink.identifier_b_id,
            IdentityLink.observed_at,
            IdentityLink.message_id,
        ).where(tuple_(IdentityLink.identifier_a_id, IdentityLink.identifier_b_id).in_(ordered))
    ).all()
    known = {(r[0], r[1]): (r[2], r[3]) for r in rows}
    return [
        (a, b) for a, b in sorted(set(ordered)) if (a, b) not in known or known[a, b] < observed
    ]


def record_links(
    session: Session, pairs: Sequence[tuple[str, str]], observed: tuple[datetime, str]
) -> None:
    """Store ``observed`` as the latest observation of each pair (callers hold the lock)."""
    for a, b in pairs:
        link = session.get(IdentityLink, (a, b))
        if link is None:
            session.add(
                IdentityLink(
                    identifier_a_id=a,
                    identifier_b_id=b,
                    observed_at=observed[0],
                    message_id=observed[1],
                    decision="linked",
                )
            )
        elif (link.observed_at, link.message_id) < observed:
            link.observed_at, link.message_id = observed
    session.flush()


class _Link(NamedTuple):
    """An ``identity_links`` row as resolution reads it (plain values: a resolution reads
    thousands, and an ORM object each cost more than the rule itself)."""

    a: str
    b: str
    observed_at: datetime
    message_id: str
    decision: str


_LINK_COLUMNS = (
    IdentityLink.identifier_a_id,
    IdentityLink.identifier_b_id,
    IdentityLink.observed_at,
    IdentityLink.message_id,
    IdentityLink.decision,
)


def _component(session: Session, seeds: Iterable[str]) -> tuple[set[str], list[_Link]]:
    """Identifier ids reachable from ``seeds`` over any link (linked or refused), with the links
    and every identifier of the profiles met on the way."""
    seen: set[str] = set(seeds)
    frontier = set(seen)
    links: dict[tuple[str, str], _Link] = {}
    while frontier:
        batch = sorted(frontier)
        frontier = set()
        for start in range(0, len(batch), _CHUNK):
            chunk = [(i,) for i in batch[start : start + _CHUNK]]
            for end in (IdentityLink.identifier_a_id, IdentityLink.identifier_b_id):
                found = session.execute(
                    bulk.by_key(session, _LINK_COLUMNS, (end,), chunk, unique=False)
                )
                for row in found:
                    link = _Link(*row)
                    links[(link.a, link.b)] = link
                    for other in (link.a, link.b):
                        if other not in seen:
                            seen.add(other)
                            frontier.add(other)
            profiles = session.scalars(
                bulk.by_key(session, (Identifier.profile_id,), (Identifier.id,), chunk)
            )
            siblings = session.scalars(
                bulk.by_key(
                    session,
                    (Identifier.id,),
                    (Identifier.profile_id,),
                    [(p,) for p in sorted(set(profiles))],
                    unique=False,
                )
            )
            for sibling in siblings:
                if sibling not in seen:
                    seen.add(sibling)
                    frontier.add(sibling)
    return seen, list(links.values())


def resolve(
    session: Session,
    seeds: Iterable[str],
    *,
    trigger: Trigger,
    rules: IdentityRules = DEFAULT_RULES,
    triggers: Mapping[str, Trigger] | None = None,
) -> None:
    """Recompute the clusters of the component around identifier ids ``seeds``.

    Every profile that could change cluster is in that component (a cluster is connected by
    its links), so nothing outside it is read or written. Callers hold the graph lock.
    A merge is credited to the call that observed its edge when ``triggers`` (by message id)
    knows it, else to ``trigger``.
    """
    identifier_ids, links = _component(session, seeds)
    key_of: dict[str, Key] = {}
    members: dict[str, list[Key]] = {}
    ids = sorted(identifier_ids)
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(Identifier.id, Identifier.kind, Identifier.value, Identifier.profile_id)
            .where(bulk.among(session, Identifier.id, ids[start : start + _CHUNK]))
            .order_by(Identifier.id)
        )
        for ident, kind, value, profile_id in rows:
            key_of[ident] = (kind, value)
            members.setdefault(profile_id, []).append((kind, value))
    edges = {
        (link.a, link.b): Edge(key_of[link.a], key_of[link.b], link.observed_at, link.message_id)
        for link in links
    }
    # Links an unmerge blocked stay out until a newer observation of the pair arrives.
    blocks = blocked_links(session, sorted(members))
    blocked = {
        (link.a, link.b)
        for link in links
        if (link.a, link.b) in blocks
        and (link.observed_at, link.message_id) <= blocks[(link.a, link.b)]
    }
    result = partition(members, (e for p, e in edges.items() if p not in blocked), rules)

    refused = {(e.a, e.b) for e in result.refused}
    decided: list[tuple[str, str, str]] = []
    for link in links:
        pair = (link.a, link.b)
        edge = edges[pair]
        refuse = pair in blocked or (edge.a, edge.b) in refused
        decision = "refused" if refuse else "linked"
        if decision != link.decision:
            decided.append((link.a, link.b, decision))
    graph_writes.decide_links(session, decided)
    graph_writes.move_profiles(session, sorted(members), result.canonical)
    _record_merges(
        session, result.canonical, result.accepted, trigger=trigger, triggers=triggers or {}
    )
    session.flush()


def blocked_links(
    session: Session, profile_ids: Sequence[str]
) -> dict[tuple[str, str], tuple[datetime, str]]:
    """Links an unmerge blocked, with the observation they are blocked up to (the newest, when
    several unmerges blocked one pair). A newer observation of the pair unblocks it."""
    found: dict[tuple[str, str], tuple[datetime, str]] = {}
    for start in range(0, len(profile_ids), _CHUNK):
        chunk = profile_ids[start : start + _CHUNK]
        undone: dict[str, ProfileMerge] = {}
        for end in (ProfileMerge.profile_id, ProfileMerge.into_profile_id):
            merges = session.scalars(
                bulk.by_key(
                    session,
                    ProfileMerge,
                    (end,),
                    [(p,) for p in chunk],
                    unique=False,
                    where=[ProfileMerge.undone_reason == "unmerged"],
                )
            )
            undone.update((merge.id, merge) for merge in merges)
        for merge in undone.values():
            for a, b, observed, message_id in merge.evidence.get("unmerge", {}).get(
                "blocked_links", []
            ):
                upto = (datetime.fromisoformat(observed), message_id)
                found[(a, b)] = max(found.get((a, b), upto), upto)
    return found


def _record_merges(
    session: Session,
    canonical: dict[str, str],
    accepted: Sequence[tuple[Edge, str, str]],
    *,
    trigger: Trigger,
    triggers: Mapping[str, Trigger],
) -> None:
    """Keep the merge pointers in step with the clusters, changing as few as possible.

    A pointer whose two profiles now sit in different clusters is superseded (undone); an
    accepted edge joining parts not yet connected by pointers becomes a new merge.
    """
    now = clock.now()
    ids = sorted(canonical)
    active: list[ProfileMerge] = []
    for start in range(0, len(ids), _CHUNK):
        active += session.scalars(
            bulk.by_key(
                session,
                ProfileMerge,
                (ProfileMerge.profile_id,),
                [(p,) for p in ids[start : start + _CHUNK]],
                unique=False,
                where=[ProfileMerge.undone_at.is_(None)],
            )
        )
    active.sort(key=lambda merge: merge.id)
    parent = {pid: pid for pid in canonical}

    def find(pid: str) -> str:
        while parent[pid] != pid:
            parent[pid] = parent[parent[pid]]
            pid = parent[pid]
        return pid

    events: list[Pending] = []
    merges: list[dict[str, Any]] = []
    for merge in active:
        a, b = merge.profile_id, merge.into_profile_id
        if canonical.get(a) != canonical.get(b) or b not in parent:
            merge.undone_at, merge.undone_reason = now, "superseded"
            events.append(
                unmerged_event(
                    merge,
                    cluster_id=canonical[a],
                    reason="superseded",
                    detail="a more recent account claimed a shared identifier",
                )
            )
        else:
            parent[find(a)] = find(b)
    for edge, joined, into in accepted:
        if find(joined) == find(into):
            continue
        parent[find(joined)] = find(into)
        cause = triggers.get(edge.message_id, trigger)
        evidence = {
            "identifiers": [list(edge.a), list(edge.b)],
            "observed_at": edge.observed_at.isoformat(),
            "message_id": edge.message_id,
        }
        row: dict[str, Any] = {
            "id": new_id("mrg"),
            "profile_id": joined,
            "into_profile_id": into,
            "cluster_id": canonical[into],
            "trigger": cause.call,
            "trigger_message_id": cause.message_id,
            "triggered_by": cause.key_id,
            "reason": cause.reason or f"shared {edge.a[0]} and {edge.b[0]} in one call",
            "evidence": evidence,
            "created_at": now,
            "undone_at": None,
            "undone_reason": None,
        }
        merges.append(row)
        events.append(
            Pending(
                "profile.merged",
                "profile",
                joined,
                {
                    "merge_id": row["id"],
                    "profile_id": joined,
                    "into_profile_id": into,
                    "cluster_id": canonical[into],
                    "reason": row["reason"],
                    "evidence": evidence,
                    "trigger": {"call": cause.call, "message_id": cause.message_id},
                },
            )
        )
    # New pointers as rows (COPY on PostgreSQL): a batch can make thousands, and an ORM
    # object each cost more than the rest of the merge.
    bulk.copy_rows(session, _table(ProfileMerge), merges)
    emit_many(session, events)


def emit_unmerged(
    session: Session,
    merge: ProfileMerge,
    *,
    cluster_id: str | None,
    reason: str,
    detail: str,
    **extra: Any,
) -> None:
    """Emit ``unmerged_event`` now."""
    emit_many(
        session,
        [unmerged_event(merge, cluster_id=cluster_id, reason=reason, detail=detail, **extra)],
    )


def unmerged_event(
    merge: ProfileMerge, *, cluster_id: str | None, reason: str, detail: str, **extra: Any
) -> Pending:
    """The ``profile.unmerged`` event for an undone merge pointer (by resolution, unmerge or
    rebuild): ``profile_id`` left ``from_profile_id``'s cluster and is now in ``cluster_id``."""
    return Pending(
        "profile.unmerged",
        "profile",
        merge.profile_id,
        {
            "merge_id": merge.id,
            "profile_id": merge.profile_id,
            "from_profile_id": merge.into_profile_id,
            "cluster_id": cluster_id,
            "reason": reason,
            "detail": detail,
            **extra,
        },
    )
