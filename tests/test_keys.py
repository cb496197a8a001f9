"""API keys: the service rules and the ``seamline keys`` commands an operator uses."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner, Result

from seamline import __version__
from seamline.auth import service as keys
from seamline.auth.models import ApiKey
from seamline.auth.scopes import PUBLISHABLE_SCOPES, SCOPES
from seamline.cli.main import app as cli_app
from seamline.db.engine import Database
from seamline.kit.errors import NotFound, Unauthenticated, Unprocessable
from seamline.settings import Settings, get_settings

Invoke = Callable[..., Result]
TOKEN = re.compile(r"^(sk|pk|ek)_[A-Za-z0-9_-]{32}$")


@pytest.fixture
def cli(settings: Settings) -> Iterator[Invoke]:
    """Run ``seamline …`` against the test database, configured only through the environment."""
    env = {
        "SEAMLINE_DATABASE_URL": settings.database_url,
        "SEAMLINE_DATA_DIR": str(settings.data_dir),
        "SEAMLINE_SECRET_KEY": settings.secret_key,
        "SEAMLINE_LOG_FORMAT": "console",
        "COLUMNS": "250",  # wide enough that Rich tables never wrap an id
    }
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        get_settings.cache_clear()
        try:
            return runner.invoke(cli_app, list(args), env=env)
        finally:
            get_settings.cache_clear()

    get_settings.cache_clear()
    yield invoke
    get_settings.cache_clear()


def created_token(result: Result) -> str:
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    token = lines[-1]
    assert TOKEN.match(token), result.stdout
    return token


def key_row(db: Database, token: str) -> ApiKey:
    with db.transaction(readonly=True) as session:
        return session.query(ApiKey).filter_by(token_hash=keys.hash_token(token)).one()


def api(client: TestClient, token: str) -> int:
    response = client.get("/api/v1/channels", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


# -- the CLI ----------------------------------------------------------------------------------


def test_version(cli: Invoke) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"seamline {__version__}"


def test_create_prints_the_token_once(cli: Invoke, client: TestClient, db: Database) -> None:
    result = cli("keys", "create", "--name", "storefront sync")
    token = created_token(result)
    assert result.stdout.count(token) == 1
    assert "shown once" in result.stdout
    row = key_row(db, token)
    assert row.kind == "secret"
    assert row.name == "storefront sync"
    assert sorted(row.scopes) == sorted(SCOPES)
    assert row.id in result.stdout
    assert api(client, token) == 200


def test_create_with_kind_and_scopes(cli: Invoke, db: Database) -> None:
    token = created_token(
        cli("keys", "create", "--kind", "publishable", "-s", "catalog:read", "-s", "carts:write")
    )
    assert token.startswith("pk_")
    assert key_row(db, token).scopes == ["carts:write", "catalog:read"]
    default = created_token(cli("keys", "create", "--kind", "event"))
    assert default.startswith("ek_")
    assert key_row(db, default).scopes == ["events:write"]


def test_list_never_shows_tokens(cli: Invoke, db: Database) -> None:
    tokens = [created_token(cli("keys", "create", "--name", f"k{i}")) for i in range(2)]
    result = cli("keys", "list")
    assert result.exit_code == 0, result.output
    for token in tokens:
        assert token not in result.output
        assert token[10:] not in result.output  # not even the secret part
        assert key_row(db, token).id in result.stdout
        assert token[:10] + "…" in result.stdout  # the prefix identifies it
    assert "never" in result.stdout  # not used yet


def test_revoke_makes_the_key_fail(cli: Invoke, client: TestClient, db: Database) -> None:
    token = created_token(cli("keys", "create"))
    assert api(client, token) == 200
    key_id = key_row(db, token).id
    result = cli("keys", "revoke", key_id)
    assert result.exit_code == 0, result.output
    assert key_id in result.stdout
    response = client.get("/api/v1/channels", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"
    assert key_id not in cli("keys", "list").stdout
    assert key_id in cli("keys", "list", "--all").stdout
    assert cli("keys", "revoke", key_id).exit_code == 0  # revoking twice is harmless


def test_revoke_unknown_key_exits_1(cli: Invoke) -> None:
    result = cli("keys", "revoke", "key_nope")
    assert result.exit_code == 1
    assert "api_key_not_found" in result.stderr
    assert "Traceback" not in result.output


def test_publishable_key_cannot_get_catalog_write(cli: Invoke, db: Database) -> None:
    result = cli("keys", "create", "--kind", "publishable", "--scope", "catalog:write")
    assert result.exit_code == 1
    assert "publishable keys cannot hold: catalog:write" in result.stderr
    assert "scopes: catalog:write not allowed" in result.stderr
    assert "Traceback" not in result.output
    assert not re.search(r"\b(sk|pk|ek)_", result.stdout)  # no token was printed
    with db.transaction(readonly=True) as session:
        assert session.query(ApiKey).count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "admin"], "unknown key kind 'admin'"),
        (["--scope", "everything"], "unknown scopes: everything"),
        (["--kind", "event", "--scope", "events:read"], "event keys cannot hold: events:read"),
    ],
)
def test_create_refusals_exit_1(cli: Invoke, args: list[str], message: str) -> None:
    result = cli("keys", "create", *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


# -- the service ------------------------------------------------------------------------------


def test_tokens_are_stored_only_as_sha256(db: Database, settings: Settings) -> None:
    with db.transaction() as session:
        key, token = keys.create_key(session, kind="secret", name="hashing")
    assert TOKEN.match(token)
    with db.transaction(readonly=True) as session:
        rows = session.execute(text("SELECT * FROM api_keys")).all()
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0])
    assert token not in stored
    assert token[10:] not in stored
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert key.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert key.token_prefix == token[:10]
    if db.is_sqlite:  # not on disk either, even in the write-ahead log
        path = Path(str(settings.database_url).removeprefix("sqlite:///"))
        for file in (path, path.with_name(path.name + "-wal")):
            if file.exists():
                assert token.encode() not in file.read_bytes()


def test_tokens_are_unique_and_random(db: Database) -> None:
    with db.transaction() as session:
        tokens = {keys.create_key(session, kind="secret", name=f"k{i}")[1] for i in range(20)}
    assert len(tokens) == 20
    assert len({t[:10] for t in tokens}) > 1


def test_authenticate(db: Database) -> None:
    with db.transaction() as session:
        key, token = keys.create_key(session, kind="publishable", name="web")
    with db.transaction(readonly=True) as session:
        caller = keys.authenticate(session, token)
    assert caller.key_id == key.id
    assert caller.kind == "publishable"
    assert caller.scopes == PUBLISHABLE_SCOPES
    assert caller.touch_due  # never used yet
    with db.transaction(readonly=True) as session:
        for bogus in ("", token + "x", token.upper(), token[:-1]):
            with pytest.raises(Unauthenticated):
                keys.authenticate(session, bogus)


def test_revoked_key_is_refused(db: Database) -> None:
    with db.transaction() as session:
        key, token = keys.create_key(session, kind="secret", name="old")
        keys.revoke_key(session, key.id)
    with db.transaction(readonly=True) as session, pytest.raises(Unauthenticated):
        keys.authenticate(session, token)
    with db.transaction() as session, pytest.raises(NotFound):
        keys.revoke_key(session, "key_missing")


@pytest.mark.parametrize(
    ("kind", "scopes", "code"),
    [
        ("publishable", ["catalog:write"], "scope_not_allowed"),
        ("publishable", ["channels:read"], "scope_not_allowed"),
        ("event", ["orders:read"], "scope_not_allowed"),
        ("secret", ["nope:read"], "unknown_scope"),
        ("secret", [], "empty"),  # an empty list must never mean "every scope"
        ("root", None, "unknown_kind"),
    ],
)
def test_create_key_refusals_are_422(
    db: Database, kind: str, scopes: list[str] | None, code: str
) -> None:
    with db.transaction() as session, pytest.raises(Unprocessable) as raised:
        keys.create_key(session, kind=kind, name="x", scopes=scopes)
    assert raised.value.status == 422
    assert code in [e.code for e in raised.value.errors]
    with db.transaction(readonly=True) as session:
        assert session.query(ApiKey).count() == 0


def test_name_is_trimmed_defaulted_and_bounded(db: Database) -> None:
    with db.transaction() as session:
        key, _ = keys.create_key(session, kind="event", name="   ")
        assert key.name == "event"
        key, _ = keys.create_key(session, kind="secret", name="  POS till 3  ")
        assert key.name == "POS till 3"
        with pytest.raises(Unprocessable):
            keys.create_key(session, kind="secret", name="n" * 201)


def test_list_keys_hides_revoked_unless_asked(db: Database) -> None:
    with db.transaction() as session:
        kept, _ = keys.create_key(session, kind="secret", name="kept")
        gone, _ = keys.create_key(session, kind="secret", name="gone")
        keys.revoke_key(session, gone.id)
    with db.transaction(readonly=True) as session:
        assert [k.id for k in keys.list_keys(session)] == [kept.id]
        assert {k.id for k in keys.list_keys(session, include_revoked=True)} == {kept.id, gone.id}
