"""Customer 360 routes under /api/v1: read a cluster, page its timeline, set preferences,
undo a merge."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
from seamline.identity import customer360, merges, preferences, profiles, timeline
from seamline.identity.schemas import (
    PreferencesIn,
    PreferencesOut,
    ProfileOut,
    TimelineEvent,
    UnmergeIn,
    UnmergeOut,
)
from seamline.kit.pagination import MAX_LIMIT, Page

router = APIRouter(tags=["customers"])

ProfileId = Annotated[str, Path(max_length=40)]


@router.get(
    "/profiles/{profile_id}",
    response_model=ProfileOut,
    responses=problem(404, "No such profile"),
    **scoped("customers:read"),
)
def get_profile(profile_id: ProfileId, db: DB) -> Response:
    """The customer 360: the cluster's profiles, identifiers, current traits, consent,
    purchase metrics and channels, preferences, advisor and latest timeline items."""
    if db.dialect == "postgresql":
        # One statement builds the whole document (one round trip). A single statement reads
        # one snapshot, so it runs in autocommit: no BEGIN and COMMIT round trips.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            document = customer360.customer_360_json(connection, profile_id)
        profile = ProfileOut.model_validate_json(document)
    else:
        with db.transaction(readonly=True) as session:
            profile = ProfileOut.model_validate(customer360.customer_360(session, profile_id))
    # Validated once and rendered by pydantic: a returned model would be dumped, validated
    # again and encoded by FastAPI (the schema in the OpenAPI document is the same).
    return Response(content=profile.model_dump_json(), media_type="application/json")


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
            pattern=r"^-?[0-9]+_[a-z0-9_]+$",
            description="`next_cursor` of the previous page.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = timeline.LATEST,
    type: Annotated[
        str | None,
        Query(
            max_length=80,
            pattern=r"^(track|identify|page|screen|group|alias|[a-z][a-z0-9_]*(\.[a-z0-9_]+)+)$",
            description="A call type (`track` …) or a domain event type (`order.placed`).",
        ),
    ] = None,
    kind: Annotated[
        Literal["tracked", "domain"] | None,
        Query(description="Only tracked calls, or only domain events."),
    ] = None,
    channel: Annotated[str | None, Query(max_length=40, pattern=r"^[^\x00]+$")] = None,
) -> Page[TimelineEvent]:
    """The cluster's timeline newest first, by cursor: tracked calls and domain events merged;
    filter by type, kind and channel."""
    with db.transaction(readonly=True) as session:
        _, members = profiles.cluster_of(session, profile_id)
        rows, next_cursor = timeline.page(
            session, members, cursor=cursor, limit=limit, type_=type, kind=kind, channel=channel
        )
    return Page[TimelineEvent](
        data=[TimelineEvent.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.put(
    "/profiles/{profile_id}/preferences",
    responses={**problem(404, "No such profile"), **problem(422, "Unknown favourite store")},
    **scoped("customers:write"),
)
def put_preferences(
    profile_id: ProfileId, body: PreferencesIn, db: DB, caller: CurrentCaller
) -> PreferencesOut:
    """Set preferences and the advisor of this profile's customer: fields sent are set
    (`null` clears), fields left out stay; answers the cluster's current preferences."""
    with db.transaction() as session:
        current = preferences.set_preferences(session, profile_id, body, by=caller.key_id)
    return PreferencesOut.model_validate(current)


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
