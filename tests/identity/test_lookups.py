"""``bulk.by_key``: the index probes the drain's reads use (the same rows as ``IN``, and on
PostgreSQL a plan of index lookups whatever the table's size and statistics)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session

from seamline.db import bulk
from seamline.db.engine import Database
from seamline.identity import ingest
from seamline.identity.models import Identifier, IdentityLink, Profile, TrackedEvent

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _fill(session: Session, events: int) -> None:
    """One profile with ``events`` tracked events of write key ``k1`` (and a few of ``k2``)."""
    session.add(Profile(id="prf_1", cluster_id="prf_1"))
    session.flush()
    rows = [
        {
            "profile_id": "prf_1",
            "id": f"tev_{n}",
            "write_key_id": "k1" if n % 100 else "k2",
            "message_id": f"m-{n}",
            "type": "track",
            "properties": {},
            "traits": {},
            "context": {"pad": "x" * 200},
            "timestamp": T0,
            "received_at": T0,
        }
        for n in range(events)
    ]
    bulk.copy_rows(session, TrackedEvent.__table__, rows)  # type: ignore[arg-type]


def test_by_key_finds_the_rows_in_finds(db: Database) -> None:
    with db.transaction() as session:
        _fill(session, 300)
        key = (TrackedEvent.write_key_id, TrackedEvent.message_id)
        wanted = [("k1", "m-1"), ("k1", "m-100"), ("k2", "m-100"), ("k1", "nope"), ("k2", "m-7")]
        found = set(session.scalars(bulk.by_key(session, (TrackedEvent.id,), key, wanted)))
        assert found == {"tev_1", "tev_100"}
        assert ingest._stored_message_ids(session, "k2", ["m-0", "m-1", "m-200"]) == {
            "m-0",
            "m-200",
        }
        # Whole entities, a non-unique key, and an extra condition.
        events = session.scalars(
            bulk.by_key(
                session,
                TrackedEvent,
                (TrackedEvent.write_key_id,),
                [("k2",), ("k3",)],
                unique=False,
                where=[TrackedEvent.message_id != "m-0"],
            )
        ).all()
        assert sorted(e.message_id for e in events) == ["m-100", "m-200"]
        assert all(isinstance(e, TrackedEvent) for e in events)
        assert session.scalars(bulk.by_key(session, (TrackedEvent.id,), key, [])).all() == []


def _plan(session: Session, stmt: Any) -> str:
    compiled = stmt.compile(dialect=session.get_bind().dialect)
    driver = session.connection().connection.driver_connection
    assert driver is not None
    rows = driver.execute("EXPLAIN " + str(compiled), compiled.params).fetchall()
    return "\n".join(r[0] for r in rows)


def test_the_duplicate_check_probes_the_unique_index_without_statistics(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("PostgreSQL plans")
    with db.transaction() as session:
        _fill(session, 5000)  # never analyzed: the planner has no statistics
        key = (TrackedEvent.write_key_id, TrackedEvent.message_id)
        wanted = [("k1", f"m-{n}") for n in range(4000, 4500)]
        plan = _plan(session, bulk.by_key(session, (TrackedEvent.message_id,), key, wanted))
        assert "Seq Scan" not in plan, plan
        assert "Filter" not in plan, plan
        assert "uq_tracked_events_write_key_id_message_id" in plan, plan
        assert "message_id" in next(line for line in plan.splitlines() if "Index Cond" in line)


def test_lookups_on_non_unique_columns_stay_index_probes(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("PostgreSQL plans")
    with db.transaction() as session:
        _fill(session, 50)
        ids = [(f"idn_{n}",) for n in range(500)]
        for end in (IdentityLink.identifier_a_id, IdentityLink.identifier_b_id):
            plan = _plan(session, bulk.by_key(session, IdentityLink, (end,), ids, unique=False))
            assert "Seq Scan" not in plan, plan
            assert "Index" in plan, plan
        plan = _plan(
            session,
            bulk.by_key(
                session, (Identifier.id,), (Identifier.profile_id,), [("prf_1",)], unique=False
            ),
        )
        assert "Seq Scan" not in plan, plan
