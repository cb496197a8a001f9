"""Many rows into one table at once: ``COPY`` on PostgreSQL, a multi-row ``INSERT`` elsewhere.

Ingestion writes hundreds of rows per request into a few tables. A multi-row ``INSERT`` with
thousands of bound parameters costs more on the client than on the server (psycopg converts
every long statement's placeholders anew: it caches only short ones), while ``COPY`` streams
the rows in PostgreSQL's own format. Rows must name every column they set (Python-side column
defaults do not apply to ``COPY``); server defaults fill the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import JSON, Table, any_, bindparam, func, insert, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

# A mapped attribute (``Identifier.id``) or a Core column.
Column = QueryableAttribute[Any] | ColumnElement[Any]


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def copy_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``rows`` (dicts with the same keys) into ``table`` in the session's transaction."""
    if not rows:
        return
    if not is_postgres(session):
        session.execute(insert(table), list(rows))
        return
    session.flush()  # rows added through the ORM go first, as an INSERT would order them
    columns = list(rows[0])
    json_columns = {c.name for c in table.c if isinstance(c.type, JSON)}
    driver = session.connection().connection.driver_connection
    if driver is None:  # pragma: no cover - a checked-out connection always has one
        raise RuntimeError("no DBAPI connection")
    names = ", ".join(f'"{c}"' for c in columns)
    statement = f'COPY "{table.name}" ({names}) FROM STDIN'
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(
                    [
                        Jsonb(row[c]) if c in json_columns and row[c] is not None else row[c]
                        for c in columns
                    ]
                )
    except psycopg.errors.IntegrityError as exc:
        # As SQLAlchemy reports it for any other statement, so callers handle one exception.
        raise IntegrityError(statement, None, exc) from exc


def next_values(session: Session, table: Table, column: str, count: int) -> list[int]:
    """``count`` values of the sequence behind ``table.column`` (PostgreSQL), in order — what
    ``count`` inserts relying on the default would take, for rows written with ``COPY``."""
    sql = text(
        "SELECT nextval(pg_get_serial_sequence(:table, :column)) FROM generate_series(1, :n)"
    )
    found = session.execute(sql, {"table": table.name, "column": column, "n": count}).scalars()
    return sorted(found)


def among(session: Session, column: Column, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(:array)``, one parameter whatever
    the count, so the statement's text stays the same (psycopg and the server cache it)."""
    if not is_postgres(session):
        return column.in_(values)
    return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))


def among_pairs(
    session: Session,
    columns: tuple[Column, Column],
    pairs: Sequence[tuple[Any, Any]],
) -> ColumnElement[bool]:
    """``(a, b) IN (pairs)``; on PostgreSQL against ``unnest`` of two arrays (two parameters)."""
    first, second = columns
    if not is_postgres(session):
        return tuple_(first, second).in_(pairs)
    unnested = select(
        func.unnest(
            bindparam(None, [p[0] for p in pairs], type_=ARRAY(first.type)),
            bindparam(None, [p[1] for p in pairs], type_=ARRAY(second.type)),
        )
        .table_valued("a", "b")
        .render_derived()
    )
    return tuple_(first, second).in_(unnested)
