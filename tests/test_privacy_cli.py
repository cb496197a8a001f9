"""``seamline customers export|erase``: the same services as the API, logged as the CLI user."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from seamline.cli.main import app as cli
from seamline.db.engine import Database
from seamline.identity.customer_models import PrivacyRequest
from seamline.identity.models import Identifier

pytestmark = pytest.mark.usefixtures("cli_env")


@pytest.fixture
def profile_id(client: TestClient, make_key: Callable[..., str], db: Database) -> str:
    token = make_key(kind="event", name="web")
    response = client.post(
        "/v1/identify",
        json={"userId": "cli-user", "traits": {"email": "cli@example.com", "name": "Cli Person"}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    with db.transaction(readonly=True) as session:
        return session.scalars(
            select(Identifier.profile_id).where(Identifier.value == "cli-user")
        ).one()


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), input=input)


def requests(db: Database) -> list[PrivacyRequest]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(PrivacyRequest).order_by(PrivacyRequest.id)))


def test_export_to_a_private_file(profile_id: str, db: Database, tmp_path: Path) -> None:
    target = tmp_path / "export.json"
    result = run("customers", "export", profile_id, "--output", str(target))
    assert result.exit_code == 0, result.output
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert doc["format"] == "seamline.customer-export/1"
    assert {i["value"] for i in doc["identifiers"]} == {"cli-user", "cli@example.com"}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    [logged] = requests(db)
    assert logged.kind == "export"
    assert logged.requested_by is not None
    assert logged.requested_by.startswith("cli:")

    again = run("customers", "export", profile_id, "--output", str(target))
    assert again.exit_code == 1
    assert "exists" in again.output
    assert run("customers", "export", profile_id, "-o", str(target), "--force").exit_code == 0


def test_export_to_stdout(profile_id: str) -> None:
    result = run("customers", "export", profile_id)
    assert result.exit_code == 0, result.output
    start = result.stdout.index("{")
    doc = json.loads(result.stdout[start:])
    assert doc["profile_id"] == profile_id


def test_erase_asks_first(profile_id: str, db: Database) -> None:
    declined = run("customers", "erase", profile_id, "--reason", "ticket 7", input="n\n")
    assert declined.exit_code == 1
    assert "2 identifier(s)" in declined.output
    assert requests(db) == []

    result = run("customers", "erase", profile_id, "--reason", "ticket 7", input="y\n")
    assert result.exit_code == 0, result.output
    assert "erased" in result.output
    [logged] = requests(db)
    assert logged.kind == "erase"
    assert logged.reason == "ticket 7"
    assert logged.requested_by is not None
    assert logged.requested_by.startswith("cli:")
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Identifier)) == 0

    again = run("customers", "erase", profile_id, "--reason", "ticket 7", "--yes")
    assert again.exit_code == 0, again.output
    assert "erased (again)" in again.output


def test_bad_input(profile_id: str, tmp_path: Path) -> None:
    unknown = run("customers", "erase", "prf_nope", "--reason", "x", "--yes")
    assert unknown.exit_code == 1
    assert "profile_not_found" in unknown.output
    assert run("customers", "export", "prf_nope").exit_code == 1
    target = tmp_path / "none.json"
    assert run("customers", "export", "prf_nope", "-o", str(target)).exit_code == 1
    assert not target.exists()  # no empty file left behind
    empty = run("customers", "erase", profile_id, "--reason", "  ", "--yes")
    assert empty.exit_code == 2
    assert "reason" in empty.output
    assert run("customers", "erase", profile_id, "--yes").exit_code == 2  # --reason is required
