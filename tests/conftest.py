"""Test fixtures: a real database built by the migrations (SQLite always, PostgreSQL with --db).

Every test gets an empty, migrated database: on SQLite a copy of a migrated template file, on
PostgreSQL the same schema with the tables holding rows truncated and every sequence restarted.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from seamline.api.app import create_app
from seamline.auth import service as keys
from seamline.db import migrate
from seamline.db.engine import Database
from seamline.db.models import metadata
from seamline.kit import clock as clock_module
from seamline.kit.clock import FrozenClock
from seamline.runtime import Runtime, build_runtime
from seamline.settings import Settings, get_settings

# One database per test session, so parallel runs on one server never trample each other.
PG_TEST_DB = f"seamline_test_{os.getpid()}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="postgres: use the server in SEAMLINE_TEST_DATABASE_URL (creates its own database)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"seamline database backend: {config.getoption('--db')}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    backend = config.getoption("--db")
    nats_url = os.environ.get("SEAMLINE_TEST_NATS_URL")
    for item in items:
        if backend != "postgres" and item.get_closest_marker("postgres_only"):
            item.add_marker(pytest.mark.skip(reason="PostgreSQL only (run with --db postgres)"))
        if not nats_url and item.get_closest_marker("nats"):
            item.add_marker(pytest.mark.skip(reason="SEAMLINE_TEST_NATS_URL is not set"))


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """CLI commands configure structlog for themselves; keep each test's logging its own."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def backend(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("--db"))


@pytest.fixture(scope="session")
def postgres_url(backend: str) -> Iterator[str | None]:
    """A fresh database on the PostgreSQL server named by SEAMLINE_TEST_DATABASE_URL."""
    if backend != "postgres":
        yield None
        return
    server = os.environ.get("SEAMLINE_TEST_DATABASE_URL")
    if not server:
        pytest.exit("--db postgres needs SEAMLINE_TEST_DATABASE_URL", returncode=2)
    admin = create_engine(
        make_url(server).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {PG_TEST_DB} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {PG_TEST_DB}"))
    url = make_url(server).set(drivername="postgresql+psycopg", database=PG_TEST_DB)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {PG_TEST_DB} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="session")
def template_sqlite(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Path | None:
    if backend != "sqlite":
        return None
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def migrated_postgres(postgres_url: str | None) -> str | None:
    if postgres_url is None:
        return None
    db = Database(postgres_url)
    migrate.upgrade(db)
    db.dispose()
    return postgres_url


def _truncate_postgres(url: str) -> None:
    """Empty the tables a test wrote to and restart every sequence.

    One ``EXISTS`` per table in a single query finds the tables holding rows, and only those
    are truncated: a ``TRUNCATE`` gives each table and index a new file (~10 ms apiece with
    ``fsync`` on), so truncating all of them cost 0.6 s per test, most of the PostgreSQL run.
    Sequences are restarted whether or not their table holds rows (a rolled-back insert
    still advances them), as ``TRUNCATE … RESTART IDENTITY`` of every table did.
    """
    engine = create_engine(url)
    tables = [t.name for t in metadata.sorted_tables]
    probe = " UNION ALL ".join(
        f"SELECT '{name}' WHERE EXISTS (SELECT 1 FROM {name})" for name in tables
    )
    with engine.begin() as conn:
        used = list(conn.execute(text(probe)).scalars())
        if used:
            conn.execute(text(f"TRUNCATE {', '.join(used)} CASCADE"))
        conn.execute(
            text(
                "SELECT setval(c.oid, s.seqstart, false) FROM pg_class c "
                "JOIN pg_sequence s ON s.seqrelid = c.oid WHERE c.relkind = 'S'"
            )
        )
    engine.dispose()


@pytest.fixture
def database_url(
    tmp_path: Path, template_sqlite: Path | None, migrated_postgres: str | None
) -> str:
    """An empty, fully migrated database for this test."""
    if migrated_postgres is not None:
        _truncate_postgres(migrated_postgres)
        return migrated_postgres
    assert template_sqlite is not None
    target = tmp_path / "seamline.db"
    shutil.copyfile(template_sqlite, target)
    return f"sqlite:///{target}"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key="test-secret-key-0123456789",
        log_format="console",
        nats_url=None,
        webhook_allow_private_networks=True,  # the test receivers listen on 127.0.0.1
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = build_runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def db(runtime: Runtime) -> Database:
    return runtime.db


@pytest.fixture
def app(settings: Settings, runtime: Runtime) -> FastAPI:
    return create_app(settings, runtime=runtime)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def make_key(db: Database) -> Callable[..., str]:
    """Create an API key and return its token: ``make_key(kind="secret", scopes=[...])``."""

    def make(kind: str = "secret", scopes: list[str] | None = None, name: str = "test") -> str:
        with db.transaction() as session:
            _, token = keys.create_key(session, kind=kind, name=name, scopes=scopes)
        return token

    return make


@pytest.fixture
def api_key(make_key: Callable[..., str]) -> str:
    return make_key()


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    """A frozen, settable clock installed for the test (``clock.advance(hours=1)``)."""
    frozen = FrozenClock()
    clock_module.set_clock(frozen)
    yield frozen
    clock_module.set_clock(None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a real socket (for concurrency tests)."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Point CLI commands run in-process (Typer's CliRunner) at the test database."""
    env = {
        "SEAMLINE_DATABASE_URL": settings.resolved_database_url,
        "SEAMLINE_DATA_DIR": str(settings.data_dir),
        "SEAMLINE_SECRET_KEY": settings.resolved_secret_key,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()
