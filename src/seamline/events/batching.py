"""In-process handler deliveries of one batch, run in one savepoint instead of one each.

The handlers of a batch run one after another inside a single ``SAVEPOINT``. When one raises,
that savepoint is rolled back (which also undoes the effects of the handlers that ran before it
in the savepoint), the failing delivery is set aside to be retried or dead-lettered, the handlers
that had succeeded are replayed in a savepoint of their own, and the rest of the batch goes on
in a fresh one. The raising handler is known, so the split is at that delivery rather than a
blind bisection: the failing handler runs once per attempt, a good one at most twice, and only
its last run's effects commit. Later deliveries of a failed delivery's queue are dropped from
the batch (they wait for it, so each consumer keeps an aggregate's order).

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

from seamline.events.registry import Event, EventHandler

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


@dataclass
class Outcomes:
    done: list[HandlerItem] = field(default_factory=list)
    failed: list[tuple[HandlerItem, str]] = field(default_factory=list)


def run_handlers(session: Session, items: list[HandlerItem]) -> Outcomes:
    """Run ``items`` (in event order) in as few savepoints as their failures allow."""
    outcomes = Outcomes()
    if items:
        _run(session, items, _Probe(session), set(), outcomes)
    return outcomes


def _run(
    session: Session,
    todo: list[HandlerItem],
    probe: _Probe,
    stalled: set[tuple[str, str]],
    outcomes: Outcomes,
) -> None:
    while todo:
        savepoint = session.begin_nested()
        ran: list[HandlerItem] = []
        failure: tuple[int, str] | None = None
        for index, item in enumerate(todo):
            error = _call(session, item, probe)
            if error is not None:
                failure = (index, error)
                break
            ran.append(item)
        if failure is None:
            savepoint.commit()
            outcomes.done.extend(ran)
            return
        savepoint.rollback()
        index, error = failure
        failed = todo[index]
        outcomes.failed.append((failed, error))
        stalled.add(failed.queue)
        if ran:
            # They succeeded once; their effects went with the savepoint, so they run again.
            _run(session, ran, probe, stalled, outcomes)
        todo = [item for item in todo[index + 1 :] if item.queue not in stalled]


def _call(session: Session, item: HandlerItem, probe: _Probe) -> str | None:
    """Run one handler; returns its error, or ``None`` when it succeeded."""
    # Each run gets its own copy of the payload: a handler that changes it (a dict is mutable
    # even in a frozen Event) must not change what the next consumer, or its own replay, sees.
    private = dataclasses.replace(item.event, payload=_copy(item.event.payload))
    try:
        item.handler(session, private)
        session.flush()
        if probe.aborted():
            raise RuntimeError("the handler left the transaction aborted (a swallowed error)")
    except Exception as exc:
        log.warning(
            "handler_failed", consumer=item.consumer, event_id=item.event.id, error=repr(exc)
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
