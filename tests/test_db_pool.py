"""The connection pool on PostgreSQL: idle connections are pinged, busy ones are not."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from seamline.db import engine as engine_module
from seamline.db.engine import Database

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def pool_db(database_url: str) -> Iterator[Database]:
    db = Database(database_url, pool_size=1, max_overflow=0)
    yield db
    db.dispose()


def _backend(db: Database) -> int:
    with db.transaction() as session:
        return int(session.scalar(text("SELECT pg_backend_pid()")) or 0)


def _kill(db: Database, pid: int) -> None:
    """End the pooled connection's server process from another connection, and wait until it
    is gone (``pg_terminate_backend`` only signals it)."""
    other = Database(db.url, pool_size=1, max_overflow=0)
    alive = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
    try:
        with other.transaction() as session:
            assert session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        for _ in range(500):
            with other.transaction() as session:
                if not session.scalar(alive, {"pid": pid}):
                    return
            time.sleep(0.01)
        raise AssertionError(f"backend {pid} still running")
    finally:
        other.dispose()


def _pings(db: Database) -> list[str]:
    """Statements run on the pool's connections outside SQLAlchemy's execution (the ping)."""
    seen: list[str] = []
    dialect = db.engine.dialect
    original = dialect.do_ping

    def counting(dbapi_connection: object) -> bool:
        seen.append("ping")
        return bool(original(dbapi_connection))

    dialect.do_ping = counting  # type: ignore[method-assign]
    return seen


def test_a_busy_connection_is_not_pinged(pool_db: Database) -> None:
    pings = _pings(pool_db)
    statements: list[str] = []
    event.listen(pool_db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    first = _backend(pool_db)
    for _ in range(5):
        assert _backend(pool_db) == first  # the same pooled connection each time
    assert pings == []
    assert len(statements) == 6


def test_an_idle_live_connection_is_pinged_and_kept(
    pool_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _pings(pool_db)
    first = _backend(pool_db)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    assert _backend(pool_db) == first
    assert pings == ["ping"]


def test_an_idle_dead_connection_is_replaced_before_use(
    pool_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _pings(pool_db)
    first = _backend(pool_db)
    _kill(pool_db, first)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    second = _backend(pool_db)  # no error: the ping found it dead and the pool reconnected
    assert second != first
    assert pings == ["ping"]


def test_a_connection_that_died_while_busy_fails_once_then_the_pool_recovers(
    pool_db: Database,
) -> None:
    first = _backend(pool_db)
    _kill(pool_db, first)
    with pytest.raises(DBAPIError) as failed:
        _backend(pool_db)  # checked in a moment ago: not pinged, so its statement fails
    assert failed.value.connection_invalidated
    assert _backend(pool_db) not in (0, first)
