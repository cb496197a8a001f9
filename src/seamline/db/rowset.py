"""Many rows in one ``INSERT`` whose SQL text does not depend on how many there are.

A multi-row ``VALUES`` is a new statement for every row count: SQLAlchemy compiles it again and
psycopg parses it again each time (about a millisecond for 50 rows, more than the insert costs
PostgreSQL). On PostgreSQL the rows go instead as one JSON parameter that
``jsonb_to_recordset`` turns back into typed rows, so the statement is compiled once, cached,
and prepared by psycopg. SQLite keeps the multi-row ``VALUES`` (its statements are cheap to
prepare). Either way the result is the dialect's ``INSERT`` construct, so callers add
``on_conflict_do_nothing`` / ``on_conflict_do_update`` and ``returning`` as usual.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Table, Text, bindparam, cast, column, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.sqltypes import NullType


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _type(col: Column[Any]) -> Any:
    """The column's type; a foreign key declared without one has its target's."""
    if isinstance(col.type, NullType):
        for key in col.foreign_keys:
            return key.column.type
    return col.type


def insert_rows(session: Session, model: Any, rows: Sequence[Mapping[str, Any]]) -> Any:
    """``INSERT`` into the mapped class ``model``'s table of ``rows`` (dicts with the same
    keys)."""
    table: Table = model.__table__
    names = list(rows[0])
    if session.get_bind().dialect.name != "postgresql":
        return sqlite.insert(table).values([dict(row) for row in rows])
    columns = [table.c[name] for name in names]
    # A JSON column's value travels as its JSON text (read as text, then cast): a Python
    # ``None`` there is JSON ``null``, as SQLAlchemy stores it, not SQL NULL.
    is_json = [isinstance(_type(col), JSON) for col in columns]
    document = json.dumps(
        [
            {
                name: json.dumps(row[name], default=_plain) if as_json else row[name]
                for name, as_json in zip(names, is_json, strict=True)
            }
            for row in rows
        ],
        default=_plain,
    )
    payload = cast(bindparam("rowset", document, type_=Text), postgresql.JSONB)
    records = (
        func.jsonb_to_recordset(payload)
        .table_valued(
            *(
                column(col.name, Text if as_json else _type(col))
                for col, as_json in zip(columns, is_json, strict=True)
            )
        )
        .render_derived(with_types=True)
    )
    return postgresql.insert(table).from_select(
        names,
        select(
            *(
                cast(records.c[col.name], _type(col)) if as_json else records.c[col.name]
                for col, as_json in zip(columns, is_json, strict=True)
            )
        ),
    )
