"""Crash safety: a worker process killed with SIGKILL mid-batch loses nothing and repeats nothing.

The worker runs as a real ``seamline worker`` subprocess with the ``tests.plugins.chaos``
handler loaded through ``SEAMLINE_PLUGINS``. That handler writes one row per event to
``chaos_effects`` (no unique constraint, so a duplicate effect would show) inside the worker's
transaction. The test kills the worker twice — once while it is provably in the middle of a
batch, once at an arbitrary moment — restarts it, and checks every event has exactly one effect.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from seamline.db.engine import Database
from seamline.events.models import Delivery, OutboxEvent
from seamline.events.outbox import emit
from seamline.settings import Settings
from tests.plugins import chaos

REPO = Path(__file__).resolve().parents[1]
EVENTS = 300
AGGREGATES = 10
HANG_AT = 155  # mid-way, and not the first event of its batch


@pytest.fixture
def chaos_table(db: Database) -> Iterator[None]:
    auto_id = "id INTEGER PRIMARY KEY AUTOINCREMENT" if db.is_sqlite else "id BIGSERIAL PRIMARY KEY"
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS chaos_effects"))
        conn.execute(
            text(
                f"CREATE TABLE chaos_effects ({auto_id}, event_id TEXT NOT NULL,"
                " n INTEGER NOT NULL, pid INTEGER)"
            )
        )
    yield
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS chaos_effects"))


class WorkerProcess:
    """``seamline worker`` in a subprocess, output kept in files (a full pipe would block it)."""

    def __init__(self, settings: Settings, tmp: Path, progress: Path, name: str, *, hang: bool):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLINE_")}
        env.update(
            PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "src")]),
            SEAMLINE_DATABASE_URL=str(settings.database_url),
            SEAMLINE_DATA_DIR=str(settings.data_dir),
            SEAMLINE_SECRET_KEY=str(settings.secret_key),
            SEAMLINE_PLUGINS='["tests.plugins.chaos"]',
            SEAMLINE_WORKER_LEASE_SECONDS="1",
            SEAMLINE_WORKER_POLL_SECONDS="0.05",
            SEAMLINE_LOG_FORMAT="console",
            SEAMLINE_CHAOS_PROGRESS=str(progress),
            SEAMLINE_CHAOS_SLEEP_MS="3",
        )
        if hang:
            env["SEAMLINE_CHAOS_HANG"] = "1"
        self.log = tmp / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from seamline.cli.main import app; app()", "worker"],
                env=env,
                cwd=tmp,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_until(self, what: str, predicate: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                pytest.fail(
                    f"worker exited ({self.proc.returncode}) waiting for {what}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"timed out waiting for {what}:\n{self.output()}")
            time.sleep(0.01)


def committed_effects(db: Database) -> list[tuple[str, int, int]]:
    with db.transaction(readonly=True) as session:
        rows = session.execute(text("SELECT event_id, n, pid FROM chaos_effects ORDER BY id"))
        return [(r[0], r[1], r[2]) for r in rows]


def chaos_deliveries(db: Database) -> dict[str, str]:
    """Event id -> status of its delivery to the chaos consumer."""
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(OutboxEvent.id, Delivery.status)
            .join(Delivery, Delivery.event_seq == OutboxEvent.seq)
            .where(Delivery.consumer == chaos.CONSUMER)
        )
        return {str(r[0]): str(r[1]) for r in rows}


def pending_chaos(db: Database) -> int:
    with db.transaction(readonly=True) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.consumer == chaos.CONSUMER, Delivery.status == "pending")
            )
            or 0
        )


def assert_effects_match_progress(db: Database) -> set[str]:
    """After a kill: an effect exists exactly for the deliveries marked done (both or neither)."""
    effects = committed_effects(db)
    ids = [e for e, _, _ in effects]
    assert len(ids) == len(set(ids)), "an event has two effects"
    done = {e for e, status in chaos_deliveries(db).items() if status == "done"}
    assert set(ids) == done, "an effect committed without its delivery being done, or vice versa"
    return done


def test_worker_killed_mid_batch_delivers_every_event_exactly_once(
    db: Database, settings: Settings, chaos_table: None, tmp_path: Path
) -> None:
    with db.transaction() as session:
        emitted = [
            emit(
                session,
                "chaos.tick",
                aggregate_type="chaos",
                aggregate_id=f"c{n % AGGREGATES}",
                payload={"n": n, "hang": n == HANG_AT},
            )
            for n in range(EVENTS)
        ]
    hang_event = emitted[HANG_AT]
    progress = tmp_path / "progress.txt"
    hang_marker = Path(f"{progress}.hang")
    workers: list[WorkerProcess] = []

    def start(name: str, *, hang: bool = False) -> WorkerProcess:
        w = WorkerProcess(settings, tmp_path, progress, name, hang=hang)
        workers.append(w)
        return w

    try:
        # 1. Killed while provably inside a batch: its handler for HANG_AT blocks until killed.
        first = start("worker1", hang=True)
        first.wait_until("the worker to reach the hanging event", hang_marker.exists)
        first.kill()
        done = assert_effects_match_progress(db)
        assert 0 < len(done) < EVENTS, len(done)
        called = set(progress.read_text().split())
        rolled_back = called - done
        assert hang_event in rolled_back
        assert len(rolled_back) > 1, "the kill should also undo earlier handlers of its batch"

        # 2. Killed at an arbitrary moment after some more progress.
        second = start("worker2")
        second.wait_until("more progress", lambda: len(committed_effects(db)) >= len(done) + 60)
        second.kill()
        done = assert_effects_match_progress(db)
        assert len(done) < EVENTS, "the second worker should not have finished everything"

        # 3. A last worker finishes the job.
        third = start("worker3")
        third.wait_until("every delivery to be done", lambda: pending_chaos(db) == 0)
        third.stop()
    finally:
        for w in workers:
            w.kill()

    effects = committed_effects(db)
    counts: dict[str, int] = {}
    for event_id, _, _ in effects:
        counts[event_id] = counts.get(event_id, 0) + 1
    assert sorted(counts) == sorted(emitted), "an event has no effect"
    duplicated = {e: c for e, c in counts.items() if c != 1}
    assert not duplicated, f"events with more than one effect: {duplicated}"
    assert set(chaos_deliveries(db).values()) == {"done"}
    # Order per aggregate held across the crashes.
    by_aggregate: dict[int, list[int]] = {}
    for _, n, _ in effects:
        by_aggregate.setdefault(n % AGGREGATES, []).append(n)
    for ns in by_aggregate.values():
        assert ns == sorted(ns)
    assert len({pid for _, _, pid in effects}) >= 2, "the work should span several processes"
