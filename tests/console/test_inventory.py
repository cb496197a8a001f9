"""The console's stock pages: receive, count, adjust, transfer, the ledger — and who may do what
where (a store associate only at their own store, refused by the services themselves)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from seamline.console import inventory as console_inventory
from seamline.db.engine import Database
from tests.console.conftest import post, sign_in
from tests.orders.conftest import Shop
from tests.stock_helpers import level

BASE = "http://testserver"


def associate(app: FastAPI, make_staff: Callable[..., str], *locations: str) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False)
    sign_in(client, make_staff("associate", locations=locations))
    return client


def act(client: TestClient, location: str, action: str, data: dict[str, Any]) -> Any:
    """Send a stock form from the location's page (its Referer), without following."""
    page = f"/console/inventory/{location}"
    return post(client, f"{page}/{action}", data, headers={"Referer": BASE + page})


def flash_after(client: TestClient, response: Any) -> str:
    """The page a form was sent back to, with its notice or error on top."""
    assert response.status_code == 303, response.text
    return str(client.get(response.headers["location"]).text)


@pytest.fixture
def clerk(app: FastAPI, make_staff: Callable[..., str], shop: Shop) -> TestClient:
    """A store associate of the ``mitte`` store."""
    return associate(app, make_staff, shop.store)


def test_location_list_puts_the_associates_store_first(
    admin: TestClient, clerk: TestClient, shop: Shop
) -> None:
    page = admin.get("/console/inventory").text
    assert "Mitte" in page
    assert "Warehouse" in page
    response = clerk.get("/console/inventory")
    assert response.status_code == 200
    text = response.text
    assert text.index(f"/console/inventory/{shop.store}") < text.index(
        f"/console/inventory/{shop.warehouse}"
    )
    assert "your store" in text


def test_location_pages_render_for_admin_and_associate(
    admin: TestClient, clerk: TestClient, shop: Shop
) -> None:
    for client in (admin, clerk):
        response = client.get(f"/console/inventory/{shop.store}")
        assert response.status_code == 200, response.text
        html = response.text
        assert "KETTLEBELL-1" in html
        assert "YOGA-MAT-1" in html
        assert 'action="/console/inventory/' in html
        assert "data-scan" in html
        assert " style=" not in html
        assert "<script>" not in html
    # At another store the associate may look but gets no forms.
    page = clerk.get(f"/console/inventory/{shop.warehouse}").text
    assert "read only" in page
    assert f"/console/inventory/{shop.warehouse}/receive" not in page
    assert (
        f"/console/inventory/{shop.warehouse}/receive"
        in admin.get(f"/console/inventory/{shop.warehouse}").text
    )


def test_associate_receives_counts_adjusts_and_transfers_at_their_store(
    clerk: TestClient, admin: TestClient, shop: Shop, db: Database
) -> None:
    store, warehouse, bell = shop.store, shop.warehouse, shop.bell
    r = act(clerk, store, "receive", {"code": "KETTLEBELL-1", "quantity": 2, "reference": "DN-1"})
    assert "Received 2: 5 on hand now." in flash_after(clerk, r)
    assert level(db, store, bell) == (5, 0)

    r = act(clerk, store, "count", {"variant_id": bell, "expected_on_hand": 5, "counted": 7})
    assert "Count saved: 7 on hand." in flash_after(clerk, r)
    assert level(db, store, bell) == (7, 0)

    r = act(
        clerk,
        store,
        "adjust",
        {"code": "KETTLEBELL-1", "kind": "damage", "quantity": 1, "reason": "dropped"},
    )
    assert "Adjusted (damage): 6 on hand now." in flash_after(clerk, r)
    assert level(db, store, bell) == (6, 0)

    r = act(
        clerk,
        store,
        "transfer",
        {"code": "KETTLEBELL-1", "quantity": 2, "to_location_id": warehouse, "reason": "restock"},
    )
    assert "Sent 2 in transfer trf_" in flash_after(clerk, r)
    assert level(db, store, bell) == (4, 0)
    assert level(db, warehouse, bell) == (10, 0)  # in transit

    # The ledger shows who did what, with the reasons.
    page = clerk.get(f"/console/inventory/{store}").text
    for text in ("receipt", "DN-1", "count", "damage", "dropped", "transfer out", "restock"):
        assert text in page, text
    assert "Associate Tester" in page

    # The destination books the arrival; the associate may not (not their store).
    page = admin.get(f"/console/inventory/{warehouse}").text
    assert "In transit" in page
    assert "Receive all" in page
    transfer = page.split("/transfers/")[1].split("/receive")[0]
    refused = flash_after(
        clerk, post(clerk, f"/console/inventory/{warehouse}/transfers/{transfer}/receive")
    )
    assert "may only act at its own locations" in refused
    assert level(db, warehouse, bell) == (10, 0)
    r = post(admin, f"/console/inventory/{warehouse}/transfers/{transfer}/receive")
    assert "received" in flash_after(admin, r)
    assert level(db, warehouse, bell) == (12, 0)


@pytest.mark.parametrize(
    ("action", "data"),
    [
        ("receive", {"code": "KETTLEBELL-1", "quantity": 5}),
        ("count", {"variant_id": "", "expected_on_hand": 10, "counted": 1}),
        ("adjust", {"code": "KETTLEBELL-1", "kind": "decrease", "quantity": 3, "reason": "x"}),
        ("transfer", {"code": "KETTLEBELL-1", "quantity": 4, "to_location_id": ""}),
    ],
)
def test_associate_is_refused_at_another_store(
    clerk: TestClient, shop: Shop, db: Database, action: str, data: dict[str, Any]
) -> None:
    data = {
        **data,
        **({"variant_id": shop.bell} if "variant_id" in data else {}),
        **({"to_location_id": shop.store} if "to_location_id" in data else {}),
    }
    before = [level(db, loc, shop.bell) for loc in (shop.warehouse, shop.store)]
    r = act(clerk, shop.warehouse, action, data)
    assert r.status_code == 303
    assert r.headers["location"] == f"/console/inventory/{shop.warehouse}"
    page = flash_after(clerk, r)
    assert 'class="flash error" role="alert"' in page
    assert "may only act at its own locations" in page
    assert [level(db, loc, shop.bell) for loc in (shop.warehouse, shop.store)] == before


def test_a_stale_count_is_refused(
    clerk: TestClient, admin: TestClient, shop: Shop, db: Database
) -> None:
    page = clerk.get(f"/console/inventory/{shop.store}").text
    assert 'name="expected_on_hand" value="3"' in page
    # Someone receives 2 while the clerk counts: the form still says 3.
    act(admin, shop.store, "receive", {"code": "KETTLEBELL-1", "quantity": 2})
    assert level(db, shop.store, shop.bell) == (5, 0)
    r = act(
        clerk, shop.store, "count", {"variant_id": shop.bell, "expected_on_hand": 3, "counted": 1}
    )
    page = flash_after(clerk, r)
    assert "on_hand is 5, not 3: recount" in page
    assert level(db, shop.store, shop.bell) == (5, 0)


def test_invalid_forms_are_refused_with_the_reason(
    clerk: TestClient, shop: Shop, db: Database
) -> None:
    cases = [
        ("adjust", {"code": "KETTLEBELL-1", "kind": "damage", "quantity": 1, "reason": ""}),
        ("receive", {"code": "KETTLEBELL-1", "quantity": 0}),
        ("receive", {"code": "NO-SUCH-SKU", "quantity": 1}),
        ("adjust", {"code": "KETTLEBELL-1", "kind": "decrease", "quantity": 9, "reason": "x"}),
        ("transfer", {"code": "KETTLEBELL-1", "quantity": 1, "to_location_id": shop.store}),
    ]
    for action, data in cases:
        page = flash_after(clerk, act(clerk, shop.store, action, data))
        assert 'class="flash error"' in page, (action, data)
    assert level(db, shop.store, shop.bell) == (3, 0)


def test_a_marketer_cannot_change_stock(
    client: TestClient, make_staff: Callable[..., str], shop: Shop, db: Database
) -> None:
    sign_in(client, make_staff("marketer"))
    assert client.get("/console/inventory").status_code == 403
    r = act(client, shop.warehouse, "receive", {"code": "KETTLEBELL-1", "quantity": 5})
    assert "your role may not do this" in flash_after(client, r)
    r = act(
        client,
        shop.warehouse,
        "count",
        {"variant_id": shop.bell, "expected_on_hand": 10, "counted": 0},
    )
    assert r.status_code == 303
    assert level(db, shop.warehouse, shop.bell) == (10, 0)


def test_an_advisor_may_look_but_not_change(
    client: TestClient, make_staff: Callable[..., str], shop: Shop, db: Database
) -> None:
    sign_in(client, make_staff("advisor"))
    page = client.get(f"/console/inventory/{shop.store}").text
    assert "may look at stock but not change it" in page
    r = act(client, shop.store, "receive", {"code": "KETTLEBELL-1", "quantity": 5})
    assert "needs inventory:write" in flash_after(client, r)
    assert level(db, shop.store, shop.bell) == (3, 0)


def test_the_ledger_is_paginated(
    admin: TestClient, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console_inventory, "LEDGER_PAGE", 1)
    act(admin, shop.store, "receive", {"code": "KETTLEBELL-1", "quantity": 1, "reason": "third"})
    seen = []
    url = f"/console/inventory/{shop.store}"
    for _ in range(5):
        page = admin.get(url).text
        ledger = page.split('id="h-ledger"')[1]
        seen.append(ledger.count('<td class="num qty-'))
        if "Newer movements" not in ledger:
            break
        url = ledger.split('href="')[-1].split('"')[0].replace("&amp;", "&")
    # Two receipts from the shop fixture (one per product) and ours, one per page.
    assert seen == [1, 1, 1]
    assert "third" in page


def test_a_form_sent_twice_books_stock_once(clerk: TestClient, db: Database, shop: Shop) -> None:
    page = clerk.get(f"/console/inventory/{shop.store}").text
    keys = re.findall(r'name="form_key" value="([^"]+)"', page)
    assert len(keys) == 3
    assert len(set(keys)) == 3  # one key per form
    before = level(db, shop.store, shop.bell)
    body = {"code": "KETTLEBELL-1", "quantity": 2, "form_key": keys[0]}
    first = act(clerk, shop.store, "receive", body)
    assert "Received 2" in flash_after(clerk, first)
    again = act(clerk, shop.store, "receive", body)  # a double click / a browser resend
    assert "Already done" in flash_after(clerk, again)
    assert level(db, shop.store, shop.bell) == (before[0] + 2, before[1])
    # The same key in an adjustment is the same form sent again: nothing happens either.
    adjust = {"code": "KETTLEBELL-1", "kind": "damage", "quantity": 1, "reason": "x"}
    act(clerk, shop.store, "adjust", {**adjust, "form_key": keys[0]})
    assert level(db, shop.store, shop.bell) == (before[0] + 2, before[1])
    # A fresh page's key works.
    act(clerk, shop.store, "adjust", {**adjust, "form_key": keys[1]})
    assert level(db, shop.store, shop.bell) == (before[0] + 1, before[1])
