"""The console under nasty input: NUL and odd unicode in every field, huge and absurd values,
forged and foreign forms, open redirects, staff acting beyond their role or store, signed-out
access, and markup in every place user data is shown. A refusal is a page or a notice, never
a server error, and it writes nothing (checked on the whole database, not on a stub)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from seamline.carts.models import Cart, CartLine
from seamline.catalog.models import Product, Variant
from seamline.db.engine import Database
from seamline.db.models import metadata
from seamline.orders.models import FulfilmentGroup, Return, ReturnLine
from tests.console.conftest import form_token, post, sign_in
from tests.console.test_customers import Send, cluster_of, send  # noqa: F401 (fixture)
from tests.console.test_orders import place
from tests.orders.conftest import Shop
from tests.stock_helpers import make_location

NUL = "a\x00b"
ODD = "\u202e\u200b😀\ufeff\u0301"  # RTL override, zero-width space, emoji, BOM, lone accent
NUMBERS = ["-1", "0", "1e309", "NaN", "99999999999999999999", "../../etc/passwd"]
# Bytes that are not UTF-8 (a lone surrogate, an overlong NUL, garbage) and a raw NUL.
RAW = ["%ED%A0%80", "%C0%80", "%FF%FE", "%00"]


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the staff's own (sessions move as pages are read)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with db.transaction(readonly=True) as session:
        for table in metadata.sorted_tables:
            if table.name.startswith("staff_"):
                continue
            rows = session.execute(select(table)).all()
            out[table.name] = sorted((tuple(map(repr, r)) for r in rows), key=repr)
    return out


@dataclass
class World:
    cart: str
    version: int
    line: str
    profile: str
    pick: dict[str, Any]  # a paid order picked up at shop.store
    ship: dict[str, Any]  # a paid web order shipped from the warehouse
    pick_group: str
    ship_group: str
    ret: str  # a requested return of ``ship`` at shop.store
    ret_line: str
    sku: str  # the yoga mat's

    def posts(self, shop: Shop) -> dict[str, dict[str, Any]]:
        """Every console form with valid values (each would change something)."""
        v = {"version": self.version}
        return {
            f"/console/customers/{self.profile}/merge": {"other_id": "prf_x", "reason": "r"},
            f"/console/customers/{self.profile}/dismiss": {"other_id": "prf_x"},
            f"/console/customers/{self.profile}/unmerge": {"merge_id": "mrg_x", "reason": "r"},
            f"/console/inventory/{shop.store}/receive": {
                "quantity": "1",
                "code": "",
                "variant_id": shop.mat,
                "reason": "delivery",
                "reference": "DN-1",
            },
            f"/console/inventory/{shop.store}/count": {
                "variant_id": shop.mat,
                "expected_on_hand": "3",
                "counted": "2",
                "reason": "shelf",
            },
            f"/console/inventory/{shop.store}/adjust": {
                "kind": "increase",
                "quantity": "1",
                "reason": "found",
                "code": "",
                "variant_id": shop.mat,
            },
            f"/console/inventory/{shop.store}/transfer": {
                "to_location_id": shop.warehouse,
                "quantity": "1",
                "code": "",
                "variant_id": shop.mat,
                "reason": "restock",
            },
            f"/console/carts/{self.cart}/lines": {
                **v,
                "code": self.sku,
                "quantity": "1",
                "fulfilment": "ship",
            },
            f"/console/carts/{self.cart}/lines/{self.line}": {
                **v,
                "quantity": "2",
                "fulfilment": "ship",
            },
            f"/console/carts/{self.cart}/lines/{self.line}/remove": {**v},
            f"/console/carts/{self.cart}/codes": {**v, "code": "WELCOME10"},
            f"/console/carts/{self.cart}/shipping": {
                **v,
                "email": "b@example.com",
                "shipping_rate_id": shop.rate,
                "name": "Bo",
                "line1": "Main St 1",
                "line2": "",
                "city": "Berlin",
                "region": "BE",
                "postcode": "10115",
                "country": "DE",
                "phone": "+4930123456",
            },
            f"/console/carts/{self.cart}/checkout": {
                **v,
                "key": "nasty1",
                "mode": "till",
                "tender": "cash",
                "tendered": "200",
                "token": "",
                "location_id": shop.store,
            },
            f"/console/orders/{self.pick['id']}/groups/{self.pick_group}/ready": {},
            f"/console/orders/{self.ship['id']}/groups/{self.ship_group}/ship": {
                "carrier": "DHL",
                "tracking_number": "JJD0001",
            },
            f"/console/orders/{self.pick['id']}/cancel": {"reason": "customer asked"},
            f"/console/orders/{self.ship['id']}/returns": {
                "line_id": [self.ship["lines"][0]["id"]],
                "quantity": ["1"],
                "reason": ["damaged"],
                "location_id": shop.store,
                "note": "scratched",
            },
            f"/console/orders/{self.ship['id']}/returns/{self.ret}/receive": {
                "return_line_id": [self.ret_line],
                "disposition": ["restock"],
            },
        }


@pytest.fixture
def world(admin: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]) -> World:
    cart = make_cart([(shop.mat, 1, None), (shop.bell, 1, shop.store)])
    pick = place(admin, shop, make_cart([(shop.bell, 1, shop.store)]), "k1")
    ship = place(admin, shop, make_cart([(shop.mat, 2, None)]), "k2")
    r = post(
        admin,
        f"/console/orders/{ship['id']}/returns",
        {
            "line_id": [ship["lines"][0]["id"]],
            "quantity": ["1"],
            "reason": ["damaged"],
            "location_id": shop.store,
        },
    )
    assert r.status_code == 303, r.text  # type: ignore[attr-defined]
    with db.transaction(readonly=True) as s:
        c = s.get(Cart, cart)
        assert c is not None
        assert c.profile_id is not None
        return World(
            cart=cart,
            version=c.version,
            line=s.scalars(
                select(CartLine.id).where(CartLine.cart_id == cart).order_by(CartLine.id)
            ).first()
            or "",
            profile=c.profile_id,
            pick=pick,
            ship=ship,
            pick_group=s.scalars(
                select(FulfilmentGroup.id).where(FulfilmentGroup.order_id == pick["id"])
            ).one(),
            ship_group=s.scalars(
                select(FulfilmentGroup.id).where(FulfilmentGroup.order_id == ship["id"])
            ).one(),
            ret=s.scalars(select(Return.id)).one(),
            ret_line=s.scalars(select(ReturnLine.id)).one(),
            sku=s.scalars(select(Variant.sku).where(Variant.id == shop.mat)).one(),
        )


def _refused_post(r: Any) -> str:
    """A refused console form: back to a console page with an error notice (never a 5xx)."""
    assert r.status_code in (303, 403, 404, 422), (r.status_code, r.text[:300])
    if r.status_code == 303:
        assert r.headers["location"].startswith("/console"), r.headers["location"]
        flash = r.headers.get("set-cookie", "")
        assert "seamline_flash" in flash, "a refusal must say why"
        return unquote(flash)
    return str(r.text)


# -- NUL and odd unicode ---------------------------------------------------------------------


def test_nul_in_any_form_field_is_refused_and_writes_nothing(
    admin: TestClient, db: Database, shop: Shop, world: World
) -> None:
    """PostgreSQL cannot store (or compare) NUL: it used to be a 500 there (a return's note,
    an unmerge's merge id) and was stored as is on SQLite (a receipt's reason)."""
    before = snapshot(db)
    for url, form in world.posts(shop).items():
        for field, value in form.items():
            data = dict(form)
            data[field] = [NUL] if isinstance(value, list) else NUL
            r = post(admin, url, data)
            text_ = _refused_post(r)
            assert "NUL" in text_, (url, field, text_[:300])
            assert snapshot(db) == before, (url, field)


def test_nul_in_any_query_parameter_is_a_clear_refusal(
    admin: TestClient, shop: Shop, world: World
) -> None:
    """Used to be a 500 on PostgreSQL for the timeline's channel filter, the product search,
    the stock page's cursor and the orders' location filter."""
    pages = {
        "/console/search": ["q"],
        f"/console/customers/{world.profile}": ["cursor", "channel"],
        "/console/products": ["q"],
        f"/console/inventory/{shop.store}": ["after", "cursor"],
        "/console/carts": ["code"],
        "/console/orders": ["status", "location", "cursor"],
    }
    for url, params in pages.items():
        for p in params:
            r = admin.get(url, params={p: NUL})
            assert r.status_code == 422, (url, p, r.status_code)
            assert "NUL" in r.text
            assert "Something went wrong" not in r.text
    for path in (
        "/console/customers/{}",
        "/console/products/{}",
        "/console/products/{}/stream",
        "/console/inventory/{}",
        "/console/carts/{}",
        "/console/orders/{}",
        f"/console/orders/{world.ship['id']}/returns/{{}}",
    ):
        r = admin.get(path.format(quote(NUL)))
        assert r.status_code in (404, 422), (path, r.status_code)


def test_odd_unicode_and_bad_bytes_never_fail(
    admin: TestClient, db: Database, shop: Shop, world: World
) -> None:
    """RTL marks, zero-width characters, emoji, lone surrogates and bytes that are not UTF-8
    in every query parameter and form field: a page or a notice, never a server error."""
    pages = {
        "/console/login": ["next"],
        "/console/search": ["q"],
        f"/console/customers/{world.profile}": ["cursor", "channel"],
        "/console/products": ["q"],
        f"/console/inventory/{shop.store}": ["after", "cursor"],
        "/console/carts": ["code"],
        "/console/orders": ["status", "location", "cursor"],
    }
    for url, params in pages.items():
        for p in params:
            for v in [ODD, "y" * 60_000, *NUMBERS]:
                r = admin.get(url, params={p: v})
                assert r.status_code < 500, (url, p, v[:20], r.status_code)
            for raw in RAW:
                r = admin.get(f"{url}?{p}={raw}")
                assert r.status_code < 500, (url, p, raw, r.status_code)
    for url, form in world.posts(shop).items():
        flat = {k: (x[0] if isinstance(x, list) else x) for k, x in form.items()}
        for field in flat:
            for raw in [*RAW, quote(ODD)]:
                rest = {k: x for k, x in flat.items() if k != field}
                body = urlencode({"csrf_token": form_token(admin), **rest}) + f"&{field}={raw}"
                r = admin.post(
                    url,
                    content=body,
                    headers={"content-type": "application/x-www-form-urlencoded"},
                    follow_redirects=False,
                )
                assert r.status_code < 500, (url, field, raw, r.status_code, r.text[:200])


# -- huge and absurd values ------------------------------------------------------------------


def test_absurd_numbers_and_huge_fields_are_refused(
    admin: TestClient, db: Database, shop: Shop, world: World
) -> None:
    before = snapshot(db)
    numeric = {
        f"/console/inventory/{shop.store}/receive": "quantity",
        f"/console/inventory/{shop.store}/count": "expected_on_hand",
        f"/console/inventory/{shop.store}/adjust": "quantity",
        f"/console/inventory/{shop.store}/transfer": "quantity",
        f"/console/carts/{world.cart}/lines": "quantity",
        f"/console/carts/{world.cart}/lines/{world.line}": "quantity",
        f"/console/carts/{world.cart}/checkout": "tendered",
    }
    posts = world.posts(shop)
    for url, field in numeric.items():
        for v in NUMBERS:
            r = post(admin, url, {**posts[url], field: v})
            _refused_post(r)
            assert snapshot(db) == before, (url, field, v)
    # A 1 MB field and a 10,000-character reason: refused by the form's limits.
    for url, field in (
        (f"/console/inventory/{shop.store}/adjust", "reason"),
        (f"/console/orders/{world.pick['id']}/cancel", "reason"),
        (f"/console/orders/{world.ship['id']}/returns", "note"),
        (f"/console/carts/{world.cart}/shipping", "line1"),
        (f"/console/orders/{world.ship['id']}/groups/{world.ship_group}/ship", "tracking_number"),
    ):
        for size in (10_000, 1_000_000):
            r = post(admin, url, {**posts[url], field: "z" * size})
            _refused_post(r)
            assert snapshot(db) == before, (url, field, size)


def test_a_ledger_cursor_beyond_any_integer_is_refused(admin: TestClient, shop: Shop) -> None:
    """``?cursor=99999999999999999999`` overflowed the database driver (500 on both)."""
    r = admin.get(f"/console/inventory/{shop.store}", params={"cursor": "99999999999999999999"})
    assert r.status_code == 422, r.status_code
    assert "cursor" in r.text


def test_ids_that_are_not_ids(admin: TestClient, db: Database, shop: Shop, world: World) -> None:
    before = snapshot(db)
    for bad in ("x" * 5000, "../../etc/passwd", "ord_" + "0" * 60, "..%2F..%2Fstatic"):
        for path in (
            "/console/customers/{}",
            "/console/products/{}",
            "/console/inventory/{}",
            "/console/carts/{}",
            "/console/orders/{}",
        ):
            r = admin.get(path.format(quote(bad, safe="%/.")))
            assert r.status_code in (404, 422), (path, bad[:20], r.status_code)
        r = post(
            admin,
            f"/console/inventory/{quote(bad, safe='%')}/receive",
            {"quantity": "1", "variant_id": shop.mat, "reason": "x"},
        )
        _refused_post(r)
        r = post(
            admin,
            f"/console/inventory/{shop.store}/transfer",
            {
                **world.posts(shop)[f"/console/inventory/{shop.store}/transfer"],
                "to_location_id": bad[:40],
            },
        )
        _refused_post(r)
    assert snapshot(db) == before


# -- forged, foreign and redirected forms ----------------------------------------------------


def test_every_post_without_or_with_a_wrong_csrf_token_is_403_and_changes_nothing(
    admin: TestClient, db: Database, shop: Shop, world: World
) -> None:
    before = snapshot(db)
    routes = {**world.posts(shop), "/console/logout": {}}
    for url, form in routes.items():
        for token in (None, "", "wrong", form_token(admin) + "x", NUL):
            data = dict(form) if token is None else {**form, "csrf_token": token}
            r = admin.post(url, data=data, follow_redirects=False)
            assert r.status_code == 403, (url, token, r.status_code)
            assert snapshot(db) == before, (url, token)
    # A right token sent from another site (Origin, or only a Referer) is refused as well.
    for url, form in routes.items():
        for headers in (
            {"Origin": "https://evil.example"},
            {"Origin": "null"},
            {"Referer": "https://evil.example/console/"},
        ):
            r = post(admin, url, form, headers=headers)
            assert r.status_code == 403, (url, headers, r.status_code)  # type: ignore[attr-defined]
            assert snapshot(db) == before, (url, headers)
    assert admin.get("/console/").status_code == 200  # still signed in


def test_no_open_redirects(client: TestClient, make_staff: Callable[..., str]) -> None:
    email = make_staff("admin")
    evil = [
        "https://evil.example/console/",
        "//evil.example/console/",
        "/\\evil.example",
        "\\\\evil.example/console/",
        "https:evil.example",
        "/console/%0d%0aSet-Cookie:x=1",
        "javascript:alert(1)",
    ]
    for nxt in evil:
        page = client.get("/console/login", params={"next": nxt})
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        r = client.post(
            "/console/login",
            data={
                "email": email,
                "password": "correct horse battery staple",
                "csrf_token": token,
                "next": nxt,
            },
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        location = r.headers["location"]
        assert location.startswith("/console"), (nxt, location)
        assert not location.startswith("//"), (nxt, location)
        assert "\r" not in location
        assert "\n" not in location
        assert "set-cookie:x" not in {k.lower() for k in r.headers}
        # Signed in now: the login page sends the member on, still only to the console.
        r = client.get("/console/login", params={"next": nxt}, follow_redirects=False)
        assert r.headers["location"].startswith("/console"), (nxt, r.headers["location"])
        client.cookies.clear()


def test_a_refusal_never_goes_back_to_another_site(admin: TestClient, world: World) -> None:
    """A refused action returns to the Referer only if it is a console page of this site."""
    for referer in ("http://testserver/evil", "http://testserver//evil.example/console/"):
        r = post(
            admin,
            f"/console/orders/{world.pick['id']}/cancel",
            {"reason": NUL},
            headers={"Referer": referer},
        )
        assert r.status_code == 303  # type: ignore[attr-defined]
        assert r.headers["location"] == "/console/", r.headers["location"]  # type: ignore[attr-defined]


# -- roles and stores ------------------------------------------------------------------------


def test_a_marketer_can_post_nothing(
    other_client: TestClient,
    make_staff: Callable[..., str],
    db: Database,
    shop: Shop,
    world: World,
) -> None:
    sign_in(other_client, make_staff("marketer"))
    before = snapshot(db)
    for url, form in world.posts(shop).items():
        text_ = _refused_post(post(other_client, url, form))
        assert "role" in text_.lower() or "not allowed" in text_.lower() or "scope" in text_, (
            url,
            text_[:300],
        )
        assert snapshot(db) == before, url


def test_an_associate_of_another_store_changes_nothing(
    admin: TestClient,
    other_client: TestClient,
    make_staff: Callable[..., str],
    db: Database,
    shop: Shop,
    world: World,
) -> None:
    east = make_location(
        admin,
        shop.auth,
        "east",
        kind="store",
        pickup=True,
        returns=True,
        sells_in_person=True,
        ships=True,
    )
    sign_in(other_client, make_staff("associate", locations=(east,)))
    before = snapshot(db)
    posts = world.posts(shop)
    v = {"version": world.version}
    store_bound = [
        f"/console/inventory/{shop.store}/receive",
        f"/console/inventory/{shop.store}/count",
        f"/console/inventory/{shop.store}/adjust",
        f"/console/inventory/{shop.store}/transfer",
        f"/console/carts/{world.cart}/checkout",
        f"/console/orders/{world.pick['id']}/groups/{world.pick_group}/ready",
        f"/console/orders/{world.ship['id']}/groups/{world.ship_group}/ship",
        f"/console/orders/{world.pick['id']}/cancel",
        f"/console/orders/{world.ship['id']}/cancel",
        f"/console/orders/{world.ship['id']}/returns",
        f"/console/orders/{world.ship['id']}/returns/{world.ret}/receive",
    ]
    for url in store_bound:
        form = posts.get(url, {"reason": "not mine"})
        text_ = _refused_post(post(other_client, url, form))
        assert "location" in text_.lower() or "store" in text_.lower(), (url, text_[:300])
        assert snapshot(db) == before, url
    # A pick-up at another store, added or switched to, and a hand-over there.
    for url, form in (
        (
            f"/console/carts/{world.cart}/lines",
            {**v, "code": world.sku, "fulfilment": f"pickup:{shop.store}"},
        ),
        (
            f"/console/carts/{world.cart}/lines/{world.line}",
            {**v, "fulfilment": f"pickup:{shop.store}"},
        ),
        (
            f"/console/orders/{world.pick['id']}/groups/{world.pick_group}/handover",
            {"code": "AAAAAA"},
        ),
    ):
        _refused_post(post(other_client, url, form))
        assert snapshot(db) == before, url
    # The transfer arriving at the warehouse is not theirs to receive.
    r = post(
        admin,
        f"/console/inventory/{shop.store}/transfer",
        posts[f"/console/inventory/{shop.store}/transfer"],
    )
    assert r.status_code == 303  # type: ignore[attr-defined]
    before = snapshot(db)
    with db.transaction(readonly=True) as s:
        transfer = s.execute(text("SELECT id FROM stock_transfers")).scalar_one()
    for loc in (shop.warehouse, east):
        r = post(other_client, f"/console/inventory/{loc}/transfers/{transfer}/receive")
        _refused_post(r)
        assert snapshot(db) == before, loc


# -- signed out --------------------------------------------------------------------------------


def test_signed_out_every_route_goes_to_the_login_page(
    app: FastAPI, shop: Shop, world: World
) -> None:
    with TestClient(app) as anonymous:
        gets = [
            "/console/",
            "/console/search?q=ann",
            f"/console/customers/{world.profile}",
            "/console/products?q=mat",
            f"/console/products/{shop.mat}",
            f"/console/products/{shop.mat}/stream",
            "/console/inventory",
            f"/console/inventory/{shop.store}",
            "/console/carts",
            f"/console/carts/{world.cart}",
            "/console/orders",
            f"/console/orders/{world.pick['id']}",
            f"/console/orders/{world.ship['id']}/returns/{world.ret}",
        ]
        for url in gets:
            r = anonymous.get(url, follow_redirects=False)
            assert r.status_code == 303, (url, r.status_code)
            assert r.headers["location"].startswith("/console/login?next="), url
        for url, form in {**world.posts(shop), "/console/logout": {}}.items():
            r = anonymous.post(url, data=form, follow_redirects=False)
            assert r.status_code == 303, (url, r.status_code)
            assert r.headers["location"].startswith("/console/login"), url


# -- markup in user data ---------------------------------------------------------------------

XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_markup_in_user_data_is_shown_as_text(
    admin: TestClient,
    db: Database,
    shop: Shop,
    world: World,
    send: Send,  # noqa: F811 (the fixture)
) -> None:
    from seamline.inventory.models import Location

    for kind, body in (
        ("identify", {"traits": {"name": XSS, "email": "xss@example.com", "nickname": XSS}}),
        ("track", {"event": XSS, "properties": {XSS: XSS, "nested": {"x": [XSS]}}}),
    ):
        send(kind, {"userId": "xss-user", "context": {"channel": "web"}, **body})
    customer = cluster_of(db, "email", "xss@example.com")
    with db.transaction() as s:
        cart = s.get(Cart, world.cart)
        assert cart is not None
        cart.email = f"{XSS}@example.com"
        cart.shipping_address = {"name": XSS, "line1": XSS, "city": XSS, "country": "DE"}
        loc = s.get(Location, shop.store)
        assert loc is not None
        loc.name = XSS
        for product in s.scalars(select(Product)):
            product.title = XSS
    r = post(admin, f"/console/orders/{world.pick['id']}/cancel", {"reason": XSS})
    assert r.status_code == 303  # type: ignore[attr-defined]
    pages = [
        f"/console/customers/{customer}",
        "/console/search?q=xss%40example.com",
        f"/console/customers/{world.profile}",
        f"/console/search?q={quote('<script>')}",
        f"/console/carts/{world.cart}",
        f"/console/orders/{world.pick['id']}",
        f"/console/orders/{world.ship['id']}",
        f"/console/orders/{world.ship['id']}/returns/{world.ret}",
        "/console/orders",
        "/console/inventory",
        f"/console/inventory/{shop.store}",
        f"/console/products/{shop.mat}",
        "/console/products?q=script",
    ]
    for url in pages:
        page = admin.get(url)
        assert page.status_code == 200, (url, page.status_code)
        assert "<script>alert" not in page.text, url
        assert "<img src=x" not in page.text, url
        assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert ESCAPED in admin.get(f"/console/customers/{customer}").text
    assert ESCAPED in admin.get(f"/console/orders/{world.pick['id']}").text
    assert ESCAPED in admin.get(f"/console/carts/{world.cart}").text


def test_the_api_refuses_a_nul_in_a_return_note(
    client: TestClient, db: Database, shop: Shop, world: World
) -> None:
    """The console shares ``ReturnCreate`` with the API, where a NUL note was a 500 on
    PostgreSQL and stored as is on SQLite."""
    before = snapshot(db)
    r = client.post(
        f"/api/v1/orders/{world.ship['id']}/returns",
        json={
            "lines": [{"order_line_id": world.ship["lines"][0]["id"], "quantity": 1}],
            "location_id": shop.store,
            "note": NUL,
        },
        headers=shop.auth,
    )
    assert r.status_code == 422, r.text
    assert snapshot(db) == before
