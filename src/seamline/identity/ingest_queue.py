"""Queued ingestion (``SEAMLINE_INGEST_MODE=queued``): acknowledge after a durable write of the
validated calls, resolve identity later in the worker (docs/identity.md, "Queued ingestion").

The route validates as in sync mode, then writes one ``ingest_inbox`` row per request — the
write key, the time the server received it and the validated calls as one JSON document — and
answers after that commit. The worker drains the inbox oldest first, several rows per
transaction: consecutive rows of one write key go through one ``ingest.record_calls``, each
call with its own row's ``received_at`` (so the same clock-skew correction and stored times
as in sync mode, the same ``messageId`` deduplication and erasure suppression), and the
drained rows are deleted in the same transaction, so a crash rolls back both and the rows are
drained again. A row whose calls fail is retried alone a few times, then marked ``failed``
with its error (dead-lettered) so it cannot hold the inbox up.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy import CheckConstraint, String, Text, delete, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from seamline.db import bulk
from seamline.db.base import Base, BigIntPK
from seamline.db.engine import EMITTED, Database
from seamline.events.registry import on_round
from seamline.identity import ingest
from seamline.identity.resolution import GRAPH_LOCK
from seamline.identity.rules import DEFAULT_RULES, IdentityRules
from seamline.identity.schemas import CALL_MODELS
from seamline.identity.wire import Incoming
from seamline.kit import clock

log = structlog.get_logger("seamline.ingest")
R = TypeVar("R")

# Calls resolved per drain transaction (whole inbox rows: a row is never split).
DRAIN_CALLS = 5000
# Rows looked at per drain: as many as calls, so single-call requests (analytics.js sends
# one call per request by default) fill a drain as well as batches do.
_CANDIDATES = DRAIN_CALLS
# A row whose calls fail this many drains in a row is marked failed and skipped from then on.
MAX_ATTEMPTS = 5
PENDING, FAILED = "pending", "failed"
_ERROR_MAX = 2000


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
    # Dead-lettering: failed drains of this row so far, the last error, and once MAX_ATTEMPTS
    # is reached state 'failed' (skipped by the drain, kept for a look and ``requeue``).
    state: Mapped[str] = mapped_column(String(10), default=PENDING, server_default=PENDING)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    failed_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint("state IN ('pending', 'failed')", name="state_known"),)


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


@dataclass(frozen=True)
class _Row:
    id: int
    key_id: str
    received_at: datetime
    count: int
    attempts: int
    calls: str


def drain_in(
    session: Session,
    *,
    max_calls: int | None = DRAIN_CALLS,
    skip_locked: bool = True,
    upto: int | None = None,
    rules: IdentityRules = DEFAULT_RULES,
) -> int:
    """Store the oldest pending inbox rows' calls (whole rows, up to ``max_calls`` calls, at
    least one row; ``None``: every row up to id ``upto``) and delete those rows, in the
    caller's transaction. Returns the number of calls drained (stored, duplicate or
    suppressed); a row that fails is left pending with one more attempt counted (or marked
    ``failed`` after ``MAX_ATTEMPTS``) and does not count.

    On PostgreSQL the rows are locked ``FOR UPDATE``, skipping rows another worker holds
    (``skip_locked``) or waiting for them (erasure, which must see every earlier call).
    """
    if max_calls is None:
        calls, after = 0, 0
        while True:  # pages of DRAIN_CALLS calls: memory stays bounded whatever the backlog
            drained, last = _drain_page(session, DRAIN_CALLS, skip_locked, after, upto, rules)
            if last is None:
                return calls
            calls, after = calls + drained, last
    return _drain_page(session, max_calls, skip_locked, None, upto, rules)[0]


def _drain_page(
    session: Session,
    max_calls: int,
    skip_locked: bool,
    after: int | None,
    upto: int | None,
    rules: IdentityRules,
) -> tuple[int, int | None]:
    """One page of rows (ids above ``after``): (calls drained, last row id looked at)."""
    query = (
        select(IngestInbox.id, IngestInbox.count)
        .where(IngestInbox.state == PENDING)
        .order_by(IngestInbox.id)
        .limit(_CANDIDATES)
    )
    if after is not None:
        query = query.where(IngestInbox.id > after)
    if upto is not None:
        query = query.where(IngestInbox.id <= upto)
    candidates = ((int(row_id), int(count)) for row_id, count in session.execute(query))
    chosen = [row_id for row_id, _ in _within(candidates, max_calls, lambda c: c[1])]
    if not chosen:
        return 0, None
    stmt = select(
        IngestInbox.id,
        IngestInbox.key_id,
        IngestInbox.received_at,
        IngestInbox.count,
        IngestInbox.attempts,
        IngestInbox.calls,
    ).order_by(IngestInbox.id)
    postgres = bulk.is_postgres(session)
    if postgres and skip_locked:
        # As many rows as were chosen, from the first chosen on, skipping rows another drain
        # holds: two drains take consecutive runs of rows instead of the second finding the
        # same candidates locked and draining the few left (docs/identity.md). The state is
        # re-checked under the lock; rows past the call budget stay pending for the next drain.
        stmt = stmt.where(IngestInbox.state == PENDING, IngestInbox.id >= chosen[0])
        if upto is not None:
            stmt = stmt.where(IngestInbox.id <= upto)
        stmt = stmt.limit(len(chosen)).with_for_update(skip_locked=True)
    else:
        # Re-checked under the lock: another worker may have drained or failed a row since.
        stmt = stmt.where(bulk.among(session, IngestInbox.id, chosen), IngestInbox.state == PENDING)
        if postgres:
            stmt = stmt.with_for_update()
    rows = _within((_Row(*raw) for raw in session.execute(stmt)), max_calls, lambda r: r.count)
    drained: list[int] = []
    calls = 0
    for group in _groups(rows):
        calls += _drain_group(session, group, rules, drained)
    if drained:
        session.execute(
            delete(IngestInbox).where(bulk.among(session, IngestInbox.id, drained)),
            execution_options={"synchronize_session": False},
        )
    return calls, chosen[-1]


def _within(rows: Iterable[R], max_calls: int, count: Callable[[R], int]) -> list[R]:
    """The rows, oldest first, up to ``max_calls`` calls (at least one row)."""
    kept: list[R] = []
    total = 0
    for row in rows:
        calls = count(row)
        if kept and total + calls > max_calls:
            break
        kept.append(row)
        total += calls
    return kept


def _groups(rows: Sequence[_Row]) -> list[list[_Row]]:
    """Rows handed to ``record_calls`` together: runs of consecutive rows of one write key
    (so calls are stored in the order they were acknowledged). A row that failed before
    goes alone, so it cannot hold the others back again."""
    groups: list[list[_Row]] = []
    for row in rows:
        last = groups[-1] if groups else None
        if last is None or row.attempts or last[-1].attempts or last[-1].key_id != row.key_id:
            groups.append([row])
        else:
            last.append(row)
    return groups


def _drain_group(
    session: Session, group: Sequence[_Row], rules: IdentityRules, drained: list[int]
) -> int:
    """Record a group's calls in a savepoint; when that fails, each row on its own, so one
    bad row costs an attempt (its own) and the others are stored."""
    try:
        with session.begin_nested():
            calls: list[Incoming] = []
            times: list[datetime] = []
            for row in group:
                batch = decode(row.calls)
                calls += batch
                times += [row.received_at] * len(batch)
            ingest.record_calls(
                session, calls, key_id=group[0].key_id, received_at=times, rules=rules
            )
    except Exception as exc:
        # The savepoint's writes are gone, and with them any graph lock taken inside it.
        session.info.pop(GRAPH_LOCK, None)
        if len(group) > 1:
            return sum(_drain_group(session, [row], rules, drained) for row in group)
        _failed_attempt(session, group[0], exc)
        return 0
    drained.extend(row.id for row in group)
    return len(calls)


def _failed_attempt(session: Session, row: _Row, exc: Exception) -> None:
    attempts = row.attempts + 1
    error = f"{type(exc).__name__}: {exc}"[:_ERROR_MAX]
    dead = attempts >= MAX_ATTEMPTS
    session.execute(
        update(IngestInbox)
        .where(IngestInbox.id == row.id)
        .values(
            attempts=attempts,
            last_error=error,
            state=FAILED if dead else PENDING,
            failed_at=clock.now() if dead else None,
        ),
        execution_options={"synchronize_session": False},
    )
    log.warning(
        "ingest_inbox_row_failed" if not dead else "ingest_inbox_row_dead",
        row=row.id,
        calls=row.count,
        attempts=attempts,
        error=error,
        exc_info=exc,
    )


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
    """Calls acknowledged and not yet drained (rows marked ``failed`` excluded)."""
    total = select(func.coalesce(func.sum(IngestInbox.count), 0)).where(
        IngestInbox.state == PENDING
    )
    return int(session.scalar(total) or 0)


def failed(session: Session) -> list[IngestInbox]:
    """Rows the drain gave up on (``MAX_ATTEMPTS`` failures), oldest first, with the error."""
    return list(
        session.scalars(
            select(IngestInbox).where(IngestInbox.state == FAILED).order_by(IngestInbox.id)
        )
    )


def requeue(session: Session, ids: Sequence[int] | None = None) -> int:
    """Put failed rows (``ids``, or all) back in the queue with their attempts reset — once
    what made them fail is fixed. Returns how many rows."""
    stmt = update(IngestInbox).where(IngestInbox.state == FAILED)
    if ids is not None:
        stmt = stmt.where(IngestInbox.id.in_(list(ids)))
    result = session.execute(
        stmt.values(state=PENDING, attempts=0, failed_at=None),
        execution_options={"synchronize_session": False},
    )
    return int(getattr(result, "rowcount", 0) or 0)
