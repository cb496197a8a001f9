"""Cart merge: on identify through the Segment API (worker-run handler), and by staff."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.carts import handlers, merge
from seamline.carts.models import Cart
from seamline.db.engine import Database
from seamline.events.registry import Event
from seamline.runtime import Runtime
from tests.carts.conftest import Headers, Shop, add, bearer, cart_events, drain, get, new_cart
from tests.carts.conftest import quantities as qty
from tests.identity.conftest import identifier
from tests.statements import recorded

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def ek(make_key: Callable[..., str]) -> Headers:
    return bearer(make_key(kind="event", name="web"))


def test_identify_merges_the_anonymous_cart_keeping_the_larger_quantity(
    client: TestClient,
    auth: Headers,
    pk: Headers,
    ek: Headers,
    shop: Shop,
    db: Database,
    runtime: Runtime,
) -> None:
    kb, mat, band = (shop.variants[s] for s in ("KB-16", "MAT-1", "BAND-1"))
    # The customer is known (their app logged in) and has a cart with a kettlebell and a mat.
    r = client.post("/v1/identify", json={"userId": "u-42", "anonymousId": "phone"}, headers=ek)
    assert r.status_code == 200, r.text
    drain(runtime)
    profile = identifier(db, "user_id", "u-42").profile_id
    customer = new_cart(client, auth, shop, profile_id=profile)
    add(client, auth, customer["id"], kb, 1)
    add(client, auth, customer["id"], mat, 2)
    # On the laptop, anonymous: the same kettlebell (3: larger), a band, a code.
    laptop = new_cart(client, pk, shop, anonymous_id="laptop-7")
    add(client, pk, laptop["id"], kb, 3)
    add(client, pk, laptop["id"], mat, 1)  # smaller: the customer's 2 stay
    add(client, pk, laptop["id"], band, 1)
    client.post(f"/api/v1/carts/{laptop['id']}/codes", json={"code": "HOME10"}, headers=pk)
    before = get(client, pk, customer["id"])["version"]

    # They log in on the laptop: identify links the laptop's anonymous id to the user.
    r = client.post("/v1/identify", json={"userId": "u-42", "anonymousId": "laptop-7"}, headers=ek)
    assert r.status_code == 200, r.text
    drain(runtime)

    merged = get(client, pk, laptop["id"])
    assert merged["status"] == "merged"
    assert merged["merged_into_id"] == customer["id"]
    mine = get(client, pk, customer["id"])
    assert mine["status"] == "open"
    assert qty(mine) == {"KB-16": 3, "MAT-1": 2, "BAND-1": 1}
    assert mine["codes"] == ["HOME10"]
    assert mine["version"] == before + 1
    event = [e for e in cart_events(db, customer["id"]) if e.type == "cart.merged"]
    assert len(event) == 1
    assert event[0].payload["source_cart_id"] == laptop["id"]
    assert event[0].payload["profile_id"] == profile
    assert event[0].payload["reason"] == "identified"

    # Running the reaction again (a replay) changes nothing.
    with db.transaction() as session:
        merge.merge_on_identify(session, profile)
    assert get(client, pk, customer["id"])["version"] == mine["version"]


def test_identify_adopts_the_anonymous_cart_when_the_customer_has_none(
    client: TestClient, pk: Headers, ek: Headers, shop: Shop, db: Database, runtime: Runtime
) -> None:
    client.post("/v1/identify", json={"userId": "u-7"}, headers=ek)
    cart = new_cart(client, pk, shop, anonymous_id="kiosk-1")
    add(client, pk, cart["id"], shop.variants["MAT-1"], 1)
    r = client.post("/v1/identify", json={"userId": "u-7", "anonymousId": "kiosk-1"}, headers=ek)
    assert r.status_code == 200
    drain(runtime)
    adopted = get(client, pk, cart["id"])
    user_profile = identifier(db, "user_id", "u-7").profile_id
    with db.transaction(readonly=True) as session:
        from seamline.identity.models import Profile

        cluster = session.scalar(select(Profile.cluster_id).where(Profile.id == user_profile))
    assert adopted["status"] == "open"
    assert adopted["profile_id"] == cluster
    assert [e.type for e in cart_events(db, cart["id"])][-1] == "cart.adopted"
    # The customer asking for a cart on another device now gets this one.
    again = client.post(
        "/api/v1/carts",
        json={"channel_id": shop.channel, "currency": "EUR", "profile_id": user_profile},
        headers=bearer_secret(client, db),
    )
    assert again.status_code == 200
    assert again.json()["id"] == cart["id"]


def bearer_secret(client: TestClient, db: Database) -> Headers:
    from seamline.auth import service as keys

    with db.transaction() as session:
        _, token = keys.create_key(session, kind="secret", name="server")
    return bearer(token)


def test_staff_merge(client: TestClient, auth: Headers, pk: Headers, shop: Shop) -> None:
    kb, mat = shop.variants["KB-16"], shop.variants["MAT-1"]
    target = new_cart(client, pk, shop, anonymous_id="a")
    source = new_cart(client, pk, shop, anonymous_id="b")
    add(client, pk, target["id"], kb, 4)
    add(client, pk, source["id"], kb, 2)
    add(client, pk, source["id"], mat, 1, fulfilment="pickup", pickup_location_id=shop.store)
    url = f"/api/v1/carts/{target['id']}/merge"
    assert client.post(url, json={"source_cart_id": source["id"]}, headers=pk).status_code == 403
    same = client.post(url, json={"source_cart_id": target["id"]}, headers=auth)
    assert same.status_code == 409
    stale = client.post(
        url, json={"source_cart_id": source["id"]}, headers={**auth, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    r = client.post(url, json={"source_cart_id": source["id"]}, headers=auth)
    assert r.status_code == 200, r.text
    lines = {(x["sku"], x["fulfilment"]): x["quantity"] for x in r.json()["lines"]}
    assert lines == {("KB-16", "ship"): 4, ("MAT-1", "pickup"): 1}
    again = client.post(url, json={"source_cart_id": source["id"]}, headers=auth)
    assert again.status_code == 409
    assert again.json()["code"] == "cart_not_open"
    assert client.post(url, json={"source_cart_id": "crt_nope"}, headers=auth).status_code == 404


def test_staff_cannot_merge_two_customers(
    client: TestClient, auth: Headers, ek: Headers, shop: Shop, db: Database
) -> None:
    client.post("/v1/identify", json={"userId": "ann"}, headers=ek)
    client.post("/v1/identify", json={"userId": "bob"}, headers=ek)
    ann = new_cart(client, auth, shop, profile_id=identifier(db, "user_id", "ann").profile_id)
    bob = new_cart(client, auth, shop, profile_id=identifier(db, "user_id", "bob").profile_id)
    r = client.post(
        f"/api/v1/carts/{ann['id']}/merge", json={"source_cart_id": bob["id"]}, headers=auth
    )
    assert r.status_code == 409
    assert r.json()["code"] == "different_customers"
    with db.transaction(readonly=True) as session:
        assert session.get(Cart, bob["id"]).status == "open"  # type: ignore[union-attr]


def test_the_batch_form_merges_only_clusters_with_an_open_cart(
    client: TestClient,
    auth: Headers,
    pk: Headers,
    ek: Headers,
    shop: Shop,
    db: Database,
    runtime: Runtime,
) -> None:
    """``profile.merged`` events of shoppers without a cart cost one query for the batch; the
    others are merged as one at a time would merge them, in event order."""
    for user, devices in (("u-a", ("a-1", "a-2")), ("u-b", ("b-1",)), ("u-c", ("c-1",))):
        for device in devices:
            r = client.post(
                "/v1/identify", json={"userId": user, "anonymousId": device}, headers=ek
            )
            assert r.status_code == 200, r.text
    drain(runtime)
    a, b, c = (identifier(db, "user_id", u).profile_id for u in ("u-a", "u-b", "u-c"))
    # A: two anonymous carts on its two devices; B: none; C: its own cart only.
    first = new_cart(client, pk, shop, anonymous_id="a-1")
    add(client, pk, first["id"], shop.variants["MAT-1"], 1)
    second = new_cart(client, pk, shop, anonymous_id="a-2")
    add(client, pk, second["id"], shop.variants["KB-16"], 2)
    own = new_cart(client, auth, shop, profile_id=c)
    # And a stranger's anonymous cart, which no cluster holds.
    new_cart(client, pk, shop, anonymous_id="nobody")

    def merged_event(profile_id: str, seq: int) -> Event:
        payload = {"profile_id": profile_id}
        return Event(f"evt_m{seq}", seq, "profile.merged", "profile", profile_id, payload, T0)

    with db.transaction(readonly=True) as session:
        assert merge.with_open_carts(session, [a, b, c, "prf_unknown"]) == {a, c}
    with db.transaction() as session, recorded(db) as sent:
        handlers.merge_on_identify_many(session, [merged_event(b, 1), merged_event(b, 2)])
    # Nothing to merge: the one query (SQLite's BEGIN IMMEDIATE is no query).
    assert len([s for s in sent if not s.startswith("BEGIN")]) == 1
    with db.transaction() as session:
        handlers.merge_on_identify_many(
            session, [merged_event(b, 3), merged_event(a, 4), merged_event(c, 5)]
        )
    kept = [get(client, pk, first["id"]), get(client, pk, second["id"])]
    assert sorted(cart["status"] for cart in kept) == ["merged", "open"]
    survivor = next(cart for cart in kept if cart["status"] == "open")
    assert qty(survivor) == {"MAT-1": 1, "KB-16": 2}
    assert survivor["profile_id"] is not None
    assert get(client, auth, own["id"])["status"] == "open"
    assert [e.type for e in cart_events(db, own["id"])] == ["cart.created"]
