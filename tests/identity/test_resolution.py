"""Identity resolution: merges with evidence, the unique-kind rule, order independence."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from seamline.db.engine import Database
from seamline.events.models import Delivery, OutboxEvent
from seamline.identity import ingest, wire
from seamline.identity.models import (
    Identifier,
    IdentityLink,
    Profile,
    ProfileMerge,
    ProfileTrait,
    TrackedEvent,
)
from seamline.identity.rules import Edge, partition
from tests.identity.conftest import cluster_of, events, identifier, merges
from tests.identity.conftest import partition as stored_partition

Send = Callable[..., Any]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def test_identify_merges_anonymous_history_with_evidence(send: Send, db: Database) -> None:
    send("page", {"anonymousId": "a1", "name": "Home", "timestamp": at(0)})
    body = {"userId": "u1", "anonymousId": "a1", "messageId": "m-id", "timestamp": at(1)}
    send("identify", {**body, "traits": {"email": "Ann@Example.com"}})
    assert cluster_of(db, "anonymous_id", "a1") == cluster_of(db, "user_id", "u1")
    assert cluster_of(db, "email", "ann@example.com") == cluster_of(db, "user_id", "u1")
    # The cluster is named by its user id's profile, and events stay where they arrived.
    assert cluster_of(db, "user_id", "u1") == identifier(db, "user_id", "u1").profile_id
    page, ident = sorted(events(db), key=lambda e: e.timestamp)
    assert page.profile_id == identifier(db, "anonymous_id", "a1").profile_id
    assert ident.profile_id == identifier(db, "user_id", "u1").profile_id
    recorded = merges(db)
    assert len(recorded) == 2
    assert {m.trigger for m in recorded} == {"identify"}
    assert {m.trigger_message_id for m in recorded} == {"m-id"}
    assert all(m.evidence["message_id"] == "m-id" and m.undone_at is None for m in recorded)
    with db.transaction(readonly=True) as session:
        emitted = session.scalars(select(OutboxEvent).where(OutboxEvent.type == "profile.merged"))
        assert len(list(emitted)) == 2


def test_two_accounts_on_one_device_stay_two(send: Send, db: Database) -> None:
    device = {"device": {"id": "family-tablet"}}
    send("identify", {"userId": "ann", "anonymousId": "tab", "context": device, "timestamp": at(0)})
    send("track", {"anonymousId": "tab", "event": "Browse", "timestamp": at(1)})
    send("identify", {"userId": "bob", "anonymousId": "tab", "context": device, "timestamp": at(2)})
    ann, bob = cluster_of(db, "user_id", "ann"), cluster_of(db, "user_id", "bob")
    assert ann != bob
    # The device and its anonymous id follow the most recent account.
    assert cluster_of(db, "anonymous_id", "tab") == bob
    assert cluster_of(db, "device_id", "family-tablet") == bob
    # What happened is on record: the old pointer superseded, the refused link marked.
    undone = [m for m in merges(db) if m.undone_at is not None]
    assert undone
    assert {m.undone_reason for m in undone} == {"superseded"}
    with db.transaction(readonly=True) as session:
        decisions = set(session.scalars(select(IdentityLink.decision)))
        kinds = {e.type for e in session.scalars(select(OutboxEvent))}
    assert decisions == {"linked", "refused"}
    assert "profile.unmerged" in kinds
    # Events never move.
    assert len({e.profile_id for e in events(db)}) == 3


def test_late_older_call_does_not_take_the_device_back(send: Send, db: Database) -> None:
    send("identify", {"userId": "bob", "anonymousId": "tab", "timestamp": at(2)})
    send("identify", {"userId": "ann", "anonymousId": "tab", "timestamp": at(0)})  # arrives late
    assert cluster_of(db, "anonymous_id", "tab") == cluster_of(db, "user_id", "bob")
    assert cluster_of(db, "user_id", "ann") != cluster_of(db, "user_id", "bob")


def test_loyalty_cards_are_unique_per_cluster(send: Send, db: Database) -> None:
    send("identify", {"anonymousId": "a1", "traits": {"loyalty_card": "L-1"}, "timestamp": at(0)})
    send("identify", {"anonymousId": "a1", "traits": {"loyalty_card": "L-2"}, "timestamp": at(1)})
    assert cluster_of(db, "loyalty_card", "L1") != cluster_of(db, "loyalty_card", "L2")
    assert cluster_of(db, "anonymous_id", "a1") == cluster_of(db, "loyalty_card", "L2")


def test_alias_joins_previous_id_to_user(send: Send, db: Database) -> None:
    send("track", {"anonymousId": "visitor", "event": "x", "timestamp": at(0)})
    send("alias", {"userId": "u9", "previousId": "visitor", "timestamp": at(1)})
    assert cluster_of(db, "anonymous_id", "visitor") == cluster_of(db, "user_id", "u9")


# -- order independence ----------------------------------------------------------------------


def test_pure_rule_ignores_edge_order() -> None:
    rng = random.Random(7)
    keys = [("user_id", "u1"), ("user_id", "u2"), ("anonymous_id", "a"), ("email", "e")]
    profiles = {f"p{i}": [k] for i, k in enumerate(keys)}
    edges = [
        Edge(keys[2], keys[0], T0, "m1"),
        Edge(keys[2], keys[1], T0 + timedelta(1), "m2"),
        Edge(keys[3], keys[0], T0, "m3"),
        Edge(keys[3], keys[2], T0, "m4"),
    ]
    first = partition(profiles, edges).canonical
    for _ in range(20):
        rng.shuffle(edges)
        assert partition(profiles, edges).canonical == first
    assert first["p2"] == first["p1"]  # the anonymous id goes with the most recent account


USERS = st.sampled_from(["u1", "u2", "u3"])
ANONYMOUS = st.sampled_from(["a1", "a2", "a3"])
EMAILS = st.sampled_from(["e1@example.com", "e2@example.com"])
CARDS = st.sampled_from(["L1", "L2"])


@st.composite
def identity_calls(draw: st.DrawFn) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for index in range(draw(st.integers(1, 7))):
        call: dict[str, Any] = {
            "messageId": f"m{index}",
            "timestamp": at(draw(st.integers(0, 3))),  # few distinct times: ties happen
        }
        if draw(st.booleans()):
            call.update(type="alias", userId=draw(USERS), previousId=draw(ANONYMOUS))
        else:
            call["type"] = "identify"
            if draw(st.booleans()):
                call["userId"] = draw(USERS)
            call["anonymousId"] = draw(ANONYMOUS)
            traits: dict[str, Any] = {}
            if draw(st.booleans()):
                traits["email"] = draw(EMAILS)
            if draw(st.booleans()):
                traits["loyalty_card"] = draw(CARDS)
            call["traits"] = traits
        calls.append(call)
    return calls


def _reset(db: Database) -> None:
    with db.transaction() as session:
        for model in (TrackedEvent, ProfileTrait, ProfileMerge, IdentityLink, Identifier):
            session.execute(delete(model))
        session.execute(delete(Profile))
        session.execute(delete(Delivery))
        session.execute(delete(OutboxEvent))


def _ingest_one_by_one(db: Database, calls: list[dict[str, Any]], key_id: str) -> None:
    for call in calls:
        incoming = wire.validate_call(call, None)
        with db.transaction() as session:
            ingest.record_calls(session, [incoming], key_id=key_id, received_at=T0)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(calls=identity_calls(), seed=st.randoms(use_true_random=False))
def test_same_calls_give_same_clusters_in_any_order(
    db: Database, calls: list[dict[str, Any]], seed: random.Random
) -> None:
    _reset(db)
    _ingest_one_by_one(db, calls, "key_a")
    expected = stored_partition(db)
    shuffled = list(calls)
    seed.shuffle(shuffled)
    _reset(db)
    _ingest_one_by_one(db, shuffled, "key_a")
    assert stored_partition(db) == expected
    # A batch resolves once, after all its links: the same clusters as call by call.
    _reset(db)
    with db.transaction() as session:
        batch = [wire.validate_call(call, None) for call in shuffled]
        ingest.record_calls(session, batch, key_id="key_a", received_at=T0)
    assert stored_partition(db) == expected
    # No cluster ever holds two user ids or two loyalty cards.
    for cluster in expected:
        for kind in ("user_id", "loyalty_card"):
            assert len([k for k, _ in cluster if k == kind]) <= 1


def test_a_batch_credits_each_merge_to_the_call_that_brought_it(db: Database) -> None:
    """One resolution per batch, yet every merge names the call whose link it rests on."""
    calls = [
        {"type": "page", "anonymousId": "a1", "messageId": "p1", "timestamp": at(0)},
        {"type": "page", "anonymousId": "a2", "messageId": "p2", "timestamp": at(1)},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "i1"},
        {"type": "alias", "userId": "u2", "previousId": "a2", "messageId": "al2"},
    ]
    calls[2]["timestamp"], calls[3]["timestamp"] = at(2), at(3)
    with db.transaction() as session:
        result = ingest.record_calls(
            session, [wire.validate_call(c, None) for c in calls], key_id="k", received_at=T0
        )
    assert result.resolved == 2
    recorded = {(m.trigger, m.trigger_message_id) for m in merges(db)}
    assert recorded == {("identify", "i1"), ("alias", "al2")}
    assert cluster_of(db, "anonymous_id", "a1") == cluster_of(db, "user_id", "u1")
    assert cluster_of(db, "anonymous_id", "a2") == cluster_of(db, "user_id", "u2")
    assert cluster_of(db, "user_id", "u1") != cluster_of(db, "user_id", "u2")
    # Calls that only repeat a settled pair resolve nothing.
    again = {"type": "track", "event": "Viewed", "userId": "u1", "anonymousId": "a1"}
    with db.transaction() as session:
        result = ingest.record_calls(
            session,
            [wire.validate_call({**again, "messageId": "t1", "timestamp": at(5)}, None)],
            key_id="k",
            received_at=T0,
        )
    assert result.resolved == 0
    assert len(merges(db)) == 2


@pytest.mark.postgres_only
def test_concurrent_deliveries_of_one_message_store_it_once(db: Database) -> None:
    """Both requests pass the duplicate check; the second one's COPY meets the first one's row
    on the unique index, rolls back to its savepoint and lets ON CONFLICT decide."""
    call = {"type": "track", "event": "Viewed", "anonymousId": "a1", "messageId": "same"}
    incoming = [wire.validate_call({**call, "timestamp": at(0)}, None)]
    first = db.sessions()
    first.begin()
    ingest.record_calls(first, incoming, key_id="k", received_at=T0)  # not committed yet
    outcome: dict[str, ingest.IngestResult] = {}

    def second() -> None:
        with db.transaction() as session:
            outcome["second"] = ingest.record_calls(session, incoming, key_id="k", received_at=T0)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)  # the second COPY now waits on the first transaction's index entry
    first.commit()
    first.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert outcome["second"].stored == []
    assert outcome["second"].duplicates == 1
    assert [e.message_id for e in events(db)] == ["same"]
