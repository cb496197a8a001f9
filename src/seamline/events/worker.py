"""The worker: delivers outbox events to consumers and fires due timers, and runs the round jobs
domains register (identity's queued-ingestion inbox, identity/ingest_queue.py).

Transactional handlers run inside the claiming transaction, together with marking their delivery
done, so their effects commit exactly once. External sinks (webhooks, the stream) are leased,
called outside any transaction, and recorded afterwards: at least once, deduplicated by event id.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import bindparam, func, literal_column, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnClause, ColumnElement

from seamline.db import bulk
from seamline.db.engine import Database
from seamline.events import registry, retry
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

# Rendered inline, not bound: the planners only use the partial "pending" indexes when the
# query states the same literal condition.
PENDING: ColumnClause[str] = literal_column("'pending'")
# Candidates read per claimed slot: room for candidates that turn out to wait behind another.
CANDIDATE_FACTOR = 4
MAX_CANDIDATE_PAGES = 20
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


def _in_order_sink(consumer: str) -> bool:
    """Consumers that take a run of one aggregate's events in one batch, strictly in order:
    in-process handlers (one after another in the batch's transaction) and the stream
    (published one after another; a failure fails the rest). Webhooks are sent in parallel,
    so they take one event per aggregate per batch."""
    return not consumer.startswith(WEBHOOK_PREFIX)


@dataclass(slots=True)
class Claimed:
    """A delivery row claimed (and, on PostgreSQL, locked) for this batch."""

    id: int
    event_seq: int
    consumer: str
    aggregate_key: str
    attempts: int

    @staticmethod
    def columns() -> tuple[InstrumentedAttribute[Any], ...]:
        return (
            Delivery.id,
            Delivery.event_seq,
            Delivery.consumer,
            Delivery.aggregate_key,
            Delivery.attempts,
        )


def _due_deliveries(session: Session, now: datetime, limit: int) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries such that every consumer sees an aggregate's events
    in order, even across retries and several workers.

    A delivery is claimable when it is the head of its (consumer, aggregate) queue — the
    earliest pending one — or, for in-order consumers, follows the head in an unbroken run.
    Three index-driven steps instead of one anti-join (whose plan degrades to quadratic when
    the planner misjudges a backlog): due candidates in event order, the head of each
    candidate's queue, then a lock that skips rows another worker holds.
    """
    wanted: list[int] = []
    runs: dict[tuple[str, str], list[int]] = {}
    after = -1
    # Page on while candidates only wait behind earlier ones (one busy aggregate must not hide
    # the rest of the queue), with a bound so one claim never scans an unbounded backlog.
    for _ in range(MAX_CANDIDATE_PAGES):
        candidates = session.execute(
            select(Delivery.id, Delivery.consumer, Delivery.aggregate_key, Delivery.event_seq)
            .where(Delivery.status == PENDING, Delivery.next_attempt_at <= now)
            .where(or_(Delivery.locked_until.is_(None), Delivery.locked_until < now))
            .where(Delivery.event_seq > after)
            .order_by(Delivery.event_seq)
            .limit(limit * CANDIDATE_FACTOR)
        ).all()
        if not candidates:
            break
        # Queue heads are looked up lazily, ``limit`` queues at a time in candidate order: a
        # fresh backlog fills the batch from the first lookup instead of resolving every
        # candidate's queue.
        heads: dict[tuple[str, str], int] = {}
        for index, c in enumerate(candidates):
            queue = (c.consumer, c.aggregate_key)
            if queue not in runs and queue not in heads:
                queues = _next_queues(candidates[index:], (runs, heads), limit)
                heads.update(_queue_heads(session, queues))
            if heads.get(queue) == c.event_seq:
                runs[queue] = [c.id]
            elif queue in runs and _in_order_sink(c.consumer):
                # Every pending delivery of an in-order queue after its head is due (only heads
                # are ever retried), so the candidates of a queue form an unbroken run.
                runs[queue].append(c.id)
            else:
                continue
            wanted.append(c.id)
            if len(wanted) >= limit:
                break
        if len(wanted) >= limit or len(candidates) < limit * CANDIDATE_FACTOR:
            break
        after = candidates[-1].event_seq
    if not wanted:
        return []
    # Re-checked under the lock: a row another worker finished meanwhile is no longer pending.
    # Plain columns, not ORM objects: the batch's bookkeeping is a few set-based updates.
    stmt = (
        select(*Claimed.columns())
        .where(_among(session, Delivery.id, wanted), Delivery.status == PENDING)
        .where(or_(Delivery.locked_until.is_(None), Delivery.locked_until < now))
        .order_by(Delivery.event_seq)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Several workers: each skips rows another one holds instead of waiting for them.
        stmt = stmt.with_for_update(skip_locked=True)
    locked = {row.id: Claimed(*row) for row in session.execute(stmt)}
    # Keep each queue's run only up to its first row we did not get: if another worker holds
    # a row, everything after it in that queue waits too.
    claimed: list[Claimed] = []
    for run in runs.values():
        for delivery_id in run:
            if delivery_id not in locked:
                break
            claimed.append(locked[delivery_id])
    claimed.sort(key=lambda row: row.event_seq)
    return claimed


def _next_queues(
    candidates: Sequence[Any], known: tuple[Container[tuple[str, str]], ...], count: int
) -> list[tuple[str, str]]:
    """Up to ``count`` distinct queues of ``candidates`` in none of ``known``, in order."""
    queues: dict[tuple[str, str], None] = {}
    for c in candidates:
        queue = (c.consumer, c.aggregate_key)
        if not any(queue in k for k in known):
            queues[queue] = None
            if len(queues) >= count:
                break
    return list(queues)


def _queue_heads(session: Session, queues: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The earliest pending event of each queue (-1 when it has none any more).

    Two plain ``IN`` lists rather than one of pairs: SQLite answers a row-value ``IN`` by
    scanning the whole pending index, while this form is one index seek per combination
    (a batch has few consumers); the combinations nobody asked for are ignored.
    """
    stmt = (
        select(Delivery.consumer, Delivery.aggregate_key, func.min(Delivery.event_seq))
        .where(Delivery.status == PENDING)
        .where(_among(session, Delivery.consumer, sorted({consumer for consumer, _ in queues})))
        .where(_among(session, Delivery.aggregate_key, sorted({key for _, key in queues})))
        .group_by(Delivery.consumer, Delivery.aggregate_key)
    )
    found = {(consumer, key): first for consumer, key, first in session.execute(stmt)}
    return {queue: found.get(queue, -1) for queue in queues}


def _among(
    session: Session, column: InstrumentedAttribute[Any], values: Sequence[Any]
) -> ColumnElement[bool]:
    """``column IN (values)`` built without coercing each value (an array on PostgreSQL, an
    expanding parameter elsewhere): a literal list of 50 ids costs more than its query."""
    if bulk.is_postgres(session):
        return bulk.among(session, column, values)
    return column.in_(bindparam(None, list(values), expanding=True, type_=column.type))


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
    ).where(_among(session, OutboxEvent.seq, sorted(seqs)))
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
            rows = _due_deliveries(session, now, self.batch_size)
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
                    .where(_among(session, Delivery.id, [item.delivery_id for item in leased]))
                    .values(attempts=Delivery.attempts + 1, locked_until=now + self.lease),
                    execution_options=NO_SYNC,
                )
            outcomes = run_handlers(session, handlers)
            # The "done" marks join the handlers' effects in this transaction: one statement.
            if outcomes.done:
                session.execute(
                    update(Delivery)
                    .where(_among(session, Delivery.id, [i.delivery_id for i in outcomes.done]))
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
                .where(Timer.status == PENDING, Timer.fire_at <= now)
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
