"""The console's product lookup (scan, SKU, name), a variant's stock page, and its live stream."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from seamline.console import products as console_products
from seamline.db.engine import Database
from tests.catalog_helpers import create_product
from tests.console.conftest import PASSWORD, csrf_in, sign_in
from tests.orders.conftest import Shop
from tests.stock_helpers import make_location, make_variant
from tests.test_stock_stream import WAIT, Stream

EAN = "4006381333931"


def chunk(html: str, start: str, end: str) -> str:
    """The markup from ``start`` to the next ``end``."""
    at = html.index(start)
    return html[at : html.index(end, at)]


def available_in(markup: str) -> int:
    found = re.search(r'data-field="available">(\d+)<', markup)
    assert found, markup
    return int(found.group(1))


def associate(app: FastAPI, make_staff: Callable[..., str], *locations: str) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False)
    sign_in(client, make_staff("associate", locations=locations))
    return client


def test_lookup_page_for_admin_and_associate(
    admin: TestClient, app: FastAPI, make_staff: Callable[..., str], shop: Shop
) -> None:
    for client in (admin, associate(app, make_staff, shop.store)):
        r = client.get("/console/products")
        assert r.status_code == 200, r.text
        assert "data-scan" in r.text
        assert 'for="product-q"' in r.text
        assert " style=" not in r.text
        assert "<script>" not in r.text


def test_a_scanned_barcode_or_a_sku_opens_the_variant(admin: TestClient, shop: Shop) -> None:
    r = admin.patch(f"/api/v1/variants/{shop.bell}", json={"barcode": EAN}, headers=shop.auth)
    assert r.status_code == 200, r.text
    for code in (EAN, "0" + EAN, "KETTLEBELL-1", "  KETTLEBELL-1 "):
        r = admin.get("/console/products", params={"q": code}, follow_redirects=False)
        assert r.status_code == 303, (code, r.text)
        assert r.headers["location"] == f"/console/products/{shop.bell}"


def test_a_name_search_lists_matches(admin: TestClient, shop: Shop) -> None:
    r = admin.get("/console/products", params={"q": "kettle"})
    assert r.status_code == 200
    assert "1 product for “kettle”" in r.text
    assert f'href="/console/products/{shop.bell}"' in r.text
    assert "Yoga Mat" not in r.text
    r = admin.get("/console/products", params={"q": "nothing-like-this"})
    assert r.status_code == 200
    assert "No product matches" in r.text


def test_variant_page_draws_and_lists_every_location(
    admin: TestClient, app: FastAPI, make_staff: Callable[..., str], shop: Shop
) -> None:
    r = admin.get(f"/console/products/{shop.bell}")
    assert r.status_code == 200, r.text
    page = r.text
    assert "Kettlebell" in page
    assert "KETTLEBELL-1" in page
    assert "€49.99" in page
    assert "<svg" in page
    assert 'role="img"' in page
    assert 'src="/console/static/stock.js"' in page
    assert 'data-stream="/console/products/' in page
    assert " style=" not in page
    assert "<script>" not in page
    for location, units in ((shop.warehouse, 10), (shop.store, 3)):
        row = chunk(page, f'<tr data-loc="{location}"', "</tr>")
        dot = chunk(page, f'<g class="place" data-loc="{location}"', "</g>")
        assert available_in(row) == units
        assert available_in(dot) == units
        assert f'data-field="on_hand">{units}<' in row
    # An admin's origin is the first store: the warehouse is ~2.3 km away, to the south.
    warehouse_row = chunk(page, f'<tr data-loc="{shop.warehouse}"', "</tr>")
    assert "2.3 km" in warehouse_row
    assert "Distances from <strong>Mitte</strong>" in page

    # An associate sees the distances from their own store.
    other = make_location(
        admin,
        shop.auth,
        "kreuzberg",
        kind="store",
        pickup=True,
        coordinates={"latitude": 52.49, "longitude": 13.42},
    )
    clerk = associate(app, make_staff, other)
    page = clerk.get(f"/console/products/{shop.bell}").text
    assert "Distances from <strong>Kreuzberg</strong>" in page
    row = chunk(page, f'<tr data-loc="{other}"', "</tr>")
    assert available_in(row) == 0
    assert "here" in row
    assert "3.4 km" in chunk(page, f'<tr data-loc="{shop.store}"', "</tr>")


def test_a_role_without_inventory_read_sees_no_stock(
    client: TestClient, make_staff: Callable[..., str], shop: Shop
) -> None:
    sign_in(client, make_staff("marketer"))
    r = client.get(f"/console/products/{shop.bell}")
    assert r.status_code == 200
    assert "KETTLEBELL-1" in r.text
    assert "<svg" not in r.text
    assert "stock.js" not in r.text
    r = client.get(f"/console/products/{shop.bell}/stream")
    assert r.status_code == 403


def test_unknown_variant_is_a_404_page(admin: TestClient) -> None:
    r = admin.get("/console/products/var_doesnotexist")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")


def test_a_product_name_is_escaped(admin: TestClient, auth: dict[str, str]) -> None:
    product = create_product(admin, auth, "xss", title="<script>alert(1)</script>")
    variant = product["variants"][0]["id"]
    page = admin.get(f"/console/products/{variant}").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    listing = admin.get("/console/products", params={"q": "script"}).text
    assert "<script>alert" not in listing
    assert "&lt;script&gt;" in listing


def test_the_stream_needs_a_session(client: TestClient, shop: Shop) -> None:
    r = client.get(f"/console/products/{shop.bell}/stream", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/login?next=")


def _store_with_a_tee(
    live_server: str, make_key: Callable[..., str], make_staff: Callable[..., str]
) -> tuple[str, str, str]:
    """A store, a variant, and an associate of the store: (location, variant, email)."""
    auth = {"Authorization": f"Bearer {make_key()}"}
    with httpx.Client(base_url=live_server, headers=auth, timeout=WAIT) as api:
        location = make_location(api, auth, "mitte", kind="store")  # type: ignore[arg-type]
        variant = make_variant(api, auth, "tee")  # type: ignore[arg-type]
    return location, variant, make_staff("associate", locations=(location,))


async def _signed_in(browser: httpx.AsyncClient, email: str) -> str:
    """Sign ``email`` in on ``browser``; returns the session's CSRF token."""
    login = await browser.get("/console/login")
    r = await browser.post(
        "/console/login",
        data={"email": email, "password": PASSWORD, "csrf_token": csrf_in(login.text)},
    )
    assert r.status_code == 303, r.text
    return csrf_in((await browser.get("/console/")).text)


@pytest.mark.anyio
async def test_the_stream_sends_a_receipt_made_in_the_console(
    live_server: str, make_key: Callable[..., str], make_staff: Callable[..., str], db: Database
) -> None:
    location, variant, email = _store_with_a_tee(live_server, make_key, make_staff)
    async with httpx.AsyncClient(
        base_url=live_server, timeout=httpx.Timeout(WAIT, read=None)
    ) as browser:
        token = await _signed_in(browser, email)
        path = f"/console/products/{variant}/stream"
        async with browser.stream("GET", path) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = Stream(response)
            assert (await stream.next_block()).comment == "subscribed"
            r = await browser.post(
                f"/console/inventory/{location}/receive",
                data={"csrf_token": token, "code": "TEE-1", "quantity": "4"},
            )
            assert r.status_code == 303, r.text
            assert r.headers["location"] == f"/console/inventory/{location}"
            block = await stream.next_event()
    assert block.event == "inventory.changed"
    data = block.json()
    assert (data["location_id"], data["variant_id"], data["cause"]) == (
        location,
        variant,
        "receipt",
    )
    assert (data["on_hand"], data["available"]) == (4, 4)
    assert data["variant"]["on_hand"] == 4


@pytest.mark.anyio
async def test_a_console_stream_ends_soon_and_a_signed_out_page_cannot_reconnect(
    live_server: str,
    make_key: Callable[..., str],
    make_staff: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The session is checked when the stream (re)connects; a console stream lasts a minute
    (here a second), so a signed-out member's page stops updating that soon."""
    monkeypatch.setattr(console_products, "CONSOLE_STREAM_SECONDS", 1.0)
    _, variant, email = _store_with_a_tee(live_server, make_key, make_staff)
    async with httpx.AsyncClient(
        base_url=live_server, timeout=httpx.Timeout(WAIT, read=None)
    ) as browser:
        token = await _signed_in(browser, email)
        path = f"/console/products/{variant}/stream"
        async with browser.stream("GET", path) as response:
            assert response.status_code == 200
            stream = Stream(response)
            assert (await stream.next_block()).comment == "subscribed"
            assert await stream.ended(), "the stream ends after its time"
        r = await browser.post("/console/logout", data={"csrf_token": token})
        assert r.status_code == 303, r.text
        again = await browser.get(path, follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"].startswith("/console/login?next=")
