"""The inventory commands an operator types: locations, postcodes, receive, stock, transfer,
arrive, count, split, rule, pickup, verify."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from seamline.cli.main import app as cli
from seamline.db.engine import Database
from tests.stock_helpers import level, make_channel, make_variant

GEONAMES = (
    "DE\t10997\tBerlin Kreuzberg\tBerlin\tBE\t\t00\tBerlin, Stadt\t11000\t52.5\t13.43\t4\n"
    "DE\t20095\tHamburg\tHamburg\tHH\t\t00\tHamburg, Stadt\t02000\t53.55\t10.0\t4\n"
)


def _ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _id(output: str) -> str:
    return output.split()[1]


@pytest.mark.usefixtures("cli_env")
def test_inventory_commands_end_to_end(
    client: TestClient, auth: dict[str, str], db: Database, tmp_path: Path
) -> None:
    runner = CliRunner()
    depot = _id(_ok("locations", "create", "warehouse", "depot", "--country", "DE",
                    "--time-zone", "Europe/Berlin", "--ships"))  # fmt: skip
    shop = _id(_ok("locations", "create", "store", "kreuzberg", "--country", "DE",
                   "--time-zone", "Europe/Berlin", "--pickup", "--city", "Berlin",
                   "--latitude", "52.4986", "--longitude", "13.403"))  # fmt: skip
    var = make_variant(client, auth, "tee")  # SKU TEE-1

    assert "received" in _ok("inventory", "receive", "depot", "TEE-1", "12")
    sent = _ok("inventory", "transfer", "depot", "kreuzberg", "TEE-1:5", "--reason", "restock")
    transfer_id = sent.split()[0]
    assert "in_transit" in sent
    picture = _ok("inventory", "stock", "TEE-1")
    assert "in transit 5" in picture
    assert "depot (warehouse)" in picture
    assert "in_transit" in _ok("inventory", "transfers", "--location", "kreuzberg")
    arrived = _ok("inventory", "arrive", transfer_id, "TEE-1:4")
    assert "arrived 4" in arrived
    assert (level(db, depot, var), level(db, shop, var)) == ((7, 0), (4, 0))

    stale = runner.invoke(cli, ["inventory", "count", "kreuzberg", "TEE-1",
                                "--expected", "5", "--counted", "3"])  # fmt: skip
    assert stale.exit_code == 1
    assert "stale_count" in stale.output
    _ok("inventory", "count", "kreuzberg", "TEE-1", "--expected", "4", "--counted", "3")
    bad_adjust = runner.invoke(cli, ["inventory", "adjust", "depot", "TEE-1", "decrease", "-2",
                                     "--reason", "x"])  # fmt: skip
    assert bad_adjust.exit_code == 2
    _ok("inventory", "adjust", "depot", "TEE-1", "damage", "1", "--reason", "torn")
    assert "3 bucket" in _ok("inventory", "split", "TEE-1", "3")
    assert (level(db, depot, var), level(db, shop, var)) == ((6, 0), (3, 0))

    web = make_channel(client, auth, "web")
    assert '"keep_per_store": 2' in _ok("inventory", "rule", web, "--keep-per-store", "2")
    assert '"max_share_percent": 100' in _ok("inventory", "rule", web)

    codes = tmp_path / "DE.txt"
    codes.write_text(GEONAMES)
    assert "imported 2" in _ok("locations", "postcodes", str(codes))
    broken = tmp_path / "broken.txt"
    broken.write_text(GEONAMES + "DE\t99999\tNowhere\n")
    result = runner.invoke(cli, ["locations", "postcodes", str(broken)])
    assert result.exit_code == 1
    assert "line 3" in result.output
    near = _ok("inventory", "pickup", "TEE-1:2", "--postcode", "10997", "--country", "de")
    assert "kreuzberg (Berlin)" in near
    assert "kreuzberg" not in _ok("inventory", "pickup", "TEE-1:4", "--near", "52.5,13.4")
    assert "ok" in _ok("inventory", "verify")
