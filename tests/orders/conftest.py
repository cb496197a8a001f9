"""A small shop for the checkout and order tests: a web channel, a warehouse and a store with
stock, two listed products with EUR prices, a flat shipping rate, a 10% code, and carts built
straight in the tables (the cart API has its own tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.carts.models import Cart, CartLine
from seamline.db.engine import Database
from seamline.identity.models import Profile
from seamline.kit.ids import new_id, read_aloud_code
from seamline.pricing.models import Promotion, ShippingRate
from tests.catalog_helpers import create_product
from tests.stock_helpers import make_channel, make_location, receive


@dataclass
class Shop:
    channel: str
    warehouse: str
    store: str
    bell: str  # kettlebell variant, 4999
    mat: str  # yoga mat variant, 2500
    rate: str  # flat shipping 495
    code: str  # WELCOME10, 10% off
    auth: dict[str, str]
    bell_product: str = ""


@pytest.fixture
def shop(client: TestClient, auth: dict[str, str], db: Database) -> Shop:
    channel = make_channel(client, auth, "web")
    warehouse = make_location(
        client, auth, "warehouse", ships=True, coordinates={"latitude": 52.5, "longitude": 13.4}
    )
    store = make_location(
        client,
        auth,
        "mitte",
        kind="store",
        pickup=True,
        ships=True,
        returns=True,
        sells_in_person=True,
        coordinates={"latitude": 52.52, "longitude": 13.41},
    )
    variants = []
    products = []
    for handle, price in (("kettlebell", 4999), ("yoga-mat", 2500)):
        product = create_product(client, auth, handle, status="active")
        variant = product["variants"][0]["id"]
        r = client.put(
            f"/api/v1/variants/{variant}/prices",
            json={"prices": {"EUR": {"amount": price}}},
            headers=auth,
        )
        assert r.status_code == 200, r.text
        r = client.put(
            f"/api/v1/products/{product['id']}/listings/{channel}", json={}, headers=auth
        )
        assert r.status_code == 200, r.text
        receive(client, auth, warehouse, variant, 10)
        receive(client, auth, store, variant, 3)
        variants.append(variant)
        products.append(product["id"])
    with db.transaction() as session:
        rate = ShippingRate(
            id=new_id("shr"), name="Standard", currency="EUR", kind="flat", price=495
        )
        promo = Promotion(
            id=new_id("prm"),
            name="Welcome",
            code="WELCOME10",
            code_key="welcome10",
            kind="percentage",
            value=1000,
        )
        session.add_all([rate, promo])
    return Shop(
        channel, warehouse, store, variants[0], variants[1], rate.id, promo.id, auth, products[0]
    )


@pytest.fixture
def make_cart(db: Database, shop: Shop) -> Callable[..., str]:
    """A cart with ``lines`` [(variant, quantity, pickup location or None)], shipped to Berlin."""

    def make(
        lines: list[tuple[str, int, str | None]],
        *,
        codes: list[str] | None = None,
        profile: bool = True,
        channel_id: str | None = None,
        **extra: Any,
    ) -> str:
        with db.transaction() as session:
            profile_id = None
            if profile:
                profile_id = new_id("prf")
                session.add(Profile(id=profile_id, cluster_id=profile_id))
                session.flush()
            cart = Cart(
                id=new_id("crt"),
                share_code=read_aloud_code(),
                profile_id=profile_id,
                anonymous_id=None if profile else new_id("anon"),
                channel_id=channel_id or shop.channel,
                currency="EUR",
                email="ann@example.com",
                shipping_address={"name": "Ann", "country": "DE", "postcode": "10115"},
                shipping_rate_id=shop.rate,
                codes=codes or [],
                **extra,
            )
            session.add(cart)
            session.flush()
            for variant, quantity, pickup in lines:
                session.add(
                    CartLine(
                        id=new_id("cln"),
                        cart_id=cart.id,
                        variant_id=variant,
                        quantity=quantity,
                        fulfilment="pickup" if pickup else "ship",
                        pickup_location_id=pickup,
                    )
                )
        return cart.id

    return make


def cart_status(db: Database, cart_id: str) -> str:
    with db.transaction(readonly=True) as session:
        return session.scalars(select(Cart.status).where(Cart.id == cart_id)).one()
