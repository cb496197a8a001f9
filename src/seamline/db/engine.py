"""Engine creation and the one-transaction-per-unit-of-work session scope."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

EMITTED = "seamline.emitted"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy own BEGIN (see _on_begin); the driver's implicit BEGIN is off.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front: no deadlock-prone lock upgrade mid-transaction.
        # Read-only scopes begin DEFERRED so readers never queue behind writers (WAL).
        if conn.get_execution_options().get("seamline_readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.drivername == "sqlite":
            url = str(parsed.set(drivername="sqlite+pysqlite"))
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        if parsed.database in (None, "", ":memory:"):
            raise ValueError("use a SQLite file: in-memory databases are not shared across threads")
        # Pooled connections keep their PRAGMAs; reconnecting per transaction costs ~2 ms.
        kwargs.setdefault("pool_size", 8)
        kwargs.setdefault("max_overflow", 8)
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    if parsed.drivername in ("postgresql", "postgres"):
        url = str(parsed.set(drivername="postgresql+psycopg"))
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


class Database:
    """An engine plus a session factory; one per process (the API, a worker, a CLI command)."""

    def __init__(self, url: str, *, stream_enabled: bool = False, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        # Sessions know whether events must also go to the stream (see events.outbox.emit).
        info = {"seamline.stream_enabled": stream_enabled}
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, autoflush=True, info=info)
        # Set after a commit that wrote outbox events, so an embedded worker wakes at once.
        self.wakeup = threading.Event()

        @event.listens_for(self.sessions, "after_commit")
        def _wake(session: Session) -> None:
            if session.info.pop(EMITTED, False):
                self.wakeup.set()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        """One unit of work: commits when the block ends, rolls back on any exception.

        Services receive the session and never commit; this scope does.
        """
        session = self.sessions()
        if readonly:
            session.connection(execution_options={"seamline_readonly": True})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
