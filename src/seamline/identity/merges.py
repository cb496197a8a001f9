"""Unmerge: undo one merge pointer, block the links that made it, and re-resolve.

Nothing moved when the merge happened (events, traits and identifiers stay on the profile
they arrived on), so undoing it only changes clusters. The links between the two sides are
remembered as blocked *as of their latest observation*: resolution ignores them until a newer
observation of the same pair arrives (docs/identity.md, "Unmerge").
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from seamline.events.outbox import emit
from seamline.identity import resolution
from seamline.identity.models import Identifier, IdentityLink, ProfileMerge
from seamline.identity.profiles import cluster_members, get_profile
from seamline.identity.rules import DEFAULT_RULES, IdentityRules
from seamline.kit import clock
from seamline.kit.errors import Conflict, NotFound

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
    emit(
        session,
        "profile.unmerged",
        aggregate_type="profile",
        aggregate_id=merge.profile_id,
        payload={
            "merge_id": merge.id,
            "profile_id": merge.profile_id,
            "from_profile_id": merge.into_profile_id,
            "cluster_id": joined.cluster_id,
            "from_cluster_id": into.cluster_id,
            "reason": UNMERGED,
            "detail": reason,
            "by": by,
        },
    )
    return Unmerged(merge.id, joined.id, joined.cluster_id, into.id, into.cluster_id)
