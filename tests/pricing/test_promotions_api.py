"""Promotions over the API: create, list, get, patch, personal codes, and their refusals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from seamline.db.engine import Database
from seamline.pricing import service
from seamline.pricing.models import Promotion
from seamline.pricing.schemas import IssueCode
from tests.catalog_helpers import create_product
from tests.pricing.helpers import (
    PROMOTIONS,
    event_types,
    events_of,
    make_profile,
    paths,
    promotion,
)
from tests.stock_helpers import make_channel

MakeKey = Callable[..., str]


def test_create_get_and_event(client: TestClient, auth: dict[str, str], db: Database) -> None:
    created = promotion(
        client,
        auth,
        name="Été — 10 % 🎉",
        code="Summer10",
        starts_at="2026-06-01T00:00:00+02:00",
        ends_at="2026-09-01T00:00:00+02:00",
        usage_limit=100,
        usage_limit_per_profile=1,
    )
    assert created["id"].startswith("promo_")
    assert created["name"] == "Été — 10 % 🎉"
    assert created["code"] == "Summer10"
    assert created["used_count"] == 0
    assert created["active"] is True
    assert created["starts_at"].startswith("2026-05-31T22:00:00")
    got = client.get(f"{PROMOTIONS}/{created['id']}", headers=auth)
    assert got.status_code == 200
    assert got.json() == created
    payloads = events_of(db, "promotion.created")
    assert [p["id"] for p in payloads] == [created["id"]]
    assert payloads[0]["code"] == "Summer10"


def test_every_kind_and_target(client: TestClient, auth: dict[str, str]) -> None:
    product = create_product(client, auth, "sofa")
    web = make_channel(client, auth, "web")
    fixed = promotion(client, auth, kind="fixed_amount", value=500, currency="EUR")
    free = promotion(client, auth, kind="free_shipping", value=0, min_subtotal=5000, currency="EUR")
    targeted = promotion(
        client,
        auth,
        applies_to="products",
        target_ids=[product["id"], product["id"]],
        channel_ids=[web],
    )
    assert fixed["currency"] == "EUR"
    assert free["min_subtotal"] == 5000
    assert targeted["target_ids"] == [product["id"]]  # duplicates dropped
    assert targeted["channel_ids"] == [web]


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"value": -1}, "body.value"),
        ({"value": 10_001}, "body.value"),
        ({"value": 0}, "body.value"),
        ({"kind": "fixed_amount", "value": 500}, "body.currency"),
        ({"kind": "free_shipping", "value": 5}, "body.value"),
        ({"min_subtotal": 100}, "body.currency"),
        ({"currency": "EUX"}, "body.currency"),
        ({"starts_at": "2026-06-01T00:00:00"}, "body.starts_at"),
        ({"ends_at": "2026-06-01T00:00:00"}, "body.ends_at"),
        (
            {"starts_at": "2026-06-02T00:00:00Z", "ends_at": "2026-06-01T00:00:00Z"},
            "body.ends_at",
        ),
        ({"starts_at": "0001-01-01T00:00:00+01:00"}, "body.starts_at"),
        ({"applies_to": "products"}, "body.target_ids"),
        ({"target_ids": ["prd_x"]}, "body.target_ids"),
        ({"applies_to": "products", "target_ids": ["prd_nope"]}, "body.target_ids.0"),
        ({"applies_to": "collections", "target_ids": ["col_nope"]}, "body.target_ids.0"),
        ({"channel_ids": ["chn_nope"]}, "body.channel_ids.0"),
        ({"profile_id": "prf_nope"}, "body.profile_id"),
        ({"usage_limit": 0}, "body.usage_limit"),
        ({"usage_limit": 2**31}, "body.usage_limit"),
        ({"code": "two words"}, "body.code"),
        ({"code": "x" * 65}, "body.code"),
        ({"code": "CAFÉ"}, "body.code"),
        ({"name": ""}, "body.name"),
        ({"name": "\u200b"}, "body.name"),
        ({"name": "a\x00b"}, "body.name"),
        ({"name": "n" * 201}, "body.name"),
        ({"kind": "bogo"}, "body.kind"),
        ({"surprise": 1}, "body.surprise"),
        ({"target_ids": ["p"] * 501, "applies_to": "products"}, "body.target_ids"),
    ],
)
def test_invalid_input_is_422_with_path(
    client: TestClient, auth: dict[str, str], fields: dict[str, Any], path: str
) -> None:
    body = {"name": "Summer", "kind": "percentage", "value": 1000, **fields}
    response = client.post(PROMOTIONS, json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert path in paths(response), response.json()


def test_huge_payload_is_refused(client: TestClient, auth: dict[str, str]) -> None:
    body = {"name": "x" * 2_000_000, "kind": "percentage", "value": 1000}
    response = client.post(PROMOTIONS, json=body, headers=auth)
    assert response.status_code in (413, 422)
    assert response.headers["content-type"].startswith("application/problem+json")


def test_codes_are_unique_case_insensitively(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    promotion(client, auth, code="SUMMER10")
    for code in ("SUMMER10", "summer10", " Summer10 "):
        response = client.post(
            PROMOTIONS, json={"name": "Dup", "kind": "percentage", "value": 5, "code": code},
            headers=auth,
        )  # fmt: skip
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "code_taken"
        assert paths(response) == ["body.code"]
    assert event_types(db, "promotion.") == ["promotion.created"]


def test_list_filters_and_pages(client: TestClient, auth: dict[str, str]) -> None:
    made = [promotion(client, auth, name=f"P{i}", code=f"CODE{i}") for i in range(5)]
    client.patch(f"{PROMOTIONS}/{made[0]['id']}", json={"active": False}, headers=auth)
    seen: list[str] = []
    cursor = None
    while True:
        url = f"{PROMOTIONS}?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=auth).json()
        seen += [p["id"] for p in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [p["id"] for p in made]
    active = client.get(f"{PROMOTIONS}?active=false", headers=auth).json()["data"]
    assert [p["id"] for p in active] == [made[0]["id"]]
    by_code = client.get(f"{PROMOTIONS}?code=code3", headers=auth).json()["data"]
    assert [p["id"] for p in by_code] == [made[3]["id"]]
    assert client.get(f"{PROMOTIONS}?code=bad%20code", headers=auth).status_code == 422


def test_get_unknown_is_404(client: TestClient, auth: dict[str, str]) -> None:
    for promotion_id in ("promo_nope", "x" * 300):
        response = client.get(f"{PROMOTIONS}/{promotion_id}", headers=auth)
        assert response.status_code == 404
        assert response.json()["code"] == "promotion_not_found"
    response = client.patch(f"{PROMOTIONS}/promo_nope", json={"active": False}, headers=auth)
    assert response.status_code == 404


def test_patch_changes_fields_and_emits(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    created = promotion(client, auth, code="A1", usage_limit=10)
    url = f"{PROMOTIONS}/{created['id']}"
    response = client.patch(
        url,
        json={
            "name": "Renamed ✨",
            "ends_at": "2030-01-01T00:00:00+00:00",
            "usage_limit": None,
            "code": "b2",
            "name_ignored_if_null": None,
        },
        headers=auth,
    )
    assert response.status_code == 422  # unknown field
    response = client.patch(
        url,
        json={"name": "Renamed ✨", "ends_at": "2030-01-01T00:00:00+00:00", "usage_limit": None,
              "code": "b2", "active": None},
        headers=auth,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["code"], body["usage_limit"]) == ("Renamed ✨", "b2", None)
    assert body["active"] is True  # null ignored on a non-nullable field
    assert client.get(f"{PROMOTIONS}?code=B2", headers=auth).json()["data"][0]["id"] == body["id"]
    # nothing changed: no event
    again = client.patch(url, json={"name": "Renamed ✨"}, headers=auth)
    assert again.json()["updated_at"] == body["updated_at"]
    assert event_types(db, "promotion.") == ["promotion.created", "promotion.updated"]
    updated = events_of(db, "promotion.updated")[0]
    assert updated["changed"] == ["code", "ends_at", "name", "usage_limit"]


def test_patch_is_validated_as_a_whole(client: TestClient, auth: dict[str, str]) -> None:
    created = promotion(client, auth, starts_at="2026-06-01T00:00:00Z")
    url = f"{PROMOTIONS}/{created['id']}"
    response = client.patch(url, json={"ends_at": "2026-05-01T00:00:00Z"}, headers=auth)
    assert response.status_code == 422
    assert paths(response) == ["body.ends_at"]
    response = client.patch(url, json={"value": 20_000}, headers=auth)
    assert paths(response) == ["body.value"]
    response = client.patch(url, json={"kind": "fixed_amount"}, headers=auth)
    assert paths(response) == ["body.kind"]  # kind cannot change
    response = client.patch(url, json={"min_subtotal": 100}, headers=auth)
    assert paths(response) == ["body.currency"]
    response = client.patch(url, json={"ends_at": "2026-06-01T00:00:00"}, headers=auth)
    assert paths(response) == ["body.ends_at"]


def test_patch_code_collision_is_409(client: TestClient, auth: dict[str, str]) -> None:
    promotion(client, auth, code="TAKEN")
    other = promotion(client, auth, code="MINE")
    response = client.patch(f"{PROMOTIONS}/{other['id']}", json={"code": "taken"}, headers=auth)
    assert response.status_code == 409
    assert response.json()["code"] == "code_taken"
    # the same code in another case is the promotion's own
    response = client.patch(f"{PROMOTIONS}/{other['id']}", json={"code": "mine"}, headers=auth)
    assert response.status_code == 200
    assert response.json()["code"] == "mine"


def test_usage_limit_cannot_go_below_used_count(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    created = promotion(client, auth, code="LIMITED", usage_limit=10)
    with db.transaction() as session:
        session.execute(update(Promotion).where(Promotion.id == created["id"]).values(used_count=4))
    url = f"{PROMOTIONS}/{created['id']}"
    response = client.patch(url, json={"usage_limit": 3}, headers=auth)
    assert response.status_code == 409
    problem = response.json()
    assert problem["code"] == "usage_limit_below_used"
    assert problem["used_count"] == 4
    assert paths(response) == ["body.usage_limit"]
    assert client.patch(url, json={"usage_limit": 4}, headers=auth).status_code == 200


def test_switching_to_all_drops_targets(client: TestClient, auth: dict[str, str]) -> None:
    product = create_product(client, auth, "lamp")
    created = promotion(client, auth, applies_to="products", target_ids=[product["id"]])
    url = f"{PROMOTIONS}/{created['id']}"
    response = client.patch(url, json={"applies_to": "all"}, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["target_ids"] == []
    response = client.patch(url, json={"applies_to": "collections"}, headers=auth)
    assert paths(response) == ["body.target_ids"]


# -- personal codes ---------------------------------------------------------------------------


def test_issue_code_copies_the_template(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    """Story S1: sign up on Instagram, get a personal 10 % code."""
    social = make_channel(client, auth, "insta", kind="social")
    template = promotion(
        client,
        auth,
        name="Instagram welcome",
        value=1000,
        channel_ids=[social],
        ends_at="2031-01-01T00:00:00Z",
        active=False,
    )
    profile = make_profile(db)
    response = client.post(
        f"{PROMOTIONS}/{template['id']}/issue-code",
        json={"profile_id": profile, "prefix": "INSTA"},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    issued = response.json()
    assert issued["id"] != template["id"]
    assert issued["code"].startswith("INSTA-")
    generated = issued["code"].removeprefix("INSTA-")
    assert len(generated) == 7
    assert generated[3] == "-"
    assert set(generated.replace("-", "")) <= set("34679ACDEFGHJKMNPQRTVWXY")
    assert issued["profile_id"] == profile
    assert (issued["usage_limit"], issued["used_count"], issued["active"]) == (1, 0, True)
    for field in ("kind", "value", "channel_ids", "ends_at", "name", "applies_to"):
        assert issued[field] == template[field], field
    payload = events_of(db, "promotion.created")[-1]
    assert payload["template_id"] == template["id"]
    assert payload["profile_id"] == profile
    # the customer's codes can be listed
    mine = client.get(f"{PROMOTIONS}?profile_id={profile}", headers=auth).json()["data"]
    assert [p["id"] for p in mine] == [issued["id"]]
    # no prefix: just the read-aloud code; a prefix ending in a dash is kept as is
    bare = client.post(
        f"{PROMOTIONS}/{template['id']}/issue-code", json={"profile_id": profile}, headers=auth
    ).json()
    assert len(bare["code"]) == 7
    dashed = client.post(
        f"{PROMOTIONS}/{template['id']}/issue-code",
        json={"profile_id": profile, "prefix": "vip_"},
        headers=auth,
    ).json()
    assert dashed["code"].startswith("vip_")
    assert len(dashed["code"]) == 11


def test_issue_code_refusals(client: TestClient, auth: dict[str, str], db: Database) -> None:
    template = promotion(client, auth)
    url = f"{PROMOTIONS}/{template['id']}/issue-code"
    response = client.post(url, json={"profile_id": "prf_nobody"}, headers=auth)
    assert response.status_code == 422
    assert response.json()["code"] == "profile_not_found"
    assert paths(response) == ["body.profile_id"]
    response = client.post(url, json={"profile_id": "p", "prefix": "bad prefix"}, headers=auth)
    assert paths(response) == ["body.prefix"]
    response = client.post(url, json={}, headers=auth)
    assert paths(response) == ["body.profile_id"]
    response = client.post(
        f"{PROMOTIONS}/promo_nope/issue-code", json={"profile_id": "p"}, headers=auth
    )
    assert response.status_code == 404
    profile = make_profile(db)
    personal = client.post(url, json={"profile_id": profile}, headers=auth).json()
    response = client.post(
        f"{PROMOTIONS}/{personal['id']}/issue-code", json={"profile_id": profile}, headers=auth
    )
    assert response.status_code == 409
    assert response.json()["code"] == "not_a_template"


def test_issue_code_retries_a_colliding_code(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    promotion(client, auth, code="AAA-AAA")
    template = promotion(client, auth, name="Template")
    profile = make_profile(db)
    generated = iter(["AAA-AAA", "aaa-aaa", "CCC-CCC"])
    with db.transaction() as session:
        issued = service.issue_code(
            session, template["id"], IssueCode(profile_id=profile), generate=lambda: next(generated)
        )
        assert issued.code == "CCC-CCC"


# -- keys ------------------------------------------------------------------------------------


def test_scopes(client: TestClient, make_key: MakeKey) -> None:
    reader = {"Authorization": f"Bearer {make_key(scopes=['pricing:read'])}"}
    writer = {"Authorization": f"Bearer {make_key(scopes=['pricing:write'])}"}
    body = {"name": "S", "kind": "percentage", "value": 10}
    assert client.post(PROMOTIONS, json=body).status_code == 401
    response = client.post(PROMOTIONS, json=body, headers=reader)
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
    created = client.post(PROMOTIONS, json=body, headers=writer)
    assert created.status_code == 201
    assert client.get(PROMOTIONS, headers=writer).status_code == 403
    assert client.get(PROMOTIONS, headers=reader).status_code == 200
    publishable = {"Authorization": f"Bearer {make_key(kind='publishable')}"}
    assert client.get(PROMOTIONS, headers=publishable).status_code == 403


def test_location_limited_key_cannot_change_pricing(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    from seamline.auth import service as keys

    with db.transaction() as session:
        _, token = keys.create_key(
            session, kind="secret", name="store", scopes=["pricing:write", "pricing:read"],
            location_ids=["loc_1"],
        )  # fmt: skip
    store = {"Authorization": f"Bearer {token}"}
    body = {"name": "S", "kind": "percentage", "value": 10}
    response = client.post(PROMOTIONS, json=body, headers=store)
    assert response.status_code == 403
    assert response.json()["code"] == "location_out_of_scope"
    assert client.get(PROMOTIONS, headers=store).status_code == 200
