"""Writing domain events: a row in the caller's transaction, plus one delivery per consumer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, event, exists, insert, select, text
from sqlalchemy.orm import Session

from seamline.db import bulk
from seamline.db.engine import EMITTED
from seamline.events.models import Delivery, OutboxEvent, WebhookEndpoint
from seamline.events.registry import PayloadTest, consumers_for
from seamline.kit import clock
from seamline.kit.ids import new_id

STREAM_CONSUMER = "stream:nats"
STREAM_ENABLED = "seamline.stream_enabled"
# The consumer that turns an event into one delivery per subscribed webhook endpoint
# (events/handlers.py). Its delivery is written only while some endpoint is enabled: most
# installations have none, and an event then costs one delivery row fewer per event (and the
# worker a claim, a handler call and a "done" update).
FANOUT = "webhooks.fanout"
_WEBHOOKS_ON = "seamline.webhooks_on"


def webhooks_on(session: Session) -> bool:
    """Whether an enabled webhook endpoint exists, read once per transaction (the first event
    the transaction writes decides for the rest of it)."""
    known = session.info.get(_WEBHOOKS_ON)
    if known is None:
        enabled = select(WebhookEndpoint.id).where(WebhookEndpoint.status == "enabled")
        known = bool(session.scalar(select(exists(enabled))))
        session.info[_WEBHOOKS_ON] = known
    return bool(known)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def webhooks_changed(session: Session) -> None:
    """Forget what ``webhooks_on`` read: an endpoint was created or enabled in this
    transaction (its later events see it), or the transaction ended (a session used for
    another one asks again)."""
    session.info.pop(_WEBHOOKS_ON, None)


# (consumer name, its payload test or None) for an event type
_Wanted = list[tuple[str, PayloadTest | None]]


def _consumers(session: Session, event_type: str, *, fanout_in_sql: bool = False) -> _Wanted:
    """The consumers an event of this type is delivered to (the stream's included), each with
    the payload test that may still refuse a given event; with ``fanout_in_sql``, the
    fan-out's too (the statement writing them decides)."""
    wanted: _Wanted = [
        (c.name, c.when)
        for c in consumers_for(event_type)
        if c.name != FANOUT or fanout_in_sql or webhooks_on(session)
    ]
    if session.info.get(STREAM_ENABLED):
        wanted.append((STREAM_CONSUMER, None))
    return wanted


def _names(wanted: _Wanted, payload: dict[str, Any]) -> list[str]:
    """The consumers of ``wanted`` that take this event."""
    return [name for name, when in wanted if when is None or when(payload)]


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
    names = _names(_consumers(session, event_type), payload)
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
    """``emit_many`` for the handful of events one request writes, where a statement costs
    less than a ``COPY``: on PostgreSQL one statement (the events' ``INSERT`` returning their
    sequence numbers to the deliveries' ``INSERT`` in the same statement); elsewhere two
    multi-row ``INSERT`` statements (the events, returning their sequence numbers in order,
    then all their deliveries)."""
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
    postgres = bulk.is_postgres(session)
    copy = copy and postgres
    if postgres and not copy:
        _insert_together(session, rows, events, now)
        session.info[EMITTED] = True
        return ids
    if copy:
        # Which events get deliveries is known before they are written (by position): when
        # none does (most of ingestion's ``customer.event_tracked``), the sequence numbers are
        # left to the column's default, in the order COPY writes the rows, and never fetched.
        found = _deliveries(session, range(len(rows)), events)
        if found:
            seqs = bulk.next_values(session, table, "seq", len(rows))
            for seq, row in zip(seqs, rows, strict=True):
                row["seq"] = seq
            found = [(seqs[n], target) for n, target in found]
        bulk.copy_rows(session, table, rows)
    else:
        stmt = insert(table).returning(table.c.seq, sort_by_parameter_order=True)
        seqs = list(session.execute(stmt, rows).scalars())
        found = _deliveries(session, seqs, events)
    deliveries = [
        {
            "event_seq": seq,
            "consumer": name,
            "aggregate_key": key,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for seq, (name, key) in found
    ]
    if copy:
        bulk.copy_rows(session, cast(Table, Delivery.__table__), deliveries)
    elif deliveries:
        session.execute(insert(Delivery), deliveries)
    session.info[EMITTED] = True
    return ids


def _deliveries(
    session: Session, refs: Sequence[Any], events: Sequence[Pending], *, fanout_in_sql: bool = False
) -> list[tuple[Any, tuple[str, str]]]:
    """(the event's ``ref``, (consumer, aggregate key)) for every delivery of ``events``."""
    consumers: dict[str, _Wanted] = {}
    found = []
    for ref, e in zip(refs, events, strict=True):
        wanted = consumers.get(e.event_type)
        if wanted is None:
            wanted = consumers[e.event_type] = _consumers(
                session, e.event_type, fanout_in_sql=fanout_in_sql
            )
        key = f"{e.aggregate_type}:{e.aggregate_id}"
        found += [(ref, (name, key)) for name in _names(wanted, e.payload)]
    return found


# PostgreSQL: the events and their deliveries in one statement (the deliveries join the
# sequence numbers the events' INSERT returns), the events numbered in the order given; the
# fan-out's deliveries only while an endpoint is enabled (asked by this statement itself, so
# the lean path needs no query of its own).
_TOGETHER = text(
    """
    WITH e AS (
        INSERT INTO outbox_events (id, type, aggregate_type, aggregate_id, payload, created_at)
        SELECT r.id, r.type, r.agg_type, r.agg_id, CAST(r.payload AS JSONB), :now
        FROM unnest(
            CAST(:ids AS VARCHAR[]), CAST(:types AS VARCHAR[]), CAST(:agg_types AS VARCHAR[]),
            CAST(:agg_ids AS VARCHAR[]), CAST(:payloads AS TEXT[])
        ) WITH ORDINALITY AS r(id, type, agg_type, agg_id, payload, n)
        ORDER BY r.n
        RETURNING seq, id
    )
    INSERT INTO event_deliveries
        (event_seq, consumer, aggregate_key, status, attempts, next_attempt_at, created_at)
    SELECT e.seq, d.consumer, d.agg_key, 'pending', 0, :now, :now
    FROM e JOIN unnest(
        CAST(:d_ids AS VARCHAR[]), CAST(:d_consumers AS VARCHAR[]), CAST(:d_keys AS VARCHAR[])
    ) AS d(id, consumer, agg_key) ON d.id = e.id
    WHERE d.consumer <> :fanout
       OR EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.status = 'enabled')
    """
)


def _insert_together(
    session: Session,
    rows: Sequence[dict[str, Any]],
    events: Sequence[Pending],
    now: datetime,
) -> None:
    ids = [r["id"] for r in rows]
    deliveries = _deliveries(session, ids, events, fanout_in_sql=True)
    session.execute(
        _TOGETHER,
        {
            "now": now,
            "ids": ids,
            "types": [r["type"] for r in rows],
            "agg_types": [r["aggregate_type"] for r in rows],
            "agg_ids": [r["aggregate_id"] for r in rows],
            "payloads": [json.dumps(r["payload"]) for r in rows],
            "d_ids": [ref for ref, _ in deliveries],
            "d_consumers": [name for _, (name, _) in deliveries],
            "d_keys": [key for _, (_, key) in deliveries],
            "fanout": FANOUT,
        },
    )
