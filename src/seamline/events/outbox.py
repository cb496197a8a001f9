"""Writing domain events: a row in the caller's transaction, plus one delivery per consumer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

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
