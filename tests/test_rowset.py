"""db.rowset: one INSERT of many rows whose SQL text does not change with the row count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from seamline.db.engine import Database
from seamline.db.rowset import insert_rows
from seamline.identity.customer_models import TimelineEntry
from seamline.identity.models import Profile
from tests.statements import recorded

T0 = datetime(2026, 3, 1, 12, 30, 0, 123456, tzinfo=UTC)


def _entries(n: int, start: int = 0) -> list[dict[str, Any]]:
    odd: list[Any] = [{"note": 'café ☕ \\ "q"\n', "n": [1, None, 2.5]}, None, ["x"], {}]
    return [
        {
            "profile_id": "prf_rows",
            "id": f"tle_{i}",
            "event_id": f"evt_{i}",
            "type": "order.placed",
            "occurred_at": T0 + timedelta(minutes=i),
            "channel": None if i % 2 else "pos",
            "aggregate_type": "order",
            "aggregate_id": f"ord_{i}",
            "summary": f"Ünïcode {i} €",
            "data": odd[i % len(odd)],
        }
        for i in range(start, start + n)
    ]


def test_rows_round_trip_and_the_statement_text_is_the_same_for_any_count(db: Database) -> None:
    with db.transaction() as session:
        session.add(Profile(id="prf_rows", cluster_id="prf_rows", created_at=T0, updated_at=T0))
    with recorded(db) as sent, db.transaction() as session:
        for count, start in ((1, 0), (3, 1), (7, 4)):
            stmt = insert_rows(session, TimelineEntry, _entries(count, start))
            stmt = stmt.on_conflict_do_nothing(index_elements=["event_id", "profile_id"])
            session.execute(stmt.returning(TimelineEntry.__table__.c.event_id))
        # A conflicting row is skipped, as ON CONFLICT says.
        again = insert_rows(session, TimelineEntry, _entries(2, 10))
        again = again.on_conflict_do_nothing(index_elements=["event_id", "profile_id"])
        new = session.execute(again.returning(TimelineEntry.__table__.c.event_id)).all()
    assert [row[0] for row in new] == ["evt_11"]
    inserts = [s for s in sent if s.lstrip().upper().startswith("INSERT")]
    if db.is_sqlite:
        assert len(set(inserts)) == 4  # multi-row VALUES: one text per row count
    else:
        assert len(set(inserts)) == 1, "one statement text whatever the number of rows"
    with db.transaction(readonly=True) as session:
        stored = list(session.scalars(select(TimelineEntry).order_by(TimelineEntry.id)))
    expected = _entries(12)
    assert len(stored) == 12
    for row, want in zip(stored, sorted(expected, key=lambda e: e["id"]), strict=True):
        assert (row.id, row.event_id, row.occurred_at, row.channel, row.summary, row.data) == (
            want["id"],
            want["event_id"],
            want["occurred_at"],
            want["channel"],
            want["summary"],
            want["data"],
        )
