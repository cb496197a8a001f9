"""Carts on every channel: ownership, lines, versions, share codes, shipping, server prices."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from seamline.db.engine import Database
from seamline.runtime import Runtime
from tests.carts.conftest import (
    Headers,
    Shop,
    add,
    bearer,
    cart_events,
    drain,
    get,
    new_cart,
    quantities,
)

SHARE_CODE = re.compile(r"^[34679ACDEFGHJKMNPQRTVWXY]{3}-[34679ACDEFGHJKMNPQRTVWXY]{3}$")


def identify(client: TestClient, ek: Headers, user: str, **body: Any) -> str:
    r = client.post("/v1/identify", json={"userId": user, **body}, headers=ek)
    assert r.status_code == 200, r.text
    return user


def profile_of(db: Database, kind: str, value: str) -> str:
    from tests.identity.conftest import identifier

    return identifier(db, kind, value).profile_id


# -- creating --------------------------------------------------------------------------------


def test_storefront_creates_an_anonymous_cart(
    client: TestClient, pk: Headers, shop: Shop, db: Database
) -> None:
    r = client.post(
        "/api/v1/carts",
        json={"channel_id": shop.channel, "currency": "EUR", "anonymous_id": "device-a"},
        headers=pk,
    )
    assert r.status_code == 201, r.text
    cart = r.json()
    assert cart["id"].startswith("crt_")
    assert SHARE_CODE.match(cart["share_code"])
    assert cart["status"] == "open"
    assert cart["version"] == 1
    assert cart["channel"]["id"] == shop.channel
    assert cart["channel"]["kind"] == "web"
    assert cart["lines"] == []
    assert cart["quote"]["total"] == 0
    assert r.headers["etag"] == '"1"'
    created = cart_events(db, cart["id"])
    assert [e.type for e in created] == ["cart.created"]
    assert created[0].payload["channel"] == "web"


def test_publishable_key_may_not_name_a_profile(
    client: TestClient, pk: Headers, shop: Shop
) -> None:
    body = {"channel_id": shop.channel, "currency": "EUR", "profile_id": "prf_0000000000"}
    r = client.post("/api/v1/carts", json=body, headers=pk)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "secret_key_required"


def test_one_open_cart_per_customer_across_devices(
    client: TestClient, auth: Headers, shop: Shop, db: Database, make_key: Callable[..., str]
) -> None:
    ek = bearer(make_key(kind="event"))
    identify(client, ek, "ann", traits={"email": "ann@example.com"})
    profile = profile_of(db, "user_id", "ann")
    email_profile = profile_of(db, "email", "ann@example.com")
    assert profile != email_profile  # one profile per identifier, one cluster
    first = client.post(
        "/api/v1/carts",
        json={"channel_id": shop.channel, "currency": "EUR", "profile_id": profile},
        headers=auth,
    )
    assert first.status_code == 201, first.text
    again = client.post(
        "/api/v1/carts",
        json={"channel_id": shop.channel, "currency": "EUR", "profile_id": email_profile},
        headers=auth,
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert len(cart_events(db)) == 1


def test_create_refusals(client: TestClient, auth: Headers, pk: Headers, shop: Shop) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"channel_id": "chn_nope", "currency": "EUR", "anonymous_id": "a"}, 404, ""),
        ({"channel_id": shop.channel, "currency": "EUR"}, 422, "body"),
        (
            {"channel_id": shop.channel, "currency": "XXQ", "anonymous_id": "a"},
            422,
            "body.currency",
        ),
        (
            {"channel_id": shop.channel, "currency": "EUR", "anonymous_id": "a", "total": 0},
            422,
            "body.total",
        ),
        (
            {"channel_id": shop.channel, "currency": "EUR", "profile_id": "prf_nope"},
            404,
            "",
        ),
    ]
    for body, status, path in cases:
        r = client.post("/api/v1/carts", json=body, headers=auth)
        assert r.status_code == status, (body, r.text)
        if path:
            assert path in [e["path"] for e in r.json()["errors"]], r.text


# -- lines and prices ------------------------------------------------------------------------


def test_lines_add_merge_change_and_remove(
    client: TestClient, pk: Headers, shop: Shop, db: Database
) -> None:
    cart = new_cart(client, pk, shop)
    kb, mat = shop.variants["KB-16"], shop.variants["MAT-1"]
    r = add(client, pk, cart["id"], kb)
    assert r.status_code == 201, r.text
    r = add(client, pk, cart["id"], kb, 2)
    assert r.status_code == 200, r.text  # onto the same line
    body = r.json()
    assert quantities(body) == {"KB-16": 3}
    assert body["lines"][0]["title"] == "Kettlebell"
    assert body["lines"][0]["unit_price"] == 4999
    assert body["quote"]["subtotal"] == 3 * 4999
    assert body["version"] == 3
    # by barcode (a scan), in any GTIN length
    r = client.post(
        f"/api/v1/carts/{cart['id']}/lines",
        json={"barcode": "0" + shop.barcodes["KB-16"], "quantity": 1},
        headers=pk,
    )
    assert r.status_code == 200, r.text
    assert quantities(r.json()) == {"KB-16": 4}
    r = add(client, pk, cart["id"], mat)
    assert r.status_code == 201
    mat_line = next(x for x in r.json()["lines"] if x["sku"] == "MAT-1")
    r = client.patch(
        f"/api/v1/carts/{cart['id']}/lines/{mat_line['id']}", json={"quantity": 5}, headers=pk
    )
    assert r.status_code == 200, r.text
    assert quantities(r.json()) == {"KB-16": 4, "MAT-1": 5}
    r = client.delete(f"/api/v1/carts/{cart['id']}/lines/{mat_line['id']}", headers=pk)
    assert r.status_code == 200, r.text
    assert quantities(r.json()) == {"KB-16": 4}
    assert r.json()["version"] == 7
    types = [e.type for e in cart_events(db, cart["id"])]
    assert types == [
        "cart.created",
        "cart.line_added",
        "cart.line_changed",
        "cart.line_changed",
        "cart.line_added",
        "cart.line_changed",
        "cart.line_removed",
    ]
    missing = client.delete(f"/api/v1/carts/{cart['id']}/lines/crl_nope", headers=pk)
    assert missing.status_code == 404
    assert missing.json()["code"] == "cart_line_not_found"


def test_bad_quantities_are_refused_with_their_path(
    client: TestClient, pk: Headers, shop: Shop
) -> None:
    cart = new_cart(client, pk, shop)
    kb = shop.variants["KB-16"]
    for quantity in (0, -1, 1000, 1.5, "lots"):
        r = add(client, pk, cart["id"], kb, quantity)  # type: ignore[arg-type]
        assert r.status_code == 422, (quantity, r.text)
        assert [e["path"] for e in r.json()["errors"]] == ["body.quantity"], r.text
    add(client, pk, cart["id"], kb, 999)
    r = add(client, pk, cart["id"], kb, 1)
    assert r.status_code == 422
    assert r.json()["code"] == "line_quantity_exceeded"
    line = get(client, pk, cart["id"])["lines"][0]
    r = client.patch(
        f"/api/v1/carts/{cart['id']}/lines/{line['id']}", json={"quantity": 0}, headers=pk
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "body.quantity"


def test_prices_come_from_the_server_only(client: TestClient, pk: Headers, shop: Shop) -> None:
    cart = new_cart(client, pk, shop)
    r = client.post(
        f"/api/v1/carts/{cart['id']}/lines",
        json={"variant_id": shop.variants["KB-16"], "quantity": 1, "unit_price": 1},
        headers=pk,
    )
    assert r.status_code == 422, r.text
    assert [e["path"] for e in r.json()["errors"]] == ["body.unit_price"]
    assert get(client, pk, cart["id"])["lines"] == []


def test_unknown_variant_and_barcode_are_404(client: TestClient, pk: Headers, shop: Shop) -> None:
    cart = new_cart(client, pk, shop)
    assert add(client, pk, cart["id"], "var_nope").status_code == 404
    r = client.post(
        f"/api/v1/carts/{cart['id']}/lines", json={"barcode": "4006381333948"}, headers=pk
    )
    assert r.status_code == 404
    assert r.json()["code"] == "variant_not_found"
    both = client.post(
        f"/api/v1/carts/{cart['id']}/lines",
        json={"barcode": "4006381333931", "variant_id": shop.variants["KB-16"]},
        headers=pk,
    )
    assert both.status_code == 422


# -- versions --------------------------------------------------------------------------------


def test_if_match_refuses_a_stale_write(client: TestClient, pk: Headers, shop: Shop) -> None:
    cart = new_cart(client, pk, shop)
    kb, mat = shop.variants["KB-16"], shop.variants["MAT-1"]
    # device A and device B both saw version 1
    a = client.post(
        f"/api/v1/carts/{cart['id']}/lines",
        json={"variant_id": kb},
        headers={**pk, "If-Match": '"1"'},
    )
    assert a.status_code == 201, a.text
    assert a.headers["etag"] == '"2"'
    b = client.post(
        f"/api/v1/carts/{cart['id']}/lines",
        json={"variant_id": mat},
        headers={**pk, "If-Match": '"1"'},
    )
    assert b.status_code == 412, b.text
    problem = b.json()
    assert problem["code"] == "cart_version_mismatch"
    assert problem["version"] == 2
    assert b.headers["etag"] == '"2"'
    # after reloading: accepted (weak tags and "*" too); without If-Match: accepted
    ok = client.post(
        f"/api/v1/carts/{cart['id']}/lines",
        json={"variant_id": mat},
        headers={**pk, "If-Match": 'W/"2"'},
    )
    assert ok.status_code == 201, ok.text
    assert add(client, pk, cart["id"], mat).status_code == 200
    star = client.post(
        f"/api/v1/carts/{cart['id']}/codes", json={"code": "X"}, headers={**pk, "If-Match": "*"}
    )
    assert star.status_code == 200
    assert get(client, pk, cart["id"])["version"] == 5


# -- share codes and staff -------------------------------------------------------------------


def test_staff_open_a_cart_by_code_and_the_customer_sees_the_change(
    client: TestClient, auth: Headers, pk: Headers, shop: Shop, make_key: Callable[..., str]
) -> None:
    cart = new_cart(client, pk, shop)
    add(client, pk, cart["id"], shop.variants["MAT-1"])
    spoken = cart["share_code"].lower().replace("-", " ")
    # a storefront key cannot look codes up: they are short enough to guess
    refused = client.get(f"/api/v1/carts/by-code/{spoken}", headers=pk)
    assert refused.status_code == 403
    assert refused.json()["code"] == "secret_key_required"
    advisor_key = make_key(kind="secret", scopes=["carts:read", "carts:write"], name="advisor")
    advisor = bearer(advisor_key)
    found = client.get(f"/api/v1/carts/by-code/{spoken}", headers=advisor)
    assert found.status_code == 200, found.text
    assert found.json()["id"] == cart["id"]
    version = found.json()["version"]
    r = client.post(
        f"/api/v1/carts/{cart['id']}/lines",
        json={"variant_id": shop.variants["KB-16"], "quantity": 2},
        headers={**advisor, "If-Match": found.headers["etag"]},
    )
    assert r.status_code == 201, r.text
    mine = get(client, pk, cart["id"])
    assert quantities(mine) == {"MAT-1": 1, "KB-16": 2}
    assert mine["version"] == version + 1
    assert mine["updated_by"] is not None
    assert mine["updated_by"] != cart["updated_by"]
    kb_line = next(x for x in mine["lines"] if x["sku"] == "KB-16")
    assert kb_line["added_by"] == mine["updated_by"]
    assert client.get("/api/v1/carts/by-code/AAA-AAA", headers=advisor).status_code == 404


def test_a_customers_carts_by_profile_and_email(
    client: TestClient,
    auth: Headers,
    pk: Headers,
    shop: Shop,
    db: Database,
    make_key: Callable[..., str],
) -> None:
    ek = bearer(make_key(kind="event"))
    identify(client, ek, "bo", anonymousId="tablet-1", traits={"email": "Bo@Example.com"})
    profile = profile_of(db, "user_id", "bo")
    anon_cart = new_cart(client, pk, shop, anonymous_id="tablet-1")
    own = new_cart(client, auth, shop, profile_id=profile)
    other = new_cart(client, pk, shop, anonymous_id="someone-else")
    r = client.get(f"/api/v1/carts?profile_id={profile}", headers=auth)
    assert r.status_code == 200, r.text
    ids = {c["id"] for c in r.json()["data"]}
    assert ids == {anon_cart["id"], own["id"]}
    assert other["id"] not in ids
    by_email = client.get("/api/v1/carts?email=bo@example.com", headers=auth)
    assert by_email.status_code == 200, by_email.text
    assert {c["id"] for c in by_email.json()["data"]} == ids
    assert client.get(f"/api/v1/carts?profile_id={profile}", headers=pk).status_code == 403
    assert client.get("/api/v1/carts", headers=auth).status_code == 422
    assert client.get("/api/v1/carts?profile_id=prf_nope", headers=auth).status_code == 404


# -- pick-up ---------------------------------------------------------------------------------


def test_pickup_only_where_the_store_can_promise_it(
    client: TestClient, auth: Headers, pk: Headers, shop: Shop
) -> None:
    cart = new_cart(client, pk, shop)
    kb = shop.variants["KB-16"]
    short = add(client, pk, cart["id"], kb, 3, fulfilment="pickup", pickup_location_id=shop.store)
    assert short.status_code == 409, short.text
    assert short.json()["code"] == "pickup_unavailable"
    assert short.json()["available"] == 2
    ok = add(client, pk, cart["id"], kb, 2, fulfilment="pickup", pickup_location_id=shop.store)
    assert ok.status_code == 201, ok.text
    body = ok.json()
    assert body["lines"][0]["fulfilment"] == "pickup"
    assert body["quote"]["groups"][0]["pickup_location_id"] == shop.store
    more = add(client, pk, cart["id"], kb, 1, fulfilment="pickup", pickup_location_id=shop.store)
    assert more.status_code == 409  # 2 + 1 > 2
    # a warehouse is no pick-up point
    wh = add(client, pk, cart["id"], kb, 1, fulfilment="pickup", pickup_location_id=shop.warehouse)
    assert wh.status_code == 409
    assert wh.json()["available"] == 0
    # pick-up needs a store, shipping refuses one
    assert add(client, pk, cart["id"], kb, 1, fulfilment="pickup").status_code == 422
    assert add(client, pk, cart["id"], kb, 1, pickup_location_id=shop.store).status_code == 422
    # a shipped line of the same variant is another line
    shipped = add(client, pk, cart["id"], kb, 5)
    assert shipped.status_code == 201
    line = next(x for x in shipped.json()["lines"] if x["fulfilment"] == "ship")
    # moving the 5 to the store: more than it has
    move = client.patch(
        f"/api/v1/carts/{cart['id']}/lines/{line['id']}",
        json={"fulfilment": "pickup", "pickup_location_id": shop.store},
        headers=pk,
    )
    assert move.status_code == 409
    assert move.json()["available"] == 2


def test_store_key_sets_pickup_only_at_its_own_stores(
    client: TestClient, auth: Headers, pk: Headers, shop: Shop, db: Database
) -> None:
    from seamline.auth import service as keys

    with db.transaction() as session:
        _, token = keys.create_key(
            session, kind="secret", name="mitte-tablet", location_ids=[shop.warehouse]
        )
    elsewhere = bearer(token)
    cart = new_cart(client, pk, shop)
    kb = shop.variants["KB-16"]
    refused = add(
        client, elsewhere, cart["id"], kb, 1, fulfilment="pickup", pickup_location_id=shop.store
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "location_out_of_scope"
    assert add(client, elsewhere, cart["id"], kb, 1).status_code == 201  # any cart, shipped


# -- codes, shipping, options ----------------------------------------------------------------


def test_codes_are_kept_as_entered_and_priced_on_the_server(
    client: TestClient, pk: Headers, shop: Shop, db: Database
) -> None:
    from tests.carts.pricing_rows import promotion

    promotion(db, code="HOME10", value=1000)
    promotion(db, code="GONE", value=500, usage_limit=1, used_count=1)
    cart = new_cart(client, pk, shop)
    add(client, pk, cart["id"], shop.variants["MAT-1"], 2)
    for code in (" home10 ", "NOPE", "gone", "HOME10"):
        r = client.post(f"/api/v1/carts/{cart['id']}/codes", json={"code": code}, headers=pk)
        assert r.status_code == 200, r.text
    body = r.json()
    assert body["codes"] == ["home10", "NOPE", "gone"]
    quote = body["quote"]
    assert quote["subtotal"] == 5000
    assert quote["discount_total"] == 500
    assert [a["code"] for a in quote["applied"]] == ["HOME10"]
    assert body["lines"][0]["discounts"][0]["amount"] == 500
    reasons = {r["code"]: r["reason"] for r in quote["rejected"]}
    assert reasons == {"NOPE": "unknown_code", "gone": "usage_limit_reached"}
    r = client.delete(f"/api/v1/carts/{cart['id']}/codes/HOME10", headers=pk)
    assert r.status_code == 200, r.text
    assert r.json()["codes"] == ["NOPE", "gone"]
    assert r.json()["quote"]["discount_total"] == 0
    missing = client.delete(f"/api/v1/carts/{cart['id']}/codes/HOME10", headers=pk)
    assert missing.status_code == 404
    assert missing.json()["code"] == "code_not_on_cart"
    changes = [e for e in cart_events(db, cart["id"]) if e.type == "cart.codes_changed"]
    assert len(changes) == 4


def test_shipping_address_rate_and_options(
    client: TestClient, pk: Headers, shop: Shop, db: Database
) -> None:
    from tests.carts.pricing_rows import shipping_rate, tax_rate

    flat = shipping_rate(db, "Standard", price=495, countries=["DE", "AT"])
    bands = shipping_rate(db, "Heavy", kind="weight_band", bands=[[2000, 700], [20000, 1500]])
    shipping_rate(db, "Dollars", price=100, currency="USD")
    shipping_rate(db, "France", price=100, countries=["FR"])
    tax_rate(db, "DE", 1900)
    cart = new_cart(client, pk, shop)
    add(client, pk, cart["id"], shop.variants["KB-16"])
    address = {
        "name": "Zoë Ünal-Straße 北京",
        "line1": "Kastanienallee 1",
        "city": "Berlin",
        "postcode": "10435",
        "country": "DE",
    }
    r = client.patch(f"/api/v1/carts/{cart['id']}/shipping", json={"address": address}, headers=pk)
    assert r.status_code == 200, r.text
    assert r.json()["shipping_address"]["name"] == "Zoë Ünal-Straße 北京"
    assert [p["code"] for p in r.json()["problems"]] == ["no_shipping_rate"]
    options = client.get(f"/api/v1/carts/{cart['id']}/shipping-options", headers=pk)
    assert options.status_code == 200, options.text
    offered = {o["id"]: o["price"] for o in options.json()["data"]}
    assert offered == {flat: 495, bands: 1500}
    assert options.json()["weight_grams"] == 16000
    r = client.patch(
        f"/api/v1/carts/{cart['id']}/shipping", json={"shipping_rate_id": flat}, headers=pk
    )
    assert r.status_code == 200, r.text
    quote = r.json()["quote"]
    assert quote["shipping_total"] == 495
    assert quote["tax_total"] == 950 + 94
    assert quote["total"] == 4999 + 495 + 950 + 94
    assert r.json()["problems"] == []
    selected = client.get(f"/api/v1/carts/{cart['id']}/shipping-options", headers=pk).json()
    assert [o["id"] for o in selected["data"] if o["selected"]] == [flat]
    shipping_events = [e for e in cart_events(db, cart["id"]) if e.type == "cart.shipping_changed"]
    assert "name" not in str(shipping_events[0].payload)  # the address stays out of events
    assert shipping_events[0].payload["country"] == "DE"


def test_bad_addresses_are_refused_with_their_path(
    client: TestClient, pk: Headers, shop: Shop
) -> None:
    cart = new_cart(client, pk, shop)
    good = {"name": "A", "line1": "B 1", "city": "C", "postcode": "12345", "country": "DE"}
    cases = [
        ({**good, "country": "ZZ"}, "body.address.country"),
        ({**good, "country": "Germany"}, "body.address.country"),
        ({**good, "postcode": "1234567890123"}, "body.address.postcode"),
        ({**good, "name": "   "}, "body.address.name"),
        ({**good, "name": "x" * 201}, "body.address.name"),
        ({**good, "city": "Ber\x00lin"}, "body.address.city"),
        ({**good, "street": "?"}, "body.address.street"),
    ]
    for address, path in cases:
        r = client.patch(
            f"/api/v1/carts/{cart['id']}/shipping", json={"address": address}, headers=pk
        )
        assert r.status_code == 422, (address, r.text)
        assert path in [e["path"] for e in r.json()["errors"]], r.text
    assert get(client, pk, cart["id"])["version"] == 1


def test_shipping_rate_must_be_usable(
    client: TestClient, pk: Headers, shop: Shop, db: Database
) -> None:
    from tests.carts.pricing_rows import shipping_rate

    usd = shipping_rate(db, "Dollars", price=100, currency="USD")
    france = shipping_rate(db, "France", price=100, countries=["FR"])
    cart = new_cart(client, pk, shop)
    url = f"/api/v1/carts/{cart['id']}/shipping"
    assert client.patch(url, json={"shipping_rate_id": "shr_nope"}, headers=pk).status_code == 404
    r = client.patch(url, json={"shipping_rate_id": usd}, headers=pk)
    assert r.status_code == 409
    assert r.json()["code"] == "shipping_rate_unusable"
    address = {"name": "A", "line1": "B 1", "city": "C", "country": "DE"}
    r = client.patch(url, json={"address": address, "shipping_rate_id": france}, headers=pk)
    assert r.status_code == 409


# -- size and shape --------------------------------------------------------------------------


def test_huge_payloads(client: TestClient, pk: Headers, shop: Shop) -> None:
    cart = new_cart(client, pk, shop)
    huge = client.post(
        f"/api/v1/carts/{cart['id']}/codes", json={"code": "A" * 2_000_000}, headers=pk
    )
    assert huge.status_code == 413
    long_code = client.post(
        f"/api/v1/carts/{cart['id']}/codes", json={"code": "A" * 65}, headers=pk
    )
    assert long_code.status_code == 422
    long_id = client.post(
        "/api/v1/carts",
        json={"channel_id": shop.channel, "currency": "EUR", "anonymous_id": "a" * 256},
        headers=pk,
    )
    assert long_id.status_code == 422
    emoji = new_cart(client, pk, shop, anonymous_id="🛒-device-ü")
    assert emoji["anonymous_id"] == "🛒-device-ü"


def test_only_open_carts_change(client: TestClient, auth: Headers, pk: Headers, shop: Shop) -> None:
    target = new_cart(client, pk, shop, anonymous_id="x")
    source = new_cart(client, pk, shop, anonymous_id="x")
    r = client.post(
        f"/api/v1/carts/{target['id']}/merge", json={"source_cart_id": source["id"]}, headers=auth
    )
    assert r.status_code == 200, r.text
    late = add(client, pk, source["id"], shop.variants["KB-16"])
    assert late.status_code == 409
    assert late.json()["code"] == "cart_not_open"
    assert late.json()["merged_into_id"] == target["id"]


def test_events_name_the_customer_for_the_timeline(
    client: TestClient,
    auth: Headers,
    pk: Headers,
    shop: Shop,
    db: Database,
    runtime: Runtime,
    make_key: Callable[..., str],
) -> None:
    ek = bearer(make_key(kind="event"))
    identify(client, ek, "cy")
    profile = profile_of(db, "user_id", "cy")
    cart = new_cart(client, auth, shop, profile_id=profile)
    add(client, pk, cart["id"], shop.variants["MAT-1"])
    drain(runtime)
    assert all(e.payload["profile_id"] == profile for e in cart_events(db, cart["id"]))
    timeline = client.get(f"/api/v1/profiles/{profile}/timeline", headers=auth)
    assert timeline.status_code == 200, timeline.text
    kinds = [item["type"] for item in timeline.json()["data"] if item["kind"] == "domain"]
    assert set(kinds) == {"cart.created", "cart.line_added"}


def test_a_personal_code_is_the_customers_on_any_of_their_profiles(
    client: TestClient, auth: Headers, shop: Shop, db: Database, make_key: Callable[..., str]
) -> None:
    from tests.carts.pricing_rows import promotion

    ek = bearer(make_key(kind="event"))
    identify(client, ek, "eve", traits={"email": "eve@example.com"})
    identify(client, ek, "mallory")
    email_profile = profile_of(db, "email", "eve@example.com")
    promotion(db, code="INSTA-EVE", value=1000, profile_id=email_profile, usage_limit=1)
    promotion(db, code="INSTA-MAL", value=1000, profile_id=profile_of(db, "user_id", "mallory"))
    cart = new_cart(client, auth, shop, profile_id=profile_of(db, "user_id", "eve"))
    add(client, auth, cart["id"], shop.variants["MAT-1"])
    for code in ("INSTA-EVE", "INSTA-MAL"):
        client.post(f"/api/v1/carts/{cart['id']}/codes", json={"code": code}, headers=auth)
    quote = get(client, auth, cart["id"])["quote"]
    assert [a["code"] for a in quote["applied"]] == ["INSTA-EVE"]
    assert [(r["code"], r["reason"]) for r in quote["rejected"]] == [("INSTA-MAL", "not_your_code")]


def test_an_unlisted_pickup_line_is_a_problem_not_an_error(
    client: TestClient, auth: Headers, pk: Headers, shop: Shop
) -> None:
    cart = new_cart(client, pk, shop)
    kb = shop.variants["KB-16"]
    add(client, pk, cart["id"], kb, 1, fulfilment="pickup", pickup_location_id=shop.store)
    add(client, pk, cart["id"], shop.variants["MAT-1"], 1)
    product = client.get("/api/v1/variants/lookup?code=KB-16", headers=auth).json()["product"]
    r = client.delete(f"/api/v1/products/{product['id']}/listings/{shop.channel}", headers=auth)
    assert r.status_code == 204, r.text
    body = get(client, pk, cart["id"])
    assert "not_available_on_channel" in {p["code"] for p in body["problems"]}
    kb_line = next(x for x in body["lines"] if x["sku"] == "KB-16")
    assert kb_line["priced"] is False
    assert body["quote"]["subtotal"] == 2500
