"""The service calls checkout makes: lock, checking_out, reopen (merging if needed), completed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from seamline.carts import service
from seamline.db.engine import Database
from seamline.kit.errors import Conflict
from tests.carts.conftest import Headers, Shop, add, bearer, cart_events, get, new_cart, quantities
from tests.identity.conftest import identifier


def test_checking_out_reopen_and_complete(
    client: TestClient,
    auth: Headers,
    shop: Shop,
    db: Database,
    make_key: Callable[..., str],
) -> None:
    ek = bearer(make_key(kind="event"))
    client.post("/v1/identify", json={"userId": "fay"}, headers=ek)
    profile = identifier(db, "user_id", "fay").profile_id
    first = new_cart(client, auth, shop, profile_id=profile)
    add(client, auth, first["id"], shop.variants["KB-16"], 1)
    with db.transaction() as session:
        cart = service.lock_cart(session, first["id"], if_match='"2"')
        service.mark_checking_out(session, cart)
    assert get(client, auth, first["id"])["status"] == "checking_out"
    assert add(client, auth, first["id"], shop.variants["MAT-1"]).status_code == 409
    # Meanwhile the customer starts another cart (the first is not open any more).
    second = new_cart(client, auth, shop, profile_id=profile)
    assert second["id"] != first["id"]
    add(client, auth, second["id"], shop.variants["MAT-1"], 1)
    # The payment fails: the first cart comes back, into the open one.
    with db.transaction() as session:
        from seamline.carts.models import Cart

        cart = session.get(Cart, first["id"], with_for_update=True)
        assert cart is not None
        reopened = service.reopen(session, cart)
        assert reopened.id == second["id"]
    assert quantities(get(client, auth, second["id"])) == {"MAT-1": 1, "KB-16": 1}
    assert get(client, auth, first["id"])["status"] == "merged"
    with db.transaction() as session:
        cart = service.lock_cart(session, second["id"])
        service.mark_checking_out(session, cart)
        service.mark_completed(session, cart, order_id="ord_1")
    done = get(client, auth, second["id"])
    assert (done["status"], done["order_id"]) == ("completed", "ord_1")
    types = [e.type for e in cart_events(db, second["id"])]
    assert types[-3:] == ["cart.merged", "cart.checkout_started", "cart.completed"]
    with pytest.raises(Conflict), db.transaction() as session:
        service.lock_cart(session, second["id"])


def test_reopen_without_another_cart(
    client: TestClient, pk: Headers, shop: Shop, db: Database
) -> None:
    created = new_cart(client, pk, shop)
    with db.transaction() as session:
        cart = service.lock_cart(session, created["id"])
        service.mark_checking_out(session, cart)
        assert service.reopen(session, cart).status == "open"
    assert get(client, pk, created["id"])["version"] == 3
