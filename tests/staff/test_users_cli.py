"""``seamline users create|list|disable|set-password``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from typer.testing import CliRunner, Result

from seamline.cli.main import app as cli_app
from seamline.db.engine import Database
from seamline.settings import Settings, get_settings
from tests.staff.helpers import PASSWORD, login, make_location

Invoke = Callable[..., Result]


@pytest.fixture
def cli(settings: Settings) -> Iterator[Invoke]:
    env = {
        "SEAMLINE_DATABASE_URL": settings.database_url,
        "SEAMLINE_DATA_DIR": str(settings.data_dir),
        "SEAMLINE_SECRET_KEY": settings.secret_key,
        "SEAMLINE_LOG_FORMAT": "console",
        "COLUMNS": "250",
    }
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        get_settings.cache_clear()
        try:
            return runner.invoke(cli_app, list(args), env=env, input=input)
        finally:
            get_settings.cache_clear()

    yield invoke
    get_settings.cache_clear()


def create(
    cli: Invoke,
    *extra: str,
    email: str = "ana@example.com",
    role: str = "advisor",
    password: str = PASSWORD,
) -> Result:
    return cli(
        "users",
        "create",
        "--email",
        email,
        "--name",
        "Ana Silva",
        "--role",
        role,
        "--password-stdin",
        *extra,
        input=password + "\n",
    )


def test_create_list_disable(cli: Invoke, db: Database) -> None:
    soho = make_location(db)
    made = create(cli)
    assert made.exit_code == 0, made.output
    assert "created usr_" in made.stdout
    assert "Advisor / agent" in made.stdout
    assert PASSWORD not in made.output
    associate = create(cli, "--location", soho, email="bo@example.com", role="associate")
    assert associate.exit_code == 0, associate.output
    assert soho in associate.stdout
    assert login(db).error is None

    listed = cli("users", "list")
    assert listed.exit_code == 0, listed.output
    assert "ana@example.com" in listed.stdout
    assert "bo@example.com" in listed.stdout
    assert "Store associate" in listed.stdout
    assert soho in listed.stdout
    assert "$argon2" not in listed.stdout

    disabled = cli("users", "disable", "ANA@example.com")
    assert disabled.exit_code == 0, disabled.output
    assert "disabled" in cli("users", "list").stdout
    assert login(db).error == "invalid_credentials"


def test_create_prompts_twice_without_stdin(cli: Invoke, db: Database) -> None:
    result = cli(
        "users",
        "create",
        "--email",
        "ana@example.com",
        "--name",
        "Ana",
        "--role",
        "admin",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # hidden input
    assert login(db).error is None


def test_create_refusals_exit_1(cli: Invoke, db: Database) -> None:
    short = create(cli, password="short")
    assert short.exit_code == 1
    assert "password" in short.output
    assert "at least 12" in short.output
    no_store = create(cli, role="associate")
    assert no_store.exit_code == 1
    assert "location_ids" in no_store.output
    assert create(cli).exit_code == 0
    taken = create(cli)
    assert taken.exit_code == 1
    assert "staff_email_taken" in taken.output
    empty = cli(
        "users",
        "create",
        "--email",
        "x@example.com",
        "--name",
        "X",
        "--role",
        "admin",
        "--password-stdin",
        input="",
    )
    assert empty.exit_code == 1


def test_set_password_and_unknown_user(cli: Invoke, db: Database) -> None:
    assert create(cli).exit_code == 0
    changed = cli(
        "users",
        "set-password",
        "ana@example.com",
        "--password-stdin",
        input="another long passphrase\n",
    )
    assert changed.exit_code == 0, changed.output
    assert login(db).error == "invalid_credentials"
    assert login(db, password="another long passphrase").error is None
    missing = cli("users", "disable", "nobody@example.com")
    assert missing.exit_code == 1
    assert "staff_user_not_found" in missing.output
