"""Live stock changes for the SSE stream: ONE reader per process, fanned out to subscribers.

Every stock change writes an ``inventory.changed`` outbox row in its own transaction, from any
process. The hub (a daemon thread started by the app's lifespan) reads new rows — at once after
a commit in this process, otherwise every ``poll_seconds`` — re-reads the current figures of
each changed (location, variant) once, and hands them to each subscriber that wants them: exact
figures (payload totals of a hot SKU's concurrent events may arrive in either order), late
PostgreSQL commits caught by re-asking for skipped seqs. Per-client mailboxes: stream_api.py.
How and why: docs/realtime.md.
"""

from __future__ import annotations

import asyncio
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import event, func, or_, select, union_all
from sqlalchemy.orm import Session

from seamline.db.engine import EMITTED, Database
from seamline.events.models import OutboxEvent
from seamline.inventory import buckets
from seamline.inventory.models import StockLevel

log = structlog.get_logger("seamline.stock_stream")

EVENT_TYPE = "inventory.changed"
POLL_SECONDS = 0.25  # the cross-process latency budget is 1 s
LOOKBACK_SECONDS = 10.0  # how long a skipped seq may still commit and be delivered
BATCH = 2000  # outbox rows read per round; a full round is followed by another at once
MAX_GAPS = 1000  # ranges of skipped seqs remembered at most (the newest kept)
SHORT_GAP = 8  # seqs: shorter gap ranges are read as one list of seqs, not a range each
START_WINDOW = 1000  # seqs below the newest that a starting hub still watches for late commits
REPLAY_SCAN = 20_000  # outbox rows a Last-Event-ID resume may read before asking for a resync
REPLAY_KEYS = 500

Key = tuple[str, str]  # (location_id, variant_id), as in the event's aggregate id
_Group = tuple[int, int, datetime]
_ROW = (OutboxEvent.seq, OutboxEvent.type, OutboxEvent.aggregate_id, OutboxEvent.created_at)


@dataclass(frozen=True)
class StockFilter:
    """Any of ``variant_ids`` AND any of ``location_ids``; an empty set does not restrict."""

    variant_ids: frozenset[str] = frozenset()
    location_ids: frozenset[str] = frozenset()

    def matches(self, key: Key) -> bool:
        location_id, variant_id = key
        return (not self.variant_ids or variant_id in self.variant_ids) and (
            not self.location_ids or location_id in self.location_ids
        )


@dataclass(frozen=True)
class StockChange:
    """The current stock of one (location, variant), sent because it changed."""

    seq: int  # the newest outbox event this message stands for: the SSE id
    location_id: str
    variant_id: str
    here: tuple[int, int]  # (on_hand, reserved) at the location, read when sent
    variant: tuple[int, int]  # the same, summed over every location
    cause: str  # of the newest event
    events: int  # how many events this message stands for (merged)
    occurred_at: datetime

    @property
    def key(self) -> Key:
        return (self.location_id, self.variant_id)

    def after(self, earlier: StockChange) -> StockChange:
        """This newer reading, standing also for the events of ``earlier``."""
        return replace(self, seq=max(self.seq, earlier.seq), events=self.events + earlier.events)

    def data(self) -> dict[str, Any]:
        at = self.occurred_at.isoformat()
        ids = {"seq": self.seq, "location_id": self.location_id, "variant_id": self.variant_id}
        why = {"cause": self.cause, "events": self.events, "occurred_at": at}
        return {**ids, **_figures(*self.here), "variant": _figures(*self.variant), **why}


def _figures(on_hand: int, reserved: int) -> dict[str, int]:
    return {"on_hand": on_hand, "reserved": reserved, "available": on_hand - reserved}


class Mailbox(Protocol):
    """A subscriber's side (``stream_api.Subscription``): called on its own event loop."""

    filter: StockFilter
    loop: asyncio.AbstractEventLoop

    def deliver(self, changes: list[StockChange]) -> None: ...

    def close(self) -> None: ...


def _split(gaps: dict[tuple[int, int], float], seen: list[int]) -> dict[tuple[int, int], float]:
    """The gap ranges without the seqs ``seen`` (sorted): a range a late seq falls in is split
    around it."""
    out: dict[tuple[int, int], float] = {}
    for (first, last), until in gaps.items():
        start = first
        for seq in seen[bisect_left(seen, first) : bisect_right(seen, last)]:
            if start < seq:
                out[(start, seq - 1)] = until
            start = seq + 1
        if start <= last:
            out[(start, last)] = until
    return out


def _unseen(cursor: int, gaps: list[tuple[int, int]]) -> Any:
    """The next ``BATCH`` rows above the cursor or inside a gap range, in seq order: one index
    range per part, ``UNION ALL``-ed. (One ``seq > … OR seq BETWEEN …`` condition let
    PostgreSQL walk the primary key from its first entry and filter, whenever it guessed a
    gap range held many rows.) Short ranges — what rolled-back transactions leave, possibly
    hundreds in a flash sale's look-back — share one part, a list of seqs (index probes), so
    the statement has one part per long range only."""
    parts = [select(*_ROW).where(OutboxEvent.seq > cursor)]
    lone = [
        seq for first, last in gaps if last - first < SHORT_GAP for seq in range(first, last + 1)
    ]
    if lone:
        parts.append(select(*_ROW).where(OutboxEvent.seq.in_(lone)))
    parts += [
        select(*_ROW).where(OutboxEvent.seq.between(first, last))
        for first, last in gaps
        if last - first >= SHORT_GAP
    ]
    if len(parts) == 1:
        return parts[0].order_by(OutboxEvent.seq).limit(BATCH)
    rows = union_all(*parts).subquery()
    return select(rows).order_by(rows.c.seq).limit(BATCH)


class StockStreamHub:
    """Reads new stock events once per process and fans them out to every subscriber."""

    def __init__(
        self,
        db: Database,
        *,
        poll_seconds: float = POLL_SECONDS,
        lookback_seconds: float = LOOKBACK_SECONDS,
    ) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.lookback_seconds = lookback_seconds
        self._subs: set[Mailbox] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._joined = threading.Event()  # a first subscriber arrived
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cursor: int | None = None  # the highest seq read
        # Seqs skipped over, as ranges (first, last) → until when to ask for them: one range
        # however many seqs a big transaction (an ingestion drain's COPY) jumped ahead by.
        self._gaps: dict[tuple[int, int], float] = {}

    def start(self) -> None:
        # Our own commit hook, not ``db.wakeup``: that Event is the worker's, which clears it,
        # and two threads clearing one Event would each miss wake-ups meant for the other.
        event.listen(self.db.sessions, "after_commit", self._on_commit, insert=True)
        self._thread = threading.Thread(target=self._run, name="seamline-stock-stream", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and end every subscriber's stream (idempotent)."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._joined.set()
        self._thread.join(timeout=5)
        self._thread = None
        event.remove(self.db.sessions, "after_commit", self._on_commit)
        with self._lock:
            subs, self._subs = self._subs, set()
        for sub in subs:
            self._call(sub, sub.close)

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def subscribe(self, sub: Mailbox) -> None:
        """``sub`` gets every matching change the hub reads from now on."""
        with self._lock:
            self._subs.add(sub)
        self._joined.set()

    def unsubscribe(self, sub: Mailbox) -> None:
        with self._lock:
            self._subs.discard(sub)

    def _on_commit(self, session: Session) -> None:
        # Runs before Database's own hook, which pops the marker (``insert=True``).
        if session.info.get(EMITTED):
            self._wake.set()

    def _call(self, sub: Mailbox, fn: Callable[..., None], *args: Any) -> None:
        try:
            sub.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed, and its client with it
            self.unsubscribe(sub)

    def _run(self) -> None:
        log.info("stock_stream_started", database=self.db.dialect)
        while not self._stop.is_set():
            # A failed round is read again: the cursor and the gaps go back to where they were.
            cursor, gaps = self._cursor, dict(self._gaps)
            try:
                more = self._poll()
            except Exception:
                self._cursor, self._gaps = cursor, gaps
                log.exception("stock_stream_round_failed")
                self._stop.wait(1.0)
                continue
            if not more:
                # Nobody listening: commits do not wake the hub (a busy till would have it read
                # after each one for no one); it keeps its cursor every ``poll_seconds``, and a
                # new subscriber wakes it at once.
                (self._wake if self.subscribers else self._joined).wait(self.poll_seconds)
                self._wake.clear()
                self._joined.clear()
        log.info("stock_stream_stopped")

    def _poll(self) -> bool:
        """One round: read new and late events, send what subscribers want. True if more wait."""
        with self.db.transaction(readonly=True) as session:
            if self._cursor is None:
                # Start at the newest event; seqs missing just below it may belong to
                # transactions still committing, so they are tracked as gaps like any other.
                top = session.scalar(select(func.max(OutboxEvent.seq))) or 0
                recent = session.scalars(
                    select(OutboxEvent.seq).where(OutboxEvent.seq > top - START_WINDOW)
                ).all()
                self._cursor = max(0, top - START_WINDOW)
                self._track(list(recent))
                return False
            rows = session.execute(_unseen(self._cursor, sorted(self._gaps))).all()
            self._track([row.seq for row in rows])
            with self._lock:
                subs = list(self._subs)
            wanted = [
                (row.seq, key, row.created_at)
                for row in rows
                if row.type == EVENT_TYPE
                and (key := _key(row.aggregate_id)) is not None
                and any(sub.filter.matches(key) for sub in subs)
            ]
            changes = read_changes(session, _group(wanted))
        for sub in subs:
            mine = [c for c in changes if sub.filter.matches(c.key)]
            if mine:
                self._call(sub, sub.deliver, mine)
        return len(rows) == BATCH

    def _track(self, seqs: list[int]) -> None:
        """Advance the cursor; remember the seqs it skips (as ranges) until they commit or
        time out. A skipped seq may lie any distance below the newest one read: a transaction
        that took it can commit after another wrote thousands of events above it."""
        assert self._cursor is not None
        now = time.monotonic()
        seen = sorted(set(seqs))
        if self._gaps and seen:
            self._gaps = _split(self._gaps, seen)
        previous = self._cursor
        for seq in seen:
            if seq > previous:
                if seq > previous + 1:
                    self._gaps[(previous + 1, seq - 1)] = now + self.lookback_seconds
                previous = seq
        self._cursor = previous
        live = sorted(gap for gap, until in self._gaps.items() if until > now)
        self._gaps = {gap: self._gaps[gap] for gap in live[-MAX_GAPS:]}

    def replay(self, stock_filter: StockFilter, after_seq: int) -> tuple[list[StockChange], str]:
        """The changes after ``after_seq`` (a Last-Event-ID) still in the outbox, one per key,
        with current figures, and why the client must resync instead ("" if it need not).
        Events up to ``lookback_seconds`` older are included: one may have committed late."""
        with self.db.transaction(readonly=True) as session:
            last = session.scalar(
                select(OutboxEvent.created_at).where(OutboxEvent.seq == after_seq)
            )
            if last is None:  # pruned, or an id this database never issued
                return [], "history_unavailable"
            floor = last - timedelta(seconds=self.lookback_seconds)
            rows = session.execute(
                select(*_ROW)
                .where(
                    OutboxEvent.type == EVENT_TYPE,
                    or_(OutboxEvent.seq > after_seq, OutboxEvent.created_at >= floor),
                )
                .order_by(OutboxEvent.seq)
                .limit(REPLAY_SCAN + 1)
            ).all()
            if len(rows) > REPLAY_SCAN:
                return [], "too_many_changes"
            groups = _group(
                (row.seq, key, row.created_at)
                for row in rows
                if (key := _key(row.aggregate_id)) is not None and stock_filter.matches(key)
            )
            if len(groups) > REPLAY_KEYS:
                return [], "too_many_changes"
            return read_changes(session, groups), ""


def _key(aggregate_id: str) -> Key | None:
    location_id, sep, variant_id = aggregate_id.partition(":")
    return (location_id, variant_id) if sep else None


def _group(rows: Iterable[tuple[int, Key, datetime]]) -> dict[Key, _Group]:
    """Events per key: (the newest seq, how many, the newest time)."""
    groups: dict[Key, _Group] = {}
    for seq, key, at in rows:
        top, count, last = groups.get(key, (seq, 0, at))
        groups[key] = (max(top, seq), count + 1, max(last, at))
    return groups


def read_changes(session: Session, groups: dict[Key, _Group]) -> list[StockChange]:
    """Each changed key with its figures read now (exact, unlike the events' payloads)."""
    if not groups:
        return []
    newest = sorted(seq for seq, _, _ in groups.values())
    payloads = session.execute(
        select(OutboxEvent.seq, OutboxEvent.payload).where(OutboxEvent.seq.in_(newest))
    ).all()
    causes = {row.seq: str(row.payload.get("cause", "")) for row in payloads}
    variants = _variant_totals(session, {variant_id for _, variant_id in groups})
    changes = []
    for (location_id, variant_id), (seq, count, at) in groups.items():
        now = buckets.totals(session, location_id, variant_id)
        here = (now.on_hand, now.reserved)
        overall = variants.get(variant_id, (0, 0))
        cause = causes.get(seq, "")
        changes.append(StockChange(seq, location_id, variant_id, here, overall, cause, count, at))
    return sorted(changes, key=lambda c: c.seq)


def _variant_totals(session: Session, variant_ids: set[str]) -> dict[str, tuple[int, int]]:
    """(on_hand, reserved) per variant over every location and bucket, in one statement."""
    rows = session.execute(
        select(StockLevel.variant_id, func.sum(StockLevel.on_hand), func.sum(StockLevel.reserved))
        .where(StockLevel.variant_id.in_(sorted(variant_ids)))
        .group_by(StockLevel.variant_id)
    ).all()
    return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}
