"""Durable timers: fire once at or after ``fire_at``, reschedule by key, cancel, retry, dead.

Timer kinds are global for the process, so the kinds here are ``test.timer.*`` and only fire
for timers these tests schedule. A handler's effect is a row in a table the test creates
(no unique constraint: a second firing would be visible).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from seamline.db.engine import Database
from seamline.events import registry, retry, timers
from seamline.events import service as events_service
from seamline.events.models import Timer
from seamline.events.worker import Worker
from seamline.kit.clock import FrozenClock
from seamline.runtime import Runtime

EFFECTS = "test_timer_effects"
PING = "test.timer.ping"
FLAKY = "test.timer.flaky"

# (key, payload) per successful call, in call order.
FIRED: list[tuple[str, dict[str, Any]]] = []
FAILURES: dict[str, int] = {}


def _effect(session: Session, key: str) -> None:
    session.execute(
        text(f"INSERT INTO {EFFECTS} (timer_key, worker) VALUES (:k, :w)"),
        {"k": key, "w": threading.current_thread().name},
    )


@registry.on_timer(PING)
def ping(session: Session, key: str, payload: dict[str, Any]) -> None:
    _effect(session, key)
    FIRED.append((key, payload))


@registry.on_timer(FLAKY)
def flaky(session: Session, key: str, payload: dict[str, Any]) -> None:
    """Writes its effect, then fails ``payload["fail"]`` times (the effect must roll back)."""
    _effect(session, key)
    failures = FAILURES.get(key, 0)
    if failures < int(payload["fail"]):
        FAILURES[key] = failures + 1
        raise RuntimeError(f"timer boom {key}")
    FIRED.append((key, payload))


@pytest.fixture(autouse=True)
def effects(db: Database) -> Iterator[None]:
    FIRED.clear()
    FAILURES.clear()
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {EFFECTS}"))
        conn.execute(text(f"CREATE TABLE {EFFECTS} (timer_key VARCHAR(200) NOT NULL, worker TEXT)"))
    yield
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {EFFECTS}"))


def effect_keys(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return [r[0] for r in conn.execute(text(f"SELECT timer_key FROM {EFFECTS} ORDER BY 1"))]


def schedule(db: Database, key: str, fire_at: datetime, kind: str = PING, **payload: Any) -> None:
    with db.transaction() as session:
        timers.schedule(session, key, kind=kind, fire_at=fire_at, payload=payload)


def timer(db: Database, key: str) -> Timer:
    with db.transaction(readonly=True) as session:
        return session.scalars(select(Timer).where(Timer.key == key)).one()


def timer_count(db: Database) -> int:
    with db.transaction(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(Timer)) or 0)


def test_timer_fires_once_at_fire_at_and_not_before(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    fire_at = clock.current + timedelta(minutes=10)
    schedule(db, "t:once", fire_at, n=1)
    worker = runtime.worker()

    assert worker.run_once() == 0
    clock.advance(minutes=10, microseconds=-1)
    assert worker.run_once() == 0
    assert FIRED == []
    assert timer(db, "t:once").status == "pending"

    clock.advance(microseconds=1)  # exactly fire_at
    assert worker.run_once() == 1
    row = timer(db, "t:once")
    assert (row.status, row.attempts, row.fired_at) == ("fired", 1, fire_at)
    assert FIRED == [("t:once", {"n": 1})]

    clock.advance(days=1)
    assert worker.drain() == 0
    assert effect_keys(db) == ["t:once"]


def test_late_worker_still_fires_an_overdue_timer(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    schedule(db, "t:late", clock.current + timedelta(seconds=5))
    clock.advance(hours=3)  # the worker was down
    runtime.worker().drain()
    assert effect_keys(db) == ["t:late"]


def test_rescheduling_a_key_keeps_one_timer_at_the_new_time(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    t0 = clock.current
    schedule(db, "t:moved", t0 + timedelta(minutes=5), v=1)
    schedule(db, "t:moved", t0 + timedelta(minutes=30), v=2)
    assert timer_count(db) == 1
    worker = runtime.worker()

    clock.advance(minutes=5)
    worker.drain()
    assert FIRED == [], "fired at the time it was moved away from"

    clock.advance(minutes=25)
    worker.drain()
    assert FIRED == [("t:moved", {"v": 2})]

    # Once fired, scheduling the same key again (a replayed event) does not fire it twice.
    schedule(db, "t:moved", clock.current, v=3)
    clock.advance(minutes=1)
    worker.drain()
    assert timer_count(db) == 1
    assert timer(db, "t:moved").status == "fired"
    assert effect_keys(db) == ["t:moved"]


def test_cancel_prevents_firing(db: Database, runtime: Runtime, clock: FrozenClock) -> None:
    schedule(db, "t:cancel", clock.current + timedelta(minutes=1))
    schedule(db, "t:keep", clock.current + timedelta(minutes=1))
    with db.transaction() as session:
        assert timers.cancel(session, "t:cancel") is True
        assert timers.cancel(session, "t:cancel") is False
        assert timers.cancel(session, "t:unknown") is False

    clock.advance(hours=1)
    runtime.worker().drain()
    assert timer(db, "t:cancel").status == "cancelled"
    assert effect_keys(db) == ["t:keep"]

    with db.transaction() as session:
        assert timers.cancel(session, "t:keep") is False, "a fired timer cannot be cancelled"


def test_cancel_then_schedule_in_one_transaction_revives_the_timer(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    schedule(db, "t:revived", clock.current + timedelta(minutes=1))
    with db.transaction() as session:
        assert timers.cancel(session, "t:revived")
        timers.schedule(
            session, "t:revived", kind=PING, fire_at=clock.current + timedelta(minutes=2)
        )
    clock.advance(minutes=2)
    runtime.worker().drain()
    assert effect_keys(db) == ["t:revived"]


def test_naive_fire_at_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="naive"), db.transaction() as session:
        timers.schedule(session, "t:naive", kind=PING, fire_at=datetime(2030, 1, 1))
    assert timer_count(db) == 0


def test_failing_timer_retries_with_backoff_then_dead_letters(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    schedule(db, "t:flaky", clock.current, kind=FLAKY, fail=retry.HANDLER_MAX_ATTEMPTS)
    worker = runtime.worker()

    for attempt in range(1, retry.HANDLER_MAX_ATTEMPTS + 1):
        failed_at = clock.current
        assert worker.run_once() == 1
        row = timer(db, "t:flaky")
        assert row.attempts == attempt
        assert row.last_error is not None
        assert "timer boom" in row.last_error
        if attempt < retry.HANDLER_MAX_ATTEMPTS:
            assert row.status == "pending"
            assert row.fire_at == failed_at + timedelta(seconds=2**attempt)
            clock.advance(seconds=2**attempt - 0.001)
            assert worker.run_once() == 0, "retried before its backoff"
            clock.advance(seconds=0.001)
    assert timer(db, "t:flaky").status == "dead"
    assert effect_keys(db) == [], "failed attempts must leave no effect"
    clock.advance(days=1)
    assert worker.drain() == 0

    with db.transaction(readonly=True) as session:
        dead = [d for d in events_service.list_dead(session) if d.kind == "timer"]
    assert [(d.reference, d.attempts) for d in dead] == [("t:flaky", 10)]

    # Replayed (the handler now succeeds: its ten failures are used up), it fires once.
    with db.transaction() as session:
        assert events_service.replay_dead(session, kind="timer") == 1
    assert worker.run_once() == 1
    row = timer(db, "t:flaky")
    assert (row.status, row.attempts, row.last_error) == ("fired", 1, None)
    assert effect_keys(db) == ["t:flaky"]


def test_unknown_timer_kind_is_dead_at_once(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    schedule(db, "t:nobody", clock.current, kind="test.timer.nobody")
    runtime.worker().drain()
    row = timer(db, "t:nobody")
    assert row.status == "dead"
    assert row.last_error is not None
    assert "no timer handler" in row.last_error


def test_concurrent_schedule_of_one_key_gives_one_timer(db: Database, clock: FrozenClock) -> None:
    rounds = 5
    errors: list[BaseException] = []

    def schedule_from_thread(key: str, offset: int, start: threading.Barrier) -> None:
        try:
            start.wait(timeout=10)
            with db.transaction() as session:
                timers.schedule(
                    session,
                    key,
                    kind=PING,
                    fire_at=clock.current + timedelta(minutes=offset),
                    payload={"offset": offset},
                )
                time.sleep(0.05)  # hold the transaction open so the other one has to wait
        except BaseException as exc:
            errors.append(exc)

    for n in range(rounds):
        start = threading.Barrier(2)
        threads = [
            threading.Thread(target=schedule_from_thread, args=(f"t:race{n}", offset, start))
            for offset in (1, 2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)

    assert not errors, errors
    with db.transaction(readonly=True) as session:
        rows = list(session.scalars(select(Timer).order_by(Timer.key)))
    assert [r.key for r in rows] == [f"t:race{n}" for n in range(rounds)]
    for row in rows:
        # Whichever committed last wins, consistently.
        assert row.status == "pending"
        assert row.fire_at == clock.current + timedelta(minutes=row.payload["offset"])


@pytest.mark.postgres_only
def test_two_workers_fire_each_timer_exactly_once(
    db: Database, database_url: str, clock: FrozenClock
) -> None:
    count = 200
    with db.transaction() as session:
        for n in range(count):
            timers.schedule(session, f"t:many{n:03}", kind=PING, fire_at=clock.current)

    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def drain() -> None:
        own = Database(database_url)
        try:
            start.wait(timeout=10)
            Worker(own, batch_size=10).drain()
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=drain, name=f"w{i}") for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    Worker(db).drain()  # whatever one worker left when the other still held it

    keys = effect_keys(db)
    assert keys == [f"t:many{n:03}" for n in range(count)], "each timer exactly once"
    with db.transaction(readonly=True) as session:
        statuses = set(session.scalars(select(Timer.status)))
    assert statuses == {"fired"}
    with db.engine.connect() as conn:
        workers = {r[0] for r in conn.execute(text(f"SELECT DISTINCT worker FROM {EFFECTS}"))}
    assert {"w1", "w2"} <= workers, workers


REARM = "test.timer.rearm"


@registry.on_timer(REARM)
def rearm(session: Session, key: str, payload: dict[str, Any]) -> None:
    """A recurring "later": fires, then schedules its own key again until ``left`` runs out."""
    _effect(session, key)
    FIRED.append((key, payload))
    if payload["left"] > 0:
        at = datetime.fromisoformat(payload["at"]) + timedelta(hours=1)
        timers.schedule(
            session,
            key,
            kind=REARM,
            fire_at=at,
            payload={"left": payload["left"] - 1, "at": at.isoformat()},
        )


def test_a_handler_can_schedule_its_own_key_again(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    start = clock.current
    schedule(db, "t:recurring", start, kind=REARM, left=2, at=start.isoformat())
    worker = runtime.worker()

    worker.drain()
    row = timer(db, "t:recurring")
    assert (row.status, row.fire_at, row.attempts) == ("pending", start + timedelta(hours=1), 0)
    clock.advance(minutes=59)
    worker.drain()
    assert len(FIRED) == 1
    clock.advance(minutes=1)
    worker.drain()
    clock.advance(hours=1)
    worker.drain()
    assert [p["left"] for _, p in FIRED] == [2, 1, 0]
    assert timer(db, "t:recurring").status == "fired"
    clock.advance(days=1)
    worker.drain()
    assert effect_keys(db) == ["t:recurring"] * 3
