"""The database out of reach: a 503 problem to retry (never a 500), and the next request
served once it is back."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from seamline.api.app import create_app
from seamline.api.problems import database_unavailable
from seamline.runtime import Runtime, build_runtime
from seamline.settings import Settings
from tests.postgres_backends import backend_pid, terminate


def _app(settings: Settings, url: str) -> Iterator[tuple[Runtime, TestClient]]:
    rt = build_runtime(settings.model_copy(update={"database_url": url}))
    # No ``with``: no lifespan, so no embedded worker or stream hub shares the pool.
    yield rt, TestClient(create_app(rt.settings, runtime=rt), raise_server_exceptions=False)
    rt.close()


@pytest.fixture
def served(settings: Settings, database_url: str) -> Iterator[tuple[Runtime, TestClient]]:
    yield from _app(settings, database_url)


@pytest.fixture
def unreachable(settings: Settings) -> Iterator[tuple[Runtime, TestClient]]:
    # Port 1 on the loopback: nothing listens, the connection is refused at once.
    yield from _app(settings, "postgresql://postgres@127.0.0.1:1/test")


def _unavailable(response: object) -> None:
    assert getattr(response, "status_code", None) == 503, getattr(response, "text", "")
    headers = getattr(response, "headers", {})
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["retry-after"] == "2"
    body = response.json()  # type: ignore[attr-defined]
    assert body["code"] == "database_unavailable"
    assert body["status"] == 503


@pytest.mark.postgres_only
def test_a_connection_lost_mid_life_answers_503_then_the_next_request_is_served(
    served: tuple[Runtime, TestClient], make_key: Callable[..., str]
) -> None:
    rt, client = served
    auth = {"Authorization": f"Bearer {make_key()}"}
    assert client.get("/api/v1/channels", headers=auth).status_code == 200
    assert rt.db.engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    terminate(rt.db, backend_pid(rt.db))  # the pool's one connection, used a moment ago
    # The pooled connection was used a moment ago, so it is not pinged: the request finds it dead.
    _unavailable(client.get("/api/v1/channels", headers=auth))
    # The pool dropped the dead connections: the next request opens a fresh one.
    assert client.get("/api/v1/channels", headers=auth).status_code == 200


@pytest.mark.postgres_only
def test_no_database_answers_503_to_reads_writes_and_readiness(
    unreachable: tuple[Runtime, TestClient],
) -> None:
    _, client = unreachable
    auth = {"Authorization": "Bearer sk_test_0123456789abcdef0123456789abcdef"}
    _unavailable(client.get("/api/v1/channels", headers=auth))
    # The idempotency layer reads the database before the route does: the same answer.
    keyed = {**auth, "Idempotency-Key": "retry-me-1"}
    _unavailable(client.post("/api/v1/channels", headers=keyed, json={"name": "web"}))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "unavailable"
    assert client.get("/healthz").status_code == 200  # the process itself is alive


def test_only_outages_count_as_unavailable() -> None:
    def wrapped(orig: Exception, invalidated: bool = False) -> DBAPIError:
        return DBAPIError("SELECT 1", {}, orig, connection_invalidated=invalidated)

    refused = psycopg.OperationalError("connection failed: Connection refused")
    assert database_unavailable(OperationalError("connect", {}, refused))
    assert database_unavailable(wrapped(RuntimeError("socket closed"), invalidated=True))
    assert database_unavailable(PoolTimeout("QueuePool limit of size 5 overflow 10 reached"))
    # A bad query, a broken constraint, SQLite's errors: the request or the code, not an outage.
    assert not database_unavailable(wrapped(psycopg.errors.UndefinedTable("no such table")))
    assert not database_unavailable(wrapped(psycopg.errors.UniqueViolation("duplicate key")))
    assert not database_unavailable(wrapped(sqlite3.OperationalError("no such table: x")))
    assert not database_unavailable(ValueError("not a database error"))
