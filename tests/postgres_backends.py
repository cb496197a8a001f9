"""PostgreSQL server processes behind a pool's connections: which one, and ending it (what a
restart or a failover does to a pooled connection)."""

from __future__ import annotations

import time

from sqlalchemy import text

from seamline.db.engine import Database


def backend_pid(db: Database) -> int:
    with db.transaction() as session:
        return int(session.scalar(text("SELECT pg_backend_pid()")) or 0)


def terminate(db: Database, pid: int) -> None:
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
