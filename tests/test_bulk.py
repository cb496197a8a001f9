"""db.bulk: COPY on PostgreSQL and plain inserts on SQLite store the same rows; array-parameter
``IN`` finds the same rows as a literal list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import Integer, Table, func, select, text
from sqlalchemy.exc import IntegrityError

from seamline.db import bulk
from seamline.db.engine import Database
from seamline.identity.models import Identifier, Profile, ProfileTrait

T0 = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


def _profiles(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"prf_bulk{i}", "cluster_id": f"prf_bulk{i}", "created_at": T0, "updated_at": T0}
        for i in range(n)
    ]


def test_copy_rows_stores_json_unicode_and_nulls(db: Database) -> None:
    values: list[Any] = [{"size": "M", "note": "café ☕ \\ tab\there"}, None, ["a", 1, None], "x"]
    with db.transaction() as session:
        bulk.copy_rows(session, _table(Profile), _profiles(1))
        rows = [
            {
                "profile_id": "prf_bulk0",
                "id": f"trt_{i}",
                "name": 'n,"quoted"\nnewline',
                "value": value,
                "source": "test",
                "observed_at": T0,
                "event_id": None,
            }
            for i, value in enumerate(values)
        ]
        bulk.copy_rows(session, _table(ProfileTrait), rows)
        bulk.copy_rows(session, _table(ProfileTrait), [])  # nothing to do
    with db.transaction(readonly=True) as session:
        stored = list(session.scalars(select(ProfileTrait).order_by(ProfileTrait.id)))
    assert [t.value for t in stored] == values
    assert {t.name for t in stored} == {'n,"quoted"\nnewline'}
    assert {t.observed_at for t in stored} == {T0}
    assert {t.event_id for t in stored} == {None}


def test_copy_rows_reports_a_duplicate_as_an_integrity_error(db: Database) -> None:
    with db.transaction() as session:
        bulk.copy_rows(session, _table(Profile), _profiles(2))
    with pytest.raises(IntegrityError), db.transaction() as session:
        bulk.copy_rows(session, _table(Profile), _profiles(3))
    with db.transaction(readonly=True) as session:  # the failed transaction left nothing
        assert len(list(session.scalars(select(Profile.id)))) == 2


def test_among_and_among_pairs_match_like_in(db: Database) -> None:
    with db.transaction() as session:
        bulk.copy_rows(session, _table(Profile), _profiles(3))
        bulk.copy_rows(
            session,
            _table(Identifier),
            [
                {
                    "id": f"idn_{i}",
                    "kind": "email",
                    "value": f"p{i}@example.com",
                    "raw": f"p{i}@example.com",
                    "valid": True,
                    "profile_id": f"prf_bulk{i}",
                    "source_channel": None,
                    "source_key_id": None,
                    "first_seen": T0,
                    "last_seen": T0,
                }
                for i in range(3)
            ],
        )
    with db.transaction(readonly=True) as session:
        ids = session.scalars(
            select(Identifier.id).where(bulk.among(session, Identifier.id, ["idn_0", "idn_2", "x"]))
        )
        assert sorted(ids) == ["idn_0", "idn_2"]
        assert (
            list(
                session.scalars(select(Identifier.id).where(bulk.among(session, Identifier.id, [])))
            )
            == []
        )
        pairs = [("email", "p1@example.com"), ("phone", "p1@example.com"), ("email", "nope")]
        found = session.scalars(
            select(Identifier.id).where(
                bulk.among_pairs(session, (Identifier.kind, Identifier.value), pairs)
            )
        )
        assert list(found) == ["idn_1"]


NASTY = [
    "plain",
    "",
    "NULL",
    "null",
    " spaced ",
    'quote " inside',
    "back\\slash \\\\ twice",
    "{braces,commas}",
    "new\nline\ttab",
    "naïve 🚲 ☕",
    None,
    "x" * 5000,
]


@pytest.mark.postgres_only
def test_string_arrays_reach_postgresql_unchanged(db: Database) -> None:
    """A ``TextArray`` (and ``array()`` of strings, which sends one) reads back element for
    element, whatever the strings hold; other element types keep psycopg's own dumper."""
    with db.transaction(readonly=True) as session:
        back = session.execute(
            text("SELECT CAST(:a AS TEXT[]), cardinality(CAST(:a AS TEXT[]))"),
            {"a": bulk.TextArray(NASTY)},
        ).one()
        assert back == (NASTY, len(NASTY))
        # Without None (the one-join path when no element holds a quote or a backslash).
        for strings in ([s for s in NASTY if s is not None], ["idn_1", "", "a b", "{x}"], ['"']):
            assert (
                session.scalar(text("SELECT CAST(:a AS TEXT[])"), {"a": bulk.TextArray(strings)})
                == strings
            )
        assert session.scalar(select(bulk.array(NASTY))) == NASTY
        assert session.scalar(select(bulk.array([]))) == []
        numbers = bulk.array([1, 2, None], Integer())
        assert session.scalar(select(numbers)) == [1, 2, None]
        found = session.scalar(select(func.array_position(bulk.array(NASTY), 'quote " inside')))
        assert found == NASTY.index('quote " inside') + 1
