"""Durable timers: schedule a "later" inside a business transaction; the worker fires it once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from seamline.db.dialect import insert_ignoring_conflict
from seamline.events.models import Timer
from seamline.kit import clock
from seamline.kit.clock import ensure_utc


def schedule(
    session: Session,
    key: str,
    *,
    kind: str,
    fire_at: datetime,
    payload: dict[str, Any] | None = None,
) -> Timer:
    """Create the timer ``key``, or move a still-pending one to ``fire_at``.

    The key is unique: scheduling the same "later" twice (a retried request, a replayed event)
    keeps one timer. A timer that already fired is left alone and returned as it is.
    """
    fire_at = ensure_utc(fire_at)
    values = {
        "key": key,
        "kind": kind,
        "payload": payload or {},
        "fire_at": fire_at,
        "status": "pending",
        "attempts": 0,
        "created_at": clock.now(),
    }
    inserted = insert_ignoring_conflict(session, Timer, values, on=["key"])
    timer = session.scalars(select(Timer).where(Timer.key == key).with_for_update()).one()
    if not inserted and timer.status in ("pending", "cancelled"):
        timer.kind = kind
        timer.fire_at = fire_at
        timer.payload = payload or {}
        timer.status = "pending"
        timer.attempts = 0
    return timer


def cancel(session: Session, key: str) -> bool:
    """Cancel a pending timer; returns whether one was cancelled."""
    result = session.execute(
        update(Timer)
        .where(Timer.key == key, Timer.status == "pending")
        .values(status="cancelled")
        .returning(Timer.id)
    )
    return result.first() is not None
