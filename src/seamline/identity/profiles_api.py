"""Customer 360 routes under /api/v1: read a cluster, page its timeline, undo a merge."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
from seamline.identity import merges, profiles
from seamline.identity.schemas import (
    ProfileOut,
    TimelineEvent,
    UnmergeIn,
    UnmergeOut,
)
from seamline.kit.pagination import MAX_LIMIT, Page

router = APIRouter(tags=["customers"])

ProfileId = Annotated[str, Path(max_length=40)]


@router.get(
    "/profiles/{profile_id}", responses=problem(404, "No such profile"), **scoped("customers:read")
)
def get_profile(profile_id: ProfileId, db: DB) -> ProfileOut:
    """The customer 360: the cluster's profiles, identifiers, traits and latest events."""
    with db.transaction(readonly=True) as session:
        return ProfileOut.model_validate(profiles.customer_360(session, profile_id))


@router.get(
    "/profiles/{profile_id}/timeline",
    responses=problem(404, "No such profile"),
    **scoped("customers:read"),
)
def get_timeline(
    profile_id: ProfileId,
    db: DB,
    cursor: Annotated[
        str | None,
        Query(
            max_length=80,
            pattern=r"^[0-9]+_[a-z0-9_]+$",
            description="`next_cursor` of the previous page.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = profiles.LATEST_EVENTS,
    type: Annotated[
        str | None, Query(pattern=r"^(track|identify|page|screen|group|alias)$")
    ] = None,
    channel: Annotated[str | None, Query(max_length=40, pattern=r"^[^\x00]+$")] = None,
) -> Page[TimelineEvent]:
    """The cluster's tracked events, newest first, by cursor; filter by type and channel."""
    with db.transaction(readonly=True) as session:
        profile = profiles.get_profile(session, profile_id)
        members = profiles.cluster_members(session, profile.cluster_id)
        rows, next_cursor = profiles.timeline(
            session, members, cursor=cursor, limit=limit, type_=type, channel=channel
        )
    return Page[TimelineEvent](
        data=[TimelineEvent.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.post(
    "/profiles/{profile_id}/unmerge",
    responses={**problem(404, "No such profile or merge"), **problem(409, "Already undone")},
    **scoped("customers:write"),
)
def unmerge(profile_id: ProfileId, body: UnmergeIn, db: DB, caller: CurrentCaller) -> UnmergeOut:
    """Undo one merge of this profile's cluster; both sides get back exactly their own data."""
    with db.transaction() as session:
        done = merges.unmerge(
            session, profile_id, body.merge_id, reason=body.reason, by=caller.key_id
        )
    return UnmergeOut(**done.__dict__)
