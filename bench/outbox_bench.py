"""Outbox cost and worker throughput against raw baselines measured in the same run.

- write: N transactions that each insert one business row plus ``emit`` (event + deliveries),
  against N transactions that each insert the same business row alone.
- deliver: the worker draining N events to a no-op handler, against a raw loop that marks the
  same number of rows done in batches of the worker's size. Both also report the client's CPU
  time and the statements sent per delivery (through SQLAlchemy: the driver's implicit
  ``BEGIN``/``COMMIT`` on PostgreSQL are not counted, ``SAVEPOINT``/``RELEASE`` are).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from sqlalchemy import Integer, String, delete, insert, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
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


FLAKY = "bench.flaky"
FAIL_EVERY = 100
_failed_once: set[str] = set()


# Never matched by an emitted type: the flaky phase re-points the bench's delivery rows to it.
@on("bench.never", name=FLAKY)
def _flaky(session: Session, event: Event) -> None:
    """A no-op that fails the first attempt of every ``FAIL_EVERY``-th event."""
    if event.payload["n"] % FAIL_EVERY == 0 and event.id not in _failed_once:
        _failed_once.add(event.id)
        raise RuntimeError("flaky")


@contextmanager
def counting(engine: Engine) -> Iterator[dict[str, float]]:
    """Statements sent and client CPU seconds spent inside the block."""
    seen: dict[str, float] = {"statements": 0, "cpu_s": 0.0}

    def count(*_: Any) -> None:
        seen["statements"] += 1

    sa_event.listen(engine, "before_cursor_execute", count)
    started = time.process_time()
    try:
        yield seen
    finally:
        seen["cpu_s"] = time.process_time() - started
        sa_event.remove(engine, "before_cursor_execute", count)


def measured(engine: Engine, fn: Callable[[], object]) -> tuple[float, dict[str, float]]:
    """Wall seconds of ``fn`` plus its statements and client CPU."""
    with counting(engine) as seen:
        wall = timed(fn)
    return wall, seen


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

            deliver_s, deliver_cost = measured(db.engine, deliver)

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

            raw_deliver_s, raw_cost = measured(db.engine, raw_deliver)

            # The same rows again, now to a handler that fails one event in FAIL_EVERY once:
            # what splitting batches costs. The failed ones wait for their retry (not timed).
            with db.transaction() as s:
                s.execute(
                    update(Delivery).values(
                        status="pending", attempts=0, consumer=FLAKY, done_at=None
                    )
                )
            task = bar.add_task(f"[{backend}] worker, 1 in {FAIL_EVERY} failing", total=events)
            flaky_s, flaky_cost = measured(db.engine, deliver)

    result = {
        "events": events,
        "raw_insert_tx_per_s": events / raw_s,
        "insert_plus_emit_tx_per_s": events / outbox_s,
        "worker_events_per_s": events / deliver_s,
        "raw_batch_update_rows_per_s": events / raw_deliver_s,
        "worker_cpu_us_per_event": deliver_cost["cpu_s"] / events * 1e6,
        "worker_statements_per_event": deliver_cost["statements"] / events,
        "raw_cpu_us_per_row": raw_cost["cpu_s"] / events * 1e6,
        "raw_statements_per_row": raw_cost["statements"] / events,
        "worker_flaky_events_per_s": events / flaky_s,
        "worker_flaky_cpu_us_per_event": flaky_cost["cpu_s"] / events * 1e6,
        "worker_flaky_statements_per_event": flaky_cost["statements"] / events,
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
            (
                "raw batch update of 50",
                result["raw_batch_update_rows_per_s"],
                f"baseline; {result['raw_cpu_us_per_row']:.0f} µs CPU and"
                f" {result['raw_statements_per_row']:.2f} statements per row",
            ),
            (
                "worker delivery to a no-op handler",
                result["worker_events_per_s"],
                f"{deliver_s / raw_deliver_s:.2f}x the baseline's time;"
                f" {result['worker_cpu_us_per_event']:.0f} µs CPU and"
                f" {result['worker_statements_per_event']:.2f} statements per event",
            ),
            (
                f"worker delivery, 1 handler call in {FAIL_EVERY} failing",
                result["worker_flaky_events_per_s"],
                f"{flaky_s / raw_deliver_s:.2f}x the baseline's time;"
                f" {result['worker_flaky_cpu_us_per_event']:.0f} µs CPU and"
                f" {result['worker_flaky_statements_per_event']:.2f} statements per event",
            ),
        ],
    )
    return result
