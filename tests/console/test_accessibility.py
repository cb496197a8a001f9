"""Every console page is usable with a keyboard and a screen reader: each form control has a
label, images and pictures have text, the page has one main landmark and one h1, and no inline
script or style (the Content-Security-Policy would block it anyway)."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from tests.console.conftest import Shop


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.labels_for: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.open_labels = 0
        self.h1 = 0
        self.main = 0
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "style" in a:
            self.problems.append(f"inline style on <{tag}>")
        if any(name.startswith("on") for name in a):
            self.problems.append(f"inline event handler on <{tag}>")
        if tag == "label":
            self.open_labels += 1
            if a.get("for"):
                self.labels_for.add(str(a["for"]))
        elif tag == "script" and not a.get("src"):
            self.problems.append("inline <script>")
        elif tag == "style":
            self.problems.append("<style> element")
        elif tag == "h1":
            self.h1 += 1
        elif tag == "main":
            self.main += 1
        elif tag == "img" and not a.get("alt"):
            self.problems.append("<img> without alt")
        elif (
            tag == "svg"
            and a.get("role") == "img"
            and not (a.get("aria-label") or a.get("aria-labelledby"))
        ):
            self.problems.append("picture without a text alternative")
        elif tag in ("input", "select", "textarea"):
            if a.get("type") in ("hidden", "submit", "button"):
                return
            self.controls.append({**a, "_inside_label": "1" if self.open_labels else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self.open_labels:
            self.open_labels -= 1

    def unlabelled(self) -> list[str]:
        found = []
        for c in self.controls:
            if c.get("_inside_label") or c.get("aria-label") or c.get("aria-labelledby"):
                continue
            if c.get("id") and c["id"] in self.labels_for:
                continue
            found.append(str(c.get("name") or c.get("id")))
        return found


def check(html: str, url: str) -> None:
    page = _Page()
    page.feed(html)
    assert page.problems == [], (url, page.problems)
    assert page.unlabelled() == [], (url, "controls without a label", page.unlabelled())
    assert page.main == 1, url
    assert page.h1 == 1, (url, "one h1 per page")


@pytest.fixture
def pages(shop: Shop, make_cart: Callable[..., str], admin: TestClient) -> list[str]:
    cart = make_cart([(shop.bell, 1, None), (shop.mat, 1, shop.store)])
    code = admin.get(f"/api/v1/carts/{cart}", headers=shop.auth).json()["share_code"]
    return [
        "/console/",
        "/console/search?q=ann",
        "/console/products",
        "/console/products?q=kettlebell",
        f"/console/products/{shop.bell}",
        "/console/carts",
        f"/console/carts?code={code}",
        "/console/carts?code=ZZZ-ZZZ",
        f"/console/carts/{cart}",
        "/console/orders",
        "/console/inventory",
        f"/console/inventory/{shop.store}",
    ]


def test_every_page_is_labelled_and_has_no_inline_code(admin: TestClient, pages: list[str]) -> None:
    for url in pages:
        r = admin.get(url)
        assert r.status_code in (200, 404), (url, r.status_code)
        check(r.text, url)


def test_the_login_page_is_labelled(client: TestClient) -> None:
    check(client.get("/console/login").text, "/console/login")


def test_an_order_page_is_labelled(
    admin: TestClient, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.mat, 1, shop.store)])
    r = admin.post(
        f"/api/v1/carts/{cart}/checkout",
        json={"tenders": [{"provider": "manual", "token": "cash"}], "location_id": shop.store},
        headers=shop.auth,
    )
    assert r.status_code == 201, r.text
    order = r.json()["id"]
    check(admin.get(f"/console/orders/{order}").text, "/console/orders/{id}")
    # The customer 360 of the order's customer, too.
    profile = r.json()["profile_id"]
    check(admin.get(f"/console/customers/{profile}").text, "/console/customers/{id}")
