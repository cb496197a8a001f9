"""Webhook delivery end to end: signing, retries, dead letters, dedupe, order, private targets."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from seamline.db.engine import Database
from seamline.events import service
from seamline.events.models import WebhookEndpoint
from seamline.events.retry import WEBHOOK_SCHEDULE
from seamline.events.signing import SignatureError, verify
from seamline.events.webhooks import private_destination
from seamline.events.worker import Worker
from seamline.kit.clock import FrozenClock
from seamline.kit.crypto import SecretBox
from seamline.runtime import Runtime
from seamline.settings import Settings
from tests.webhooks.support import (
    API,
    SIGNATURE,
    Received,
    Receiver,
    attempts_of,
    create_channel,
    create_endpoint,
    deliveries_of,
    parse_time,
)


# -- 2. end to end through the API ------------------------------------------------------------
def test_channel_created_reaches_the_receiver_signed(
    client: TestClient, auth: dict[str, str], worker: Worker, receiver: Receiver
) -> None:
    created = create_endpoint(client, auth, receiver.url("/all"), ["channel.*"])
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert created["status"] == "enabled"
    orders = create_endpoint(client, auth, receiver.url("/orders"), ["order.*"])
    updates = create_endpoint(client, auth, receiver.url("/updates"), ["channel.updated"])

    # The secret is shown once: never again in GET or list responses.
    got = client.get(f"{API}/webhook-endpoints/{created['id']}", headers=auth)
    assert got.status_code == 200
    assert "secret" not in got.json()
    assert got.json()["event_types"] == ["channel.*"]
    listed = client.get(f"{API}/webhook-endpoints", headers=auth).json()["data"]
    assert {e["id"] for e in listed} == {created["id"], orders["id"], updates["id"]}
    assert all("secret" not in e for e in listed)
    assert secret not in client.get(f"{API}/webhook-endpoints", headers=auth).text

    channel = create_channel(client, auth, "web-eu")
    assert receiver.requests == []  # nothing leaves inside the request
    assert worker.drain() > 0

    assert [r.path for r in receiver.requests] == ["/all"]  # not /orders, not /updates
    hit = receiver.requests[0]
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["seamline-event-type"] == "channel.created"
    assert hit.headers["user-agent"].startswith("Seamline-Webhooks/")
    envelope = hit.json
    assert set(envelope) == {"id", "type", "created_at", "aggregate", "data"}
    assert envelope["id"] == hit.event_id
    assert envelope["id"].startswith("evt_")
    assert envelope["type"] == "channel.created"
    assert envelope["aggregate"] == {"type": "channel", "id": channel["id"]}
    assert envelope["data"]["id"] == channel["id"]
    assert envelope["data"]["handle"] == "web-eu"
    assert parse_time(envelope["created_at"]).tzinfo is not None

    # The same envelope is what the event log API returns.
    log = client.get(f"{API}/events", params={"type": "channel."}, headers=auth).json()["data"]
    assert [e["id"] for e in log] == [envelope["id"]]
    assert log[0]["aggregate"] == envelope["aggregate"]
    assert log[0]["data"] == envelope["data"]

    # Verifies with the secret from the create response, against the real clock.
    signature = hit.headers["seamline-signature"]
    assert SIGNATURE.match(signature)
    verify(hit.body, signature, secret)
    with pytest.raises(SignatureError):
        verify(hit.body, signature, secret + "x")

    attempts = attempts_of(client, auth, created["id"])
    assert len(attempts) == 1
    assert attempts[0]["ok"] is True
    assert attempts[0]["status_code"] == 200
    assert attempts[0]["event_id"] == envelope["id"]
    assert attempts[0]["next_retry_at"] is None
    assert attempts_of(client, auth, orders["id"]) == []

    # An update goes to the catch-all and to the endpoint that asked for updates only.
    patched = client.patch(f"{API}/channels/{channel['id']}", json={"name": "EU"}, headers=auth)
    assert patched.status_code == 200
    worker.drain()
    assert sorted(r.path for r in receiver.requests[1:]) == ["/all", "/updates"]
    assert {r.headers["seamline-event-type"] for r in receiver.requests[1:]} == {"channel.updated"}
    assert receiver.at("/orders") == []


def test_rotation_signs_with_both_secrets_for_24_hours(
    client: TestClient,
    auth: dict[str, str],
    worker: Worker,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    old = endpoint["secret"]
    rotated = client.post(f"{API}/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=auth)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_")
    assert new != old
    assert (
        "secret" not in client.get(f"{API}/webhook-endpoints/{endpoint['id']}", headers=auth).json()
    )

    create_channel(client, auth, "during")
    worker.drain()
    hit = receiver.requests[-1]
    now = clock().timestamp()
    assert hit.headers["seamline-signature"].count("v1=") == 2
    verify(hit.body, hit.headers["seamline-signature"], old, now=now)  # not yet upgraded
    verify(hit.body, hit.headers["seamline-signature"], new, now=now)  # already upgraded

    clock.advance(hours=24, seconds=1)
    create_channel(client, auth, "after")
    worker.drain()
    hit = receiver.requests[-1]
    now = clock().timestamp()
    assert hit.headers["seamline-signature"].count("v1=") == 1
    verify(hit.body, hit.headers["seamline-signature"], new, now=now)
    with pytest.raises(SignatureError):
        verify(hit.body, hit.headers["seamline-signature"], old, now=now)


# -- 3. retry schedule, dead letter, disabling -------------------------------------------------
# The table in docs/webhooks.md: the delay before each retry, after the n-th failed attempt.
DOCUMENTED_SCHEDULE = [
    timedelta(seconds=30),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
    timedelta(hours=8),
    timedelta(hours=12),
    timedelta(hours=24),
    timedelta(hours=24),
]


def test_the_schedule_is_the_documented_one() -> None:
    assert list(WEBHOOK_SCHEDULE) == DOCUMENTED_SCHEDULE


def test_retry_schedule_then_dead_letter_and_disabled_endpoint(
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    worker: Worker,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    receiver.answer = lambda _r: (500, b"receiver is down")
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    create_channel(client, auth, "web")
    first_try = clock()
    worker.drain()
    assert len(receiver.requests) == 1

    for n, delay in enumerate(DOCUMENTED_SCHEDULE, start=1):
        clock.advance(seconds=delay.total_seconds() - 1)
        worker.drain()
        assert len(receiver.requests) == n, f"retry {n} came before its {delay} delay"
        clock.advance(seconds=2)
        worker.drain()
        assert len(receiver.requests) == n + 1, f"retry {n} did not come after {delay}"

    total = len(DOCUMENTED_SCHEDULE) + 1
    gave_up_after = clock() - first_try
    assert timedelta(days=3) <= gave_up_after < timedelta(days=3, hours=12)

    # Exhausted: the delivery is a dead letter and the endpoint is disabled.
    assert deliveries_of(db, endpoint["id"]) == [("dead", total)]
    with db.transaction(readonly=True) as session:
        dead = service.list_dead(session)
    assert [(d.kind, d.consumer, d.attempts) for d in dead] == [
        ("delivery", f"webhook:{endpoint['id']}", total)
    ]
    state = client.get(f"{API}/webhook-endpoints/{endpoint['id']}", headers=auth).json()
    assert state["status"] == "disabled"
    assert state["disabled_reason"]
    assert parse_time(state["disabled_at"]) == clock()

    # Every attempt is listed, newest first, with its status code and when the next one was due.
    attempts = attempts_of(client, auth, endpoint["id"])
    assert [a["attempt"] for a in attempts] == list(range(total, 0, -1))
    assert all(a["status_code"] == 500 and a["ok"] is False for a in attempts)
    assert all(a["response_excerpt"] == "receiver is down" for a in attempts)
    assert len({a["event_id"] for a in attempts}) == 1
    oldest_first = list(reversed(attempts))
    for attempt, delay in zip(oldest_first, DOCUMENTED_SCHEDULE, strict=False):
        expected = parse_time(attempt["attempted_at"]) + delay
        assert parse_time(attempt["next_retry_at"]) == expected
    assert oldest_first[-1]["next_retry_at"] is None

    # Nothing more is sent, however long we wait, and new events are not queued for it.
    create_channel(client, auth, "while-disabled")
    clock.advance(days=30)
    worker.drain()
    assert len(receiver.requests) == total
    assert deliveries_of(db, endpoint["id"]) == [("dead", total)]


def test_receiver_that_recovers_gets_the_event_exactly_once_more(
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    worker: Worker,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    failures = 3
    receiver.answer = lambda _r: 503 if len(receiver.requests) <= failures else 204
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    create_channel(client, auth, "web")
    worker.drain()
    for delay in WEBHOOK_SCHEDULE[:failures]:
        clock.advance(seconds=delay.total_seconds())
        worker.drain()
    assert len(receiver.requests) == failures + 1
    assert len({r.event_id for r in receiver.requests}) == 1

    clock.advance(days=5)
    worker.drain()
    assert len(receiver.requests) == failures + 1  # done: never sent again
    assert deliveries_of(db, endpoint["id"]) == [("done", failures + 1)]
    attempts = attempts_of(client, auth, endpoint["id"])
    assert [(a["status_code"], a["ok"]) for a in attempts] == [(204, True)] + [
        (503, False)
    ] * failures
    assert attempts[0]["next_retry_at"] is None
    got = client.get(f"{API}/webhook-endpoints/{endpoint['id']}", headers=auth).json()
    assert got["status"] == "enabled"


def test_receiver_errors_are_stored_safely_and_bounded(
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    worker: Worker,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    """A NUL byte (which PostgreSQL text refuses) or a huge body must not wedge the delivery."""
    receiver.answer = lambda _r: (500, b"bad\x00gateway\xff" + b"x" * 2_000_000)
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    create_channel(client, auth, "web")
    worker.drain()
    attempts = attempts_of(client, auth, endpoint["id"])
    assert len(attempts) == 1
    excerpt = attempts[0]["response_excerpt"]
    assert excerpt.startswith("bad\ufffdgateway\ufffd")
    assert "\x00" not in excerpt
    assert len(excerpt) <= 1000
    assert attempts[0]["status_code"] == 500
    assert deliveries_of(db, endpoint["id"]) == [("pending", 1)]

    receiver.answer = lambda _r: 200
    clock.advance(seconds=WEBHOOK_SCHEDULE[0].total_seconds())
    worker.drain()
    assert deliveries_of(db, endpoint["id"]) == [("done", 2)]


def test_an_endpoint_whose_secret_cannot_be_opened_does_not_block_the_others(
    client: TestClient, auth: dict[str, str], db: Database, worker: Worker, receiver: Receiver
) -> None:
    good = create_endpoint(client, auth, receiver.url("/good"), ["channel.*"])
    broken = create_endpoint(client, auth, receiver.url("/broken"), ["channel.*"])
    with db.transaction() as session:  # e.g. sealed under a previous SEAMLINE_SECRET_KEY
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == broken["id"])
            .values(secret_encrypted=SecretBox("another-key").seal("whsec_lost"))
        )
    create_channel(client, auth, "web")
    worker.drain()
    assert [r.path for r in receiver.requests] == ["/good"]
    assert deliveries_of(db, good["id"]) == [("done", 1)]
    assert deliveries_of(db, broken["id"]) == [("pending", 1)]  # retried on the schedule
    failed = attempts_of(client, auth, broken["id"])
    assert len(failed) == 1
    assert "decrypt" in failed[0]["error"]
    assert failed[0]["next_retry_at"] is not None


# -- 4. dedupe by event id ---------------------------------------------------------------------
def test_a_retry_after_a_timeout_carries_the_same_event_id(
    client: TestClient,
    auth: dict[str, str],
    runtime: Runtime,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    runtime.settings.webhook_timeout_seconds = 0.3
    worker = runtime.worker()
    release = threading.Event()

    def answer(_r: Received) -> int:
        if len(receiver.requests) == 1:
            release.wait(10)  # processed, but the answer comes after Seamline gave up
        return 200

    receiver.answer = answer
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    create_channel(client, auth, "web")
    try:
        worker.drain()
    finally:
        release.set()
    first = attempts_of(client, auth, endpoint["id"])
    assert len(first) == 1
    assert first[0]["ok"] is False
    assert first[0]["status_code"] is None
    assert "Timeout" in first[0]["error"]

    clock.advance(seconds=WEBHOOK_SCHEDULE[0].total_seconds())
    worker.drain()
    assert len(receiver.requests) == 2
    a, b = receiver.requests
    assert a.event_id == b.event_id == a.json["id"]
    assert a.body == b.body  # same envelope; only the signature's timestamp may differ
    seen = {r.event_id for r in receiver.requests}  # what a deduplicating receiver keeps
    assert len(seen) == 1
    assert attempts_of(client, auth, endpoint["id"])[0]["ok"] is True


# -- 5. ordering per aggregate -----------------------------------------------------------------
def test_events_of_one_aggregate_arrive_in_order(
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    worker: Worker,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    healthy = {"value": False}
    stuck = create_channel(client, auth, "stuck")
    stuck_id = stuck["id"]

    def answer(r: Received) -> int:
        return 200 if healthy["value"] or r.json["aggregate"]["id"] != stuck_id else 500

    receiver.answer = answer
    patched = client.patch(f"{API}/channels/{stuck_id}", json={"name": "v2"}, headers=auth)
    assert patched.status_code == 200
    other = create_channel(client, auth, "other")
    worker.drain()
    for delay in WEBHOOK_SCHEDULE[:3]:
        clock.advance(seconds=delay.total_seconds())
        worker.drain()

    stuck_seen = [
        r.headers["seamline-event-type"]
        for r in receiver.requests
        if r.json["aggregate"]["id"] == stuck_id
    ]
    assert stuck_seen == ["channel.created"] * 4  # the update waits behind the failing create
    other_seen = [r for r in receiver.requests if r.json["aggregate"]["id"] == other["id"]]
    assert len(other_seen) == 1  # another aggregate is not held up
    assert deliveries_of(db, endpoint["id"])[:2] == [("pending", 4), ("pending", 0)]

    healthy["value"] = True
    clock.advance(seconds=WEBHOOK_SCHEDULE[3].total_seconds())
    worker.drain()
    stuck_final = [
        (r.headers["seamline-event-type"], r.json["data"]["name"])
        for r in receiver.requests
        if r.json["aggregate"]["id"] == stuck_id
    ]
    # Four failures and the success of the create, then (only then) the update, once.
    assert stuck_final == [("channel.created", "stuck")] * 5 + [("channel.updated", "v2")]
    assert [s for s, _ in deliveries_of(db, endpoint["id"])] == ["done", "done", "done"]


# -- private destinations ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
    ],
)
def test_private_destinations_are_recognised(url: str) -> None:
    assert private_destination(url) is not None


def test_a_public_address_is_allowed() -> None:
    assert private_destination("https://8.8.8.8/hook") is None


def test_internal_addresses_are_never_called_by_default(
    client: TestClient,
    auth: dict[str, str],
    receiver: Receiver,
    settings: Settings,
    db: Database,
) -> None:
    assert Settings().webhook_allow_private_networks is False, "refused unless enabled"
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    create_channel(client, auth, "guarded")
    strict = settings.model_copy(update={"webhook_allow_private_networks": False})
    guarded = Runtime(strict, db, SecretBox(settings.resolved_secret_key)).worker()
    guarded.drain()
    assert receiver.requests == [], "nothing was sent to the loopback receiver"
    attempts = attempts_of(client, auth, endpoint["id"])
    assert attempts
    assert "non-public address" in attempts[0]["error"]
    assert deliveries_of(db, endpoint["id"])[0][0] == "dead"
