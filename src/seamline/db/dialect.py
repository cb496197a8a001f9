"""The few statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_conflict(
    session: Session,
    model: Any,
    values: dict[str, Any],
    *,
    on: Sequence[str],
    where: Any = None,
) -> bool:
    """``INSERT … ON CONFLICT DO NOTHING``; returns whether a row was inserted.

    Safe under concurrency on both backends: the unique index decides, not a prior read.
    ``where`` names the predicate of a partial unique index.
    """
    dialect = session.get_bind().dialect.name
    if where is None:
        stmt = _ignoring_conflict(dialect, model.__table__, tuple(values), tuple(on))
        # RETURNING yields a row only when the insert happened (rowcount is unreliable here).
        return session.execute(stmt, values).first() is not None
    module: Any = postgresql if dialect == "postgresql" else sqlite
    table = model.__table__
    stmt = (
        module.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=list(on), index_where=where)
        .returning(*table.primary_key.columns)
    )
    return session.execute(stmt).first() is not None


@lru_cache(maxsize=256)
def _ignoring_conflict(
    dialect: str, table: Any, names: tuple[str, ...], on: tuple[str, ...]
) -> Any:
    """The statement of ``insert_ignoring_conflict`` for these columns, built once: building
    an ``INSERT … ON CONFLICT`` costs more Python than running it."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return (
        module.insert(table)
        .values({name: bindparam(name, type_=table.c[name].type) for name in names})
        .on_conflict_do_nothing(index_elements=list(on))
        .returning(*table.primary_key.columns)
    )


def lock_for_transaction(session: Session, key: str) -> None:
    """Serialize transactions that name the same ``key`` until they end.

    PostgreSQL takes a transaction-scoped advisory lock on a hash of the key; SQLite needs
    nothing, because its writers are serialized already."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
        )
