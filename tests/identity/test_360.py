"""The customer 360: purchase metrics from both order sources, channels, preferences and the
advisor, current traits chosen in SQL, and an unmerge that gives both sides back exactly."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.events.outbox import emit
from seamline.identity import metrics, profiles
from seamline.identity.customer_models import CONSENT_CHANNELS, CustomerOrder
from seamline.identity.models import Profile, ProfileTrait
from seamline.identity.schemas import ContactChannel
from seamline.inventory.models import Location
from seamline.kit.clock import FrozenClock
from seamline.runtime import Runtime
from tests.identity.conftest import identifier, merges

Send = Callable[..., Any]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def view(client: TestClient, auth: dict[str, str], profile_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/profiles/{profile_id}", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def purchases(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["currency"]: p for p in body["metrics"]["purchases"]}


def completed(order_id: str, total: Any, currency: str | None = "EUR", **extra: Any) -> Any:
    properties = {"order_id": order_id, "total": total, **extra}
    if currency is not None:
        properties["currency"] = currency
    return properties


def track(
    send: Send, user: str, event: str, properties: dict[str, Any], minute: int, **kw: Any
) -> None:
    context = {"channel": kw.pop("channel")} if "channel" in kw else {}
    body = {"userId": user, "event": event, "properties": properties, "timestamp": at(minute)}
    response = send("track", {**body, "context": context, **kw})
    assert response.status_code == 200, response.text


def emit_domain(db: Database, event_type: str, payload: dict[str, Any]) -> str:
    with db.transaction() as session:
        return emit(
            session,
            event_type,
            aggregate_type="order",
            aggregate_id=str(payload.get("order_id", "x")),
            payload=payload,
        )


def drain(runtime: Runtime) -> None:
    runtime.worker().drain()


# -- money --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (29.99, "EUR", 2999),
        ("29.99", "EUR", 2999),
        (10.005, "EUR", 1001),  # half up
        (0.1 + 0.2, "USD", 30),  # a float's noise is rounded away
        (1500, "JPY", 1500),  # no minor unit
        (1.2345, "BHD", 1235),  # three decimals
        (0, "EUR", 0),
        (-1, "EUR", None),
        (True, "EUR", None),
        ("abc", "EUR", None),
        ("NaN", "EUR", None),
        ("1e30", "EUR", None),
        (None, "EUR", None),
    ],
)
def test_segment_amounts_become_minor_units(amount: Any, currency: str, minor: int | None) -> None:
    assert metrics.to_minor(amount, currency) == minor


def test_currency_codes() -> None:
    assert metrics.currency_code(" eur ") == "EUR"
    assert metrics.currency_code("XXQ") is None
    assert metrics.currency_code(978) is None


def test_contact_channels_match_consent_channels() -> None:
    assert get_args(ContactChannel) == CONSENT_CHANNELS


# -- metrics from tracked calls -----------------------------------------------------------------


def test_metrics_from_tracked_order_completed_calls(
    send: Send, client: TestClient, auth: dict[str, str], db: Database, runtime: Runtime
) -> None:
    track(send, "u1", "Order Completed", completed("1001", 29.99), 10, channel="web")
    track(send, "u1", "Order Completed", completed("1002", "10.005"), 30, channel="mobile")
    track(send, "u1", "Order Completed", completed("j-1", 1500, "JPY"), 20, channel="web")
    # The same order again (a client firing twice, another messageId): counted once.
    track(send, "u1", "Order Completed", completed("1001", 29.99), 11, channel="web")
    # Not counted: no currency, an unreadable total, no order id.
    track(send, "u1", "Order Completed", completed("1003", 5, None), 12)
    track(send, "u1", "Order Completed", completed("1004", "lots"), 12)
    track(send, "u1", "Order Completed", {"total": 5, "currency": "EUR"}, 12)
    track(send, "u1", "Product Viewed", {"sku": "S"}, 40, channel="pos")
    drain(runtime)

    profile = identifier(db, "user_id", "u1").profile_id
    body = view(client, auth, profile)
    eur, jpy = purchases(body)["EUR"], purchases(body)["JPY"]
    assert eur["first_purchase_at"].startswith("2026-03-01T00:10")
    assert eur["last_purchase_at"].startswith("2026-03-01T00:30")
    del eur["first_purchase_at"], eur["last_purchase_at"]
    assert eur == {
        "currency": "EUR",
        "orders_count": 2,
        "total_spent": 4000,
        "refunded": 0,
        "lifetime_value": 4000,
        "average_order_value": 2000,
    }
    assert (jpy["orders_count"], jpy["total_spent"], jpy["average_order_value"]) == (1, 1500, 1500)
    assert body["metrics"]["channels_used"] == ["mobile", "pos", "web"]
    assert body["metrics"]["channels_count"] == 3
    assert body["metrics"]["last_seen"]["web"].startswith("2026-03-01T00:20")
    assert body["metrics"]["last_seen"]["pos"].startswith("2026-03-01T00:40")

    # A redelivered call (same messageId) is deduplicated at ingestion: nothing changes.
    send("track", {"userId": "u1", "event": "X", "messageId": "m-1", "timestamp": at(50)})
    send("track", {"userId": "u1", "event": "X", "messageId": "m-1", "timestamp": at(50)})
    drain(runtime)
    assert purchases(view(client, auth, profile))["EUR"]["orders_count"] == 2


def test_metric_times_and_averages(
    send: Send, client: TestClient, auth: dict[str, str], db: Database, runtime: Runtime
) -> None:
    # Late arrival of an older order still moves "first purchase" back (event time).
    track(send, "u2", "Order Completed", completed("a", 10), 60)
    track(send, "u2", "Order Completed", completed("b", 10), 5)
    track(send, "u2", "Order Completed", completed("c", 10.01), 30)
    drain(runtime)
    eur = purchases(view(client, auth, identifier(db, "user_id", "u2").profile_id))["EUR"]
    assert eur["first_purchase_at"].startswith("2026-03-01T00:05")
    assert eur["last_purchase_at"].startswith("2026-03-01T01:00")
    assert eur["average_order_value"] == 1000  # 3001 / 3 = 1000.33


def test_partial_and_full_refunds(
    send: Send, client: TestClient, auth: dict[str, str], db: Database, runtime: Runtime
) -> None:
    track(send, "u3", "Order Completed", completed("r-1", "100.00"), 1)
    track(send, "u3", "Order Refunded", {"order_id": "r-1", "total": 30, "currency": "EUR"}, 2)
    drain(runtime)
    profile = identifier(db, "user_id", "u3").profile_id
    eur = purchases(view(client, auth, profile))["EUR"]
    assert (eur["total_spent"], eur["refunded"], eur["lifetime_value"]) == (10000, 3000, 7000)
    assert eur["orders_count"] == 1
    assert eur["average_order_value"] == 10000  # of what was spent, before refunds

    # A refund in another currency is not counted; an amount without currency is read in the
    # order's; a refund without an amount refunds the rest; nothing goes beyond the total.
    track(send, "u3", "Order Refunded", {"order_id": "r-1", "total": 5, "currency": "USD"}, 3)
    track(send, "u3", "Order Refunded", {"order_id": "r-1", "amount": "10.50"}, 4)
    drain(runtime)
    eur = purchases(view(client, auth, profile))["EUR"]
    assert (eur["refunded"], eur["lifetime_value"]) == (4050, 5950)
    track(send, "u3", "Order Refunded", {"order_id": "r-1"}, 5)
    track(send, "u3", "Order Refunded", {"order_id": "r-1", "total": 1}, 6)
    track(send, "u3", "Order Refunded", {"order_id": "unknown", "total": 1}, 6)
    drain(runtime)
    eur = purchases(view(client, auth, profile))["EUR"]
    assert (eur["refunded"], eur["lifetime_value"]) == (10000, 0)
    with db.transaction(readonly=True) as session:
        order = session.scalars(select(CustomerOrder)).one()
    assert (order.total_minor, order.refunded_minor) == (10000, 10000)


# -- both sources -------------------------------------------------------------------------------


def test_the_same_order_from_both_sources_counts_once(
    send: Send, client: TestClient, auth: dict[str, str], db: Database, runtime: Runtime
) -> None:
    # Tracked first (client-sent 50.00), then the order domain (server total 48.00): the
    # domain's figures replace the tracked ones.
    track(send, "u4", "Order Completed", completed("ord_1", "50.00"), 1, channel="web")
    drain(runtime)
    profile = identifier(db, "user_id", "u4").profile_id
    assert purchases(view(client, auth, profile))["EUR"]["total_spent"] == 5000
    placed = {
        "profile_id": profile,
        "order_id": "ord_1",
        "total_minor": 4800,
        "currency": "EUR",
        "channel": "web",
        "placed_at": at(1),
    }
    emit_domain(db, "order.placed", placed)
    drain(runtime)
    eur = purchases(view(client, auth, profile))["EUR"]
    assert (eur["orders_count"], eur["total_spent"]) == (1, 4800)

    # One refund reported by both: only the order's source (now the domain) counts.
    track(send, "u4", "Order Refunded", {"order_id": "ord_1", "total": 10, "currency": "EUR"}, 2)
    refund = {"profile_id": profile, "order_id": "ord_1", "amount_minor": 1000, "currency": "EUR"}
    emit_domain(db, "order.refunded", refund)
    drain(runtime)
    eur = purchases(view(client, auth, profile))["EUR"]
    assert (eur["orders_count"], eur["refunded"], eur["lifetime_value"]) == (1, 1000, 3800)

    # Domain first, tracked later: the tracked report is ignored.
    emit_domain(db, "order.placed", {**placed, "order_id": "ord_2", "total_minor": 2000})
    drain(runtime)
    track(send, "u4", "Order Completed", completed("ord_2", "99.00"), 3)
    drain(runtime)
    eur = purchases(view(client, auth, profile))["EUR"]
    assert (eur["orders_count"], eur["total_spent"]) == (2, 6800)
    with db.transaction(readonly=True) as session:
        sources = {o.order_key: o.source for o in session.scalars(select(CustomerOrder))}
    assert sources == {"ord_1": metrics.DOMAIN, "ord_2": metrics.DOMAIN}


def test_domain_order_moves_a_tracked_order_to_its_profile(
    send: Send, client: TestClient, auth: dict[str, str], db: Database, runtime: Runtime
) -> None:
    # A guest's tracked order, then the order domain attributes it to the account's profile.
    track(send, "guest", "Order Completed", completed("ord_9", 20), 1)
    track(send, "u5", "Order Completed", completed("ord_8", 10), 5)
    drain(runtime)
    guest = identifier(db, "user_id", "guest").profile_id
    account = identifier(db, "user_id", "u5").profile_id
    payload = {"profile_id": account, "order_id": "ord_9", "total_minor": 2000, "currency": "EUR"}
    emit_domain(db, "order.placed", {**payload, "placed_at": at(1)})
    drain(runtime)
    assert purchases(view(client, auth, guest)) == {}
    eur = purchases(view(client, auth, account))["EUR"]
    assert (eur["orders_count"], eur["total_spent"]) == (2, 3000)
    assert eur["first_purchase_at"].startswith("2026-03-01T00:01")


# -- unmerge ------------------------------------------------------------------------------------


def test_unmerge_restores_metrics_and_preferences_on_both_sides(
    send: Send,
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    runtime: Runtime,
    clock: FrozenClock,
) -> None:
    track(send, "ann", "Order Completed", completed("o-ann", 20), 1, channel="web")
    send(
        "track",
        {
            "anonymousId": "a2",
            "event": "Order Completed",
            "properties": completed("o-vis", 5),
            "context": {"channel": "mobile"},
            "timestamp": at(2),
        },
    )
    send("track", {"anonymousId": "a2", "event": "Browse", "timestamp": at(6)})
    drain(runtime)
    ann = identifier(db, "user_id", "ann").profile_id
    visitor = identifier(db, "anonymous_id", "a2").profile_id
    put = client.put(f"/api/v1/profiles/{ann}/preferences", json={"size": "M"}, headers=auth)
    assert put.status_code == 200, put.text
    clock.advance(minutes=1)
    put = client.put(f"/api/v1/profiles/{visitor}/preferences", json={"size": "S"}, headers=auth)
    assert put.status_code == 200, put.text
    drain(runtime)
    before = {ann: view(client, auth, ann), visitor: view(client, auth, visitor)}

    link = {"userId": "ann", "anonymousId": "a2", "event": "Linked", "messageId": "m-link"}
    send("track", {**link, "timestamp": at(4)})
    drain(runtime)
    merged = view(client, auth, visitor)
    assert merged["cluster_id"] == before[ann]["cluster_id"]
    eur = purchases(merged)["EUR"]
    assert (eur["orders_count"], eur["total_spent"]) == (2, 2500)
    assert merged["metrics"]["channels_used"] == ["mobile", "web"]
    assert merged["preferences"]["size"] == "S"  # the latest setting across the cluster

    merge = next(m for m in merges(db) if m.trigger_message_id == "m-link")
    response = client.post(
        f"/api/v1/profiles/{visitor}/unmerge",
        json={"merge_id": merge.id, "reason": "two people"},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    drain(runtime)
    for profile_id, old in before.items():
        new = view(client, auth, profile_id)
        for field in ("cluster_id", "profile_ids", "metrics", "preferences", "advisor", "traits"):
            assert new[field] == old[field], field
        # The one new fact is the linking call, on the profile it arrived on.
        events = [e for e in new["events"] if e.get("message_id") != "m-link"]
        assert events == old["events"]


# -- preferences --------------------------------------------------------------------------------


def store(db: Database, location_id: str = "loc_store1") -> str:
    with db.transaction() as session:
        session.add(
            Location(
                id=location_id,
                kind="store",
                name="Main Street",
                handle=location_id,
                country="GB",
                time_zone="Europe/London",
            )
        )
    return location_id


def test_preferences_and_advisor(
    send: Send,
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    runtime: Runtime,
    clock: FrozenClock,
) -> None:
    send("identify", {"userId": "p1", "timestamp": at(0)})
    profile = identifier(db, "user_id", "p1").profile_id
    shop = store(db)
    url = f"/api/v1/profiles/{profile}/preferences"
    body = {
        "size": " M ",
        "favourite_store": shop,
        "preferred_channel": "whatsapp",
        "advisor": {"staff_id": "stf_42", "name": "Maya Lind"},
    }
    response = client.put(url, json=body, headers=auth)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["preferences"]["size"] == "M"
    assert answer["preferences"]["favourite_store"] == shop
    assert answer["preferences"]["preferred_channel"] == "whatsapp"
    assert answer["advisor"]["staff_id"] == "stf_42"
    assert answer["advisor"]["name"] == "Maya Lind"
    assert answer["advisor"]["assigned_by"]

    # Fields left out stay; null clears.
    clock.advance(minutes=1)
    response = client.put(url, json={"advisor": None, "size": "L"}, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["advisor"] is None
    assert response.json()["preferences"]["size"] == "L"
    assert response.json()["preferences"]["preferred_channel"] == "whatsapp"
    body360 = view(client, auth, profile)
    assert body360["preferences"] == response.json()["preferences"]
    assert body360["advisor"] is None

    with db.transaction(readonly=True) as session:
        kinds = [e.type for e in session.scalars(select(OutboxEvent))]
    assert kinds.count("profile.preferences_changed") == 2
    drain(runtime)
    page = client.get(
        f"/api/v1/profiles/{profile}/timeline",
        params={"type": "profile.preferences_changed"},
        headers=auth,
    ).json()["data"]
    assert [e["summary"] for e in page] == [
        "Preferences changed: advisor, size",
        "Preferences changed: advisor, favourite_store, preferred_channel, size",
    ]
    assert page[0]["data"]["changed"] == {"advisor": None, "size": "L"}


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        ({"favourite_store": "loc_nowhere"}, 422, "body.favourite_store"),
        ({"preferred_channel": "pigeon"}, 422, "body.preferred_channel"),
        ({"size": "   "}, 422, "body.size"),
        ({"size": "x" * 41}, 422, "body.size"),
        ({"advisor": {"staff_id": "s1"}}, 422, "body.advisor.name"),
        ({"advisor": {"staff_id": "s 1", "name": "A"}}, 422, "body.advisor.staff_id"),
        ({"colour": "red"}, 422, "body.colour"),
    ],
)
def test_preferences_validation(
    send: Send,
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    body: dict[str, Any],
    status: int,
    path: str,
) -> None:
    send("identify", {"userId": "p2", "timestamp": at(0)})
    profile = identifier(db, "user_id", "p2").profile_id
    response = client.put(f"/api/v1/profiles/{profile}/preferences", json=body, headers=auth)
    assert response.status_code == status, response.text
    assert path in [e["path"] for e in response.json()["errors"]], response.text
    assert view(client, auth, profile)["preferences"]["size"] is None


def test_preferences_of_an_unknown_profile_and_without_scope(
    client: TestClient, auth: dict[str, str], make_key: Callable[..., str]
) -> None:
    response = client.put("/api/v1/profiles/prf_nope/preferences", json={}, headers=auth)
    assert response.status_code == 404
    assert response.json()["code"] == "profile_not_found"
    reader = {"Authorization": f"Bearer {make_key(scopes=['customers:read'])}"}
    response = client.put("/api/v1/profiles/prf_nope/preferences", json={}, headers=reader)
    assert response.status_code == 403


# -- traits chosen in SQL -----------------------------------------------------------------------


def test_sql_trait_choice_matches_the_reference_rule(db: Database) -> None:
    """current_traits (one window query) picks what resolve_traits (Python) picks."""
    rng = random.Random(4)
    with db.transaction() as session:
        members = [f"prf_t{i}" for i in range(3)]
        for pid in members:
            session.add(Profile(id=pid, cluster_id=members[0]))
        session.flush()
        for n in range(300):
            session.add(
                ProfileTrait(
                    profile_id=rng.choice(members),
                    id=f"trt_{n:05d}",
                    name=rng.choice(["first_name", "plan", "created_at", "city"]),
                    value=rng.choice([None, "a", "b", 3, {"x": 1}, [1, 2], "", [], {}]),
                    source="test",
                    # Few distinct times, so ties are common.
                    observed_at=T0 + timedelta(minutes=rng.randrange(6)),
                    event_id=None,
                )
            )
    with db.transaction(readonly=True) as session:
        rows = list(session.scalars(select(ProfileTrait)))
        assert profiles.current_traits(session, members) == profiles.resolve_traits(rows)
        assert profiles.current_traits(session, members[1:2]) == profiles.resolve_traits(
            [r for r in rows if r.profile_id == members[1]]
        )


def test_360_of_an_unknown_profile(client: TestClient, auth: dict[str, str]) -> None:
    for missing in ("prf_missing", "x" * 40):
        response = client.get(f"/api/v1/profiles/{missing}", headers=auth)
        assert response.status_code == 404
        assert response.json()["code"] == "profile_not_found"


@pytest.mark.postgres_only
def test_the_one_statement_360_matches_the_reference_read(
    send: Send, client: TestClient, auth: dict[str, str], db: Database, runtime: Runtime
) -> None:
    """PostgreSQL answers the 360 with one statement (SQL_360) that repeats the rules of the
    reference read (traits, consent, metrics, channels, timeline): the two must agree."""
    from seamline.identity import customer360
    from seamline.identity.schemas import ProfileOut

    send("page", {"anonymousId": "a-1", "name": "Home", "timestamp": at(0)})
    traits = {"email": "Ann@Example.com", "first_name": "Ann", "plan": "free", "score": 1.5}
    send("identify", {"userId": "u-1", "anonymousId": "a-1", "traits": traits, "timestamp": at(1)})
    send("identify", {"userId": "u-1", "traits": {"plan": "", "city": "Köln"}, "timestamp": at(2)})
    track(send, "u-1", "Order Completed", completed("o-1", 49.99), 3, channel="web")
    track(send, "u-1", "Order Completed", completed("o-2", 12, "USD"), 4, channel="app")
    track(send, "u-1", "Order Refunded", {"order_id": "o-1", "total": 10}, 5)
    profile = identifier(db, "user_id", "u-1").profile_id
    change = {
        "channel": "email",
        "purpose": "marketing",
        "state": "granted",
        "level": "single",
        "source": "test",
    }
    r = client.post(f"/api/v1/profiles/{profile}/consent", json={"changes": [change]}, headers=auth)
    assert r.status_code == 200, r.text
    r = client.put(
        f"/api/v1/profiles/{profile}/preferences",
        json={"size": "M", "advisor": {"staff_id": "stf_1", "name": "Maya"}},
        headers=auth,
    )
    assert r.status_code == 200, r.text
    runtime.worker().drain()
    for someone in (profile, identifier(db, "anonymous_id", "a-1").profile_id):
        with db.transaction(readonly=True) as session:
            reference = ProfileOut.model_validate(customer360.customer_360(session, someone))
        with db.engine.connect() as connection:
            one = ProfileOut.model_validate_json(customer360.customer_360_json(connection, someone))
        assert one == reference
    assert reference.consent  # the comparison covered a non-empty document
    assert reference.events
    assert reference.metrics.purchases
