"""The worker: delivers outbox events to consumers and fires due timers, and runs the round jobs
domains register (identity's queued-ingestion inbox, identity/ingest_queue.py).

Transactional handlers run inside the claiming transaction, together with marking their delivery
done, so their effects commit exactly once. External sinks (webhooks, the stream) are leased,
called outside any transaction, and recorded afterwards: at least once, deduplicated by event id.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from seamline.db.engine import Database
from seamline.events import claiming, registry, retry
from seamline.events.batching import HandlerItem, run_handlers
from seamline.events.models import Delivery, OutboxEvent, Timer
from seamline.events.outbox import STREAM_CONSUMER
from seamline.events.registry import WEBHOOK_PREFIX, Event, Leased, Outcome
from seamline.kit import clock
from seamline.observability import metrics

if TYPE_CHECKING:
    from seamline.events.stream import NatsStream
    from seamline.events.webhooks import WebhookSender

log = structlog.get_logger("seamline.worker")

# The worker's own bulk updates never concern ORM objects in its session: skip synchronising.
NO_SYNC = {"synchronize_session": False}


def to_event(row: OutboxEvent) -> Event:
    return Event(
        id=row.id,
        seq=row.seq,
        type=row.type,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        payload=row.payload,
        created_at=row.created_at,
    )


def _fail(row: Delivery | Timer, error: str, delay: timedelta | None, now: datetime) -> None:
    row.last_error = error[:2000]
    if delay is None:
        row.status = "dead"
        log.error("dead_letter", table=type(row).__tablename__, id=row.id, error=error[:200])
        metrics.DEAD_LETTERS.inc()
    elif isinstance(row, Delivery):
        row.next_attempt_at = now + delay
        row.locked_until = None
    else:
        row.fire_at = now + delay


def _fail_delivery(
    session: Session,
    delivery_id: int,
    attempts: int,
    error: str,
    delay: timedelta | None,
    now: datetime,
) -> None:
    """Record a failed attempt of an in-process delivery: retry after ``delay``, or dead."""
    values: dict[str, Any] = {"attempts": attempts, "last_error": error[:2000]}
    if delay is None:
        values["status"] = "dead"
        log.error("dead_letter", table=Delivery.__tablename__, id=delivery_id, error=error[:200])
        metrics.DEAD_LETTERS.inc()
    else:
        values.update(next_attempt_at=now + delay, locked_until=None)
    stmt = update(Delivery).where(Delivery.id == delivery_id).values(**values)
    session.execute(stmt, execution_options=NO_SYNC)


def _load_events(session: Session, seqs: set[int]) -> dict[int, Event]:
    """The batch's events by sequence number (plain columns, no ORM objects)."""
    stmt = select(
        OutboxEvent.id,
        OutboxEvent.seq,
        OutboxEvent.type,
        OutboxEvent.aggregate_type,
        OutboxEvent.aggregate_id,
        OutboxEvent.payload,
        OutboxEvent.created_at,
    ).where(claiming.among(session, OutboxEvent.seq, sorted(seqs)))
    return {row.seq: Event(*row) for row in session.execute(stmt)}


class Worker:
    def __init__(
        self,
        db: Database,
        *,
        batch_size: int = 50,
        lease: timedelta = timedelta(seconds=60),
        webhooks: WebhookSender | None = None,
        stream: NatsStream | None = None,
        housekeeping: Sequence[Callable[[Database], int]] = (),
        housekeeping_every: timedelta = timedelta(minutes=10),
    ) -> None:
        self.db = db
        self.batch_size = batch_size
        self.lease = lease
        self.webhooks = webhooks
        self.stream = stream
        self.housekeeping = housekeeping
        self.housekeeping_every = housekeeping_every
        self._last_housekeeping: datetime | None = None
        self._job_paused_until: dict[str, datetime] = {}

    def keep_house(self) -> int:
        """Run the periodic chores (such as purging expired idempotency keys) when they are due."""
        now = clock.now()
        if self._last_housekeeping and now - self._last_housekeeping < self.housekeeping_every:
            return 0
        self._last_housekeeping = now
        removed = 0
        for chore in self.housekeeping:
            try:
                removed += chore(self.db)
            except Exception:  # a failed chore is retried next time; delivery goes on
                log.exception("housekeeping_failed", chore=getattr(chore, "__name__", "?"))
        return removed

    # -- one round -------------------------------------------------------------------------
    def run_once(self) -> int:
        """Run each registered round job once (e.g. drain one batch of queued tracking calls),
        deliver one batch of due events and fire one batch of due timers; returns work done."""
        return self._round_jobs() + self._deliver_batch() + self._fire_timers()

    def drain(self, max_rounds: int = 1000) -> int:
        """Run rounds until nothing is due (tests, ``seamline worker --once``)."""
        total = 0
        for _ in range(max_rounds):
            done = self.run_once()
            total += done
            if done == 0:
                break
        return total

    def run_forever(self, stop: threading.Event, poll: float = 0.5) -> None:
        log.info("worker_started", database=self.db.dialect)
        failures = 0
        while not stop.is_set():
            try:
                done = self.run_once()
                failures = 0
            except Exception:
                failures += 1
                log.exception("worker_round_failed")
                stop.wait(min(30.0, 0.5 * 2**failures))
                continue
            self.keep_house()  # cheap unless due (every few minutes), even under steady load
            if done == 0:
                self.db.wakeup.wait(poll)
                self.db.wakeup.clear()
        log.info("worker_stopped")

    # -- round jobs -----------------------------------------------------------------------
    def _round_jobs(self) -> int:
        """One run of each job a domain registered with ``registry.on_round``.

        A failed job rolls back its own transaction (its work stays for the next round) and is
        paused for a few seconds, while deliveries and timers go on."""
        now = clock.now()
        done = 0
        for name, job in registry.round_jobs().items():
            paused = self._job_paused_until.get(name)
            if paused is not None and now < paused:
                continue
            try:
                done += job(self.db)
            except Exception:
                log.exception("round_job_failed", job=name)
                self._job_paused_until[name] = now + timedelta(seconds=5)
                continue
            self._job_paused_until.pop(name, None)
        return done

    # -- deliveries ------------------------------------------------------------------------
    def _deliver_batch(self) -> int:
        now = clock.now()
        leased: list[Leased] = []
        with self.db.transaction() as session:
            rows = claiming.due_deliveries(session, now, self.batch_size)
            if not rows:
                return 0
            events = _load_events(session, {r.event_seq for r in rows})
            handlers: list[HandlerItem] = []
            hooks = 0
            for row in rows:
                event = events[row.event_seq]
                if row.consumer.startswith(WEBHOOK_PREFIX):
                    if self.webhooks and hooks >= self.webhooks.parallel:
                        continue  # left pending for the next batch: sends run all at once
                    hooks += 1
                if row.consumer.startswith(WEBHOOK_PREFIX) or row.consumer == STREAM_CONSUMER:
                    leased.append(Leased(row.id, row.consumer, row.attempts + 1, event))
                    continue
                consumer = registry.consumer(row.consumer)
                if consumer is None:
                    error = f"no handler named {row.consumer!r} is registered"
                    _fail_delivery(session, row.id, row.attempts + 1, error, None, now)
                    continue
                queue = (row.consumer, row.aggregate_key)
                handlers.append(
                    HandlerItem(
                        row.id,
                        row.consumer,
                        queue,
                        row.attempts + 1,
                        consumer.handler,
                        event,
                        consumer.many,
                    )
                )
            if leased:
                session.execute(
                    update(Delivery)
                    .where(
                        claiming.among(session, Delivery.id, [item.delivery_id for item in leased])
                    )
                    .values(attempts=Delivery.attempts + 1, locked_until=now + self.lease),
                    execution_options=NO_SYNC,
                )
            outcomes = run_handlers(session, handlers)
            # The "done" marks join the handlers' effects in this transaction: one statement.
            if outcomes.done:
                session.execute(
                    update(Delivery)
                    .where(
                        claiming.among(session, Delivery.id, [i.delivery_id for i in outcomes.done])
                    )
                    .values(
                        status="done",
                        done_at=now,
                        last_error=None,
                        attempts=Delivery.attempts + 1,
                    ),
                    execution_options=NO_SYNC,
                )
                metrics.DELIVERIES.labels(kind="handler", result="ok").inc(len(outcomes.done))
            for item, error in outcomes.failed:
                metrics.DELIVERIES.labels(kind="handler", result="failed").inc()
                delay = retry.handler_delay(item.attempts)
                _fail_delivery(session, item.delivery_id, item.attempts, error, delay, now)
        if leased:
            self._send(leased)
            self._record(leased)
        return len(rows)

    def _send(self, leased: list[Leased]) -> None:
        hooks = [item for item in leased if item.consumer.startswith(WEBHOOK_PREFIX)]
        streamed = [item for item in leased if item.consumer == STREAM_CONSUMER]
        if hooks:
            if self.webhooks is None:
                for item in hooks:
                    item.outcome = Outcome(False, "this worker has no webhook sender")
            else:
                self.webhooks.send(self.db, hooks)
        if streamed:
            if self.stream is None:
                for item in streamed:
                    item.outcome = Outcome(False, "this worker is not connected to the stream")
            else:
                self.stream.send(streamed)

    def _record(self, leased: list[Leased]) -> None:
        now = clock.now()
        with self.db.transaction() as session:
            for item in leased:
                row = session.get(Delivery, item.delivery_id, with_for_update=True)
                if row is None or row.status != "pending":
                    continue
                kind = "stream" if item.consumer == STREAM_CONSUMER else "webhook"
                metrics.DELIVERIES.labels(
                    kind=kind, result="ok" if item.outcome.ok else "failed"
                ).inc()
                if item.outcome.ok:
                    row.status, row.done_at, row.last_error = "done", now, None
                    row.locked_until = None
                elif row.attempts != item.attempts:
                    # Our lease lapsed and another worker has leased the row since: a failure
                    # here must not reschedule it (nor clear that worker's lease, which would
                    # let a third one send it too). The newer attempt's outcome decides.
                    log.info("stale_lease", delivery_id=row.id, consumer=row.consumer)
                else:
                    delay_for: Callable[[int], timedelta | None] = (
                        retry.stream_delay if kind == "stream" else retry.webhook_delay
                    )
                    delay = None if item.outcome.final else delay_for(item.attempts)
                    _fail(row, item.outcome.error or "failed", delay, now)
                if kind == "webhook" and self.webhooks is not None:
                    retry_at = row.next_attempt_at if row.status == "pending" else None
                    self.webhooks.record(session, item, next_retry_at=retry_at)

    # -- timers ----------------------------------------------------------------------------
    def _fire_timers(self) -> int:
        now = clock.now()
        with self.db.transaction() as session:
            stmt = (
                select(Timer)
                .where(Timer.status == claiming.PENDING, Timer.fire_at <= now)
                .order_by(Timer.fire_at, Timer.id)
                .limit(self.batch_size)
            )
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            timers = list(session.scalars(stmt))
            for timer in timers:
                timer.attempts += 1
                handler = registry.timer_handler(timer.kind)
                if handler is None:
                    _fail(timer, f"no timer handler for kind {timer.kind!r}", None, now)
                    continue
                savepoint = session.begin_nested()
                try:
                    handler(session, timer.key, timer.payload)
                    savepoint.commit()
                except Exception as exc:
                    savepoint.rollback()
                    log.warning("timer_failed", key=timer.key, error=repr(exc))
                    _fail(timer, repr(exc), retry.handler_delay(timer.attempts), now)
                    continue
                metrics.TIMERS_FIRED.inc()
                if timer.status == "pending" and timer.attempts == 0:
                    # The handler scheduled its own key again (a recurring "later"): schedule()
                    # reset the attempts and moved fire_at, so the timer stays armed.
                    timer.fired_at, timer.last_error = now, None
                    continue
                timer.status, timer.fired_at, timer.last_error = "fired", now, None
            return len(timers)
