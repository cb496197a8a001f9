"""Privacy routes under /api/v1: export a customer's data, erase a customer, read the log.
Thin: the rules are in privacy.py."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
from seamline.identity import privacy
from seamline.identity.privacy_schemas import (
    CustomerExport,
    EraseIn,
    ErasureOut,
    PrivacyRequestOut,
)
from seamline.kit.crypto import SecretBox
from seamline.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

router = APIRouter(tags=["privacy"])

ProfileId = Annotated[str, Path(max_length=40)]
# Personal data: never kept by a cache on the way.
NO_STORE = {"Cache-Control": "no-store"}


@router.post(
    "/profiles/{profile_id}/export",
    response_model=CustomerExport,
    responses=problem(404, "No such profile"),
    **scoped("privacy:read"),
)
def export_profile(profile_id: ProfileId, db: DB, caller: CurrentCaller) -> JSONResponse:
    """Everything stored about the customer's cluster, as one JSON document (a logged
    privacy request)."""
    with db.transaction() as session:
        done = privacy.export(session, profile_id, by=caller.key_id)
    return JSONResponse(done.document, headers=NO_STORE)


@router.post(
    "/profiles/{profile_id}/erase",
    responses=problem(404, "No such profile"),
    **scoped("privacy:write"),
)
def erase_profile(
    profile_id: ProfileId, body: EraseIn, db: DB, caller: CurrentCaller, request: Request
) -> ErasureOut:
    """Erase the customer's whole cluster in one transaction; their erased identifiers cannot
    recreate them from a late event. Erasing again is allowed (and logged)."""
    box: SecretBox = request.app.state.secret_box
    with db.transaction() as session:
        done = privacy.erase(session, profile_id, reason=body.reason, by=caller.key_id, box=box)
    return ErasureOut(
        privacy_request_id=done.request_id,
        profile_id=done.profile_id,
        cluster_id=done.cluster_id,
        profile_ids=done.profile_ids,
        erased_at=done.erased_at,
        previously_erased=done.previously_erased,
        summary=done.summary,
    )


@router.get(
    "/privacy-requests",
    responses=problem(404, "No such profile"),
    **scoped("privacy:read"),
)
def list_privacy_requests(
    db: DB,
    profile_id: Annotated[
        str | None,
        Query(max_length=40, pattern=r"^[a-z0-9_]+$", description="Requests about its cluster."),
    ] = None,
    kind: Literal["export", "erase"] | None = None,
    cursor: Annotated[
        str | None,
        Query(pattern=r"^prq_[a-z0-9]{26}$", description="`next_cursor` of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[PrivacyRequestOut]:
    """The log of export and erase requests (who asked, when, what was done), newest first."""
    with db.transaction(readonly=True) as session:
        rows, next_cursor = privacy.list_requests(
            session, profile_id=profile_id, kind=kind, cursor=cursor, limit=limit
        )
        data = [PrivacyRequestOut.model_validate(r) for r in rows]
    return Page[PrivacyRequestOut](data=data, next_cursor=next_cursor)
