"""The event log's retention: delivered history is pruned, open work never is."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from seamline.db.engine import Database
from seamline.events import service
from seamline.events.models import Delivery, OutboxEvent
from seamline.events.outbox import emit
from seamline.kit.clock import FrozenClock
from seamline.runtime import Runtime


def count(db: Database, model: type) -> int:
    with db.transaction(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_delivered_events_are_pruned_after_the_retention(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    with db.transaction() as session:
        # (a customer's cart events have a consumer, the timeline, whatever webhooks exist)
        mine = {"profile_id": "prf_someone"}
        old = emit(session, "cart.created", aggregate_type="cart", aggregate_id="a", payload=mine)
        stuck = emit(session, "cart.created", aggregate_type="cart", aggregate_id="b", payload=mine)
    runtime.worker().drain()
    with db.transaction() as session:
        # One event still has open work (a dead letter an operator may replay).
        seq = session.scalar(select(OutboxEvent.seq).where(OutboxEvent.id == stuck))
        session.execute(update(Delivery).where(Delivery.event_seq == seq).values(status="dead"))
    clock.advance(days=29)
    with db.transaction() as session:
        assert service.prune_delivered(session, older_than=timedelta(days=30)) == 0, (
            "within retention"
        )
    clock.advance(days=2)
    worker = runtime.worker()
    assert worker.keep_house() > 0
    with db.transaction(readonly=True) as session:
        remaining = set(session.scalars(select(OutboxEvent.id)))
    assert remaining == {stuck}, f"{old} pruned, the event with a dead letter kept"
    assert count(db, Delivery) == 1
