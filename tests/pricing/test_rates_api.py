"""Tax rates, tax settings and shipping rates over the API, and what the loader makes of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seamline.db.engine import Database
from seamline.pricing import loader
from seamline.pricing.common import Destination
from tests.pricing.helpers import (
    SHIPPING_RATES,
    TAX_RATES,
    TAX_SETTINGS,
    event_types,
    events_of,
    paths,
)

MakeKey = Callable[..., str]


def tax_rate(client: TestClient, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"country": "FR", "rate": 2000, "name": "TVA", **fields}
    response = client.post(TAX_RATES, json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def shipping(client: TestClient, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"name": "Standard", "currency": "EUR", "kind": "flat", "price": 490, **fields}
    response = client.post(SHIPPING_RATES, json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


# -- tax rates -------------------------------------------------------------------------------


def test_tax_rates_create_list_delete(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    gst = tax_rate(client, auth, country="CA", rate=500, name="GST")
    pst = tax_rate(client, auth, country="CA", region="BC", rate=700, name="PST", combinable=True)
    vat = tax_rate(client, auth)
    assert pst["region"] == "BC"
    assert pst["combinable"] is True
    listed = client.get(TAX_RATES, headers=auth).json()
    assert [r["id"] for r in listed["data"]] == [gst["id"], pst["id"], vat["id"]]
    canada = client.get(f"{TAX_RATES}?country=CA&limit=1", headers=auth).json()
    assert [r["id"] for r in canada["data"]] == [gst["id"]]
    assert canada["next_cursor"] == gst["id"]
    with db.transaction(readonly=True) as session:
        config = loader.tax_config(session)
    assert [r.name for r in config.rates_for(Destination(country="CA", region="BC"))] == [
        "GST",
        "PST",
    ]
    response = client.delete(f"{TAX_RATES}/{pst['id']}", headers=auth)
    assert response.status_code == 204
    assert client.delete(f"{TAX_RATES}/{pst['id']}", headers=auth).status_code == 404
    assert len(client.get(TAX_RATES, headers=auth).json()["data"]) == 2
    changes = [p["change"] for p in events_of(db, "tax.changed")]
    assert changes == ["rate_created"] * 3 + ["rate_deleted"]


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"rate": -1}, "body.rate"),
        ({"rate": 10_001}, "body.rate"),
        ({"country": "fr"}, "body.country"),
        ({"country": "XX"}, "body.country"),
        ({"combinable": True}, "body.combinable"),
        ({"name": ""}, "body.name"),
        ({"region": ""}, "body.region"),
        ({"extra": True}, "body.extra"),
    ],
)
def test_tax_rate_invalid_is_422(
    client: TestClient, auth: dict[str, str], fields: dict[str, Any], path: str
) -> None:
    body = {"country": "FR", "rate": 2000, "name": "TVA", **fields}
    response = client.post(TAX_RATES, json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert path in paths(response)


def test_tax_rate_duplicates_are_409(client: TestClient, auth: dict[str, str]) -> None:
    tax_rate(client, auth)
    tax_rate(client, auth, region="Azores", name="TVA")  # same name, another region: fine
    for fields in ({}, {"region": "Azores"}):
        body = {"country": "FR", "rate": 1000, "name": "TVA", **fields}
        response = client.post(TAX_RATES, json=body, headers=auth)
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "tax_rate_taken"


def test_tax_settings_defaults_and_put(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    got = client.get(TAX_SETTINGS, headers=auth).json()
    assert got == {"prices_include_tax": False, "tax_shipping": True, "updated_at": None}
    body = {"prices_include_tax": True, "tax_shipping": False}
    put = client.put(TAX_SETTINGS, json=body, headers=auth)
    assert put.status_code == 200, put.text
    assert put.json()["prices_include_tax"] is True
    assert put.json()["updated_at"] is not None
    assert client.get(TAX_SETTINGS, headers=auth).json() == put.json()
    again = client.put(TAX_SETTINGS, json=body, headers=auth)
    assert again.json() == put.json()  # no change, no write
    with db.transaction(readonly=True) as session:
        config = loader.tax_config(session)
    assert (config.prices_include_tax, config.tax_shipping) == (True, False)
    assert [p["change"] for p in events_of(db, "tax.changed")] == ["settings"]
    response = client.put(TAX_SETTINGS, json={"prices_include_tax": True}, headers=auth)
    assert response.status_code == 422
    assert paths(response) == ["body.tax_shipping"]


# -- shipping rates --------------------------------------------------------------------------


def test_shipping_rates_every_kind(client: TestClient, auth: dict[str, str], db: Database) -> None:
    flat = shipping(client, auth, countries=["FR", "DE", "FR"])
    bands = shipping(
        client,
        auth,
        name="By weight",
        kind="weight_band",
        price=0,
        bands=[{"max_grams": 1000, "price": 500}, {"max_grams": 5000, "price": 900}],
    )
    free = shipping(client, auth, name="Free over 50", kind="free_over", free_over=5000)
    assert flat["countries"] == ["DE", "FR"]
    assert bands["bands"] == [{"max_grams": 1000, "price": 500}, {"max_grams": 5000, "price": 900}]
    assert free["free_over"] == 5000
    got = client.get(f"{SHIPPING_RATES}/{bands['id']}", headers=auth)
    assert got.json() == bands
    with db.transaction(readonly=True) as session:
        engine_rates = loader.shipping_rates(session, currency="EUR")
    assert {r.id for r in engine_rates} == {flat["id"], bands["id"], free["id"]}
    assert event_types(db, "shipping_rate.") == ["shipping_rate.created"] * 3


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"currency": "eur"}, "body.currency"),
        ({"currency": "ABC"}, "body.currency"),
        ({"price": -1}, "body.price"),
        ({"kind": "weight_band", "price": 0}, "body.bands"),
        (
            {"kind": "weight_band", "price": 0,
             "bands": [{"max_grams": 1000, "price": 1}, {"max_grams": 1000, "price": 2}]},
            "body.bands.1",
        ),
        (
            {"kind": "weight_band", "price": 0,
             "bands": [{"max_grams": 2000, "price": 1}, {"max_grams": 1000, "price": 2}]},
            "body.bands.1",
        ),
        ({"kind": "weight_band", "bands": [{"max_grams": 10, "price": 1}]}, "body.price"),
        ({"bands": [{"max_grams": 10, "price": 1}]}, "body.bands"),
        (
            {"kind": "weight_band", "bands": [{"max_grams": -1, "price": 1}]},
            "body.bands.0.max_grams",
        ),
        ({"kind": "free_over"}, "body.free_over"),
        ({"free_over": 100}, "body.free_over"),
        ({"countries": ["France"]}, "body.countries.0"),
        ({"name": "\x00"}, "body.name"),
    ],
)  # fmt: skip
def test_shipping_rate_invalid_is_422(
    client: TestClient, auth: dict[str, str], fields: dict[str, Any], path: str
) -> None:
    body = {"name": "Standard", "currency": "EUR", "kind": "flat", "price": 490, **fields}
    response = client.post(SHIPPING_RATES, json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert path in paths(response), response.json()


def test_shipping_rate_patch_and_deactivate(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    rate = shipping(
        client, auth, kind="weight_band", price=0, bands=[{"max_grams": 1000, "price": 500}]
    )
    url = f"{SHIPPING_RATES}/{rate['id']}"
    response = client.patch(
        url,
        json={"name": "Colissimo 📦", "bands": [{"max_grams": 500, "price": 300},
                                               {"max_grams": 2000, "price": 700}]},
        headers=auth,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Colissimo 📦"
    assert len(response.json()["bands"]) == 2
    bad = client.patch(
        url, json={"bands": [{"max_grams": 5, "price": 1}, {"max_grams": 4, "price": 1}]},
        headers=auth,
    )  # fmt: skip
    assert bad.status_code == 422
    assert paths(bad) == ["body.bands.1"]
    assert paths(client.patch(url, json={"price": 10}, headers=auth)) == ["body.price"]
    assert paths(client.patch(url, json={"kind": "flat"}, headers=auth)) == ["body.kind"]
    off = client.post(f"{url}/deactivate", headers=auth)
    assert off.status_code == 200
    assert off.json()["active"] is False
    assert client.post(f"{url}/deactivate", headers=auth).json() == off.json()  # idempotent
    listed = client.get(f"{SHIPPING_RATES}?active=true", headers=auth).json()["data"]
    assert listed == []
    with db.transaction(readonly=True) as session:
        assert loader.shipping_rates(session, currency="EUR") == []
    assert client.patch(url, json={"active": True}, headers=auth).json()["active"] is True
    assert (
        event_types(db, "shipping_rate.")
        == ["shipping_rate.created"] + ["shipping_rate.updated"] * 3
    )
    assert client.get(f"{SHIPPING_RATES}/shr_nope", headers=auth).status_code == 404
    assert client.post(f"{SHIPPING_RATES}/shr_nope/deactivate", headers=auth).status_code == 404


def test_shipping_rates_list_filters(client: TestClient, auth: dict[str, str]) -> None:
    eur = shipping(client, auth)
    usd = shipping(client, auth, currency="USD")
    rows = client.get(f"{SHIPPING_RATES}?currency=USD", headers=auth).json()["data"]
    assert [r["id"] for r in rows] == [usd["id"]]
    page = client.get(f"{SHIPPING_RATES}?limit=1", headers=auth).json()
    assert [r["id"] for r in page["data"]] == [eur["id"]]
    rest = client.get(f"{SHIPPING_RATES}?cursor={page['next_cursor']}", headers=auth).json()
    assert [r["id"] for r in rest["data"]] == [usd["id"]]


def test_rate_scopes(client: TestClient, make_key: MakeKey) -> None:
    reader = {"Authorization": f"Bearer {make_key(scopes=['pricing:read'])}"}
    body = {"name": "S", "currency": "EUR", "kind": "flat", "price": 1}
    assert client.post(SHIPPING_RATES, json=body, headers=reader).status_code == 403
    assert client.post(SHIPPING_RATES, json=body).status_code == 401
    assert client.get(SHIPPING_RATES, headers=reader).status_code == 200
    tax = {"country": "FR", "rate": 2000, "name": "TVA"}
    assert client.post(TAX_RATES, json=tax, headers=reader).status_code == 403
    assert client.put(TAX_SETTINGS, json={}, headers=reader).status_code == 403
    assert client.get(TAX_SETTINGS, headers=reader).status_code == 200
    assert client.delete(f"{TAX_RATES}/txr_x", headers=reader).status_code == 403
