"""The outbox and its worker: transactional emit, retries, savepoints, order, dead letters.

The handlers below are global for the process (every ``emit`` creates a delivery for each
consumer whose pattern matches), so they react only to ``test.outbox.*`` / ``test.concurrent.*``.
Their effects are rows in a table the test creates with raw SQL: no unique constraint, so a
duplicate effect would be visible.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from seamline.cli.main import app as cli_app
from seamline.db.engine import Database
from seamline.events import claiming, registry, retry, service
from seamline.events.models import Delivery, OutboxEvent, WebhookEndpoint
from seamline.events.outbox import FANOUT, STREAM_CONSUMER, Pending, emit, emit_many, emit_rows
from seamline.events.registry import Event, Leased, Outcome
from seamline.events.schemas import WebhookEndpointCreate
from seamline.events.worker import Worker
from seamline.kit.clock import FrozenClock
from seamline.kit.crypto import SecretBox
from seamline.runtime import Runtime
from seamline.settings import Settings, get_settings
from tests.statements import recorded

RECORDER = "test.outbox.recorder"
MUTATOR = "test.outbox.mutator"
CONCURRENT = "test.outbox.concurrent"
SWALLOWER = "test.outbox.swallower"
DUPER = "test.outbox.duper"
PICKY = "test.outbox.picky"
EFFECTS = "test_outbox_effects"


class WorkerCrash(BaseException):
    """Stands for the process dying in the middle of a batch (not an ordinary failure)."""


# (key, ok, payload seen) per call of the recorder, in call order.
CALLS: list[tuple[str, bool, dict[str, Any]]] = []
# How many times each event has failed so far (kept outside the database on purpose).
FAILED: dict[str, int] = {}
# How many times the recorder has been called per event (``fail_calls`` picks calls that fail).
CALLED: dict[str, int] = {}
CRASHED: set[str] = set()


# Registered before the recorder so, within one batch, its delivery for an event comes first.
@registry.on("test.outbox.mutate", name=MUTATOR)
def mutate_payload(session: Session, event: Event) -> None:
    event.payload["key"] = "mutated"
    event.payload.pop("keep", None)


@registry.on("test.outbox.picky", name=PICKY, when=lambda payload: payload.get("want") is True)
def picky(session: Session, event: Event) -> None:
    """Acts only on events whose payload says ``want: true`` (its ``when`` says the same)."""
    assert event.payload.get("want") is True


@registry.on("test.outbox.*", name=RECORDER)
def record(session: Session, event: Event) -> None:
    """Writes its effect first, then fails ``payload["fail"]`` times (the effect must vanish)."""
    key = str(event.payload["key"])
    seen = dict(event.payload)
    session.execute(
        text(f"INSERT INTO {EFFECTS} (event_id, k) VALUES (:e, :k)"), {"e": event.id, "k": key}
    )
    if event.payload.get("crash") and event.id not in CRASHED:
        CRASHED.add(event.id)
        raise WorkerCrash(key)
    CALLED[event.id] = CALLED.get(event.id, 0) + 1
    if CALLED[event.id] in event.payload.get("fail_calls", ()):
        CALLS.append((key, False, seen))
        raise RuntimeError(f"flaky {key}")
    failed = FAILED.get(event.id, 0)
    if failed < int(event.payload.get("fail", 0)):
        FAILED[event.id] = failed + 1
        CALLS.append((key, False, seen))
        raise RuntimeError(f"boom {key}")
    CALLS.append((key, True, seen))


@registry.on("test.concurrent.*", name=CONCURRENT)
def record_concurrent(session: Session, event: Event) -> None:
    session.execute(
        text(
            "INSERT INTO test_concurrent_effects (event_id, agg, n, worker) VALUES (:e, :a, :n, :w)"
        ),
        {
            "e": event.id,
            "a": event.aggregate_id,
            "n": event.payload["n"],
            "w": threading.current_thread().name,
        },
    )
    time.sleep(0.001)  # long enough for the two workers' batches to overlap


@pytest.fixture(autouse=True)
def effects(db: Database) -> Iterator[None]:
    CALLS.clear()
    FAILED.clear()
    CALLED.clear()
    CRASHED.clear()
    # ``id`` keeps the order in which committed effects were written.
    auto_id = "id INTEGER PRIMARY KEY AUTOINCREMENT" if db.is_sqlite else "id BIGSERIAL PRIMARY KEY"
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {EFFECTS}"))
        conn.execute(
            text(
                f"CREATE TABLE {EFFECTS} ({auto_id}, event_id VARCHAR(40) NOT NULL, k VARCHAR(40))"
            )
        )
    yield
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {EFFECTS}"))


def put(
    db: Database, key: str, *, aggregate: str = "a1", kind: str = "test.outbox.x", **extra: Any
) -> str:
    with db.transaction() as session:
        return emit(
            session,
            kind,
            aggregate_type="test",
            aggregate_id=aggregate,
            payload={"key": key, **extra},
        )


def delivery(db: Database, event_id: str, consumer: str = RECORDER) -> Delivery:
    with db.transaction(readonly=True) as session:
        return session.execute(
            select(Delivery)
            .join(OutboxEvent, OutboxEvent.seq == Delivery.event_seq)
            .where(OutboxEvent.id == event_id, Delivery.consumer == consumer)
        ).scalar_one()


def effect_rows(db: Database) -> list[tuple[str, str]]:
    with db.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT event_id, k FROM {EFFECTS} ORDER BY k, event_id"))
        return [(r[0], r[1]) for r in rows]


def ok_keys() -> list[str]:
    return [key for key, ok, _ in CALLS if ok]


def effect_order(db: Database) -> list[str]:
    """Keys of the committed effects, in the order they were written."""
    with db.engine.connect() as conn:
        return [r[0] for r in conn.execute(text(f"SELECT k FROM {EFFECTS} ORDER BY id"))]


# -- 1. the outbox is part of the caller's transaction ------------------------------------------
def add_endpoint(session: Session, status: str = "enabled") -> None:
    now = datetime.now(UTC)
    session.add(
        WebhookEndpoint(
            id=f"we_{status}",
            url="https://example.test/hook",
            description="",
            event_types=["*"],
            secret_encrypted="x",
            status=status,
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()


@pytest.mark.parametrize("webhooks", [False, True], ids=["no-endpoint", "endpoint"])
@pytest.mark.parametrize("writer", [emit_rows, emit_many], ids=["emit_rows", "emit_many"])
def test_bulk_emits_number_events_in_order_with_a_delivery_per_consumer(
    db: Database, writer: Any, webhooks: bool
) -> None:
    """``emit_rows`` (one statement on PostgreSQL) and ``emit_many`` (COPY there) write what
    ``emit`` would: sequence numbers in the order given, after an event emitted one by one in
    the same transaction, and one pending delivery per consumer that wants each event — the
    webhook fan-out's only while an endpoint is enabled, a consumer with a ``when`` only for
    the events it accepts."""
    with db.transaction() as session:
        add_endpoint(session, "enabled" if webhooks else "disabled")
    with db.transaction() as session:
        first = emit(
            session, "test.outbox.x", aggregate_type="test", aggregate_id="a0", payload={"key": "0"}
        )
        ids = writer(
            session,
            [
                Pending(
                    "test.outbox.x", "test", "a1", {"key": "1", "text": 'naïve 🚲 "quoted" \\ back'}
                ),
                Pending("test.outbox.mutate", "test", "a2", {"key": "2", "nested": {"n": [1, 2]}}),
                Pending("nobody.wants.this", "test", "a3", {"key": "3"}),
                Pending("test.outbox.picky", "test", "a4", {"key": "4", "want": True}),
                Pending("test.outbox.picky", "test", "a5", {"key": "5", "want": False}),
            ],
        )
        one_by_one = [
            emit(
                session, "test.outbox.picky", aggregate_type="test", aggregate_id=f"a{n}", payload=p
            )
            for n, p in ((6, {"key": "6", "want": True}), (7, {"key": "7"}))
        ]
    with db.transaction(readonly=True) as session:
        events = session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq)).all()
        assert [e.id for e in events] == [first, *ids, *one_by_one]
        assert [e.payload["key"] for e in events] == ["0", "1", "2", "3", "4", "5", "6", "7"]
        assert events[1].payload["text"] == 'naïve 🚲 "quoted" \\ back'
        assert events[2].payload["nested"] == {"n": [1, 2]}
        found = {
            (seq, consumer, key)
            for seq, consumer, key in session.execute(
                select(Delivery.event_seq, Delivery.consumer, Delivery.aggregate_key).where(
                    Delivery.status == "pending"
                )
            )
        }
    expected = {
        (e.seq, c.name, f"test:{e.aggregate_id}")
        for e in events
        for c in registry.consumers_for(e.type)
        if (c.name != FANOUT or webhooks) and (c.when is None or c.when(e.payload))
    }
    assert found == expected
    # A consumer's ``when`` refuses an event: no delivery for it, the others' still written.
    picked = {key for _, consumer, key in found if consumer == PICKY}
    assert picked == {"test:a4", "test:a6"}
    assert {key for _, consumer, key in found if consumer == RECORDER} >= {"test:a5", "test:a7"}
    assert any(consumer == FANOUT for _, consumer, _ in found) is webhooks
    assert (events[2].seq, MUTATOR, "test:a2") in found
    assert (events[1].seq, MUTATOR, "test:a1") not in found


def test_bulk_emit_of_events_nobody_takes_keeps_their_order(db: Database) -> None:
    """``emit_many`` of a batch with no delivery at all (on PostgreSQL a ``COPY`` that leaves
    the sequence numbers to the column's default) numbers the events in the order given,
    between the events emitted before and after it, and writes no delivery."""
    with db.transaction() as session:
        first = emit(session, "nobody.wants.this", aggregate_type="t", aggregate_id="a", payload={})
        batch = [Pending("nobody.wants.this", "t", f"b{n}", {"n": n}) for n in range(1200)]
        ids = emit_many(session, batch)
        last = emit(session, "nobody.wants.this", aggregate_type="t", aggregate_id="z", payload={})
        later = emit_many(session, [Pending("test.outbox.picky", "t", "c", {"want": True})])
    with db.transaction(readonly=True) as session:
        events = session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq)).all()
        assert [e.id for e in events] == [first, *ids, last, *later]
        assert [e.payload.get("n") for e in events[1:-2]] == list(range(1200))
        deliveries = session.execute(select(Delivery.event_seq, Delivery.consumer)).all()
    assert {consumer for _, consumer in deliveries} >= {PICKY}
    assert {seq for seq, _ in deliveries} == {events[-1].seq}


def test_emit_in_rolled_back_transaction_leaves_no_event_and_no_delivery(db: Database) -> None:
    db.wakeup.clear()
    inside: list[int] = []

    def emit_then_fail() -> None:
        with db.transaction() as session:
            emit(
                session,
                "test.outbox.x",
                aggregate_type="test",
                aggregate_id="a1",
                payload={"key": "R"},
            )
            # Inside the transaction the rows exist (so the rollback is what removes them).
            inside.append(int(session.scalar(select(func.count()).select_from(OutboxEvent)) or 0))
            inside.append(int(session.scalar(select(func.count()).select_from(Delivery)) or 0))
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        emit_then_fail()
    assert inside[0] == 1
    assert inside[1] >= 1
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 0
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert not db.wakeup.is_set(), "a rolled-back emit must not wake the worker"

    event_id = put(db, "C")
    assert db.wakeup.is_set()
    with db.transaction(readonly=True) as session:
        consumers = set(
            session.scalars(
                select(Delivery.consumer)
                .join(OutboxEvent, OutboxEvent.seq == Delivery.event_seq)
                .where(OutboxEvent.id == event_id)
            )
        )
    assert RECORDER in consumers
    assert FANOUT not in consumers  # no webhook endpoint: no fan-out to do
    assert MUTATOR not in consumers  # its pattern does not match test.outbox.x
    assert STREAM_CONSUMER not in consumers  # this database has no stream


def test_the_fan_out_is_queued_while_an_endpoint_is_enabled(db: Database) -> None:
    """Checked once per transaction (by its first event), and again after this transaction
    enables an endpoint itself."""

    def consumers_of(event_id: str) -> set[str]:
        with db.transaction(readonly=True) as session:
            return set(
                session.scalars(
                    select(Delivery.consumer)
                    .join(OutboxEvent, OutboxEvent.seq == Delivery.event_seq)
                    .where(OutboxEvent.id == event_id)
                )
            )

    with db.transaction() as session:
        add_endpoint(session, "disabled")
    assert FANOUT not in consumers_of(put(db, "D"))
    with db.transaction() as session:
        before = emit(session, "test.outbox.x", aggregate_type="t", aggregate_id="1", payload={})
        service.create_endpoint(
            session,
            WebhookEndpointCreate(url="https://example.test/h", event_types=["test.*"]),
            box=SecretBox("test"),
        )
        after = emit(session, "test.outbox.x", aggregate_type="t", aggregate_id="1", payload={})
    assert FANOUT not in consumers_of(before)
    assert FANOUT in consumers_of(after)
    assert FANOUT in consumers_of(put(db, "E"))
    # A session used for a second transaction asks again.
    with db.engine.begin() as conn:
        conn.execute(update(WebhookEndpoint).values(status="disabled"))
    session = db.sessions()
    try:
        first = emit(session, "test.outbox.x", aggregate_type="t", aggregate_id="2", payload={})
        session.commit()
        with db.engine.begin() as conn:
            conn.execute(update(WebhookEndpoint).values(status="enabled"))
        second = emit(session, "test.outbox.x", aggregate_type="t", aggregate_id="2", payload={})
        session.commit()
    finally:
        session.close()
    assert FANOUT not in consumers_of(first)
    assert FANOUT in consumers_of(second)


def test_stream_delivery_only_when_the_database_streams(database_url: str) -> None:
    streaming = Database(database_url, stream_enabled=True)
    try:
        with streaming.transaction() as session:
            emit(
                session,
                "test.outbox.x",
                aggregate_type="test",
                aggregate_id="s",
                payload={"key": "S"},
            )
        with streaming.transaction(readonly=True) as session:
            consumers = set(session.scalars(select(Delivery.consumer)))
        assert STREAM_CONSUMER in consumers
        assert RECORDER in consumers
    finally:
        streaming.dispose()


# -- 2. at least once: a failure is recorded and retried after its backoff ----------------------
def test_failure_is_recorded_and_retried_after_the_backoff(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    t0 = clock.current
    event_id = put(db, "F1", fail=1)
    worker = runtime.worker()

    worker.run_once()
    row = delivery(db, event_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error is not None
    assert "boom F1" in row.last_error
    assert retry.handler_delay(1) == timedelta(seconds=2)
    assert row.next_attempt_at == t0 + timedelta(seconds=2)
    assert row.done_at is None
    assert effect_rows(db) == [], "the failed call's write must be rolled back"

    clock.advance(seconds=1.999)
    assert worker.drain() == 0
    assert [k for k, _, _ in CALLS] == ["F1"], "retried before its delay"
    assert delivery(db, event_id).attempts == 1

    clock.advance(seconds=0.001)
    worker.drain()
    row = delivery(db, event_id)
    assert (row.status, row.attempts, row.last_error) == ("done", 2, None)
    assert row.done_at == clock.current
    assert effect_rows(db) == [(event_id, "F1")]

    clock.advance(hours=2)
    assert worker.drain() == 0
    assert len(CALLS) == 2
    assert ok_keys() == ["F1"]
    assert effect_rows(db) == [(event_id, "F1")]


def test_backoff_doubles_and_gives_up_after_ten_attempts() -> None:
    assert [retry.handler_delay(n) for n in range(1, 10)] == [
        timedelta(seconds=2**n) for n in range(1, 10)
    ]
    assert retry.handler_delay(10) is None
    assert retry.HANDLER_MAX_ATTEMPTS == 10


# -- 3. a handler's writes commit with its delivery, or not at all -------------------------------
def test_failed_handler_writes_roll_back_but_the_rest_of_the_batch_commits(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    good = put(db, "G", aggregate="g")
    bad = put(db, "B", aggregate="b", fail=1)
    worker = runtime.worker()

    worker.run_once()  # one batch: both deliveries
    # The batch runs in one savepoint: B's failure rolls G's first run back too, so G is
    # replayed in a savepoint of its own (its effect counts once); B is not run again.
    assert [(k, ok) for k, ok, _ in CALLS] == [("G", True), ("B", False), ("G", True)]
    assert effect_rows(db) == [(good, "G")], "only the successful handler's write survives"
    assert delivery(db, good).attempts == 1
    assert delivery(db, good).status == "done"
    assert (delivery(db, bad).status, delivery(db, bad).attempts) == ("pending", 1)

    clock.advance(seconds=2)
    worker.drain()
    assert effect_rows(db) == [(bad, "B"), (good, "G")]
    assert delivery(db, bad).status == "done"


def test_worker_dying_mid_batch_commits_neither_effects_nor_progress(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    first = put(db, "K1", aggregate="k1")
    second = put(db, "K2", aggregate="k2", crash=True)
    worker = runtime.worker()

    with pytest.raises(WorkerCrash):
        worker.run_once()
    # K1's handler ran and its savepoint was released, but the batch never committed.
    assert ok_keys() == ["K1"]
    assert effect_rows(db) == []
    for event_id in (first, second):
        row = delivery(db, event_id)
        assert (row.status, row.attempts, row.done_at) == ("pending", 0, None)

    worker.drain()  # the restarted worker delivers both, each effect once
    assert effect_rows(db) == [(first, "K1"), (second, "K2")]
    assert [delivery(db, e).attempts for e in (first, second)] == [1, 1]


def test_a_handler_cannot_change_the_event_another_consumer_sees(
    db: Database, runtime: Runtime
) -> None:
    event_id = put(db, "P", kind="test.outbox.mutate", keep=[1, 2])
    runtime.worker().drain()
    assert delivery(db, event_id, MUTATOR).status == "done"
    assert [seen for _, _, seen in CALLS] == [{"key": "P", "keep": [1, 2]}]


# -- 3b. one savepoint per batch, split at a failing handler -------------------------------------
def statements_of(db: Database, fn: Any) -> list[str]:
    """The SQL statements ``fn`` sends (upper-cased), in order."""
    with recorded(db) as sent:
        fn()
    return [statement.upper() for statement in sent]


def test_a_clean_batch_takes_one_savepoint_and_one_done_update(
    db: Database, runtime: Runtime
) -> None:
    ids = [put(db, f"S{i}", aggregate=f"s{i}") for i in range(20)]
    worker = runtime.worker()
    sent = statements_of(db, worker.run_once)
    assert sorted(ok_keys()) == sorted(f"S{i}" for i in range(20))
    assert [delivery(db, e).status for e in ids] == ["done"] * 20
    assert sum(s.startswith("SAVEPOINT") for s in sent) == 1
    assert sum(s.startswith("RELEASE SAVEPOINT") for s in sent) == 1
    done_updates = [s for s in sent if s.startswith("UPDATE EVENT_DELIVERIES")]
    assert len(done_updates) == 1, "one statement marks the whole batch done"


def test_one_failing_handler_among_good_ones_fails_alone(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    good = [put(db, f"G{i}", aggregate=f"g{i}") for i in range(2)]
    bad = put(db, "B", aggregate="b", fail=1)
    good += [put(db, f"G{i}", aggregate=f"g{i}") for i in range(2, 5)]
    worker = runtime.worker()

    assert worker.run_once() > 0  # one batch holds all six
    assert [k for k, ok, _ in CALLS if not ok] == ["B"], "the failing handler runs once"
    assert sorted(effect_rows(db)) == sorted(zip(good, [f"G{i}" for i in range(5)], strict=True))
    for event_id in good:
        row = delivery(db, event_id)
        assert (row.status, row.attempts, row.last_error) == ("done", 1, None)
    row = delivery(db, bad)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error is not None
    assert "boom B" in row.last_error

    clock.advance(seconds=2)
    worker.drain()
    assert delivery(db, bad).status == "done"
    assert sorted(k for _, k in effect_rows(db)) == ["B", "G0", "G1", "G2", "G3", "G4"]


def test_a_handler_failing_in_every_batch_is_dead_lettered_and_its_neighbours_commit(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    bad = put(db, "D", aggregate="d", fail=retry.HANDLER_MAX_ATTEMPTS)
    worker = runtime.worker()
    neighbours: list[str] = []
    for attempt in range(1, retry.HANDLER_MAX_ATTEMPTS + 1):
        # Good events on both sides of the failing one, in the same batch.
        neighbours.append(put(db, f"N{attempt:02}a", aggregate=f"n{attempt}a"))
        if attempt == 1:
            neighbours.append(put(db, "N01b", aggregate="n1b"))
        worker.drain()
        assert delivery(db, bad).attempts == attempt
        clock.advance(seconds=2**attempt)
    row = delivery(db, bad)
    assert row.status == "dead"
    assert [k for k, ok, _ in CALLS if not ok] == ["D"] * retry.HANDLER_MAX_ATTEMPTS
    assert all(delivery(db, e).status == "done" for e in neighbours)
    keys = [k for _, k in effect_rows(db)]
    assert "D" not in keys
    assert sorted(keys) == sorted(set(keys)), "a neighbour's effect committed twice"
    assert len(keys) == len(neighbours)


def test_order_within_an_aggregate_survives_a_split(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    a1 = put(db, "A1", aggregate="A")
    b1 = put(db, "B1", aggregate="B", fail=1)
    a2 = put(db, "A2", aggregate="A")
    b2 = put(db, "B2", aggregate="B")
    a3 = put(db, "A3", aggregate="A")
    worker = runtime.worker()

    worker.run_once()
    assert effect_order(db) == ["A1", "A2", "A3"]
    assert (delivery(db, b1).status, delivery(db, b1).attempts) == ("pending", 1)
    assert (delivery(db, b2).status, delivery(db, b2).attempts) == ("pending", 0), (
        "B2 overtook the failed B1"
    )
    assert "B2" not in [k for k, _, _ in CALLS]

    clock.advance(seconds=2)
    worker.drain()
    assert effect_order(db) == ["A1", "A2", "A3", "B1", "B2"]
    assert all(delivery(db, e).status == "done" for e in (a1, a2, a3, b1, b2))


def test_a_handler_failing_on_its_replay_stalls_its_queue_and_the_rest_commits(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    """X1 succeeds, then fails when replayed after Y1's failure: X2 must wait for it."""
    x1 = put(db, "X1", aggregate="X", fail_calls=[2])
    x2 = put(db, "X2", aggregate="X")
    y1 = put(db, "Y1", aggregate="Y", fail=1)
    z1 = put(db, "Z1", aggregate="Z")
    worker = runtime.worker()

    worker.run_once()
    assert effect_order(db) == ["Z1"]
    assert [(delivery(db, e).status, delivery(db, e).attempts) for e in (x1, x2, y1, z1)] == [
        ("pending", 1),
        ("pending", 0),
        ("pending", 1),
        ("done", 1),
    ]

    clock.advance(seconds=2)
    worker.drain()
    assert sorted(effect_order(db)) == ["X1", "X2", "Y1", "Z1"]
    order = effect_order(db)
    assert order.index("X1") < order.index("X2")


@registry.on("test.outbox.dupe", name=DUPER)
def add_a_duplicate_event(session: Session, event: Event) -> None:
    """A broken handler whose error only shows when its ORM changes are flushed."""
    session.add(
        OutboxEvent(
            id=event.id,  # unique: the flush fails
            type=event.type,
            aggregate_type=event.aggregate_type,
            aggregate_id=event.aggregate_id,
            payload={},
        )
    )


def test_an_error_at_flush_is_charged_to_the_handler_that_caused_it(
    db: Database, runtime: Runtime
) -> None:
    before = put(db, "F1", aggregate="f1")
    broken = put(db, "F2", aggregate="f2", kind="test.outbox.dupe")
    after = put(db, "F3", aggregate="f3")
    runtime.worker().run_once()
    row = delivery(db, broken, DUPER)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error is not None
    assert "IntegrityError" in row.last_error
    assert sorted(effect_order(db)) == ["F1", "F2", "F3"]
    assert all(delivery(db, e).status == "done" for e in (before, broken, after))


@registry.on("test.outbox.swallow", name=SWALLOWER)
def swallow_a_database_error(session: Session, event: Event) -> None:
    """A broken handler: hides a database error, which on PostgreSQL aborts the transaction."""
    with contextlib.suppress(Exception):  # the bug under test
        session.execute(text("SELECT CAST('x' AS INTEGER)"))


@pytest.mark.postgres_only
def test_a_handler_that_leaves_the_transaction_aborted_fails_alone(
    db: Database, runtime: Runtime
) -> None:
    before = put(db, "P1", aggregate="p1")
    broken = put(db, "W", aggregate="w", kind="test.outbox.swallow")
    after = put(db, "P2", aggregate="p2")
    runtime.worker().run_once()
    row = delivery(db, broken, SWALLOWER)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error is not None
    assert "aborted" in row.last_error
    assert sorted(effect_order(db)) == ["P1", "P2", "W"]
    assert all(delivery(db, e).status == "done" for e in (before, after))


# -- 4. order per aggregate -----------------------------------------------------------------------
def test_events_of_one_aggregate_wait_for_the_earlier_one(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    a1 = put(db, "A1", aggregate="A", fail=1)
    a2 = put(db, "A2", aggregate="A")
    a3 = put(db, "A3", aggregate="A")
    put(db, "B1", aggregate="B")
    worker = runtime.worker()

    worker.drain()
    assert [(k, ok) for k, ok, _ in CALLS] == [("A1", False), ("B1", True)]
    assert delivery(db, a1).attempts == 1
    for later in (a2, a3):
        row = delivery(db, later)
        assert (row.status, row.attempts) == ("pending", 0), "overtook the failed A1"

    clock.advance(seconds=1)
    worker.drain()
    assert len(CALLS) == 2, "nothing of A may run while A1 waits for its retry"

    clock.advance(seconds=1)
    worker.drain()
    assert [(k, ok) for k, ok, _ in CALLS] == [
        ("A1", False),
        ("B1", True),
        ("A1", True),
        ("A2", True),
        ("A3", True),
    ]
    assert all(delivery(db, e).status == "done" for e in (a1, a2, a3))


def test_a_long_queue_behind_a_waiting_event_does_not_hide_other_aggregates(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    """Hundreds of events wait behind A's failed head; B, written after them, still goes."""
    put(db, "A0", aggregate="A", fail=1)
    with db.transaction() as session:
        for i in range(1, 400):
            emit(
                session,
                "test.outbox.x",
                aggregate_type="test",
                aggregate_id="A",
                payload={"key": f"A{i:03}"},
            )
    put(db, "B1", aggregate="B")
    worker = Worker(db, batch_size=10)
    worker.drain()
    assert ("B1", True) in [(k, ok) for k, ok, _ in CALLS]
    assert [k for k, ok, _ in CALLS if k.startswith("A")] == ["A0"], "A waits for its head"
    clock.advance(seconds=3)
    worker.drain()
    assert [k for k in ok_keys() if k.startswith("A")] == [
        f"A{i:03}" if i else "A0" for i in range(400)
    ]


# -- 5. dead letters, listed and replayed from the CLI -------------------------------------------
def run_worker_cli(settings: Settings, *args: str) -> str:
    env = {
        "SEAMLINE_DATABASE_URL": settings.database_url,
        "SEAMLINE_DATA_DIR": str(settings.data_dir),
        "SEAMLINE_SECRET_KEY": settings.secret_key,
        "SEAMLINE_NATS_URL": None,
        "SEAMLINE_PLUGINS": None,
        "COLUMNS": "250",
    }
    get_settings.cache_clear()
    try:
        result = CliRunner(env=env).invoke(cli_app, ["worker", *args])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


def test_dead_letter_after_ten_attempts_then_listed_and_replayed(
    db: Database, runtime: Runtime, clock: FrozenClock, settings: Settings
) -> None:
    event_id = put(db, "D", fail=retry.HANDLER_MAX_ATTEMPTS)
    worker = runtime.worker()

    for attempt in range(1, retry.HANDLER_MAX_ATTEMPTS + 1):
        failed_at = clock.current
        worker.drain()
        row = delivery(db, event_id)
        assert row.attempts == attempt
        if attempt < retry.HANDLER_MAX_ATTEMPTS:
            assert row.status == "pending"
            assert row.next_attempt_at == failed_at + timedelta(seconds=2**attempt)
            clock.advance(seconds=2**attempt)
    row = delivery(db, event_id)
    assert row.status == "dead"
    assert row.last_error is not None
    assert "boom D" in row.last_error
    assert len(CALLS) == retry.HANDLER_MAX_ATTEMPTS
    clock.advance(days=1)
    worker.drain()
    assert len(CALLS) == retry.HANDLER_MAX_ATTEMPTS, "a dead letter is not retried"

    listed = run_worker_cli(settings, "--dead")
    assert event_id in listed
    assert RECORDER in listed
    assert "boom D" in listed

    assert "re-queued 1 dead letter(s)" in run_worker_cli(settings, "--replay", "all")
    row = delivery(db, event_id)
    assert (row.status, row.attempts) == ("pending", 0)

    assert "processed" in run_worker_cli(settings, "--once")
    row = delivery(db, event_id)
    assert (row.status, row.attempts, row.last_error) == ("done", 1, None)
    assert effect_rows(db) == [(event_id, "D")]
    assert "no dead letters" in run_worker_cli(settings, "--dead")


# -- 7. several workers against one PostgreSQL -----------------------------------------------------
@pytest.mark.postgres_only
def test_two_workers_deliver_each_event_exactly_once_and_in_order(database_url: str) -> None:
    events, aggregates = 500, 25
    setup = Database(database_url)
    with setup.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS test_concurrent_effects"))
        conn.execute(
            text(
                "CREATE TABLE test_concurrent_effects (id BIGSERIAL PRIMARY KEY,"
                " event_id TEXT NOT NULL, agg TEXT NOT NULL, n INTEGER NOT NULL, worker TEXT)"
            )
        )
    with setup.transaction() as session:
        for n in range(events):
            emit(
                session,
                "test.concurrent.tick",
                aggregate_type="test",
                aggregate_id=f"agg{n % aggregates}",
                payload={"n": n},
            )

    def pending() -> int:
        with setup.transaction(readonly=True) as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.consumer == CONCURRENT, Delivery.status == "pending")
                )
                or 0
            )

    errors: list[BaseException] = []
    start = threading.Barrier(2)
    deadline = time.monotonic() + 60

    def drain(name: str) -> None:
        db = Database(database_url)
        worker = Worker(db, batch_size=25)
        try:
            start.wait()
            while time.monotonic() < deadline:
                if worker.run_once() == 0:
                    if pending() == 0:
                        return
                    time.sleep(0.005)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=drain, args=(f"w{i}",), name=f"w{i}") for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    try:
        assert not errors, errors
        assert pending() == 0, "the workers did not finish in time"
        with setup.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT event_id, agg, n, worker FROM test_concurrent_effects ORDER BY id")
            ).all()
        with setup.transaction(readonly=True) as session:
            emitted = set(session.scalars(select(OutboxEvent.id)))
        ids = [r[0] for r in rows]
        assert len(ids) == events
        assert set(ids) == emitted, "an event was missed"
        assert len(set(ids)) == len(ids), "an event was delivered twice"
        by_agg: dict[str, list[int]] = {}
        for _, agg, n, _ in rows:
            by_agg.setdefault(agg, []).append(n)
        for agg, ns in by_agg.items():
            assert ns == sorted(ns), f"{agg} delivered out of order"
        workers = {r[3] for r in rows}
        assert workers == {"w1", "w2"}, f"both workers should have taken work: {workers}"
    finally:
        with setup.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS test_concurrent_effects"))
        setup.dispose()


def test_replayed_delivery_of_a_vanished_handler_is_dead_at_once(
    db: Database, runtime: Runtime
) -> None:
    event_id = put(db, "V")
    with db.transaction() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.consumer == RECORDER)
            .values(consumer="test.outbox.nobody")
        )
    runtime.worker().drain()
    row = delivery(db, event_id, "test.outbox.nobody")
    assert row.status == "dead"
    assert row.last_error is not None
    assert "no handler" in row.last_error
    assert CALLS == []


# -- external sinks: leases ------------------------------------------------------------------
class FakeSink:
    """Stands in for the stream: every publish succeeds, or every one fails."""

    def __init__(self, ok: bool) -> None:
        self.ok = ok
        self.sent: list[str] = []

    def send(self, items: list[Leased]) -> None:
        for item in items:
            item.outcome = Outcome(self.ok, None if self.ok else "sink down")
            self.sent.append(item.event.id)


def test_a_lapsed_lease_does_not_undo_the_newer_one(
    database_url: str, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(database_url, stream_enabled=True)
    lease = timedelta(seconds=30)
    try:
        event_id = put(db, "L")
        # A slow worker: its (failing) send is still running when its lease lapses.
        slow = Worker(db, stream=FakeSink(ok=False), lease=lease)  # type: ignore[arg-type]
        slow_items: list[Leased] = []
        monkeypatch.setattr(slow, "_record", slow_items.extend)
        slow.run_once()
        assert delivery(db, event_id, STREAM_CONSUMER).attempts == 1

        clock.advance(seconds=31)
        newer = Worker(db, stream=FakeSink(ok=True), lease=lease)  # type: ignore[arg-type]
        newer_items: list[Leased] = []
        monkeypatch.setattr(newer, "_record", newer_items.extend)
        newer.run_once()
        leased = delivery(db, event_id, STREAM_CONSUMER)
        assert (leased.attempts, leased.locked_until) == (2, clock.current + lease)

        Worker._record(slow, slow_items)  # the slow worker finally records its failure
        row = delivery(db, event_id, STREAM_CONSUMER)
        assert (row.status, row.attempts) == ("pending", 2)
        assert row.locked_until == leased.locked_until, "the newer lease was cleared"
        assert row.next_attempt_at == leased.next_attempt_at

        third = FakeSink(ok=True)
        Worker(db, stream=third).drain()  # type: ignore[arg-type]
        assert third.sent == [], "sent while another worker holds the lease"

        Worker._record(newer, newer_items)
        row = delivery(db, event_id, STREAM_CONSUMER)
        assert (row.status, row.attempts, row.locked_until) == ("done", 2, None)
    finally:
        db.dispose()


def test_external_sink_names_are_reserved() -> None:
    for reserved in ("stream:nats", "webhook:we_123"):
        with pytest.raises(ValueError, match="reserved"):
            registry.on("test.outbox.*", name=reserved)(record)
    assert registry.consumer("stream:nats") is None


# -- 3c. a consumer's batch form ------------------------------------------------------------------
BATCHED = "test.outbox.batched"
# ("many", keys) for a call of the batch form, ("one", key) for the per-event handler.
BATCH_CALLS: list[tuple[str, Any]] = []


def _batched_effect(session: Session, event: Event) -> None:
    session.execute(
        text(f"INSERT INTO {EFFECTS} (event_id, k) VALUES (:e, :k)"),
        {"e": event.id, "k": "batched:" + str(event.payload["key"])},
    )
    if event.payload.get("poison"):
        raise RuntimeError(f"poison {event.payload['key']}")


@registry.on("test.batch.*", name=BATCHED)
def batched_one(session: Session, event: Event) -> None:
    BATCH_CALLS.append(("one", event.payload["key"]))
    _batched_effect(session, event)


@registry.on_many(BATCHED)
def batched_many(session: Session, events: list[Event]) -> None:
    BATCH_CALLS.append(("many", [e.payload["key"] for e in events]))
    for event in events:
        _batched_effect(session, event)


def batched_effects(db: Database) -> list[str]:
    return [k for k in effect_order(db) if k.startswith("batched:")]


def test_a_batch_form_takes_all_its_events_in_one_call(db: Database, runtime: Runtime) -> None:
    BATCH_CALLS.clear()
    ids = [put(db, f"M{i}", aggregate=f"m{i % 2}", kind="test.batch.x") for i in range(5)]
    sent = statements_of(db, runtime.worker().run_once)
    assert BATCH_CALLS == [("many", ["M0", "M1", "M2", "M3", "M4"])]
    assert batched_effects(db) == [f"batched:M{i}" for i in range(5)]
    assert all(delivery(db, e, BATCHED).status == "done" for e in ids)
    assert sum(s.startswith("SAVEPOINT") for s in sent) == 1, "the batch form shares the savepoint"


def test_a_failing_batch_form_falls_back_to_one_event_at_a_time(
    db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    BATCH_CALLS.clear()
    good = [put(db, "P0", aggregate="p0", kind="test.batch.x")]
    bad = put(db, "P1", aggregate="p1", kind="test.batch.x", poison=True)
    behind = put(db, "P1b", aggregate="p1", kind="test.batch.x")  # waits for P1 (its queue)
    good.append(put(db, "P2", aggregate="p2", kind="test.batch.x"))
    worker = runtime.worker()

    worker.run_once()
    assert BATCH_CALLS == [
        ("many", ["P0", "P1", "P1b", "P2"]),
        ("one", "P0"),
        ("one", "P1"),
        ("one", "P0"),  # replayed: its first run went with the failed savepoint
        ("one", "P2"),
    ]
    assert sorted(batched_effects(db)) == ["batched:P0", "batched:P2"], "each effect once"
    assert all(delivery(db, e, BATCHED).status == "done" for e in good)
    assert (delivery(db, bad, BATCHED).status, delivery(db, bad, BATCHED).attempts) == (
        "pending",
        1,
    )
    assert delivery(db, behind, BATCHED).attempts == 0, "P1b overtook the failed P1"
    with pytest.raises(ValueError, match="before its batch form"):
        registry.on_many("test.outbox.nobody")(batched_many)


@pytest.mark.postgres_only
def test_claims_read_the_pending_index_with_plain_index_scans(
    db: Database, runtime: Runtime
) -> None:
    """A bitmap scan would read every dead entry the done deliveries left in the pending
    index (and its table row), on every claim; the claim turns bitmap scans off, and back on,
    in its own transaction."""
    with db.engine.begin() as conn:  # 40,000 deliveries done (no vacuum since), one pending
        conn.execute(
            text(
                "INSERT INTO outbox_events (id, type, aggregate_type, aggregate_id, payload,"
                " created_at) SELECT 'evt_bulk' || g, 'test.bulk', 'test', 'b' || g, '{}', now()"
                " FROM generate_series(1, 20000) g"
            )
        )
        conn.execute(
            text(
                "INSERT INTO event_deliveries (event_seq, consumer, aggregate_key, status,"
                " attempts, next_attempt_at, created_at) SELECT seq, c, 'test:' || aggregate_id,"
                " 'pending', 0, now(), now() FROM outbox_events, unnest(ARRAY['x', 'y']) c"
            )
        )
    with db.engine.begin() as conn:
        # Done: each leaves a dead entry in the pending indexes.
        conn.execute(text("UPDATE event_deliveries SET status = 'done', attempts = 1"))
    last = put(db, "LAST", aggregate="last")

    def plan(session: Session) -> str:
        stmt = claiming.candidates_after(-1, datetime.now(UTC), 200)
        compiled = stmt.compile(db.engine, compile_kwargs={"literal_binds": True})
        return "\n".join(row[0] for row in session.execute(text(f"EXPLAIN {compiled}")))

    with db.transaction() as session:
        assert "Bitmap" in plan(session), "the planner's own choice here (the case this is for)"
        with claiming.index_scans(session):
            assert "Bitmap" not in plan(session)
            assert "Index Scan" in plan(session)
        assert session.scalar(text("SHOW enable_bitmapscan")) == "on"
        assert "Bitmap" in plan(session)
    runtime.worker().run_once()
    assert delivery(db, last).status == "done"
