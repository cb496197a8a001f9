"""The few statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_conflict(
    session: Session, model: Any, values: dict[str, Any], *, on: Sequence[str]
) -> bool:
    """``INSERT … ON CONFLICT DO NOTHING``; returns whether a row was inserted.

    Safe under concurrency on both backends: the unique index decides, not a prior read.
    """
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(model).values(**values).on_conflict_do_nothing(index_elements=list(on))
    result = session.execute(stmt)
    return bool(getattr(result, "rowcount", 0))
