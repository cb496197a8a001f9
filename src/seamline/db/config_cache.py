"""Configuration that changes rarely and is read on hot paths, cached per process.

Tax settings and rates, shipping rates, channels, locations and channel stock rules are read
by every cart view and checkout and changed by an administrator now and then. A
``ConfigCache`` keeps what a loader read for ``seconds`` per database (per engine). A change
made through this process's sessions — an ORM insert, update or delete of one of the watched
models — forgets the cache at once, when written and again when committed, and the
transaction that made it reads the tables directly until it ends; other processes see a change
within ``seconds``. Writes that bypass the ORM (a Core ``update()``) are not noticed: the
watched tables are written only through the ORM.

Loaders must return plain values (dataclasses, tuples), never ORM instances: a cached value
outlives the session that read it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, object_session

T = TypeVar("T")
_MAX_ENTRIES = 1_000


class ConfigCache:
    def __init__(self, name: str, models: tuple[type[Any], ...], *, seconds: float = 2.0):
        self.seconds = seconds
        self._touched = f"seamline.config_touched.{name}"
        self._entries: WeakKeyDictionary[Engine, dict[Hashable, tuple[float, Any]]] = (
            WeakKeyDictionary()
        )
        for model in models:
            for hook in ("after_insert", "after_update", "after_delete"):
                event.listen(model, hook, self._written)
        event.listen(Session, "after_commit", self._after_commit)
        event.listen(Session, "after_rollback", self._after_rollback)

    def get(self, session: Session, key: Hashable, load: Callable[[], T]) -> T:
        """``load()``'s value for ``key``, from this process's cache when fresh."""
        if session.info.get(self._touched):  # this transaction changed it: read it
            return load()
        engine = session.get_bind().engine
        entries = self._entries.setdefault(engine, {})
        hit = entries.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.seconds:
            value: T = hit[1]
            return value
        value = load()
        if len(entries) > _MAX_ENTRIES:
            entries.clear()
        entries[key] = (now, value)
        return value

    def forget(self, session: Session) -> None:
        """Drop this process's cached values for the session's database."""
        self._entries.pop(session.get_bind().engine, None)

    def forget_all(self) -> None:
        """Drop this process's cached values for every database."""
        self._entries.clear()

    def _written(self, _mapper: Any, connection: Any, target: Any) -> None:
        session = object_session(target)
        if session is not None:
            session.info[self._touched] = True
        self._entries.pop(connection.engine, None)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(self._touched, False):
            self.forget(session)

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(self._touched, None)
