"""Queued ingestion (``SEAMLINE_INGEST_MODE=queued``): acknowledge after a durable write of the
validated calls, resolve identity later in the worker (docs/identity.md, "Queued ingestion").

The route validates as in sync mode, then writes one ``ingest_inbox`` row per request — the
write key, the time the server received it and the validated calls as one JSON document — and
answers after that commit. The worker drains the inbox oldest first, several rows per
transaction: each row goes through ``ingest.record_calls`` exactly as the request would have
in sync mode (same ``received_at``, so the same clock-skew correction, the same ``messageId``
deduplication and erasure suppression), and the drained rows are deleted in the same
transaction, so a crash rolls back both and the rows are drained again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import String, Text, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from seamline.db.base import Base, BigIntPK
from seamline.db.engine import EMITTED, Database
from seamline.events.registry import on_round
from seamline.identity import ingest
from seamline.identity.rules import DEFAULT_RULES, IdentityRules
from seamline.identity.schemas import CALL_MODELS
from seamline.identity.wire import Incoming

log = structlog.get_logger("seamline.ingest")

# Calls resolved per drain transaction (whole inbox rows: a row is never split).
DRAIN_CALLS = 5000
# Rows looked at per drain (a request holds up to 500 KB of calls, usually a few hundred).
_CANDIDATES = 500


class IngestInbox(Base):
    """One acknowledged request's validated calls, waiting for the worker (queued mode)."""

    __tablename__ = "ingest_inbox"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime]
    count: Mapped[int]
    # A JSON array of encoded calls, kept as text: written once, read once, never queried
    # inside, and serialised by pydantic in one pass (no JSON type: no second encoding).
    calls: Mapped[str] = mapped_column(Text)


def encode(calls: Sequence[Incoming]) -> str:
    """Validated calls as stored in the inbox, a JSON array (``decode`` gives equal calls back).

    Fields at their default are left out: validating the stored call fills them in again."""
    parts = []
    for incoming in calls:
        sent_at = "null" if incoming.sent_at is None else f'"{incoming.sent_at.isoformat()}"'
        call = incoming.call.model_dump_json(by_alias=True, exclude_defaults=True)
        parts.append(f'{{"type":"{incoming.call_type}","sent_at":{sent_at},"call":{call}}}')
    return "[" + ",".join(parts) + "]"


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def decode(document: str) -> list[Incoming]:
    """The calls of an inbox row, as the route validated them."""
    return [_decode_one(stored) for stored in json.loads(document)]


def _decode_one(stored: dict[str, Any]) -> Incoming:
    kind = stored["type"]
    call = CALL_MODELS[kind].model_validate(stored["call"])
    call.timestamp, call.sent_at = _utc(call.timestamp), _utc(call.sent_at)
    sent_at = stored["sent_at"]
    return Incoming(kind, call, None if sent_at is None else datetime.fromisoformat(sent_at))


def enqueue(
    session: Session, calls: Sequence[Incoming], *, key_id: str, received_at: datetime
) -> None:
    """Write the request's validated calls to the inbox (one row), in the caller's transaction."""
    if not calls:
        return
    session.add(
        IngestInbox(
            key_id=key_id,
            received_at=received_at,
            count=len(calls),
            calls=encode(calls),
        )
    )
    session.info[EMITTED] = True  # wakes an embedded worker after the commit


def drain_in(
    session: Session,
    *,
    max_calls: int | None = DRAIN_CALLS,
    skip_locked: bool = True,
    upto: int | None = None,
    rules: IdentityRules = DEFAULT_RULES,
) -> int:
    """Store the oldest inbox rows' calls (whole rows, up to ``max_calls`` calls, at least one
    row; ``None``: every row up to id ``upto``) and delete those rows, in the caller's
    transaction. Returns the number of calls drained (stored, duplicate or suppressed).

    On PostgreSQL the rows are locked ``FOR UPDATE``, skipping rows another worker holds
    (``skip_locked``) or waiting for them (erasure, which must see every earlier call).
    """
    query = select(IngestInbox.id, IngestInbox.count).order_by(IngestInbox.id)
    if upto is not None:
        query = query.where(IngestInbox.id <= upto)
    if max_calls is not None:
        query = query.limit(_CANDIDATES)
    chosen: list[int] = []
    total = 0
    for row_id, count in session.execute(query):
        if chosen and max_calls is not None and total + count > max_calls:
            break
        chosen.append(row_id)
        total += count
    if not chosen:
        return 0
    stmt = (
        select(IngestInbox.id, IngestInbox.key_id, IngestInbox.received_at, IngestInbox.calls)
        .where(IngestInbox.id.in_(chosen))
        .order_by(IngestInbox.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=skip_locked)
    drained: list[int] = []
    calls = 0
    for row_id, key_id, received_at, stored in session.execute(stmt).all():
        batch = decode(stored)
        ingest.record_calls(session, batch, key_id=key_id, received_at=received_at, rules=rules)
        drained.append(row_id)
        calls += len(batch)
    if drained:
        session.execute(
            delete(IngestInbox).where(IngestInbox.id.in_(drained)),
            execution_options={"synchronize_session": False},
        )
    return calls


@on_round("identity.ingest_inbox")
def drain(db: Database, *, max_calls: int = DRAIN_CALLS) -> int:
    """One drain transaction (the worker runs one per round); returns the calls drained."""
    with db.transaction() as session:
        calls = drain_in(session, max_calls=max_calls)
    if calls:
        log.debug("ingest_inbox_drained", calls=calls)
    return calls


def drain_all_before(session: Session) -> int:
    """Every row already in the inbox, in the caller's transaction, waiting for rows another
    worker is draining (erasure: calls acknowledged before it must be stored, then erased)."""
    upto = session.scalar(select(func.max(IngestInbox.id)))
    if upto is None:
        return 0
    return drain_in(session, max_calls=None, skip_locked=False, upto=upto)


def pending(session: Session) -> int:
    """Calls acknowledged and not yet drained."""
    return int(session.scalar(select(func.coalesce(func.sum(IngestInbox.count), 0))) or 0)
