"""Rules of the channel registry."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.channels.models import Channel
from seamline.channels.schemas import ChannelCreate, ChannelUpdate
from seamline.db.config_cache import ConfigCache
from seamline.db.lookup import get_or_404
from seamline.db.pagination import keyset_page
from seamline.events.outbox import emit
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, Unprocessable
from seamline.kit.ids import new_id

MAX_ATTRIBUTES_BYTES = 16_384


def _snapshot(channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.id,
        "kind": channel.kind,
        "name": channel.name,
        "handle": channel.handle,
        "location_id": channel.location_id,
        "active": channel.active,
    }


def _check_attributes(attributes: dict[str, Any]) -> None:
    size = len(json.dumps(attributes, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_ATTRIBUTES_BYTES:
        raise Unprocessable(
            "attributes are too large",
            errors=[
                FieldError("body.attributes", f"at most {MAX_ATTRIBUTES_BYTES} bytes", "too_large")
            ],
        )


def create_channel(
    session: Session, data: ChannelCreate, *, caller: Caller | None = None
) -> Channel:
    """Register a channel; handles are unique so reports and URLs can name it.

    A key limited to locations may only register channels of those locations.
    """
    if caller is not None:
        caller.require_location(data.location_id)
    _check_attributes(data.attributes)
    if session.scalar(select(Channel.id).where(Channel.handle == data.handle)):
        raise _handle_taken(data.handle)
    now = clock.now()
    channel = Channel(
        id=new_id("chn"),
        kind=data.kind,
        name=data.name,
        handle=data.handle,
        location_id=data.location_id,
        active=True,
        attributes=data.attributes,
        created_at=now,
        updated_at=now,
    )
    session.add(channel)
    try:
        session.flush()
    except IntegrityError as exc:  # lost a race with a concurrent create of the same handle
        raise _handle_taken(data.handle) from exc
    emit(
        session,
        "channel.created",
        aggregate_type="channel",
        aggregate_id=channel.id,
        payload=_snapshot(channel),
    )
    return channel


def _handle_taken(handle: str) -> Conflict:
    return Conflict(
        f"a channel with handle {handle!r} exists",
        code="channel_handle_taken",
        errors=[FieldError("body.handle", "already taken", "taken")],
    )


def _find(session: Session, channel_id: str, *, for_update: bool = False) -> Channel:
    return get_or_404(
        session,
        Channel,
        channel_id,
        what="channel",
        code="channel_not_found",
        for_update=for_update,
    )


def get_channel(session: Session, channel_id: str) -> Channel:
    return _find(session, channel_id)


# What every cart event names (the channel's kind), cached per process (db/config_cache.py).
_kinds = ConfigCache("channel_kinds", (Channel,))


def channel_kind(session: Session, channel_id: str) -> str | None:
    """The channel's kind (``web``, ``store`` …), or None if there is no such channel."""
    return _kinds.get(
        session,
        ("kind", channel_id),
        lambda: session.scalar(select(Channel.kind).where(Channel.id == channel_id)),
    )


def list_channels(
    session: Session,
    *,
    kind: str | None = None,
    active: bool | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Channel], str | None]:
    """Channels in id order (creation order, to the millisecond); ``cursor`` is the last id of
    the previous page, so pages stay stable while channels are added."""
    stmt = select(Channel)
    if kind:
        stmt = stmt.where(Channel.kind == kind)
    if active is not None:
        stmt = stmt.where(Channel.active == active)
    return keyset_page(session, stmt, Channel.id, after=cursor or None, limit=limit)


def update_channel(
    session: Session, channel_id: str, data: ChannelUpdate, *, caller: Caller | None = None
) -> Channel:
    """Change the fields sent; ``null`` clears ``location_id`` and is ignored elsewhere.

    A request that changes nothing writes nothing: no new ``updated_at``, no event. A key
    limited to locations may only change its locations' channels, and not move them away.
    """
    channel = _find(session, channel_id, for_update=True)
    if caller is not None:
        caller.require_location(channel.location_id)
        if "location_id" in data.model_fields_set:
            caller.require_location(data.location_id)
    changes = {
        field: value
        for field, value in data.model_dump(exclude_unset=True).items()
        if not (value is None and field in ("name", "active", "attributes"))
    }
    if "attributes" in changes:
        _check_attributes(changes["attributes"])
    changes = {f: v for f, v in changes.items() if getattr(channel, f) != v}
    if not changes:
        return channel
    for field, value in changes.items():
        setattr(channel, field, value)
    channel.updated_at = clock.now()
    session.flush()
    emit(
        session,
        "channel.updated",
        aggregate_type="channel",
        aggregate_id=channel.id,
        payload=_snapshot(channel),
    )
    return channel


def ensure_channels(session: Session, wanted: list[ChannelCreate]) -> list[Channel]:
    """Register the channels whose handles do not exist yet (set-up scripts, the demo)."""
    existing = set(session.scalars(select(Channel.handle)))
    return [create_channel(session, data) for data in wanted if data.handle not in existing]


def existing_handles(session: Session) -> set[str]:
    return set(session.scalars(select(Channel.handle)))


def link_location(session: Session, channel_id: str, location_id: str | None) -> Channel:
    """Point a store channel at its location (``None`` unlinks): called by the locations
    service in the same transaction, so ``channels.location_id`` and ``locations.channel_id``
    never disagree."""
    channel = _find(session, channel_id, for_update=True)
    if channel.location_id != location_id:
        channel.location_id = location_id
        channel.updated_at = clock.now()
        session.flush()
        emit(
            session,
            "channel.updated",
            aggregate_type="channel",
            aggregate_id=channel.id,
            payload=_snapshot(channel),
        )
    return channel
