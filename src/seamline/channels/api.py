"""Channel routes: resolve the caller, call one service function, return."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.channels import service
from seamline.channels.schemas import ChannelCreate, ChannelKind, ChannelOut, ChannelUpdate
from seamline.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

router = APIRouter(prefix="/channels", tags=["channels"])


@router.post("", status_code=status.HTTP_201_CREATED, **scoped("channels:write"))
def create_channel(body: ChannelCreate, db: DB, caller: CurrentCaller) -> ChannelOut:
    """Register a channel (web store, app, store, marketplace, social account, …)."""
    with db.transaction() as session:
        return ChannelOut.model_validate(service.create_channel(session, body, caller=caller))


@router.get("", **scoped("channels:read"))
def list_channels(
    db: DB,
    kind: ChannelKind | None = None,
    active: bool | None = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^[a-z0-9_]+$",
            description="`next_cursor` of the previous page.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[ChannelOut]:
    with db.transaction(readonly=True) as session:
        rows, next_cursor = service.list_channels(
            session, kind=kind, active=active, cursor=cursor, limit=limit
        )
        return Page[ChannelOut](
            data=[ChannelOut.model_validate(r) for r in rows], next_cursor=next_cursor
        )


@router.get("/{channel_id}", **scoped("channels:read"))
def get_channel(channel_id: str, db: DB) -> ChannelOut:
    with db.transaction(readonly=True) as session:
        return ChannelOut.model_validate(service.get_channel(session, channel_id))


@router.patch("/{channel_id}", **scoped("channels:write"))
def update_channel(
    channel_id: str, body: ChannelUpdate, db: DB, caller: CurrentCaller
) -> ChannelOut:
    with db.transaction() as session:
        return ChannelOut.model_validate(
            service.update_channel(session, channel_id, body, caller=caller)
        )
