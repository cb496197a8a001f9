"""The timeline: domain events become entries on the right profile exactly once, and the
route pages tracked calls and domain events in one cursor order, with filters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from seamline.db.engine import Database
from seamline.events import registry
from seamline.events.models import Delivery, OutboxEvent
from seamline.events.outbox import emit
from seamline.events.registry import Event
from seamline.events.worker import to_event
from seamline.identity import handlers, timeline
from seamline.identity.customer_models import (
    ChannelActivity,
    CustomerOrder,
    ProfileMetric,
    TimelineEntry,
)
from seamline.identity.ingest import EVENT_TRACKED
from seamline.runtime import Runtime
from tests.identity.conftest import identifier

Send = Callable[..., Any]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def emit_event(
    db: Database, event_type: str, payload: dict[str, Any], aggregate: str = "ord_1"
) -> str:
    with db.transaction() as session:
        return emit(
            session,
            event_type,
            aggregate_type=event_type.split(".")[0],
            aggregate_id=aggregate,
            payload=payload,
        )


def entries(db: Database) -> list[TimelineEntry]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(TimelineEntry).order_by(TimelineEntry.occurred_at)))


def timeline_of(
    client: TestClient, auth: dict[str, str], profile_id: str, **params: Any
) -> list[dict[str, Any]]:
    """Every page, following the cursor."""
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"/api/v1/profiles/{profile_id}/timeline", params=query, headers=auth)
        assert response.status_code == 200, response.text
        seen += response.json()["data"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return seen


@pytest.fixture
def customer(send: Send, db: Database) -> str:
    send("identify", {"userId": "t1", "timestamp": at(0)})
    return identifier(db, "user_id", "t1").profile_id


def test_domain_events_land_once_even_when_delivered_twice(
    db: Database, runtime: Runtime, customer: str
) -> None:
    placed = {
        "profile_id": customer,
        "order_id": "ord_1",
        "total_minor": 1250,
        "currency": "EUR",
        "channel": "pos",
        "occurred_at": at(5),
    }
    event_id = emit_event(db, "order.placed", placed)
    runtime.worker().drain()
    # Deliver it again (as a replay would) and call the handler directly once more.
    with db.transaction() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.consumer == "identity.timeline")
            .values(status="pending", done_at=None)
        )
    runtime.worker().drain()
    with db.transaction() as session:
        stored = session.scalars(select(TimelineEntry)).one()
        handlers.domain_event(
            session,
            Event(event_id, 0, "order.placed", "order", "ord_1", placed, stored.occurred_at),
        )
    [entry] = entries(db)
    assert entry.event_id == event_id
    assert entry.profile_id == customer
    assert entry.type == "order.placed"
    assert entry.summary == "Order ord_1 placed, €12.50"
    assert entry.channel == "pos"
    assert entry.occurred_at == T0 + timedelta(minutes=5)
    assert (entry.aggregate_type, entry.aggregate_id) == ("order", "ord_1")
    assert entry.data == placed
    with db.transaction(readonly=True) as session:
        activity = session.scalars(select(ChannelActivity)).one()
    assert (activity.channel, activity.events_count) == ("pos", 1)


def test_which_events_reach_the_timeline(
    db: Database, runtime: Runtime, customer: str, send: Send
) -> None:
    emit_event(db, "cart.abandoned", {"profile_id": customer, "cart_id": "crt_1"}, "crt_1")
    emit_event(db, "order.ready_for_pickup", {"profile_id": customer, "order_id": "ord_2"})
    emit_event(
        db,
        "consent.changed",
        {
            "profile_id": customer,
            "channel": "email",
            "purpose": "marketing",
            "state": "granted",
        },
    )
    emit_event(db, "message.sent", {"profile_id": customer, "channel": "sms"})
    # Not on the timeline: no profile, an unknown profile, a type outside the contract, the
    # tracked call itself (already on the timeline as a tracked event).
    emit_event(db, "order.placed", {"order_id": "ord_3"})
    emit_event(db, "order.placed", {"profile_id": "prf_nobody", "order_id": "ord_4"})
    emit_event(db, "inventory.changed", {"profile_id": customer})
    emit_event(db, "profile.merged", {"profile_id": customer})
    send("track", {"userId": "t1", "event": "Viewed", "timestamp": at(1)})
    runtime.worker().drain()
    assert [e.summary for e in entries(db)] == [
        "Cart crt_1 abandoned",
        "Order ord_2 ready for pickup",
        "Consent granted for marketing email",
        "Message sent by sms",
    ]
    with db.transaction(readonly=True) as session:
        failed = session.scalars(select(Delivery).where(Delivery.status != "done")).all()
        # A message sent to the customer is not the customer's activity on that channel.
        channels = list(session.scalars(select(ChannelActivity.channel)))
    assert failed == []
    assert channels == []


def _derived_rows(db: Database) -> list[tuple[str, int]]:
    """How many rows each table the two identity consumers write holds."""
    tables = (TimelineEntry, ChannelActivity, ProfileMetric, CustomerOrder)
    with db.transaction(readonly=True) as session:
        return [
            (t.__tablename__, session.scalar(select(func.count()).select_from(t)) or 0)
            for t in tables
        ]


def test_events_a_consumer_refuses_get_no_delivery_and_would_change_nothing(
    db: Database, runtime: Runtime, customer: str, send: Send
) -> None:
    """``identity.tracked`` takes only Segment order/refund calls, ``identity.timeline`` only
    events naming a profile: their ``when``. Every payload the
    ``when`` refuses changes nothing when handed to the handler anyway."""
    completed = {"order_id": "so1", "currency": "EUR", "total": 12.5}
    send("page", {"userId": "t1", "name": "Home", "timestamp": at(1)})
    send("track", {"userId": "t1", "event": "Viewed", "timestamp": at(2)})
    send(
        "screen",
        {"userId": "t1", "name": "Feed", "timestamp": at(3), "context": {"channel": "app"}},
    )
    send(
        "track",
        {"userId": "t1", "event": "Order Completed", "properties": completed, "timestamp": at(4)},
    )
    emit_event(db, "cart.created", {"cart_id": "crt_anon"}, "crt_anon")
    emit_event(db, "cart.created", {"cart_id": "crt_1", "profile_id": customer}, "crt_1")
    with db.transaction(readonly=True) as session:
        delivered = sorted(
            (consumer, str(payload.get("type") or payload.get("cart_id")))
            for consumer, payload in session.execute(
                select(Delivery.consumer, OutboxEvent.payload)
                .join(OutboxEvent, OutboxEvent.seq == Delivery.event_seq)
                .where(Delivery.consumer.in_([handlers.TRACKED, handlers.TIMELINE]))
            )
        )
    assert delivered == [
        (handlers.TIMELINE, "crt_1"),
        (handlers.TRACKED, "track"),  # Order Completed
    ]
    # Every call's channel is counted with the call itself: the screen's app, nothing else.
    with db.transaction(readonly=True) as session:
        counted = session.execute(select(ChannelActivity.channel, ChannelActivity.events_count))
        assert counted.all() == [("app", 1)]
    runtime.worker().drain()
    before = _derived_rows(db)
    assert dict(before)["customer_orders"] == 1
    refused_tracked = [
        {"type": "page", "name": "Home", "profile_id": customer, "timestamp": at(5)},
        {
            "type": "track",
            "name": "Viewed",
            "profile_id": customer,
            "timestamp": at(5),
            "channel": "",
        },
        {"type": "track", "name": "Order Completed", "timestamp": at(5)},  # no profile
        {
            "type": "track",
            "name": "Order Completed",
            "profile_id": customer,
            "timestamp": "yesterday",
        },
        {
            "type": "page",
            "name": ["Order Completed"],
            "profile_id": customer,
            "timestamp": at(5),
            "channel": "x" * 41,
        },
        {"type": "screen", "name": "Order Refunded", "profile_id": customer, "timestamp": at(5)},
        {
            "type": "screen",
            "name": "Feed",
            "profile_id": customer,
            "timestamp": at(5),
            "channel": "app",
        },
    ]
    refused_timeline = [
        {"cart_id": "crt_2"},
        {"profile_id": "", "profile_ids": []},
        {"profile_id": "p" * 41, "profile_ids": [None, 7], "channel": "web"},
    ]
    tracked = registry.consumer(handlers.TRACKED)
    on_timeline = registry.consumer(handlers.TIMELINE)
    assert tracked is not None
    assert tracked.when is not None
    assert on_timeline is not None
    assert on_timeline.when is not None
    for n, payload in enumerate(refused_tracked):
        assert not tracked.when(payload)
        with db.transaction() as session:
            handlers.tracked_call(
                session,
                Event(f"evt_r{n}", 900 + n, EVENT_TRACKED, "profile", customer, payload, T0),
            )
    for n, payload in enumerate(refused_timeline):
        assert not on_timeline.when(payload)
        with db.transaction() as session:
            handlers.domain_event(
                session,
                Event(
                    f"evt_t{n}",
                    950 + n,
                    "order.placed",
                    "order",
                    "o9",
                    {**payload, "order_id": "o9", "total_minor": 5, "currency": "EUR"},
                    T0,
                ),
            )
    assert _derived_rows(db) == before


def test_an_event_may_name_several_profiles(
    db: Database, runtime: Runtime, customer: str, send: Send
) -> None:
    send("identify", {"userId": "t2", "timestamp": at(0)})
    other = identifier(db, "user_id", "t2").profile_id
    payload = {"profile_id": customer, "profile_ids": [other, customer], "cart_id": "crt_9"}
    emit_event(db, "cart.merged", payload, "crt_9")
    runtime.worker().drain()
    assert sorted(e.profile_id for e in entries(db)) == sorted([customer, other])


def test_summaries() -> None:
    assert timeline.summarize("order.refunded", {"order_id": "o1"}) == "Order o1 refunded"
    assert (
        timeline.summarize(
            "order.refunded", {"order_id": "o1", "amount_minor": 500, "currency": "JPY"}
        )
        == "Refund of ¥500 on order o1"
    )
    assert timeline.summarize("loyalty.points_earned", {"points": 120}) == "Earned 120 points"
    assert timeline.summarize("return.received", {"return_id": "ret_1"}) == "Return ret_1 received"
    assert timeline.summarize("payment.failed", {}) == "Payment failed"
    assert timeline.summarize("conversation.opened", {"channel": "\x00"}) == "Conversation opened"
    assert len(timeline.summarize("order.placed", {"order_id": "x" * 500})) <= 255
    assert timeline.tracked_summary("page", "Home") == "Viewed page Home"
    assert timeline.tracked_summary("identify", None) == "Identified"


def test_timeline_pages_both_sources_in_one_order_with_filters(
    send: Send,
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    runtime: Runtime,
    customer: str,
) -> None:
    for minute in range(1, 8):
        context = {"channel": "pos" if minute % 2 else "web"}
        body = {"userId": "t1", "event": f"E{minute}", "context": context, "timestamp": at(minute)}
        send("track", body)
    for minute in (2, 4, 4, 9):  # one shares a tracked call's exact time
        emit_event(
            db,
            "order.placed" if minute != 9 else "cart.abandoned",
            {
                "profile_id": customer,
                "order_id": f"ord_{minute}",
                "total_minor": 100,
                "currency": "EUR",
                "channel": "pos",
                "occurred_at": at(minute),
            },
            aggregate=f"ord_{minute}",
        )
    runtime.worker().drain()

    everything = timeline_of(client, auth, customer, limit=3)
    keys = [(e["timestamp"], e["id"]) for e in everything]
    assert keys == sorted(keys, reverse=True)
    assert len(set(keys)) == len(keys) == 8 + 4  # 7 tracks + the identify + 4 domain events
    assert everything[0]["kind"] == "domain"
    assert everything[0]["type"] == "cart.abandoned"
    assert everything[-1]["summary"] == "Identified"
    # Every page size gives the same sequence.
    for limit in (1, 2, 5, 200):
        assert timeline_of(client, auth, customer, limit=limit) == everything

    domain = timeline_of(client, auth, customer, kind="domain", limit=2)
    assert [e["type"] for e in domain] == ["cart.abandoned"] + ["order.placed"] * 3
    assert all(e["message_id"] is None and e["event_id"] for e in domain)
    placed = timeline_of(client, auth, customer, type="order.placed")
    assert [e["data"]["order_id"] for e in placed] == ["ord_4", "ord_4", "ord_2"]
    tracked = timeline_of(client, auth, customer, kind="tracked")
    assert len(tracked) == 8
    assert all(e["kind"] == "tracked" for e in tracked)
    tracks_on_pos = timeline_of(client, auth, customer, type="track", channel="pos")
    assert [e["name"] for e in tracks_on_pos] == ["E7", "E5", "E3", "E1"]
    on_pos = timeline_of(client, auth, customer, channel="pos", limit=2)
    assert len(on_pos) == 4 + 4
    assert timeline_of(client, auth, customer, type="track", kind="domain") == []

    # The 360 shows the latest 20 items of both kinds.
    latest = client.get(f"/api/v1/profiles/{customer}", headers=auth).json()["events"]
    assert latest == everything


def test_the_timeline_reads_the_whole_cluster(
    send: Send, client: TestClient, auth: dict[str, str], db: Database, runtime: Runtime
) -> None:
    send("identify", {"userId": "c1", "anonymousId": "c-anon", "timestamp": at(0)})
    user = identifier(db, "user_id", "c1").profile_id
    anonymous = identifier(db, "anonymous_id", "c-anon").profile_id
    emit_event(db, "cart.created", {"profile_id": anonymous, "occurred_at": at(1)}, "crt_a")
    emit_event(db, "cart.created", {"profile_id": user, "occurred_at": at(2)}, "crt_b")
    runtime.worker().drain()
    items = timeline_of(client, auth, user, limit=1)
    assert [e["profile_id"] for e in items if e["kind"] == "domain"] == [user, anonymous]
    assert items == timeline_of(client, auth, anonymous)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"cursor": "99999999999999999999_x"}, 400),
        ({"cursor": "-99999999999999999999_x"}, 400),
        ({"cursor": "12_"}, 422),
        ({"kind": "both"}, 422),
        ({"type": "Order Completed"}, 422),
        ({"type": "order."}, 422),
        ({"limit": 0}, 422),
    ],
)
def test_timeline_refuses_bad_parameters(
    client: TestClient, auth: dict[str, str], customer: str, params: dict[str, Any], status: int
) -> None:
    response = client.get(f"/api/v1/profiles/{customer}/timeline", params=params, headers=auth)
    assert response.status_code == status, response.text


def test_cursor_is_exact_to_the_microsecond() -> None:
    moment = datetime(2026, 3, 1, 12, 0, 0, 999_999, tzinfo=UTC)
    assert timeline.decode_cursor(timeline.encode_cursor(moment, "tev_1")) == (moment, "tev_1")
    early = datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC)
    assert timeline.decode_cursor(timeline.encode_cursor(early, "tle_1")) == (early, "tle_1")


def test_unknown_profile_timeline(client: TestClient, auth: dict[str, str]) -> None:
    response = client.get("/api/v1/profiles/prf_nope/timeline", headers=auth)
    assert response.status_code == 404
    assert response.json()["code"] == "profile_not_found"


# -- the batch form (several events in one call) leaves what one by one leaves -----------------


def _scenario(first: str, second: str, tag: str) -> list[tuple[str, dict[str, Any]]]:
    """Domain events about two profiles: orders, a refund, activity on several channels (one
    earlier than the rest), an event naming both, a message (not activity), an unknown
    profile."""
    return [
        (
            "cart.created",
            {"profile_id": first, "cart_id": f"{tag}c", "channel": "web", "occurred_at": at(3)},
        ),
        (
            "order.placed",
            {
                "profile_id": first,
                "order_id": f"{tag}o1",
                "total_minor": 1250,
                "currency": "EUR",
                "channel": "pos",
                "occurred_at": at(5),
            },
        ),
        (
            "order.placed",
            {
                "profile_id": first,
                "order_id": f"{tag}o2",
                "total_minor": 990,
                "currency": "EUR",
                "channel": "web",
                "occurred_at": at(9),
            },
        ),
        (
            "order.refunded",
            {
                "profile_id": first,
                "order_id": f"{tag}o1",
                "amount_minor": 250,
                "currency": "EUR",
                "channel": "pos",
                "occurred_at": at(11),
            },
        ),
        (
            "cart.merged",
            {
                "profile_id": second,
                "profile_ids": [first],
                "cart_id": f"{tag}m",
                "channel": "app",
                "occurred_at": at(12),
            },
        ),
        (
            "order.placed",
            {
                "profile_id": second,
                "order_id": f"{tag}o3",
                "total_minor": 500,
                "currency": "USD",
                "channel": "web",
                "occurred_at": at(1),
            },
        ),
        ("message.sent", {"profile_id": second, "channel": "sms", "occurred_at": at(13)}),
        (
            "order.placed",
            {
                "profile_id": "prf_nobody",
                "order_id": f"{tag}o4",
                "total_minor": 1,
                "currency": "EUR",
            },
        ),
    ]


def _derived(db: Database, roles: dict[str, str], tag: str) -> dict[str, Any]:
    """Everything the timeline handler wrote for ``roles`` (profile id → role), by role."""
    with db.transaction(readonly=True) as session:
        tl = sorted(
            (roles[e.profile_id], e.type, e.summary.replace(tag, "*"), e.channel, e.occurred_at)
            for e in session.scalars(
                select(TimelineEntry).where(TimelineEntry.profile_id.in_(roles))
            )
        )
        activity = sorted(
            (roles[a.profile_id], a.channel, a.first_seen, a.last_seen, a.events_count)
            for a in session.scalars(
                select(ChannelActivity).where(ChannelActivity.profile_id.in_(roles))
            )
        )
        spent = sorted(
            (
                roles[m.profile_id],
                m.currency,
                m.orders_count,
                m.total_spent_minor,
                m.refunded_minor,
                m.first_purchase_at,
                m.last_purchase_at,
            )
            for m in session.scalars(
                select(ProfileMetric).where(ProfileMetric.profile_id.in_(roles))
            )
        )
    return {"timeline": tl, "activity": activity, "metrics": spent}


def test_the_batch_form_leaves_what_one_event_at_a_time_leaves(db: Database, send: Send) -> None:
    ids = {}
    for user in ("ba1", "ba2", "bb1", "bb2"):
        send("identify", {"userId": user, "timestamp": at(0)})
        ids[user] = identifier(db, "user_id", user).profile_id
    stored: dict[str, list[Event]] = {}
    for tag, (first, second) in {"A": ("ba1", "ba2"), "B": ("bb1", "bb2")}.items():
        seqs = [
            emit_event(db, kind, payload, f"{tag}agg")
            for kind, payload in _scenario(ids[first], ids[second], tag)
        ]
        with db.transaction(readonly=True) as session:
            rows = session.scalars(
                select(OutboxEvent).where(OutboxEvent.id.in_(seqs)).order_by(OutboxEvent.seq)
            )
            stored[tag] = [to_event(row) for row in rows]
    # The order.placed of o2 was delivered once already (a redelivery must add nothing).
    for tag in ("A", "B"):
        with db.transaction() as session:
            handlers.domain_event(session, stored[tag][2])
    with db.transaction() as session:
        handlers.domain_events(session, stored["A"])
    for event in stored["B"]:
        with db.transaction() as session:
            handlers.domain_event(session, event)
    batch = _derived(db, {ids["ba1"]: "first", ids["ba2"]: "second"}, "A")
    one_by_one = _derived(db, {ids["bb1"]: "first", ids["bb2"]: "second"}, "B")
    assert batch == one_by_one
    assert [row[1:] for row in batch["activity"]] == [
        ("app", T0 + timedelta(minutes=12), T0 + timedelta(minutes=12), 1),
        ("pos", T0 + timedelta(minutes=5), T0 + timedelta(minutes=11), 2),
        ("web", T0 + timedelta(minutes=3), T0 + timedelta(minutes=9), 2),
        ("app", T0 + timedelta(minutes=12), T0 + timedelta(minutes=12), 1),
        ("web", T0 + timedelta(minutes=1), T0 + timedelta(minutes=1), 1),
    ]
    assert [row[:5] for row in batch["metrics"]] == [
        ("first", "EUR", 2, 2240, 250),
        ("second", "USD", 1, 500, 0),
    ]
    assert len(batch["timeline"]) == 8  # 5 on the first, 3 on the second (the merge on both)
