"""Engine creation and the one-transaction-per-unit-of-work session scope."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
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
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


# A pooled connection that sat unused longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 10.0
_IDLE_SINCE = "seamline.idle_since"


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling for connections that sat in the pool, without a round
    trip for busy ones (docs/scaling.md, "The connection pool").

    ``pool_pre_ping`` pings on every checkout: one more round trip per transaction, five per
    checkout. Here a connection is pinged only when it was idle for
    ``PING_AFTER_IDLE_SECONDS``; a dead one raises ``DisconnectionError``, and the pool
    replaces it with a new connection (SQLAlchemy's documented checkout-event recipe). The
    price: after PostgreSQL restarts or ends connections, a connection used within the last
    ``PING_AFTER_IDLE_SECONDS`` fails its next statement instead; SQLAlchemy then discards
    every connection the pool held, so that is one failed unit of work per process (plus any
    running at the time), and the next ones reconnect.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError(f"pooled connection found dead: {exc}") from exc


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
