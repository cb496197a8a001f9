"""Who reacts to which event: in-process handlers and timer kinds, registered by decorators."""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

# Domain modules whose handlers must be known wherever events are emitted or delivered.
HANDLER_MODULES = (
    "seamline.events.handlers",
    "seamline.channels.handlers",
    "seamline.inventory.handlers",
    "seamline.identity.handlers",
    "seamline.carts.handlers",
    "seamline.orders.handlers",
)


@dataclass(frozen=True)
class Event:
    """What a handler receives: the stored event, never mutated."""

    id: str
    seq: int
    type: str
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]
    created_at: datetime

    def envelope(self) -> dict[str, Any]:
        """The public JSON shape used by webhooks and the stream."""
        return {
            "id": self.id,
            "type": self.type,
            "created_at": self.created_at.isoformat(),
            "aggregate": {"type": self.aggregate_type, "id": self.aggregate_id},
            "data": self.payload,
        }


@dataclass
class Outcome:
    ok: bool
    error: str | None = None
    final: bool = False  # no retry makes sense (the endpoint is gone or disabled)
    status_code: int | None = None
    duration_ms: int = 0
    excerpt: str | None = None


@dataclass
class Leased:
    delivery_id: int
    consumer: str
    attempts: int
    event: Event
    outcome: Outcome = field(default_factory=lambda: Outcome(False, "not attempted"))


EventHandler = Callable[[Session, Event], None]
# A consumer's handler for a run of its events at once (in event order), for the worker.
EventsHandler = Callable[[Session, list[Event]], None]
TimerHandler = Callable[[Session, str, dict[str, Any]], None]
# Whether a consumer acts on an event, from its payload alone (``on(..., when=…)``).
PayloadTest = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Consumer:
    name: str
    patterns: tuple[str, ...]
    handler: EventHandler
    # The same reaction for several events in one call (``on_many``): fewer statements per
    # event. It must leave what calling ``handler`` on each event in order would leave.
    many: EventsHandler | None = None
    # Events of a wanted type whose payload this refuses get no delivery for the consumer:
    # its handler would do nothing with them (``on(..., when=…)``).
    when: PayloadTest | None = None

    def wants(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, p) for p in self.patterns)


# Consumers the worker treats as external sinks (leased, sent outside the transaction):
# the stream (``stream:nats``) and webhook endpoints (``webhook:<id>``).
# Consumer names of the external sinks; in-process handlers may not use them.
WEBHOOK_PREFIX = "webhook:"
STREAM_PREFIX = "stream:"
RESERVED_PREFIXES = (STREAM_PREFIX, WEBHOOK_PREFIX)

_consumers: dict[str, Consumer] = {}
_timer_kinds: dict[str, TimerHandler] = {}
_loaded: set[str] = set()
_lock = threading.Lock()


def on(
    *patterns: str, name: str | None = None, when: PayloadTest | None = None
) -> Callable[[EventHandler], EventHandler]:
    """Register a transactional handler for event types (``fnmatch`` patterns such as ``order.*``).

    The handler runs inside the worker's transaction together with marking the delivery done,
    so its database effects happen exactly once even if the worker dies.

    ``when(payload)``, if given, is asked as each event is written: an event it refuses gets no
    delivery for this consumer (no row, claim or "done" update). It must refuse only events the
    handler would do nothing with, since the handler never sees them (a test runs the handler
    on refused events and finds nothing changed); it must be a pure function of the payload.
    """

    def register(fn: EventHandler) -> EventHandler:
        consumer_name = name or f"{fn.__module__}.{fn.__qualname__}"
        if consumer_name.startswith(RESERVED_PREFIXES):
            raise ValueError(f"consumer names starting with {RESERVED_PREFIXES} are reserved")
        _consumers[consumer_name] = Consumer(consumer_name, patterns or ("*",), fn, when=when)
        return fn

    return register


def on_many(name: str) -> Callable[[EventsHandler], EventsHandler]:
    """Register the batch form of the consumer ``name`` (registered with ``on`` first).

    The worker hands it all of the consumer's events of a batch, in event order, in one
    savepoint. If it raises, the savepoint is rolled back and the events go through the
    per-event handler instead, so a failing event is isolated, retried and dead-lettered as
    always. The batch form must therefore leave exactly what the per-event handler run on each
    event in turn would leave (a test runs both on the same events).
    """

    def register(fn: EventsHandler) -> EventsHandler:
        found = _consumers.get(name)
        if found is None:
            raise ValueError(f"register the consumer {name!r} with on() before its batch form")
        _consumers[name] = dataclasses.replace(found, many=fn)
        return fn

    return register


# Work a domain adds to every worker round besides deliveries and timers (identity's
# queued-ingestion inbox): a callable taking the Database and returning the work it did.
if TYPE_CHECKING:
    from seamline.db.engine import Database

RoundJob = Callable[["Database"], int]
_round_jobs: dict[str, RoundJob] = {}


def on_round(name: str) -> Callable[[RoundJob], RoundJob]:
    """Register ``fn(db) -> work done`` to run once in every worker round."""

    def register(fn: RoundJob) -> RoundJob:
        _round_jobs[name] = fn
        return fn

    return register


def round_jobs() -> dict[str, RoundJob]:
    return dict(_round_jobs)


def on_timer(kind: str) -> Callable[[TimerHandler], TimerHandler]:
    """Register the handler that runs when a timer of ``kind`` fires."""

    def register(fn: TimerHandler) -> TimerHandler:
        _timer_kinds[kind] = fn
        return fn

    return register


def load(extra_modules: Iterable[str] = ()) -> None:
    """Import every module that registers handlers (idempotent, thread-safe)."""
    with _lock:
        for module in (*HANDLER_MODULES, *extra_modules):
            if module not in _loaded:
                importlib.import_module(module)
                _loaded.add(module)


def consumers_for(event_type: str) -> list[Consumer]:
    load()
    return [c for c in _consumers.values() if c.wants(event_type)]


def consumer(name: str) -> Consumer | None:
    load()
    return _consumers.get(name)


def timer_handler(kind: str) -> TimerHandler | None:
    load()
    return _timer_kinds.get(kind)
