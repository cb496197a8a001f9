"""Outbox cost and worker throughput against raw baselines measured in the same run.

- write: N transactions that each insert one business row plus ``emit`` (event + deliveries),
  against N transactions that each insert the same business row alone.
- deliver: the worker draining N events to a no-op handler, against a raw loop that marks the
  same number of rows done in batches of the worker's size.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from sqlalchemy import Integer, String, delete, insert, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from bench.common import fresh_database, progress, show, timed
from seamline.db.base import Base
from seamline.events.outbox import emit
from seamline.events.registry import Event, on
from seamline.events.worker import Worker
from seamline.kit.ids import new_id


class BenchRow(Base):
    __tablename__ = "bench_rows"
    __table_args__ = {"info": {"bench": True}}
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


@on("bench.*", name="bench.noop")
def _noop(session: Session, event: Event) -> None:
    """A handler that does nothing: the measured cost is the worker's own."""


def run(backend: str, postgres_url: str | None, *, events: int, console: Console) -> dict[str, Any]:
    with fresh_database(backend, postgres_url) as db:
        BenchRow.__table__.create(db.engine)  # type: ignore[attr-defined]
        with progress(console) as bar:
            task = bar.add_task(f"[{backend}] raw inserts", total=events)

            def raw() -> None:
                for i in range(events):
                    with db.transaction() as s:
                        s.execute(insert(BenchRow).values(id=new_id("row"), n=i))
                    bar.advance(task)

            raw_s = timed(raw)
            task = bar.add_task(f"[{backend}] insert + emit", total=events)

            def with_outbox() -> None:
                for i in range(events):
                    with db.transaction() as s:
                        row_id = new_id("row")
                        s.execute(insert(BenchRow).values(id=row_id, n=i))
                        emit(
                            s,
                            "bench.created",
                            aggregate_type="row",
                            aggregate_id=row_id,
                            payload={"n": i},
                        )
                    bar.advance(task)

            outbox_s = timed(with_outbox)

            # Only the bench consumer should count; drop other consumers' rows from the queue.
            from seamline.events.models import Delivery

            with db.transaction() as s:
                s.execute(delete(Delivery).where(Delivery.consumer != "bench.noop"))
            task = bar.add_task(f"[{backend}] worker delivery", total=events)
            worker = Worker(db, batch_size=50)

            def deliver() -> None:
                while True:
                    done = worker.run_once()
                    if not done:
                        break
                    bar.advance(task, done)

            deliver_s = timed(deliver)

            # Baseline: the same rows marked done in batches, with no ordering check or handler.
            with db.transaction() as s:
                s.execute(update(Delivery).values(status="pending"))
            task = bar.add_task(f"[{backend}] raw batch update", total=events)

            def raw_deliver() -> None:
                while True:
                    with db.transaction() as s:
                        ids = list(
                            s.scalars(
                                select(Delivery.id)
                                .where(Delivery.status == "pending")
                                .order_by(Delivery.id)
                                .limit(50)
                            )
                        )
                        if not ids:
                            return
                        s.execute(
                            update(Delivery).where(Delivery.id.in_(ids)).values(status="done")
                        )
                    bar.advance(task, len(ids))

            raw_deliver_s = timed(raw_deliver)

    result = {
        "events": events,
        "raw_insert_tx_per_s": events / raw_s,
        "insert_plus_emit_tx_per_s": events / outbox_s,
        "worker_events_per_s": events / deliver_s,
        "raw_batch_update_rows_per_s": events / raw_deliver_s,
    }
    show(
        console,
        f"Outbox on {backend} ({events} events)",
        [
            ("raw insert, one per transaction", result["raw_insert_tx_per_s"], "baseline"),
            (
                "insert + emit, one per transaction",
                result["insert_plus_emit_tx_per_s"],
                f"{outbox_s / raw_s:.2f}x the baseline's time",
            ),
            ("raw batch update of 50", result["raw_batch_update_rows_per_s"], "baseline"),
            (
                "worker delivery to a no-op handler",
                result["worker_events_per_s"],
                f"{deliver_s / raw_deliver_s:.2f}x the baseline's time",
            ),
        ],
    )
    return result
