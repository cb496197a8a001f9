"""The worker: delivers outbox events to consumers and fires due timers.

Transactional handlers run inside the claiming transaction, together with marking their delivery
done, so their effects commit exactly once. External sinks (webhooks, the stream) are leased,
called outside any transaction, and recorded afterwards: at least once, deduplicated by event id.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import func, literal_column, or_, select, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnClause

from seamline.db.engine import Database
from seamline.events import registry, retry
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


def _due_deliveries(session: Session, now: datetime, limit: int) -> list[Delivery]:
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
        fresh = sorted({(c.consumer, c.aggregate_key) for c in candidates} - runs.keys())
        heads = {
            (consumer, key): first
            for consumer, key, first in session.execute(
                select(Delivery.consumer, Delivery.aggregate_key, func.min(Delivery.event_seq))
                .where(Delivery.status == PENDING)
                .where(tuple_(Delivery.consumer, Delivery.aggregate_key).in_(fresh))
                .group_by(Delivery.consumer, Delivery.aggregate_key)
            )
        }
        for c in candidates:
            queue = (c.consumer, c.aggregate_key)
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
    stmt = (
        select(Delivery)
        .where(Delivery.id.in_(wanted), Delivery.status == PENDING)
        .where(or_(Delivery.locked_until.is_(None), Delivery.locked_until < now))
        .order_by(Delivery.event_seq)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Several workers: each skips rows another one holds instead of waiting for them.
        stmt = stmt.with_for_update(skip_locked=True)
    locked = {row.id: row for row in session.scalars(stmt)}
    # Keep each queue's run only up to its first row we did not get: if another worker holds
    # a row, everything after it in that queue waits too.
    claimed: list[Delivery] = []
    for run in runs.values():
        for delivery_id in run:
            if delivery_id not in locked:
                break
            claimed.append(locked[delivery_id])
    claimed.sort(key=lambda row: row.event_seq)
    return claimed


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
        """Deliver one batch of due events and fire one batch of due timers; returns work done."""
        return self._deliver_batch() + self._fire_timers()

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

    # -- deliveries ------------------------------------------------------------------------
    def _deliver_batch(self) -> int:
        now = clock.now()
        leased: list[Leased] = []
        with self.db.transaction() as session:
            rows = _due_deliveries(session, now, self.batch_size)
            if not rows:
                return 0
            seqs = {r.event_seq for r in rows}
            events = {
                e.seq: to_event(e)
                for e in session.scalars(select(OutboxEvent).where(OutboxEvent.seq.in_(seqs)))
            }
            stalled: set[tuple[str, str]] = set()
            hooks = 0
            for row in rows:
                queue = (row.consumer, row.aggregate_key)
                if queue in stalled:
                    continue  # an earlier event of this aggregate just failed: keep the order
                if row.consumer.startswith(WEBHOOK_PREFIX):
                    if self.webhooks and hooks >= self.webhooks.parallel:
                        continue  # left pending for the next batch: sends run all at once
                    hooks += 1
                row.attempts += 1
                event = events[row.event_seq]
                if row.consumer.startswith(WEBHOOK_PREFIX) or row.consumer == STREAM_CONSUMER:
                    row.locked_until = now + self.lease
                    leased.append(Leased(row.id, row.consumer, row.attempts, event))
                elif not self._run_handler(session, row, event, now):
                    stalled.add(queue)
        if leased:
            self._send(leased)
            self._record(leased)
        return len(rows)

    def _run_handler(self, session: Session, row: Delivery, event: Event, now: datetime) -> bool:
        """Run one transactional handler in a savepoint; returns whether it succeeded."""
        consumer = registry.consumer(row.consumer)
        if consumer is None:
            _fail(row, f"no handler named {row.consumer!r} is registered", None, now)
            return False
        # Each handler gets its own copy of the payload: one that changes it (a dict is mutable
        # even in a frozen Event) must not change what the next consumer in the batch sees.
        private = dataclasses.replace(event, payload=copy.deepcopy(event.payload))
        savepoint = session.begin_nested()
        try:
            consumer.handler(session, private)
            savepoint.commit()
        except Exception as exc:
            savepoint.rollback()
            log.warning("handler_failed", consumer=row.consumer, event_id=event.id, error=repr(exc))
            metrics.DELIVERIES.labels(kind="handler", result="failed").inc()
            _fail(row, repr(exc), retry.handler_delay(row.attempts), now)
            return False
        row.status, row.done_at, row.last_error = "done", now, None
        metrics.DELIVERIES.labels(kind="handler", result="ok").inc()
        return True

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
