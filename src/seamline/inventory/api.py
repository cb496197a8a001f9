"""Location routes: resolve the caller, call one service function, return."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
from seamline.inventory import service
from seamline.inventory.schemas import LocationCreate, LocationKind, LocationOut, LocationUpdate
from seamline.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

router = APIRouter(prefix="/locations", tags=["inventory"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem(404, "No such channel to link"),
    **scoped("inventory:write"),
)
def create_location(body: LocationCreate, db: DB, caller: CurrentCaller) -> LocationOut:
    """Register a warehouse or a store (a store may link its store channel)."""
    with db.transaction() as session:
        return service.create_location(session, body, caller=caller)


@router.get("", **scoped("inventory:read"))
def list_locations(
    db: DB,
    kind: LocationKind | None = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^[a-z0-9_]+$",
            description="`next_cursor` of the previous page.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[LocationOut]:
    with db.transaction(readonly=True) as session:
        rows, next_cursor = service.list_locations(session, kind=kind, cursor=cursor, limit=limit)
        return Page[LocationOut](data=rows, next_cursor=next_cursor)


@router.get("/{location_id}", **scoped("inventory:read"))
def get_location(location_id: str, db: DB) -> LocationOut:
    with db.transaction(readonly=True) as session:
        return service.get_location(session, location_id)


@router.patch("/{location_id}", **scoped("inventory:write"))
def update_location(
    location_id: str, body: LocationUpdate, db: DB, caller: CurrentCaller
) -> LocationOut:
    with db.transaction() as session:
        return service.update_location(session, location_id, body, caller=caller)
