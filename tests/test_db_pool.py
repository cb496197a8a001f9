"""The connection pool on PostgreSQL: idle connections are pinged, busy ones are not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from seamline.db import engine as engine_module
from seamline.db.engine import Database
from tests.postgres_backends import backend_pid, terminate

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def pool_db(database_url: str) -> Iterator[Database]:
    db = Database(database_url, pool_size=1, max_overflow=0)
    yield db
    db.dispose()


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
    first = backend_pid(pool_db)
    for _ in range(5):
        assert backend_pid(pool_db) == first  # the same pooled connection each time
    assert pings == []
    assert len(statements) == 6


def test_an_idle_live_connection_is_pinged_and_kept(
    pool_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _pings(pool_db)
    first = backend_pid(pool_db)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    assert backend_pid(pool_db) == first
    assert pings == ["ping"]


def test_an_idle_dead_connection_is_replaced_before_use(
    pool_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _pings(pool_db)
    first = backend_pid(pool_db)
    terminate(pool_db, first)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    second = backend_pid(pool_db)  # no error: the ping found it dead and the pool reconnected
    assert second != first
    assert pings == ["ping"]


def test_a_connection_that_died_while_busy_fails_once_then_the_pool_recovers(
    pool_db: Database,
) -> None:
    first = backend_pid(pool_db)
    terminate(pool_db, first)
    with pytest.raises(DBAPIError) as failed:
        backend_pid(pool_db)  # checked in a moment ago: not pinged, so its statement fails
    assert failed.value.connection_invalidated
    assert backend_pid(pool_db) not in (0, first)
