"""``seamline customers import``: CSV rows become customers, all rows or none, idempotently."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from seamline.cli.main import app as cli
from seamline.db.engine import Database
from seamline.identity import customers_import
from seamline.identity.models import (
    Identifier,
    IdentityLink,
    Profile,
    ProfileMerge,
    ProfileTrait,
)
from seamline.kit.errors import Unprocessable
from tests.identity.conftest import cluster_of, identifier, merges

Send = Callable[..., Any]
HEADER = "external_id,email,phone,first_name,last_name,street,city,postcode,country\n"
GOOD = (
    HEADER
    + "c1,ann@example.com,+44 7911 123456,Ann,Lee,1 High St,London,SW1A 1AA,GB\n"
    + "c2,bob@example.com,07912 345678,Bob,Ray,2 Low Rd,Leeds,LS1 1AA,GB\n"
    + "c3,,,Chloé,Dupré,3 Rue Neuve,Paris,75001,FR\n"
)


def counts(db: Database) -> dict[str, int]:
    with db.transaction(readonly=True) as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Profile, Identifier, ProfileTrait, IdentityLink, ProfileMerge)
        }


def run(db: Database, text: str, **options: Any) -> customers_import.ImportReport:
    parsed = customers_import.parse(text, source=options.pop("source", "crm"))
    with db.transaction() as session:
        return customers_import.import_rows(session, parsed, name="file.csv", **options)


def problems(text: str, db: Database | None = None) -> dict[str, str]:
    """The report of a refused file: ``row.<n>.<column>`` → reason."""
    parsed = customers_import.parse(text, source="crm")
    if parsed.errors:
        return {e.path: e.message for e in parsed.errors}
    assert db is not None
    with pytest.raises(Unprocessable) as refused, db.transaction() as session:
        customers_import.import_rows(session, parsed, name="file.csv")
    return {e.path: e.message for e in refused.value.errors}


def test_rows_become_customers_with_their_identifiers_and_traits(db: Database) -> None:
    seen: list[int] = []
    report = run(db, GOOD, progress=seen.append)
    assert report.rows == 3
    assert report.profiles_created == 3
    assert report.identifiers_created == 7
    assert report.traits_recorded == 9
    assert sum(seen) == 3
    # One row, one profile holding all of its identifiers: one customer.
    ann = identifier(db, "external:crm", "c1")
    assert identifier(db, "email", "ann@example.com").profile_id == ann.profile_id
    bob_phone = identifier(db, "phone", "+447912345678")  # read in the row's country
    assert bob_phone.profile_id == identifier(db, "external:crm", "c2").profile_id
    assert cluster_of(db, "external:crm", "c1") == ann.profile_id
    with db.transaction(readonly=True) as session:
        traits = {
            t.name: (t.value, t.source)
            for t in session.scalars(
                select(ProfileTrait).where(ProfileTrait.profile_id == ann.profile_id)
            )
        }
    assert traits["first_name"] == ("Ann", "import:crm")
    address = {"street": "1 High St", "city": "London", "postal_code": "SW1A 1AA", "country": "GB"}
    assert traits["address"] == (address, "import:crm")


def test_reimport_creates_nothing_new(db: Database) -> None:
    run(db, GOOD)
    before = counts(db)
    report = run(db, GOOD)
    assert counts(db) == before
    assert report.profiles_created == report.identifiers_created == report.traits_recorded == 0
    assert report.identifiers_known == 7
    # A changed cell is a new observation of that trait only.
    report = run(db, GOOD.replace("Bob,Ray", "Bob,Raymond"))
    assert report.traits_recorded == 1
    assert counts(db)["profile_traits"] == before["profile_traits"] + 1


def test_row_errors_name_row_and_column_and_import_nothing(db: Database) -> None:
    text = (
        HEADER
        + "c1,ann@example.com,,Ann,Lee,,,,GB\n"
        + "c2,not-an-email,,Bob,,,,,GB\n"  # row 3
        + ",,,Nobody,,,,,\n"  # row 4: no identifier
        + "c4,d@example.com,12,Dee,,,,,GBR\n"  # row 5: phone and country
        + "c5,ANN@example.com,,Ann,,,,,\n"  # row 6: the same email as row 2
    )
    found = problems(text)
    assert set(found) == {
        "row.3.email",
        "row.4.row",
        "row.5.phone",
        "row.5.country",
        "row.6.email",
    }
    assert "repeats row 2" in found["row.6.email"]
    assert counts(db)["profiles"] == 0


def test_header_problems(db: Database) -> None:
    assert set(problems("first_name,shoe_size\nAnn,5\n")) == {"row.1.shoe_size", "row.1.row"}
    assert "row.1.email" in problems("email,email\na@example.com,b@example.com\n")
    assert problems("") == {"row.1.row": "the file is empty"}
    assert "row.2.external_id" in customers_import.parse("external_id\nc1\n").errors[0].path


def test_huge_and_long_fields_are_row_errors(db: Database) -> None:
    huge = "external_id,first_name\nc1,Ann\nc2," + "x" * 200_000 + "\n"
    found = problems(huge)
    assert list(found) == ["row.3.row"]
    assert "unreadable" in found["row.3.row"]
    long = "external_id,first_name,email\nc1," + "y" * 600 + ",a" + "b" * 300 + "@example.com\n"
    found = problems(long)
    assert set(found) == {"row.2.first_name", "row.2.email"}
    assert counts(db)["profiles"] == 0


def test_unicode_and_a_byte_order_mark(db: Database, tmp_path: Path) -> None:
    text = "external_id,first_name,last_name,city\nk1,Jürgen,Weiß,München\nk2,太郎,山田,東京\n"
    path = tmp_path / "bom.csv"
    path.write_text(text, encoding="utf-8-sig")  # what spreadsheet programs write
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    parsed = customers_import.parse(path.read_text(encoding="utf-8-sig"), source="crm")
    assert parsed.errors == []
    with db.transaction() as session:
        customers_import.import_rows(session, parsed, name=path.name)
    jurgen = identifier(db, "external:crm", "k1").profile_id
    with db.transaction(readonly=True) as session:
        names = {
            t.name: t.value
            for t in session.scalars(select(ProfileTrait).where(ProfileTrait.profile_id == jurgen))
        }
    assert names["last_name"] == "Weiß"
    assert names["address"] == {"city": "München"}
    assert identifier(db, "external:crm", "k2").kind == "external:crm"


def test_known_identifiers_join_their_customers_through_resolution(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    # The web shop knew Ann by an anonymous id and her email; the CRM knows her loyalty card.
    send("identify", {"anonymousId": "web-1", "traits": {"email": "ann@example.com"}})
    web = cluster_of(db, "email", "ann@example.com")
    report = run(db, "email,loyalty_card,first_name\nann@example.com,LC-1,Ann\n")
    assert report.rows_linked == 1
    assert report.merges == 1
    assert report.profiles_created == 1
    assert cluster_of(db, "loyalty_card", "LC1") == cluster_of(db, "email", "ann@example.com")
    merge = next(m for m in merges(db) if m.trigger == "import")
    assert merge.reason.startswith("listed as one customer in import")
    # An ordinary merge pointer: unmerge splits the import's profile off again.
    card = identifier(db, "loyalty_card", "LC1").profile_id
    response = client.post(
        f"/api/v1/profiles/{card}/unmerge",
        json={"merge_id": merge.id, "reason": "wrong card"},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    assert cluster_of(db, "email", "ann@example.com") == web
    assert cluster_of(db, "loyalty_card", "LC1") != web


def test_a_row_joining_two_accounts_is_refused(send: Send, db: Database) -> None:
    send("identify", {"userId": "acct-1", "traits": {"email": "one@example.com"}})
    send("identify", {"userId": "acct-2", "traits": {"email": "two@example.com"}})
    clash = "email,user_id\nnew@example.com,acct-3\none@example.com,acct-9\n"
    found = problems(clash, db)
    assert list(found) == ["row.3.user_id"]
    assert "user_id" in found["row.3.user_id"]
    # Two rows that each look fine but together would give one customer two loyalty cards.
    pair = "email,loyalty_card\none@example.com,L1\none-alias@example.com,L2\n"
    send("identify", {"userId": "acct-1", "traits": {"email": "one-alias@example.com"}})
    before = counts(db)
    found = problems(pair, db)
    assert list(found) == ["row.3.loyalty_card"]
    assert counts(db) == before


@pytest.mark.usefixtures("cli_env")
def test_cli_import_reports_and_is_all_or_nothing(db: Database, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.csv"
    rows = [f"c{n},user{n}@example.com,First{n},Last{n}" for n in range(1, 600)]
    rows[497] = "c498,not an email,First,Last"  # spreadsheet row 499
    bad.write_text("external_id,email,first_name,last_name\n" + "\n".join(rows) + "\n")
    result = runner.invoke(cli, ["customers", "import", str(bad), "--source", "crm"])
    assert result.exit_code == 1, result.output
    assert "499" in result.output
    assert "email" in result.output
    assert "nothing was imported" in result.output
    assert counts(db)["profiles"] == 0

    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    result = runner.invoke(cli, ["customers", "import", str(good), "--source", "crm", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert counts(db)["profiles"] == 0
    result = runner.invoke(cli, ["customers", "import", str(good), "--source", "crm"])
    assert result.exit_code == 0, result.output
    assert "imported 3 rows" in result.output
    assert "3 new customers" in result.output
    assert counts(db)["profiles"] == 3
    again = runner.invoke(cli, ["customers", "import", str(good), "--source", "crm"])
    assert again.exit_code == 0, again.output
    assert "0 new customers" in again.output
    missing = runner.invoke(cli, ["customers", "import", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 1


def test_api_import(client: TestClient, auth: dict[str, str], db: Database) -> None:
    headers = {**auth, "Content-Type": "text/csv"}
    response = client.post(
        "/api/v1/customers/imports?source=crm", content=GOOD.encode(), headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["profiles_created"] == 3
    bad = client.post(
        "/api/v1/customers/imports?source=crm",
        content=(HEADER + "c9,nope,,,,,,,\n").encode(),
        headers=headers,
    )
    assert bad.status_code == 422
    assert bad.json()["code"] == "csv_invalid"
    assert bad.json()["errors"][0]["path"] == "row.2.email"
    latin1 = client.post(
        "/api/v1/customers/imports",
        content="email\nj\xe9@x.fr\n".encode("latin-1"),
        headers=headers,
    )
    assert latin1.status_code == 422
    assert counts(db)["profiles"] == 3


def test_an_erased_customer_is_not_recreated_by_an_import(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    """Importing an old CRM file after an erasure must not bring the person back: the row is
    refused until they consent again."""
    run(db, GOOD)
    ann = identifier(db, "email", "ann@example.com").profile_id
    erased = client.post(
        f"/api/v1/profiles/{ann}/erase", json={"reason": "customer request"}, headers=auth
    )
    assert erased.status_code == 200, erased.text
    before = counts(db)
    found = problems(GOOD, db)
    assert list(found) == ["row.2.row"], found
    assert "erased" in found["row.2.row"]
    assert counts(db) == before
    back = client.post(
        "/api/v1/consent",
        json={
            "identifier": {"kind": "email", "value": "ann@example.com"},
            "changes": [
                {
                    "channel": "email",
                    "purpose": "marketing",
                    "state": "granted",
                    "level": "single",
                    "source": "store sign-up",
                }
            ],
        },
        headers=auth,
    )
    assert back.status_code == 200, back.text
    # The email may be recorded again; the external id and phone stay blocked until given again.
    assert list(problems(GOOD, db)) == ["row.2.row"]
    run(db, GOOD.replace("c1,ann@example.com,+44 7911 123456", "c1b,ann@example.com,"))
    assert cluster_of(db, "external:crm", "c1b") == cluster_of(db, "email", "ann@example.com")
