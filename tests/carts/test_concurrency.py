"""Many devices adding to one cart at once lose nothing: writes lock the cart row."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.carts.conftest import Headers, Shop, get, new_cart, quantities

WRITERS = 24


@pytest.mark.postgres_only
def test_concurrent_line_adds_do_not_lose_updates(
    live_server: str, client: TestClient, pk: Headers, shop: Shop
) -> None:
    cart = new_cart(client, pk, shop)
    kb, mat = shop.variants["KB-16"], shop.variants["MAT-1"]
    start = threading.Barrier(WRITERS)

    def add(i: int) -> int:
        # Half add the same (new) variant — one line must collect every unit — half another.
        body = {"variant_id": kb if i % 2 else mat, "quantity": 1}
        with httpx.Client(base_url=live_server, headers=pk, timeout=120) as http:
            start.wait()
            return http.post(f"/api/v1/carts/{cart['id']}/lines", json=body).status_code

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        statuses = list(pool.map(add, range(WRITERS)))
    assert sorted(set(statuses)) == [200, 201], statuses
    assert statuses.count(201) == 2  # one new line per variant, the rest added onto it
    final = get(client, pk, cart["id"])
    assert quantities(final) == {"KB-16": WRITERS // 2, "MAT-1": WRITERS // 2}
    assert final["version"] == 1 + WRITERS
