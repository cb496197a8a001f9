"""CSV import and export: all or nothing, a row-level report, and a lossless round trip."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from seamline.catalog.models import Price, Product, Variant
from seamline.cli.main import app as cli
from seamline.db.engine import Database
from seamline.events.models import OutboxEvent

HEADER = "handle,title,status,sku,barcode,option:size,price:EUR,compare_at:EUR,weight_grams\n"


def big_file(rows: int = 1000, bad_line: int | None = None) -> str:
    lines = [HEADER]
    for i in range(rows - 1 if bad_line else rows):
        product = i // 4
        lines.append(f"prod-{product},Product {product},active,SKU-{i},,S{i % 4},{1000 + i},,250\n")
    text = "".join(lines)
    if bad_line:
        parts = text.splitlines(keepends=True)
        parts.insert(bad_line - 1, "prod-bad,Bad,active,SKU-BAD,,M,-5,,250\n")
        text = "".join(parts)
    return text


def counts(db: Database) -> tuple[int, int, int, int]:
    with db.transaction(readonly=True) as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(t)) or 0
            for t in (Product, Variant, Price, OutboxEvent)
        )


def test_a_bad_row_at_line_500_imports_nothing(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    text = big_file(1000, bad_line=500)
    assert text.splitlines()[499].startswith("prod-bad")
    response = client.post(
        "/api/v1/catalog/imports",
        content=text.encode(),
        headers={**auth, "Content-Type": "text/csv"},
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "csv_invalid"
    assert [e["path"] for e in problem["errors"]] == ["line.500.price:EUR"]
    assert counts(db) == (0, 0, 0, 0)


def test_a_good_file_imports_every_row(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    response = client.post(
        "/api/v1/catalog/imports",
        content=big_file(1000).encode(),
        headers={**auth, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "rows": 1000,
        "products_created": 250,
        "products_updated": 0,
        "variants_created": 1000,
        "variants_updated": 0,
    }
    products, variants, prices, _ = counts(db)
    assert (products, variants, prices) == (250, 1000, 1000)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ("handle,title\nx,y\n", "line.1.sku"),
        (HEADER + "a,A,active,S-1,4006381333932,M,100,,\n", "line.2.barcode"),
        (HEADER + "a,A,active,S-1,,M,100,,\na,A,active,S-1,,L,100,,\n", "line.3.sku"),
        (
            HEADER + "a,A,active,S-1,036000291452,M,100,,\nb,B,active,S-2,0036000291452,M,1,,\n",
            "line.3.barcode",
        ),
        (HEADER + "a,A,active,S-1,,M,100,,\na,Other,active,S-2,,L,100,,\n", "line.3.title"),
        (HEADER + "a,A,bogus,S-1,,M,100,,\n", "line.2.status"),
        (HEADER + "a,A,active,S-1,,M,100,,heavy\n", "line.2.weight_grams"),
        (HEADER + "a,A,active,S-1\n", "line.2.row"),
        (HEADER.replace("weight_grams", "colour"), "line.1.colour"),
        (HEADER + 'a,"A\nB",active,S-1,,M,100,,\nb,B,active,S-2,,M,x,,\n', "line.4.price:EUR"),
    ],
    ids=[
        "missing-column",
        "bad-gtin",
        "dup-sku",
        "same-gtin-two-lengths",
        "product-differs",
        "status",
        "weight",
        "short",
        "unknown-col",
        "multiline",
    ],
)
def test_row_level_report(
    client: TestClient, auth: dict[str, str], db: Database, body: str, path: str
) -> None:
    response = client.post("/api/v1/catalog/imports", content=body.encode(), headers=auth)
    assert response.status_code == 422, response.text
    assert path in [e["path"] for e in response.json()["errors"]], response.json()
    assert counts(db)[0] == 0


def test_not_utf8_is_refused(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post("/api/v1/catalog/imports", content=b"\xff\xfehandle", headers=auth)
    assert response.status_code == 422
    assert response.json()["code"] == "csv_unreadable"


def test_sku_of_another_product_is_refused(client: TestClient, auth: dict[str, str]) -> None:
    first = HEADER + "a,A,active,S-1,,M,100,,\n"
    assert (
        client.post("/api/v1/catalog/imports", content=first.encode(), headers=auth).status_code
        == 200
    )
    second = HEADER + "b,B,active,S-1,,M,100,,\n"
    response = client.post("/api/v1/catalog/imports", content=second.encode(), headers=auth)
    assert response.json()["errors"][0] == {
        "path": "line.2.sku",
        "message": "belongs to product 'a'",
        "code": "sku_taken",
    }


def test_export_then_import_round_trips(
    client: TestClient, auth: dict[str, str], db: Database, tmp_path: Path
) -> None:
    text = (
        "handle,title,status,description,tags,media,sku,barcode,variant_title,weight_grams,"
        "option:size,option:colour,price:EUR,price:USD,compare_at:EUR\n"
        'tee,Ünïcode Tee,active,"Soft, ""heavy""\ncotton",summer|cotton,https://x.example/a.jpg,'
        "TEE-M,4006381333931,Medium,200,M,black,1999,2199,2499\n"
        "tee,Ünïcode Tee,active,,,,TEE-L,,Large,,L,,2099,,\n"
    )
    assert (
        client.post("/api/v1/catalog/imports", content=text.encode(), headers=auth).status_code
        == 200
    )
    exported = client.get("/api/v1/catalog/export", headers=auth)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["sku"] for r in rows] == ["TEE-M", "TEE-L"]
    assert rows[0]["description"] == 'Soft, "heavy"\ncotton'
    assert rows[0]["tags"] == "summer|cotton"
    assert (rows[0]["price:EUR"], rows[0]["compare_at:EUR"], rows[1]["price:USD"]) == (
        "1999",
        "2499",
        "",
    )
    before = client.get("/api/v1/products", headers=auth).json()["data"]
    events_before = counts(db)[3]
    # Importing the export again changes nothing and emits nothing.
    again = client.post("/api/v1/catalog/imports", content=exported.content, headers=auth).json()
    assert again["products_updated"] == 0
    assert again["variants_updated"] == 0
    assert counts(db)[3] == events_before
    assert client.get("/api/v1/products", headers=auth).json()["data"] == before


@pytest.mark.usefixtures("cli_env")
def test_cli_import_and_export(db: Database, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.csv"
    bad.write_text(big_file(1000, bad_line=500))
    result = runner.invoke(cli, ["catalog", "import", str(bad)])
    assert result.exit_code == 1
    assert "500" in result.output
    assert "price:EUR" in result.output
    assert counts(db)[0] == 0
    good = tmp_path / "good.csv"
    good.write_text(big_file(200))
    result = runner.invoke(cli, ["catalog", "import", str(good)])
    assert result.exit_code == 0, result.output
    assert "200 rows" in result.output
    out = tmp_path / "out.csv"
    result = runner.invoke(cli, ["catalog", "export", str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 201
