"""Stock: receipts, adjustments, compare-and-swap counts, the ledger, CHECK constraints and
``seamline inventory verify``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from seamline.auth import service as keys
from seamline.cli.main import app as cli
from seamline.db.engine import Database
from seamline.inventory.models import StockLevel, StockMovement
from seamline.settings import Settings, get_settings
from tests.catalog_helpers import events
from tests.stock_helpers import level, make_location, make_variant, receive, reserve


def ledger(db: Database, loc: str, var: str) -> int:
    with db.transaction(readonly=True) as session:
        total = session.scalar(
            select(func.coalesce(func.sum(StockMovement.quantity), 0)).where(
                StockMovement.location_id == loc, StockMovement.variant_id == var
            )
        )
        return int(total or 0)


def test_receive_adjust_and_read(client: TestClient, auth: dict[str, str], db: Database) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    assert receive(client, auth, loc, var, 10) == {
        "location_id": loc,
        "variant_id": var,
        "on_hand": 10,
        "reserved": 0,
        "available": 10,
    }
    for kind, q, expected in (("damage", 2, 8), ("increase", 3, 11), ("return", 1, 12)):
        r = client.post(
            "/api/v1/stock/adjustments",
            json={
                "location_id": loc,
                "variant_id": var,
                "kind": kind,
                "quantity": q,
                "reason": "shelf check",
            },
            headers=auth,
        )
        assert r.status_code == 201, r.text
        assert r.json()["on_hand"] == expected
    too_much = client.post(
        "/api/v1/stock/adjustments",
        json={
            "location_id": loc,
            "variant_id": var,
            "kind": "decrease",
            "quantity": 13,
            "reason": "x",
        },
        headers=auth,
    )
    assert too_much.status_code == 409
    assert too_much.json()["code"] == "insufficient_stock"
    stock = client.get(f"/api/v1/stock/variants/{var}", headers=auth).json()
    assert (stock["on_hand"], stock["available"], len(stock["locations"])) == (12, 12, 1)
    page = client.get(
        "/api/v1/stock/movements", params={"variant_id": var, "limit": 2}, headers=auth
    ).json()
    assert [m["kind"] for m in page["data"]] == ["receipt", "damage"]
    assert [m["quantity"] for m in page["data"]] == [10, -2]
    rest = client.get(
        "/api/v1/stock/movements",
        params={"variant_id": var, "cursor": page["next_cursor"]},
        headers=auth,
    ).json()
    assert [m["kind"] for m in rest["data"]] == ["adjustment", "return"]
    assert rest["next_cursor"] is None
    assert ledger(db, loc, var) == 12
    changed = events(db, "inventory.changed")
    assert len(changed) == 4
    assert changed[-1].aggregate_type == "stock"
    assert changed[-1].aggregate_id == f"{loc}:{var}"
    assert changed[-1].payload["available"] == 12


def test_unknown_targets_are_404(client: TestClient, auth: dict[str, str]) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    r = client.post(
        "/api/v1/stock/receipts",
        json={"location_id": "loc_nope", "variant_id": var, "quantity": 1},
        headers=auth,
    )
    assert (r.status_code, r.json()["code"]) == (404, "location_not_found")
    r = client.post(
        "/api/v1/stock/receipts",
        json={"location_id": loc, "variant_id": "var_nope", "quantity": 1},
        headers=auth,
    )
    assert (r.status_code, r.json()["code"]) == (404, "variant_not_found")
    assert client.get("/api/v1/stock/variants/var_nope", headers=auth).status_code == 404


@pytest.mark.parametrize("quantity", [0, -1, 1_000_001, True, "5", 2.5, 1e7])
def test_bad_quantities_are_422_with_paths(
    client: TestClient, auth: dict[str, str], db: Database, quantity: object
) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    r = client.post(
        "/api/v1/stock/receipts",
        json={"location_id": loc, "variant_id": var, "quantity": quantity},
        headers=auth,
    )
    assert r.status_code == 422
    assert [e["path"] for e in r.json()["errors"]] == ["body.quantity"]
    r = reserve(client, auth, [(loc, var, quantity, "cart-1")])
    assert r.status_code == 422
    assert [e["path"] for e in r.json()["errors"]] == ["body.lines.0.quantity"]
    assert ledger(db, loc, var) == 0


def test_count_is_compare_and_swap(client: TestClient, auth: dict[str, str], db: Database) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    receive(client, auth, loc, var, 10)
    before = len(events(db, "inventory."))
    stale = client.post(
        "/api/v1/stock/counts",
        json={"location_id": loc, "variant_id": var, "expected_on_hand": 9, "counted": 7},
        headers=auth,
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "stale_count"
    assert "on_hand=10" in stale.json()["detail"]
    assert level(db, loc, var) == (10, 0)
    assert len(events(db, "inventory.")) == before
    ok = client.post(
        "/api/v1/stock/counts",
        json={"location_id": loc, "variant_id": var, "expected_on_hand": 10, "counted": 7},
        headers=auth,
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["on_hand"] == 7
    moves = client.get("/api/v1/stock/movements", params={"variant_id": var}, headers=auth)
    assert [(m["kind"], m["quantity"]) for m in moves.json()["data"]][-1] == ("count", -3)
    assert ledger(db, loc, var) == 7
    # A count may not leave fewer units than are reserved.
    assert reserve(client, auth, [(loc, var, 5, "cart-1")]).status_code == 201
    below = client.post(
        "/api/v1/stock/counts",
        json={"location_id": loc, "variant_id": var, "expected_on_hand": 7, "counted": 4},
        headers=auth,
    )
    assert below.status_code == 409
    assert below.json()["code"] == "count_below_reserved"
    assert level(db, loc, var) == (7, 5)


def test_check_constraints_refuse_reserved_above_on_hand(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    receive(client, auth, loc, var, 3)
    for values in ({"reserved": 4}, {"on_hand": -1}, {"reserved": -1}):
        with pytest.raises(IntegrityError), db.transaction() as session:
            session.execute(
                update(StockLevel)
                .where(StockLevel.location_id == loc, StockLevel.variant_id == var)
                .values(**values)
            )
    assert level(db, loc, var) == (3, 0)


def test_location_limited_key_changes_only_its_own(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    own, other = make_location(client, auth, "own"), make_location(client, auth, "other")
    var = make_variant(client, auth)
    with db.transaction() as session:
        _, token = keys.create_key(
            session,
            kind="secret",
            name="store",
            scopes=["inventory:read", "inventory:write"],
            location_ids=[own],
        )
    limited = {"Authorization": f"Bearer {token}"}
    receive(client, limited, own, var, 2)
    r = client.post(
        "/api/v1/stock/receipts",
        json={"location_id": other, "variant_id": var, "quantity": 1},
        headers=limited,
    )
    assert (r.status_code, r.json()["code"]) == (403, "location_out_of_scope")
    assert reserve(client, limited, [(other, var, 1, "c")]).status_code == 403
    assert client.get(f"/api/v1/stock/variants/{var}", headers=limited).status_code == 200


@pytest.fixture
def target(client: TestClient, auth: dict[str, str]) -> tuple[str, str]:
    """Created once per test; Hypothesis runs every example against the same database."""
    return make_location(client, auth), make_variant(client, auth)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["receive", "damage", "increase", "reserve", "commit", "release", "count"]),
        st.integers(min_value=1, max_value=6),
    ),
    max_size=12,
)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS)
def test_ledger_equals_on_hand_after_any_sequence(
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    target: tuple[str, str],
    ops: list[tuple[str, int]],
) -> None:
    loc, var = target
    held: list[str] = []
    for op, q in ops:
        on_hand, reserved = level(db, loc, var)
        if op == "receive":
            receive(client, auth, loc, var, q)
        elif op in ("damage", "increase"):
            r = client.post(
                "/api/v1/stock/adjustments",
                json={
                    "location_id": loc,
                    "variant_id": var,
                    "kind": op,
                    "quantity": q,
                    "reason": "fuzz",
                },
                headers=auth,
            )
            assert r.status_code == (409 if op == "damage" and q > on_hand - reserved else 201)
        elif op == "reserve":
            r = reserve(client, auth, [(loc, var, q, f"ref-{len(held)}-{q}-{on_hand}")])
            assert r.status_code == (201 if q <= on_hand - reserved else 409), r.text
            if r.status_code == 201:
                held.append(r.json()["data"][0]["id"])
        elif op in ("commit", "release") and held:
            r = client.post(f"/api/v1/reservations/{held.pop()}/{op}", headers=auth)
            assert r.status_code == 200, r.text
        elif op == "count":
            r = client.post(
                "/api/v1/stock/counts",
                json={
                    "location_id": loc,
                    "variant_id": var,
                    "expected_on_hand": on_hand,
                    "counted": max(reserved, q),
                },
                headers=auth,
            )
            assert r.status_code == 201, r.text
        on_hand, reserved = level(db, loc, var)
        assert 0 <= reserved <= on_hand
        assert ledger(db, loc, var) == on_hand
    for rid in held:
        client.post(f"/api/v1/reservations/{rid}/release", headers=auth)
    assert level(db, loc, var)[1] == 0


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SEAMLINE_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("SEAMLINE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SEAMLINE_SECRET_KEY", settings.resolved_secret_key)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_verify_command(
    client: TestClient, auth: dict[str, str], db: Database, cli_env: None
) -> None:
    loc, var = make_location(client, auth), make_variant(client, auth)
    receive(client, auth, loc, var, 5)
    assert reserve(client, auth, [(loc, var, 2, "cart-1")]).status_code == 201
    runner = CliRunner()
    result = runner.invoke(cli, ["inventory", "verify"])
    assert result.exit_code == 0, result.output
    with db.transaction() as session:  # a hand-made corruption: on_hand without a movement
        session.execute(
            update(StockLevel)
            .where(StockLevel.location_id == loc, StockLevel.variant_id == var)
            .values(on_hand=6)
        )
    result = runner.invoke(cli, ["inventory", "verify"])
    assert result.exit_code == 1
    assert "mismatch" in result.output
