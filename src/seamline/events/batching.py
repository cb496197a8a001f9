"""In-process handler deliveries of one batch, run in one savepoint instead of one each.

The handlers of a batch run one after another inside a single ``SAVEPOINT``. When one raises,
that savepoint is rolled back (which also undoes the effects of the handlers that ran before it
in the savepoint), the failing delivery is set aside to be retried or dead-lettered, the handlers
that had succeeded are replayed in a savepoint of their own, and the rest of the batch goes on
in a fresh one. The raising handler is known, so the split is at that delivery rather than a
blind bisection: the failing handler runs once per attempt, a good one at most twice, and only
its last run's effects commit. Later deliveries of a failed delivery's queue are dropped from
the batch (they wait for it, so each consumer keeps an aggregate's order).

A consumer with a batch form (``registry.on_many``) takes all of its events of the batch in one
call, in that same savepoint, where its first event would have run. If that call raises, the
savepoint is rolled back as above and the consumer's events take its place one by one through
its per-event handler, so the failing event is found and set aside as for any other (the
handlers that had succeeded then run a third time at most).

Each handler's pending ORM changes are flushed right after it returns, so an error at flush
time is charged to the handler that caused it, not to the next one; on PostgreSQL a handler
that swallowed a database error and left the transaction aborted fails too.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import structlog
from psycopg.pq import TransactionStatus
from sqlalchemy.orm import Session

from seamline.events.registry import Event, EventHandler, EventsHandler

log = structlog.get_logger("seamline.worker")


@dataclass(slots=True)
class HandlerItem:
    """One claimed in-process delivery: the handler to run and the event it gets."""

    delivery_id: int
    consumer: str
    queue: tuple[str, str]
    attempts: int  # counting this attempt
    handler: EventHandler
    event: Event
    many: EventsHandler | None = None


@dataclass
class Outcomes:
    done: list[HandlerItem] = field(default_factory=list)
    failed: list[tuple[HandlerItem, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Unit:
    """What runs as one call: one delivery, or a batch-form consumer's deliveries."""

    items: list[HandlerItem]
    batch: bool = False


def run_handlers(session: Session, items: list[HandlerItem]) -> Outcomes:
    """Run ``items`` (in event order) in as few savepoints as their failures allow."""
    outcomes = Outcomes()
    if not items:
        return outcomes
    units: list[_Unit] = []
    batches: dict[str, _Unit] = {}
    for item in items:
        if item.many is None:
            units.append(_Unit([item]))
        elif item.consumer in batches:
            batches[item.consumer].items.append(item)
        else:
            batches[item.consumer] = _Unit([item], batch=True)
            units.append(batches[item.consumer])
    _run(session, units, _Probe(session), set(), outcomes)
    return outcomes


def _run(
    session: Session,
    todo: list[_Unit],
    probe: _Probe,
    stalled: set[tuple[str, str]],
    outcomes: Outcomes,
) -> None:
    while todo:
        savepoint = session.begin_nested()
        ran: list[_Unit] = []
        failure: tuple[int, str] | None = None
        for index, unit in enumerate(todo):
            error = _call(session, unit, probe)
            if error is not None:
                failure = (index, error)
                break
            ran.append(unit)
        if failure is None:
            savepoint.commit()
            outcomes.done.extend(item for unit in ran for item in unit.items)
            return
        savepoint.rollback()
        index, error = failure
        failed = todo[index]
        if failed.batch:
            # Which of its events fails? Run them one by one in its place.
            todo = [*ran, *(_Unit([item]) for item in failed.items), *todo[index + 1 :]]
            continue
        item = failed.items[0]
        outcomes.failed.append((item, error))
        stalled.add(item.queue)
        if ran:
            # They succeeded once; their effects went with the savepoint, so they run again.
            _run(session, ran, probe, stalled, outcomes)
        todo = _without(todo[index + 1 :], stalled)


def _without(units: list[_Unit], stalled: set[tuple[str, str]]) -> list[_Unit]:
    """``units`` without the deliveries that wait behind a failed one of their queue."""
    kept: list[_Unit] = []
    for unit in units:
        items = [item for item in unit.items if item.queue not in stalled]
        if items:
            kept.append(_Unit(items, unit.batch))
    return kept


def _call(session: Session, unit: _Unit, probe: _Probe) -> str | None:
    """Run one unit; returns its error, or ``None`` when it succeeded."""
    # Each run gets its own copy of the payload: a handler that changes it (a dict is mutable
    # even in a frozen Event) must not change what the next consumer, or its own replay, sees.
    first = unit.items[0]
    try:
        if unit.batch:
            assert first.many is not None
            first.many(
                session,
                [dataclasses.replace(i.event, payload=_copy(i.event.payload)) for i in unit.items],
            )
        else:
            first.handler(
                session, dataclasses.replace(first.event, payload=_copy(first.event.payload))
            )
        session.flush()
        if probe.aborted():
            raise RuntimeError("the handler left the transaction aborted (a swallowed error)")
    except Exception as exc:
        log.warning(
            "handler_failed",
            consumer=first.consumer,
            event_id=first.event.id,
            events=len(unit.items),
            error=repr(exc),
        )
        return repr(exc)
    return None


def _copy(value: Any) -> Any:
    """A deep copy of a JSON document (dicts, lists, scalars): much cheaper than ``deepcopy``."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return copy.deepcopy(value)


class _Probe:
    """Tells, without a round trip, whether PostgreSQL has aborted the transaction."""

    def __init__(self, session: Session) -> None:
        self.info: Any = None
        if session.get_bind().dialect.name == "postgresql":
            driver = session.connection().connection.driver_connection
            self.info = getattr(driver, "info", None)

    def aborted(self) -> bool:
        return self.info is not None and self.info.transaction_status == TransactionStatus.INERROR
