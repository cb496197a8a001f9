"""Queued ingestion (``ingest_mode = "queued"``): the answer comes after the validated calls are
in the inbox; the worker drains it through the same ``record_calls`` as sync mode."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from segment.analytics.client import Client as SegmentClient
from sqlalchemy import func, select

from seamline.db.engine import Database
from seamline.identity import ingest, ingest_queue
from seamline.identity.ingest_queue import IngestInbox
from seamline.identity.models import Identifier, Profile, ProfileMerge, TrackedEvent
from seamline.kit.clock import FrozenClock
from seamline.runtime import Runtime
from seamline.settings import Settings
from tests.identity.conftest import cluster_of, events, identifier

Send = Callable[..., Any]
T0 = "2026-03-01T10:00:00+00:00"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ingest_mode": "queued"})


def set_mode(client: TestClient, mode: str) -> None:
    state = client.app.state  # type: ignore[attr-defined]
    state.settings = state.settings.model_copy(update={"ingest_mode": mode})


def inbox(db: Database) -> list[tuple[int, str]]:
    """(calls, key id) of each inbox row, oldest first."""
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(IngestInbox.count, IngestInbox.key_id).order_by(IngestInbox.id)
        )
        return [(count, key) for count, key in rows]


def count(db: Database, model: Any, *where: Any) -> int:
    with db.transaction(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_an_acknowledged_batch_is_in_the_inbox_before_any_resolution(
    send: Send, db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    batch = {
        "batch": [
            {"type": "page", "anonymousId": "a1", "name": "Home", "messageId": "m1"},
            {
                "type": "identify",
                "userId": "u1",
                "anonymousId": "a1",
                "messageId": "m2",
                "traits": {"email": "Ann@Example.com"},
            },
            {"type": "track", "event": "no id at all"},
        ]
    }
    response = send("batch", batch)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert [r["index"] for r in body["rejected"]] == [2]
    assert [count for count, _ in inbox(db)] == [2]
    assert events(db) == []
    assert count(db, Identifier) == 0
    assert count(db, Profile) == 0

    assert runtime.worker().drain() > 0
    assert inbox(db) == []
    stored = events(db)
    assert sorted(e.message_id for e in stored) == ["m1", "m2"]
    assert all(e.received_at == clock() for e in stored)
    assert cluster_of(db, "anonymous_id", "a1") == cluster_of(db, "email", "ann@example.com")


def _scenario(prefix: str) -> list[tuple[str, dict[str, Any]]]:
    """Calls covering merges, a refused link (two user ids on one email), an alias, skew."""
    p = prefix
    t = {"timestamp": T0}
    return [
        ("page", {"anonymousId": f"{p}a1", "name": "Home", "messageId": f"{p}1", **t}),
        ("identify", {"userId": f"{p}u1", "anonymousId": f"{p}a1", "messageId": f"{p}2",
                      "traits": {"email": f"{p}ann@example.com", "name": "Ann"}, **t}),
        ("track", {"anonymousId": f"{p}a2", "event": "Viewed", "messageId": f"{p}3",
                   "timestamp": "2026-03-01T09:00:00Z", "sentAt": "2026-03-01T09:05:00Z"}),
        ("alias", {"userId": f"{p}u1", "previousId": f"{p}a2", "messageId": f"{p}4", **t}),
        ("identify", {"userId": f"{p}u2", "messageId": f"{p}5",
                      "traits": {"email": f"{p}ann@example.com"}, **t}),
        ("batch", {"sentAt": "2026-03-01T10:10:00Z", "batch": [
            {"type": "track", "userId": f"{p}u2", "event": "Paid", "messageId": f"{p}6",
             "timestamp": "2026-03-01T10:00:00Z"},
            {"type": "screen", "anonymousId": f"{p}d1", "name": "Cart", "messageId": f"{p}7",
             "context": {"device": {"id": f"{p}dev-1"}}},
            {"type": "track", "userId": f"{p}u1", "event": "Paid", "messageId": f"{p}1"},
        ]}),
    ]  # fmt: skip


def _outcome(db: Database, prefix: str) -> dict[str, Any]:
    """What a scenario left, with the prefix stripped and profile ids replaced by the set of
    identifiers of their cluster."""
    n = len(prefix)
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(Identifier.kind, Identifier.value, Profile.cluster_id).join(
                Profile, Profile.id == Identifier.profile_id
            )
        ).all()
        mine = [r for r in rows if prefix in r[1]]
        clusters: dict[str, set[tuple[str, str]]] = {}
        for kind, value, cluster in mine:
            clusters.setdefault(cluster, set()).add((kind, value.replace(prefix, "")))
        profile_cluster = {
            r[0]: r[1] for r in session.execute(select(Profile.id, Profile.cluster_id))
        }
        stored = [
            e for e in session.scalars(select(TrackedEvent)) if e.message_id.startswith(prefix)
        ]
        merged = session.scalar(select(func.count()).select_from(ProfileMerge))
        active = session.scalar(
            select(func.count()).select_from(ProfileMerge).where(ProfileMerge.undone_at.is_(None))
        )
    return {
        "partition": {frozenset(c) for c in clusters.values()},
        "events": sorted(
            (
                e.message_id[n:],
                e.type,
                e.name,
                e.timestamp,
                e.original_timestamp,
                e.sent_at,
                e.received_at,
                frozenset(clusters[profile_cluster[e.profile_id]]),
            )
            for e in stored
        ),
        "merges": merged,
        "active_merges": active,
    }


def test_the_drain_gives_the_profiles_and_clusters_sync_mode_gives(
    client: TestClient, send: Send, db: Database, runtime: Runtime, clock: FrozenClock
) -> None:
    set_mode(client, "sync")
    for path, body in _scenario("s-"):
        assert send(path, body).status_code == 200
    sync = _outcome(db, "s-")
    merges_after_sync, active_after_sync = sync["merges"], sync["active_merges"]

    set_mode(client, "queued")
    for path, body in _scenario("q-"):
        assert send(path, body).status_code == 200
    assert _outcome(db, "q-")["events"] == []
    runtime.worker().drain()
    queued = _outcome(db, "q-")

    assert queued["partition"] == sync["partition"]
    assert queued["events"] == sync["events"]
    assert len(sync["events"]) == 7  # the replayed messageId in the batch stored once
    # The same merge pointers hold the clusters together. The drain hands all six requests to
    # one record_calls (as if the client had sent them in one batch), so a merge a later call
    # supersedes is never made: fewer merges in the history, none of them undone here.
    assert queued["active_merges"] - active_after_sync == active_after_sync > 0
    assert 0 < queued["merges"] - merges_after_sync <= merges_after_sync


def test_a_replayed_message_id_is_stored_once(send: Send, db: Database, runtime: Runtime) -> None:
    body = {"userId": "u1", "event": "Paid", "messageId": "once"}
    assert send("track", body).json() == {"success": True}
    assert send("track", body).json() == {"success": True}
    batch = {"batch": [{**body, "type": "track"}, {**body, "type": "track"}]}
    assert send("batch", batch).json() == {"success": True}
    assert [c for c, _ in inbox(db)] == [1, 1, 2]
    runtime.worker().drain()
    assert [e.message_id for e in events(db)] == ["once"]
    # Replayed after the drain: acknowledged, queued, and still stored once.
    assert send("track", body).json() == {"success": True}
    runtime.worker().drain()
    assert [e.message_id for e in events(db)] == ["once"]
    assert inbox(db) == []


def test_a_crash_in_the_drain_leaves_the_rows_for_the_next_drain(
    send: Send, db: Database, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    send("identify", {"userId": "u1", "anonymousId": "a1", "messageId": "c1"})
    send("track", {"userId": "u1", "event": "Paid", "messageId": "c2"})

    real = ingest_queue._drain_page

    def dying(*args: Any) -> Any:
        real(*args)  # every row stored and deleted, then the worker dies before the commit
        raise RuntimeError("worker died mid-drain")

    monkeypatch.setattr(ingest_queue, "_drain_page", dying)
    with pytest.raises(RuntimeError, match="mid-drain"):
        ingest_queue.drain(db)
    # The worker logs a failed drain and goes on with deliveries and timers.
    runtime.worker().run_once()
    monkeypatch.undo()
    assert [c for c, _ in inbox(db)] == [1, 1]
    assert events(db) == []
    assert count(db, Identifier) == 0
    assert [(r.attempts, r.state) for r in rows(db)] == [(0, "pending")] * 2

    assert runtime.worker().drain() > 0
    assert inbox(db) == []
    assert sorted(e.message_id for e in events(db)) == ["c1", "c2"]


def rows(db: Database) -> list[IngestInbox]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(IngestInbox).order_by(IngestInbox.id)))


def spy_record_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """(write key, message ids) of each ``record_calls`` the drain makes."""
    real = ingest.record_calls
    seen: list[tuple[str, list[str]]] = []

    def spy(session: Any, calls: Any, **kwargs: Any) -> Any:
        seen.append((kwargs["key_id"], [c.call.message_id for c in calls]))
        return real(session, calls, **kwargs)

    monkeypatch.setattr(ingest, "record_calls", spy)
    return seen


def test_rows_drained_together_keep_each_requests_received_at(
    send: Send, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    skewed = {"timestamp": "2026-03-01T09:00:00Z", "sentAt": "2026-03-01T09:05:00Z"}
    received = []
    for n in range(3):
        received.append(clock.advance(minutes=7))
        batch = [
            {"type": "track", "userId": "u1", "event": "Skewed", "messageId": f"s{n}", **skewed},
            {"type": "page", "anonymousId": "a1", "name": "Now", "messageId": f"n{n}"},
            {"type": "track", "userId": "u1", "event": "Kept", "messageId": f"k{n}",
             "timestamp": "2026-03-01T08:00:00Z"},
        ]  # fmt: skip
        assert send("batch", {"batch": batch}).status_code == 200
    calls = spy_record_calls(monkeypatch)
    assert ingest_queue.drain(db) == 9
    assert len(calls) == 1, "the three requests went to one record_calls"
    stored = {e.message_id: e for e in events(db)}
    assert len(stored) == 9
    for n, at in enumerate(received):
        assert {stored[f"{p}{n}"].received_at for p in "snk"} == {at}
        # receivedAt - (sentAt - timestamp): five minutes before this request's arrival.
        assert stored[f"s{n}"].timestamp == at - timedelta(minutes=5)
        assert stored[f"n{n}"].timestamp == at  # no timestamp: when it was received
        assert stored[f"k{n}"].timestamp == datetime(2026, 3, 1, 8, tzinfo=UTC)  # no sentAt


def test_a_message_id_repeated_across_rows_of_one_drain_is_stored_once(
    send: Send, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    send("track", {"userId": "u1", "event": "Earlier", "messageId": "old"})
    ingest_queue.drain(db)
    first = clock.advance(minutes=1)
    send("track", {"userId": "u1", "event": "First", "messageId": "dup"})
    clock.advance(minutes=1)
    send("batch", {"batch": [
        {"type": "track", "userId": "u1", "event": "Second", "messageId": "dup"},
        {"type": "track", "userId": "u1", "event": "Replay", "messageId": "old"},
        {"type": "track", "userId": "u1", "event": "New", "messageId": "new"},
    ]})  # fmt: skip
    send("track", {"userId": "u1", "event": "Third", "messageId": "dup"})
    calls = spy_record_calls(monkeypatch)
    assert ingest_queue.drain(db) == 5
    assert len(calls) == 1
    stored = {e.message_id: e for e in events(db)}
    assert sorted(stored) == ["dup", "new", "old"]
    assert (stored["dup"].name, stored["dup"].received_at) == ("First", first)
    assert stored["old"].name == "Earlier"
    assert inbox(db) == []


def test_rows_of_several_write_keys_are_recorded_in_order(
    send: Send,
    db: Database,
    make_key: Callable[..., str],
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = make_key(kind="event", name="app")
    other_auth = {"Authorization": "Basic " + base64.b64encode(f"{other}:".encode()).decode()}
    send("track", {"userId": "u1", "event": "A", "messageId": "m1"})
    send("track", {"userId": "u1", "event": "A", "messageId": "m2"})
    r = client.post("/v1/track", json={"userId": "u1", "event": "B", "messageId": "m1"},
                    headers=other_auth)  # fmt: skip
    assert r.status_code == 200
    send("track", {"userId": "u1", "event": "A", "messageId": "m3"})
    calls = spy_record_calls(monkeypatch)
    assert ingest_queue.drain(db) == 4
    keys = [key for key, _ in calls]
    assert [ids for _, ids in calls] == [["m1", "m2"], ["m1"], ["m3"]]
    assert keys[0] == keys[2] != keys[1]
    assert sorted((e.message_id, e.name) for e in events(db)) == [
        ("m1", "A"), ("m1", "B"), ("m2", "A"), ("m3", "A")
    ]  # fmt: skip


def poison(monkeypatch: pytest.MonkeyPatch) -> None:
    """``record_calls`` fails on any batch holding the message id ``poison``."""
    real = ingest.record_calls

    def picky(session: Any, calls: Any, **kwargs: Any) -> Any:
        if any(c.call.message_id == "poison" for c in calls):
            raise ValueError("cannot store this one")
        return real(session, calls, **kwargs)

    monkeypatch.setattr(ingest, "record_calls", picky)


def test_a_row_that_keeps_failing_is_marked_failed_and_the_others_drain(
    send: Send, db: Database, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison(monkeypatch)
    send("identify", {"userId": "u1", "anonymousId": "a1", "messageId": "g1",
                      "traits": {"email": "ann@example.com"}})  # fmt: skip
    send("batch", {"batch": [
        {"type": "track", "userId": "u9", "event": "Bad", "messageId": "poison"},
        {"type": "track", "userId": "u9", "event": "Fine", "messageId": "with-poison"},
    ]})  # fmt: skip
    send("track", {"userId": "u1", "event": "Paid", "messageId": "g2"})

    assert ingest_queue.drain(db) == 2
    assert sorted(e.message_id for e in events(db)) == ["g1", "g2"]
    assert count(db, Identifier, Identifier.value == "u9") == 0  # its savepoint rolled back
    [bad] = rows(db)
    assert (bad.count, bad.state, bad.attempts, bad.failed_at) == (2, "pending", 1, None)
    assert bad.last_error == "ValueError: cannot store this one"

    # Retried alone, a bounded number of times, while new rows still drain around it.
    for n in range(2, ingest_queue.MAX_ATTEMPTS + 1):
        send("track", {"userId": "u1", "event": "Paid", "messageId": f"later-{n}"})
        assert ingest_queue.drain(db) == 1
        assert [(r.attempts, r.state) for r in rows(db)] == [
            (n, "pending" if n < ingest_queue.MAX_ATTEMPTS else "failed")
        ]
    [dead] = rows(db)
    assert dead.failed_at is not None
    assert dead.last_error == "ValueError: cannot store this one"
    with db.transaction(readonly=True) as session:
        assert ingest_queue.pending(session) == 0
        assert [r.id for r in ingest_queue.failed(session)] == [dead.id]
    assert ingest_queue.drain(db) == 0  # the worker leaves it alone now
    runtime.worker().drain()
    assert [(r.attempts, r.state) for r in rows(db)] == [(ingest_queue.MAX_ATTEMPTS, "failed")]

    # Fixed, then requeued: drained like any row.
    monkeypatch.undo()
    with db.transaction() as session:
        assert ingest_queue.requeue(session) == 1
    assert runtime.worker().drain() > 0
    assert rows(db) == []
    assert {"poison", "with-poison"} <= {e.message_id for e in events(db)}


def test_an_erasure_is_not_blocked_by_a_failing_row(
    send: Send,
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    send("identify", {"userId": "gone", "anonymousId": "a-gone", "messageId": "g1"})
    runtime.worker().drain()
    profile = identifier(db, "user_id", "gone").profile_id
    poison(monkeypatch)
    send("track", {"userId": "gone", "event": "Bad", "messageId": "poison"})
    send("track", {"userId": "gone", "event": "Paid", "messageId": "g2"})
    response = client.post(
        f"/api/v1/profiles/{profile}/erase", json={"reason": "ticket 1"}, headers=auth
    )
    assert response.status_code == 200, response.text
    [bad] = rows(db)
    assert (bad.attempts, bad.state) == (1, "pending")
    assert count(db, TrackedEvent, TrackedEvent.message_id == "g2") == 1  # stored, then erased
    assert count(db, Identifier, Identifier.value == "gone") == 0
    # Drained once it can be: the erased person's call is suppressed, not stored.
    monkeypatch.undo()
    runtime.worker().drain()
    assert rows(db) == []
    assert count(db, TrackedEvent, TrackedEvent.message_id == "poison") == 0
    assert count(db, Identifier, Identifier.value == "gone") == 0


def test_the_dead_letter_columns_migrate_with_rows_in_the_inbox(db: Database) -> None:
    from sqlalchemy import text

    from seamline.db import migrate

    migrate.downgrade(db, "0009")
    try:
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO ingest_inbox (key_id, received_at, count, calls) "
                    "VALUES ('k', :at, 0, '[]')"
                ),
                {"at": datetime(2026, 3, 1, tzinfo=UTC)},
            )
    finally:
        migrate.upgrade(db)
    [row] = rows(db)
    assert (row.state, row.attempts, row.last_error, row.failed_at) == ("pending", 0, None, None)
    migrate.check(db)


def answer(response: Any) -> Any:
    """The body, without the per-request id."""
    body = response.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
    return body


BAD: list[tuple[str, Any]] = [
    ("track", {"event": "no id"}),
    ("track", {"userId": "u1"}),
    ("identify", {"userId": "u1", "timestamp": "not a time"}),
    ("track", {"userId": "u1", "event": "x", "properties": {"pad": "x" * 33_000}}),
    ("batch", {"batch": "nope"}),
    (
        "batch",
        {
            "batch": [
                {"type": "track", "userId": "u", "event": "x", "properties": {"pad": "x" * 20_000}}
            ]
            * 30
        },
    ),
    (
        "batch",
        {
            "batch": [
                {"type": "nope"},
                {"type": "track", "userId": "u", "event": "ok"},
                {"type": "track", "userId": "u"},
                7,
            ]
        },
    ),
]


@pytest.mark.parametrize(("path", "body"), BAD, ids=[f"{p}-{i}" for i, (p, _) in enumerate(BAD)])
def test_refusals_are_the_same_as_in_sync_mode(
    client: TestClient, send: Send, path: str, body: Any
) -> None:
    set_mode(client, "sync")
    sync = send(path, body)
    set_mode(client, "queued")
    queued = send(path, body)
    assert (queued.status_code, answer(queued)) == (sync.status_code, answer(sync))


def test_refusals_of_raw_bodies_are_the_same(client: TestClient, basic: dict[str, str]) -> None:
    cases = [
        ("/v1/track", b"not gzip", {"Content-Encoding": "gzip"}),
        ("/v1/track", b'{"userId": ', {}),
        ("/v1/track", b'{"userId": NaN}', {}),
        ("/v1/batch", json.dumps({"batch": []}).encode(), {"Content-Encoding": "br"}),
    ]
    for path, raw, headers in cases:
        answers = []
        for mode in ("sync", "queued"):
            set_mode(client, mode)
            r = client.post(path, content=raw, headers={**basic, **headers})
            answers.append((r.status_code, answer(r)))
        assert answers[0] == answers[1]
        assert answers[0][0] == 400


def test_an_erasure_with_undrained_calls_does_not_resurrect_the_person(
    send: Send, client: TestClient, auth: dict[str, str], db: Database, runtime: Runtime
) -> None:
    send("identify", {"userId": "gone", "anonymousId": "a-gone", "messageId": "g1",
                      "traits": {"email": "gone@example.com"}})  # fmt: skip
    runtime.worker().drain()
    profile = identifier(db, "user_id", "gone").profile_id
    # Acknowledged, not drained yet, when the erasure runs: one of them brings a second email.
    send("track", {"userId": "gone", "event": "Paid", "messageId": "g2"})
    send("identify", {"userId": "gone", "traits": {"email": "second@example.com"},
                      "messageId": "g3"})  # fmt: skip
    assert [c for c, _ in inbox(db)] == [1, 1]
    response = client.post(
        f"/api/v1/profiles/{profile}/erase", json={"reason": "ticket 1"}, headers=auth
    )
    assert response.status_code == 200, response.text
    assert inbox(db) == [], "the erasure stored the calls acknowledged before it, then erased"
    # Calls arriving after the erasure, queued and drained: all suppressed, including one
    # carrying the email only an undrained call had brought (erased and suppressed with it).
    send("page", {"anonymousId": "a-gone", "name": "Home", "messageId": "g4"})
    send("identify", {"userId": "new", "traits": {"email": "Second@example.com"},
                      "messageId": "g5"})  # fmt: skip
    send("track", {"userId": "gone", "event": "Paid", "messageId": "g6"})
    runtime.worker().drain()
    assert inbox(db) == []
    gone = ["gone", "a-gone", "gone@example.com", "second@example.com"]
    assert count(db, Identifier, Identifier.value.in_(gone)) == 0
    assert count(db, TrackedEvent, TrackedEvent.user_id == "gone") == 0
    assert count(db, TrackedEvent, TrackedEvent.anonymous_id == "a-gone") == 0
    assert count(db, TrackedEvent, TrackedEvent.message_id.in_(["g4", "g5", "g6"])) == 0
    # g2 and g3 arrived before the erasure: stored by it, then blanked with the rest.
    assert count(db, TrackedEvent, TrackedEvent.message_id.in_(["g2", "g3"])) == 2


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_the_segment_client_against_a_queued_server(
    live_server: str, write_key: str, db: Database, runtime: Runtime, gzip: bool
) -> None:
    errors: list[Any] = []
    client = SegmentClient(
        write_key,
        host=live_server,
        sync_mode=True,
        gzip=gzip,
        max_retries=0,
        on_error=lambda exc, batch: errors.append(exc),
    )
    client.page(anonymous_id="visitor-1", name="Home", properties={"path": "/"})
    client.identify(user_id="cus-1", anonymous_id="visitor-1", traits={"email": "Ann@Example.com"})
    client.track(user_id="cus-1", event="Order Completed", message_id="order-1")
    client.track(user_id="cus-1", event="Order Completed", message_id="order-1")  # a retry
    client.alias(previous_id="visitor-2", user_id="cus-1")
    assert errors == []
    assert sum(c for c, _ in inbox(db)) == 5
    assert events(db) == []

    runtime.worker().drain()
    stored = events(db)
    assert len(stored) == 4
    person = cluster_of(db, "user_id", "cus-1")
    for kind, value in [
        ("anonymous_id", "visitor-1"),
        ("anonymous_id", "visitor-2"),
        ("email", "ann@example.com"),
    ]:
        assert cluster_of(db, kind, value) == person
    assert all(e.context["library"]["name"] == "analytics-python" for e in stored)


def test_the_inbox_gives_back_the_calls_the_route_validated() -> None:
    from seamline.identity import wire

    document = {
        "sentAt": "2026-03-01T10:10:00+02:00",
        "context": {"library": {"name": "x"}},
        "batch": [
            {"type": "track", "userId": 42, "event": "Paid", "properties": {"n": [1, 2.5]}},
            {"type": "identify", "anonymousId": "a", "timestamp": "2026-03-01T09:00:00",
             "traits": {"email": "Ann@Example.com", "ünï": "ø"}, "sentAt": "2026-03-01T09:01Z"},
            {"type": "alias", "userId": "u", "previousId": 7, "messageId": "m"},
            {"type": "group", "userId": "u", "groupId": "g", "integrations": {"A": 1}},
            {"type": "page", "anonymousId": "a", "channel": "web", "name": None},
            {"type": "screen", "userId": "u", "name": "Cart", "category": "c"},
        ],
    }  # fmt: skip
    parsed = wire.parse_batch(document)
    assert len(parsed.calls) == 6
    assert ingest_queue.decode(ingest_queue.encode(parsed.calls)) == parsed.calls


def test_single_call_requests_fill_a_drain_like_batches(
    db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seamline.identity import wire

    with db.transaction() as session:
        for n in range(600):  # analytics.js sends one call per request by default
            call = wire.parse_single(
                {"userId": f"u{n % 7}", "event": "Viewed", "messageId": f"one-{n}"}, "track"
            )
            ingest_queue.enqueue(
                session, call.calls, key_id="key-1", received_at=clock.advance(seconds=1)
            )
    calls = spy_record_calls(monkeypatch)
    assert ingest_queue.drain(db) == 600
    assert [len(ids) for _, ids in calls] == [600]
    stored = sorted(events(db), key=lambda e: int(e.message_id.split("-")[1]))
    assert len(stored) == 600
    gaps = {b.received_at - a.received_at for a, b in itertools.pairwise(stored)}
    assert gaps == {timedelta(seconds=1)}


@pytest.mark.postgres_only
def test_two_drains_take_consecutive_rows(db: Database, clock: FrozenClock) -> None:
    """A drain skips the rows another drain holds and takes the next ones (as many rows as it
    chose), instead of finding its candidates locked and draining what is left of them."""
    from seamline.identity import wire

    def enqueue(user: str, tag: str, calls: int) -> None:
        batch = wire.parse_batch(
            {
                "batch": [
                    {"type": "track", "userId": user, "event": "Viewed", "messageId": f"{tag}-{n}"}
                    for n in range(calls)
                ]
            }
        )
        with db.transaction() as session:
            ingest_queue.enqueue(
                session, batch.calls, key_id="key-1", received_at=clock.advance(seconds=1)
            )

    # Both people known first, so neither drain creates identifiers (no graph lock to share).
    enqueue("u1", "seed1", 1)
    enqueue("u2", "seed2", 1)
    assert ingest_queue.drain(db) == 2
    for row in range(3):
        enqueue("u1", f"a{row}", 10)
    for row in range(3):
        enqueue("u2", f"b{row}", 10)
    with db.transaction() as first:
        assert ingest_queue.drain_in(first, max_calls=30) == 30  # u1's rows, held till commit
        with db.transaction() as second:
            assert ingest_queue.drain_in(second, max_calls=30) == 30  # u2's, not none
    with db.transaction(readonly=True) as session:
        assert ingest_queue.pending(session) == 0
    stored = {e.message_id.split("-")[0][0] for e in events(db) if "seed" not in e.message_id}
    assert stored == {"a", "b"}
    assert count(db, TrackedEvent) == 62
