"""Merges requested by staff, and unmerge: undo one merge pointer, block the links that made
it, and re-resolve.

Nothing moved when the merge happened (events, traits and identifiers stay on the profile
they arrived on), so undoing it only changes clusters. The links between the two sides are
remembered as blocked *as of their latest observation*: resolution ignores them until a newer
observation of the same pair arrives (docs/identity.md, "Unmerge").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from seamline.identity import resolution
from seamline.identity.models import Identifier, IdentityLink, ProfileMerge
from seamline.identity.profiles import cluster_members, get_profile
from seamline.identity.rules import DEFAULT_RULES, IdentityRules
from seamline.kit import clock
from seamline.kit.errors import Conflict, NotFound
from seamline.kit.ids import new_id

UNMERGED = "unmerged"


@dataclass(frozen=True)
class Unmerged:
    merge_id: str
    profile_id: str
    profile_cluster_id: str
    into_profile_id: str
    into_cluster_id: str


def unmerge(
    session: Session,
    profile_id: str,
    merge_id: str,
    *,
    reason: str,
    by: str | None,
    rules: IdentityRules = DEFAULT_RULES,
) -> Unmerged:
    """Undo merge ``merge_id`` of the cluster holding ``profile_id``."""
    resolution.lock_graph(session)
    profile = get_profile(session, profile_id)
    members = cluster_members(session, profile.cluster_id)
    merge = session.get(ProfileMerge, merge_id) if len(merge_id) <= 40 else None
    if merge is None or merge.profile_id not in members:
        raise NotFound(
            f"no merge {merge_id[:40]!r} in this profile's cluster", code="merge_not_found"
        )
    if merge.undone_at is not None:
        raise Conflict("this merge is already undone", code="merge_already_undone")

    # The side that leaves: the profiles still joined to merge.profile_id by the other pointers.
    active = session.scalars(
        select(ProfileMerge).where(
            ProfileMerge.profile_id.in_(members),
            ProfileMerge.undone_at.is_(None),
            ProfileMerge.id != merge.id,
        )
    )
    parent = {pid: pid for pid in members}

    def find(pid: str) -> str:
        while parent[pid] != pid:
            parent[pid] = parent[parent[pid]]
            pid = parent[pid]
        return pid

    for other in active:
        if other.into_profile_id in parent:
            parent[find(other.profile_id)] = find(other.into_profile_id)
    leaving = {pid for pid in members if find(pid) == find(merge.profile_id)}
    ids = session.execute(
        select(Identifier.id, Identifier.profile_id).where(Identifier.profile_id.in_(members))
    ).all()
    side = {ident: pid in leaving for ident, pid in ids}
    links = session.scalars(
        select(IdentityLink).where(
            or_(
                IdentityLink.identifier_a_id.in_(sorted(side)),
                IdentityLink.identifier_b_id.in_(sorted(side)),
            )
        )
    )
    blocked = [
        [link.identifier_a_id, link.identifier_b_id, link.observed_at.isoformat(), link.message_id]
        for link in links
        if link.identifier_a_id in side
        and link.identifier_b_id in side
        and side[link.identifier_a_id] != side[link.identifier_b_id]
    ]

    now = clock.now()
    merge.undone_at, merge.undone_reason = now, UNMERGED
    merge.evidence = {
        **merge.evidence,
        "unmerge": {"by": by, "at": now.isoformat(), "reason": reason, "blocked_links": blocked},
    }
    session.flush()
    trigger = resolution.Trigger("unmerge", None, by)
    resolution.resolve(session, sorted(side), trigger=trigger, rules=rules)
    joined = get_profile(session, merge.profile_id)
    into = get_profile(session, merge.into_profile_id)
    resolution.emit_unmerged(
        session,
        merge,
        cluster_id=joined.cluster_id,
        reason=UNMERGED,
        detail=reason,
        from_cluster_id=into.cluster_id,
        by=by,
    )
    return Unmerged(merge.id, joined.id, joined.cluster_id, into.id, into.cluster_id)


# -- merges requested by staff ---------------------------------------------------------------

STAFF = "staff"


@dataclass(frozen=True)
class Merged:
    merge_id: str
    profile_id: str
    other_profile_id: str
    cluster_id: str
    profile_ids: list[str]


def unique_conflict(
    identifiers: Iterable[tuple[str, str]], rules: IdentityRules = DEFAULT_RULES
) -> str | None:
    """The first unique kind (by name) holding two different values among ``identifiers``."""
    values: dict[str, set[str]] = {}
    for kind, value in identifiers:
        if rules.unique(kind):
            values.setdefault(kind, set()).add(value)
    return next((kind for kind in sorted(values) if len(values[kind]) > 1), None)


def _anchor(
    identifiers: Sequence[Identifier], prefer: Sequence[str], rules: IdentityRules
) -> Identifier | None:
    """The identifier the staff link is drawn from: the best one of the first profile in
    ``prefer`` that holds any (the named profile, then the cluster's canonical one, then any),
    valid ones first."""
    for profile_id in prefer:
        held = [i for i in identifiers if i.profile_id == profile_id]
        if held:
            return min(held, key=lambda i: (not i.valid, rules.sort_key((i.kind, i.value))))
    return None


def merge_profiles(
    session: Session,
    profile_id: str,
    other_id: str,
    *,
    reason: str,
    by: str | None,
    rules: IdentityRules = DEFAULT_RULES,
) -> Merged:
    """Join the clusters of ``profile_id`` and ``other_id`` because a person said so.

    The decision is stored as evidence the resolution rule already honours: one identity link
    between an identifier of each named profile, observed now, with message id
    ``staff:<request id>``. Resolution then records the merge pointer (trigger ``staff``,
    ``triggered_by`` = the caller) and emits ``profile.merged``; unmerge undoes it like any
    other merge. Two different values of a unique kind are refused (409), as the rule would.
    """
    resolution.lock_graph(session)
    profile = get_profile(session, profile_id)
    other = get_profile(session, other_id)
    if profile.cluster_id == other.cluster_id:
        raise Conflict("the two profiles are already one customer", code="same_cluster")
    mine = cluster_members(session, profile.cluster_id)
    theirs = cluster_members(session, other.cluster_id)
    identifiers = list(
        session.scalars(select(Identifier).where(Identifier.profile_id.in_(mine + theirs)))
    )
    kind = unique_conflict(((i.kind, i.value) for i in identifiers), rules)
    if kind is not None:
        raise Conflict(
            f"both customers have a {kind} and they differ: two accounts are never merged",
            code="unique_kind_conflict",
            extra={"kind": kind},
        )
    start = _anchor(identifiers, [profile.id, profile.cluster_id, *mine], rules)
    end = _anchor(identifiers, [other.id, other.cluster_id, *theirs], rules)
    if start is None or end is None:
        raise Conflict("a customer without any identifier cannot be merged", code="no_identifiers")

    message_id = f"{STAFF}:{new_id('mrq')}"
    pair = (min(start.id, end.id), max(start.id, end.id))
    resolution.record_links(session, [pair], (clock.now(), message_id))
    trigger = resolution.Trigger(STAFF, message_id, by, reason=reason)
    resolution.resolve(session, [start.id, end.id], trigger=trigger, rules=rules)

    session.refresh(profile)
    session.refresh(other)
    merge = session.scalars(
        select(ProfileMerge).where(
            ProfileMerge.trigger_message_id == message_id, ProfileMerge.undone_at.is_(None)
        )
    ).first()
    if profile.cluster_id != other.cluster_id or merge is None:
        # Only a link observed later than now (a call dated in the future) can outrank it.
        raise Conflict("more recent evidence keeps these customers apart", code="merge_refused")
    return Merged(
        merge.id,
        profile.id,
        other.id,
        profile.cluster_id,
        cluster_members(session, profile.cluster_id),
    )


def active_merges(session: Session, members: Sequence[str]) -> list[ProfileMerge]:
    """The merges that hold a cluster together now (what staff may undo), newest first."""
    return list(
        session.scalars(
            select(ProfileMerge)
            .where(ProfileMerge.profile_id.in_(list(members)), ProfileMerge.undone_at.is_(None))
            .order_by(ProfileMerge.created_at.desc(), ProfileMerge.id.desc())
        )
    )
