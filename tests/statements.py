"""Recording the SQL a block of test code sends (statement counts, plans, order)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event

from seamline.db.engine import Database


@contextlib.contextmanager
def recorded(db: Database) -> Iterator[list[str]]:
    """Every statement sent on ``db``'s engine while the block runs, in order, as sent
    (SQLite's ``BEGIN`` included; ``COPY`` goes around SQLAlchemy and is not seen)."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
