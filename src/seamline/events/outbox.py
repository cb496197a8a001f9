"""Writing domain events: a row in the caller's transaction, plus one delivery per consumer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from seamline.db import bulk
from seamline.db.engine import EMITTED
from seamline.events.models import Delivery, OutboxEvent
from seamline.events.registry import consumers_for
from seamline.kit import clock
from seamline.kit.ids import new_id

STREAM_CONSUMER = "stream:nats"
STREAM_ENABLED = "seamline.stream_enabled"


def emit(
    session: Session,
    event_type: str,
    *,
    aggregate_type: str,
    aggregate_id: str,
    payload: dict[str, Any],
) -> str:
    """Record ``event_type`` for delivery after the surrounding transaction commits.

    Nothing leaves the process here: if the transaction rolls back, the event never existed.
    Returns the event id (``evt_…``), which receivers use to deduplicate.
    """
    now = clock.now()
    event_id = new_id("evt")
    row = OutboxEvent(
        id=event_id,
        type=event_type,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        payload=payload,
        created_at=now,
    )
    session.add(row)
    session.flush()
    names = [c.name for c in consumers_for(event_type)]
    if session.info.get(STREAM_ENABLED):
        names.append(STREAM_CONSUMER)
    if names:
        key = f"{aggregate_type}:{aggregate_id}"
        session.execute(
            insert(Delivery),
            [
                {
                    "event_seq": row.seq,
                    "consumer": n,
                    "aggregate_key": key,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for n in names
            ],
        )
    session.info[EMITTED] = True
    return event_id


@dataclass(frozen=True)
class Pending:
    """One event for ``emit_many``."""

    event_type: str
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]


def emit_many(session: Session, events: Sequence[Pending]) -> list[str]:
    """``emit`` for many events in two bulk writes (the events in order, then all their
    deliveries) instead of two statements each; returns their ids in order. On PostgreSQL the
    rows go by ``COPY`` (ingestion writes thousands at once)."""
    return _emit_bulk(session, events, copy=True)


def emit_rows(session: Session, events: Sequence[Pending]) -> list[str]:
    """``emit_many`` through two multi-row ``INSERT`` statements (the events, returning their
    sequence numbers in order, then all their deliveries) on every database: for the handful of
    events one request writes, two statements cost fewer round trips than ``COPY``."""
    return _emit_bulk(session, events, copy=False)


def _emit_bulk(session: Session, events: Sequence[Pending], *, copy: bool) -> list[str]:
    if not events:
        return []
    now = clock.now()
    table = cast(Table, OutboxEvent.__table__)
    ids = [new_id("evt") for _ in events]
    rows = [
        {
            "id": event_id,
            "type": e.event_type,
            "aggregate_type": e.aggregate_type,
            "aggregate_id": e.aggregate_id,
            "payload": e.payload,
            "created_at": now,
        }
        for event_id, e in zip(ids, events, strict=True)
    ]
    session.flush()  # rows added through the ORM keep their place in the sequence
    copy = copy and bulk.is_postgres(session)
    if copy:
        seqs = bulk.next_values(session, table, "seq", len(rows))
        for seq, row in zip(seqs, rows, strict=True):
            row["seq"] = seq
        bulk.copy_rows(session, table, rows)
    else:
        stmt = insert(table).returning(table.c.seq, sort_by_parameter_order=True)
        seqs = list(session.execute(stmt, rows).scalars())
    stream = bool(session.info.get(STREAM_ENABLED))
    consumers: dict[str, list[str]] = {}
    deliveries = []
    for seq, e in zip(seqs, events, strict=True):
        names = consumers.get(e.event_type)
        if names is None:
            names = [c.name for c in consumers_for(e.event_type)]
            if stream:
                names.append(STREAM_CONSUMER)
            consumers[e.event_type] = names
        key = f"{e.aggregate_type}:{e.aggregate_id}"
        deliveries += [
            {
                "event_seq": seq,
                "consumer": name,
                "aggregate_key": key,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for name in names
        ]
    if copy:
        bulk.copy_rows(session, cast(Table, Delivery.__table__), deliveries)
    elif deliveries:
        session.execute(insert(Delivery), deliveries)
    session.info[EMITTED] = True
    return ids
