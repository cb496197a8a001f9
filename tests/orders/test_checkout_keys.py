"""Checkout is idempotent by its own key (the API's idempotency middleware lets it through),
and a checkout whose process died while paying is given back by the worker's sweep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seamline.api.idempotency import IdempotencyRecord
from seamline.db.engine import Database
from seamline.kit.clock import FrozenClock
from seamline.orders import handlers
from seamline.orders.models import Checkout, Order
from seamline.payments import service as payments
from tests.orders.conftest import Shop, cart_status
from tests.orders.test_checkout import CARD, pay
from tests.stock_helpers import level


def _count(db: Database, model: Any) -> int:
    with db.transaction(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_retry_with_the_key_returns_the_same_order_and_stores_no_idempotency_record(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 1, None)])
    first = pay(client, cart, shop.auth, key="same-key")
    again = pay(client, cart, shop.auth, key="same-key")
    assert first.status_code == again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert _count(db, Order) == 1
    # The checkout row is the record: nothing is stored twice for this route.
    assert _count(db, IdempotencyRecord) == 0
    assert level(db, shop.warehouse, shop.bell) == (9, 0)


def test_the_same_key_on_another_cart_is_refused_and_that_cart_is_untouched(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    first, second = make_cart([(shop.bell, 1, None)]), make_cart([(shop.mat, 1, None)])
    assert pay(client, first, shop.auth, key="k-shared").status_code == 201
    r = pay(client, second, shop.auth, key="k-shared")
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "idempotency_key_reused"
    assert cart_status(db, second) == "open"
    assert _count(db, Order) == 1
    assert level(db, shop.warehouse, shop.mat) == (10, 0)


@pytest.mark.parametrize("key", ["x" * 256, "tab\there"])
def test_an_unusable_key_is_a_400_before_anything_is_held(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str], key: str
) -> None:
    cart = make_cart([(shop.bell, 1, None)])
    r = pay(client, cart, shop.auth, key=key)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_idempotency_key"
    assert cart_status(db, cart) == "open"
    assert level(db, shop.warehouse, shop.bell) == (10, 0)
    assert _count(db, Checkout) == 0


def test_other_writes_still_get_the_middleware(
    client: TestClient, db: Database, shop: Shop
) -> None:
    """Only the self-keyed route is passed through: creating a cart with a key is stored and
    replayed by the middleware as before."""
    body = {"channel_id": shop.channel, "currency": "EUR", "anonymous_id": "device-1"}
    headers = {**shop.auth, "Idempotency-Key": "cart-once"}
    first = client.post("/api/v1/carts", json=body, headers=headers)
    again = client.post("/api/v1/carts", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert _count(db, IdempotencyRecord) == 1


class _Died(Exception):
    """Stands for the process dying between reserving and paying."""


def test_a_checkout_whose_process_died_is_given_back_by_the_sweep(
    client: TestClient,
    db: Database,
    shop: Shop,
    make_cart: Callable[..., str],
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cart = make_cart([(shop.bell, 2, None), (shop.mat, 1, None)])

    def die(*_: Any, **__: Any) -> Any:
        raise _Died

    with monkeypatch.context() as patched:
        patched.setattr(payments, "take", die)
        r = pay(client, cart, shop.auth, key="dies")
    assert r.status_code == 500
    # Step 1 committed: the stock is held and the cart is checking out.
    assert level(db, shop.warehouse, shop.bell) == (10, 2)
    assert cart_status(db, cart) == "checking_out"

    # Given up 900 s (the holds' window) + 60 s after step 1.
    clock.advance(seconds=940)
    assert handlers.sweep_expired_checkouts(db) == 0  # not yet
    clock.advance(seconds=21)
    # Past its expiry, but swept at most every SWEEP_EVERY: the last look was 21 s ago.
    assert handlers.sweep_expired_checkouts(db) == 0
    clock.advance(seconds=10)
    assert handlers.sweep_expired_checkouts(db) == 1

    assert level(db, shop.warehouse, shop.bell) == (10, 0)
    assert level(db, shop.warehouse, shop.mat) == (10, 0)
    assert cart_status(db, cart) == "open"
    with db.transaction(readonly=True) as session:
        found = session.scalars(select(Checkout)).one()
        assert found.status == "failed"
        assert (found.error or {})["code"] == "checkout_expired"
    # A retry with the key answers the stored refusal; nothing is charged or held again.
    again = pay(client, cart, shop.auth, key="dies")
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "checkout_expired"
    assert level(db, shop.warehouse, shop.bell) == (10, 0)
    # A new key checks the reopened cart out.
    assert pay(client, cart, shop.auth, key="after", tenders=[CARD]).status_code == 201
    clock.advance(seconds=31)
    assert handlers.sweep_expired_checkouts(db) == 0


@pytest.mark.postgres_only
def test_concurrent_requests_with_one_key_make_one_order(
    db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    """Without the middleware's lock, eight simultaneous requests with the same key wait on
    the cart's lock, find the checkout the first one started, and answer its order (or
    resume it with the same provider keys); one order, the stock sold once."""
    from concurrent.futures import ThreadPoolExecutor

    from seamline.auth.service import Caller
    from seamline.kit.errors import SeamlineError
    from seamline.orders import checkout
    from seamline.orders.schemas import CheckoutIn, TenderIn

    cart = make_cart([(shop.bell, 2, None), (shop.mat, 1, None)])
    caller = Caller("key_same", "secret", frozenset({"checkout:write"}))
    body = CheckoutIn(tenders=[TenderIn(provider="test", token="tok_test_success")])

    def attempt(_: int) -> str:
        try:
            return checkout.checkout(db, cart, body, caller=caller, idempotency_key="one").id
        except SeamlineError as exc:
            return f"refused:{exc.code}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(attempt, range(8)))
    assert len(set(answers)) == 1, answers
    assert answers[0].startswith("ord_"), answers
    assert _count(db, Order) == 1
    assert level(db, shop.warehouse, shop.bell) == (8, 0)
    assert level(db, shop.warehouse, shop.mat) == (9, 0)


def test_if_match_checks_out_only_the_cart_the_buyer_saw(
    client: TestClient, db: Database, shop: Shop, make_cart: Callable[..., str]
) -> None:
    cart = make_cart([(shop.bell, 1, None)])
    seen = client.get(f"/api/v1/carts/{cart}", headers=shop.auth)
    assert seen.status_code == 200, seen.text
    etag = seen.headers["ETag"]
    # Someone changes the cart meanwhile (the customer on their phone).
    line = seen.json()["lines"][0]["id"]
    changed = client.patch(
        f"/api/v1/carts/{cart}/lines/{line}", json={"quantity": 3}, headers=shop.auth
    )
    assert changed.status_code == 200, changed.text
    stale = client.post(
        f"/api/v1/carts/{cart}/checkout",
        json={"tenders": [CARD]},
        headers={**shop.auth, "Idempotency-Key": "stale", "If-Match": etag},
    )
    assert stale.status_code == 412, stale.text
    assert stale.json()["code"] == "cart_version_mismatch"
    assert stale.headers["ETag"] == changed.headers["ETag"]
    assert level(db, shop.warehouse, shop.bell) == (10, 0)
    assert cart_status(db, cart) == "open"
    assert _count(db, Checkout) == 0
    fresh = client.post(
        f"/api/v1/carts/{cart}/checkout",
        json={"tenders": [CARD]},
        headers={**shop.auth, "Idempotency-Key": "fresh", "If-Match": changed.headers["ETag"]},
    )
    assert fresh.status_code == 201, fresh.text
    assert fresh.json()["lines"][0]["quantity"] == 3
