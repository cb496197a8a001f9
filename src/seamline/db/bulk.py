"""Many rows into one table at once: ``COPY`` on PostgreSQL, a multi-row ``INSERT`` elsewhere.

Ingestion writes hundreds of rows per request into a few tables. A multi-row ``INSERT`` with
thousands of bound parameters costs more on the client than on the server (psycopg converts
every long statement's placeholders anew: it caches only short ones), while ``COPY`` streams
the rows in PostgreSQL's own format. Rows must name every column they set (Python-side column
defaults do not apply to ``COPY``); server defaults fill the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import adapters, postgres
from psycopg.adapt import Dumper
from pydantic_core import to_json
from sqlalchemy import (
    JSON,
    Select,
    String,
    Table,
    Text,
    any_,
    bindparam,
    func,
    insert,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, Session, aliased
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeDecorator, TypeEngine

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
    json_at = [n for n, c in enumerate(columns) if c in json_columns]
    times: dict[int, str] = {}  # id() of a datetime -> its text (rows share their `now`)
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                values = [row[c] for c in columns]
                for n, value in enumerate(values):
                    if type(value) is datetime:
                        text_ = times.get(id(value))
                        if text_ is None:
                            text_ = times[id(value)] = str(value)
                        values[n] = text_
                for n in json_at:
                    if values[n] is not None:
                        values[n] = _json_text(values[n])
                copy.write_row(values)
    except psycopg.errors.IntegrityError as exc:
        # As SQLAlchemy reports it for any other statement, so callers handle one exception.
        raise IntegrityError(statement, None, exc) from exc


# Values are handed to ``write_row`` as text where psycopg's own adaptation is slow: a
# ``datetime`` costs ~2.2 µs to dump (its text, ``str(value)`` as psycopg sends it, is made
# once per object: rows share their ``now``), a JSON value ``json.dumps`` (below). A delivery
# row went from ~7 to ~3 µs of client CPU, an outbox row from ~12.8 to ~7.7 µs.


def _json_text(value: Any) -> str:
    """A JSON column's value as text for ``COPY`` (PostgreSQL parses it as the column's type).

    pydantic-core's encoder: ~1.7 µs for a tracked call's context where ``json.dumps``
    (psycopg's ``Jsonb``) takes ~5.6 µs, and ingestion writes three or four JSON values per
    call. The same JSON, but for the spelling of the text: non-ASCII characters are written
    as UTF-8 rather than ``\\u`` escapes, which ``jsonb`` stores identically."""
    return to_json(value).decode()


def next_values(session: Session, table: Table, column: str, count: int) -> list[int]:
    """``count`` values of the sequence behind ``table.column`` (PostgreSQL), in order — what
    ``count`` inserts relying on the default would take, for rows written with ``COPY``."""
    sql = text(
        "SELECT nextval(pg_get_serial_sequence(:table, :column)) FROM generate_series(1, :n)"
    )
    found = session.execute(sql, {"table": table.name, "column": column, "n": count}).scalars()
    return sorted(found)


class TextArray(list[str | None]):
    """Strings sent as one PostgreSQL ``text[]`` parameter by ``_TextArrayDumper``: the array's
    text made with ``str.join`` instead of psycopg's general list dumper, which looks at
    every element in Python (a tenth of the ingestion drain's CPU went there, for arrays of
    thousands of ids). Pass one where a raw statement takes a string array
    (``CAST(:ids AS TEXT[])``); ``array()`` makes one for string columns by itself."""


_ARRAY_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


class _TextArrayDumper(Dumper):
    """``TextArray`` as PostgreSQL's array text: every element quoted (so any string reads
    back as itself: empty, ``NULL``, braces, commas, spaces), backslash and quote escaped;
    ``None`` as an unquoted ``NULL``."""

    oid = postgres.types["text"].array_oid

    def dump(self, obj: Any) -> bytes:
        if not obj:
            return b"{}"
        if None not in obj:
            joined = '","'.join(obj)
            # No element holds a quote or a backslash (ids and the like): the join is the text.
            if "\\" not in joined and joined.count('"') == 2 * (len(obj) - 1):
                return ('{"' + joined + '"}').encode()
        parts = ["NULL" if v is None else f'"{v.translate(_ARRAY_ESCAPES)}"' for v in obj]
        return ("{" + ",".join(parts) + "}").encode()


adapters.register_dumper(TextArray, _TextArrayDumper)


class _TextArrayType(TypeDecorator[Sequence[Any]]):
    """``ARRAY(Text)`` whose bound lists of strings go as a ``TextArray`` (a decorator, so the
    dialect's own array type, which would make it a plain list again, is not applied)."""

    impl = ARRAY(Text())
    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        def process(value: Sequence[Any] | None) -> Any:
            if value is None:
                return None
            if all(type(v) is str or v is None for v in value):
                return TextArray(value)
            return list(value)

        return process


def array(values: Sequence[Any], element: TypeEngine[Any] | None = None) -> BindParameter[Any]:
    """One PostgreSQL array parameter holding ``values``.

    Strings go as ``text[]``, never ``varchar(n)[]``: a cast to a length-limited type is a
    per-element coercion PostgreSQL cannot fold into a generic plan (psycopg prepares a
    statement after five runs; the server then plans it once for any parameter), so a filter
    on it re-casts the whole array for every row it looks at — 150 ms instead of 4 ms for a
    500-value check against 20,000 rows. ``text`` needs no coercion; comparisons with
    ``varchar`` columns still use their indexes.
    """
    if element is None or isinstance(element, String):
        return bindparam(None, list(values), type_=_TextArrayType())
    return bindparam(None, list(values), type_=ARRAY(element))


def unnest(values: Sequence[Any], name: str, element: TypeEngine[Any] | None = None) -> Any:
    """``unnest(:array) AS anon(name)`` (PostgreSQL): the values as rows, to join against."""
    derived: TableValuedAlias = func.unnest(array(values, element)).table_valued(name)
    return derived.render_derived()


def by_key(
    session: Session,
    target: Any,
    key: Sequence[Column],
    values: Sequence[Sequence[Any]],
    *,
    unique: bool = True,
    where: Sequence[ColumnElement[bool]] = (),
) -> Select[Any]:
    """``SELECT target`` (a mapped class, or a tuple of columns) of the rows whose ``key``
    columns equal one of ``values`` (tuples in ``key`` order) and that meet ``where``.
    ``unique``: ``key`` is a primary or unique key (at most one row per value).

    On PostgreSQL the values are arrays joined ``LATERAL`` to a probe of the key's index
    (``LIMIT 1`` for a unique key, ``OFFSET 0`` otherwise: either keeps the probe from being
    flattened into a join the planner may run as a hash join), so the plan is one index
    lookup per value, whatever the table's size and statistics. ``key = ANY(…)`` or
    ``key IN (SELECT unnest(…))`` left the planner free to scan the whole table — with no
    statistics (the bench database never has any: autovacuum is off there) a 500-value
    ``ANY`` on a non-unique column looks like the whole table — which grew with it: 250 ms
    per 500 identifiers' links near 100,000 events instead of a few ms. Elsewhere,
    ``key IN (values)``.
    """
    entity = isinstance(target, type)
    targets = [target] if entity else list(target)
    if not is_postgres(session):
        if len(key) == 1:
            found = key[0].in_([v[0] for v in values])
        else:
            found = tuple_(*key).in_([tuple(v) for v in values])
        return select(*targets).where(found, *where)
    names = [f"k{n}" for n in range(len(key))]
    arrays = [array([v[n] for v in values], column.type) for n, column in enumerate(key)]
    probes = func.unnest(*arrays).table_valued(*names).render_derived()
    probe = select(*targets).where(
        *(column == probes.c[name] for column, name in zip(key, names, strict=True)), *where
    )
    probe = probe.limit(1) if unique else probe.offset(0)
    fenced = probe.lateral()
    rows = select(aliased(target, fenced)) if entity else select(*fenced.c)
    return rows.select_from(probes.join(fenced, true()))


def among(session: Session, column: Column, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(:array)``, one parameter whatever
    the count, so the statement's text stays the same (psycopg and the server cache it)."""
    if not is_postgres(session):
        return column.in_(values)
    return column == any_(array(values, column.type))


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
            array([p[0] for p in pairs], first.type),
            array([p[1] for p in pairs], second.type),
        )
        .table_valued("a", "b")
        .render_derived()
    )
    return tuple_(first, second).in_(unnested)
