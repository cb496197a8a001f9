"""Consent routes under /api/v1: read a cluster's consent and history, record changes for a
profile or for whoever holds an identifier. Thin: the rules are in consent.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
from seamline.identity import consent
from seamline.identity.consent_schemas import (
    Channel,
    ConsentByIdentifier,
    ConsentChangeOut,
    ConsentUpdate,
    ConsentUpdateOut,
    ConsentView,
    Purpose,
)
from seamline.kit.pagination import MAX_LIMIT, Page

router = APIRouter(tags=["customers"])

ProfileId = Annotated[str, Path(max_length=40)]
Cursor = Annotated[
    str | None,
    Query(
        max_length=80,
        pattern=r"^[0-9]{1,18}_[a-z0-9_]{1,40}$",
        description="`next_cursor` of the previous page.",
    ),
]


@router.get(
    "/profiles/{profile_id}/consent",
    responses=problem(404, "No such profile"),
    **scoped("customers:read"),
)
def get_consent(
    profile_id: ProfileId,
    db: DB,
    history: Annotated[
        bool, Query(description="Also return the latest changes (newest first).")
    ] = False,
) -> ConsentView:
    """The cluster's current consent per channel and purpose (and, optionally, its history)."""
    with db.transaction(readonly=True) as session:
        profile, members = consent.profile_and_members(session, profile_id)
        view = ConsentView(
            profile_id=profile.id,
            cluster_id=profile.cluster_id,
            profile_ids=members,
            erased=consent.is_erased(session, profile.cluster_id),
            consents=consent.current_for_profiles(session, members),
        )
        if history:
            view.history, view.history_next_cursor = consent.history(session, members)
    return view


@router.get(
    "/profiles/{profile_id}/consent/history",
    responses=problem(404, "No such profile"),
    **scoped("customers:read"),
)
def get_consent_history(
    profile_id: ProfileId,
    db: DB,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = consent.HISTORY_PAGE,
    channel: Channel | None = None,
    purpose: Purpose | None = None,
) -> Page[ConsentChangeOut]:
    """Every consent change of the cluster, newest recorded first, by cursor."""
    with db.transaction(readonly=True) as session:
        _, members = consent.profile_and_members(session, profile_id)
        rows, next_cursor = consent.history(
            session, members, cursor=cursor, limit=limit, channel=channel, purpose=purpose
        )
    return Page[ConsentChangeOut](data=rows, next_cursor=next_cursor)


@router.post(
    "/profiles/{profile_id}/consent",
    responses={**problem(404, "No such profile"), **problem(409, "The customer was erased")},
    **scoped("customers:write"),
)
def change_consent(
    profile_id: ProfileId, body: ConsentUpdate, db: DB, caller: CurrentCaller
) -> ConsentUpdateOut:
    """Record consent changes on this profile, in order; `consent.changed` for real changes."""
    with db.transaction() as session:
        done = consent.record_changes(session, profile_id, body.changes, by=caller.key_id)
        return ConsentUpdateOut(
            profile_id=done.profile_id,
            cluster_id=done.cluster_id,
            results=done.results,
            consents=done.consents(session),
        )


@router.post(
    "/consent",
    responses=problem(409, "The identifier was erased and the changes grant nothing"),
    **scoped("customers:write"),
)
def change_consent_by_identifier(
    body: ConsentByIdentifier, db: DB, caller: CurrentCaller
) -> ConsentUpdateOut:
    """Record consent for whoever holds an email, phone, user id or loyalty card (a profile is
    created for an unknown one). A grant for an erased identifier lifts its suppression."""
    with db.transaction() as session:
        done = consent.record_for_identifier(
            session, body.identifier, body.changes, by=caller.key_id
        )
        return ConsentUpdateOut(
            profile_id=done.profile_id,
            cluster_id=done.cluster_id,
            created_profile=done.created_profile,
            suppression_lifted=done.suppression_lifted,
            results=done.results,
            consents=done.consents(session),
        )
