"""Outbound webhooks end to end: API -> outbox -> worker -> a real HTTP receiver.

The receiver is a small ``http.server`` on 127.0.0.1 standing in for the brand's system (the
third party); everything on Seamline's side is the real code: the API, the outbox, the worker
built by ``runtime.worker()``, its ``WebhookSender`` and httpx. The retry schedule is walked
with the injected clock, never with sleeps.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner, Result

from seamline.cli.main import app as cli_app
from seamline.db.engine import Database
from seamline.events import service
from seamline.events.handlers import fan_out_to_webhooks
from seamline.events.models import Delivery, OutboxEvent, WebhookAttempt, WebhookEndpoint
from seamline.events.retry import WEBHOOK_SCHEDULE
from seamline.events.signing import SignatureError, compute, header, verify
from seamline.events.webhooks import private_destination
from seamline.events.worker import Worker, to_event
from seamline.kit.clock import FrozenClock
from seamline.kit.crypto import SecretBox
from seamline.runtime import Runtime
from seamline.settings import Settings, get_settings

API = "/api/v1"
SIGNATURE = re.compile(r"^t=(\d+)(,v1=[0-9a-f]{64})+$")


# -- the receiver (the third party) ------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def event_id(self) -> str:
        return self.headers["seamline-event-id"]


Answer = Callable[[Received], "tuple[int, bytes] | int"]


class Receiver:
    """A real HTTP server that records every POST and answers what the test scripts."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answer: Answer = lambda _r: 200
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                got = Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                with receiver._lock:
                    receiver.requests.append(got)
                result = receiver.answer(got)
                status, payload = (result, b"") if isinstance(result, int) else result
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the sender gave up (timeout) and closed the connection
                    pass

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def worker(runtime: Runtime) -> Worker:
    return runtime.worker()


# -- helpers -----------------------------------------------------------------------------------
def create_endpoint(
    client: TestClient, auth: dict[str, str], url: str, event_types: list[str]
) -> dict[str, Any]:
    response = client.post(
        f"{API}/webhook-endpoints", json={"url": url, "event_types": event_types}, headers=auth
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def create_channel(client: TestClient, auth: dict[str, str], handle: str) -> dict[str, Any]:
    response = client.post(
        f"{API}/channels", json={"kind": "web", "name": handle, "handle": handle}, headers=auth
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def attempts_of(client: TestClient, auth: dict[str, str], endpoint_id: str) -> list[Any]:
    response = client.get(
        f"{API}/webhook-endpoints/{endpoint_id}/attempts", params={"limit": 200}, headers=auth
    )
    assert response.status_code == 200, response.text
    data: list[Any] = response.json()["data"]
    return data


def deliveries_of(db: Database, endpoint_id: str) -> list[tuple[str, int]]:
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(Delivery.status, Delivery.attempts)
            .where(Delivery.consumer == f"webhook:{endpoint_id}")
            .order_by(Delivery.event_seq)
        )
        return [(status, attempts) for status, attempts in rows]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- 1. signatures -----------------------------------------------------------------------------
BODY = b'{"id":"evt_1","type":"channel.created"}'
SECRET = "whsec_current"
T0 = 1_750_000_000


def test_correct_signature_verifies() -> None:
    signed = header(BODY, [SECRET], T0)
    assert SIGNATURE.match(signed)
    assert verify(BODY, signed, SECRET, now=T0 + 10) == T0


def test_wrong_secret_is_rejected() -> None:
    signed = header(BODY, [SECRET], T0)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(BODY, signed, "whsec_other", now=T0)


@pytest.mark.parametrize("offset", [301, -301, 86_400])
def test_timestamp_outside_tolerance_is_rejected(offset: int) -> None:
    signed = header(BODY, [SECRET], T0)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(BODY, signed, SECRET, now=T0 + offset)
    # ...and right at the edge of the window it still verifies.
    assert verify(BODY, signed, SECRET, now=T0 + (300 if offset > 0 else -300)) == T0


def test_tampered_body_is_rejected() -> None:
    signed = header(BODY, [SECRET], T0)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(BODY.replace(b"created", b"deleted"), signed, SECRET, now=T0)


def test_a_signature_for_another_timestamp_is_rejected() -> None:
    """Replaying a captured body with a fresh ``t`` fails: the timestamp is signed too."""
    digest = compute(BODY, SECRET, T0)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(BODY, f"t={T0 + 60},v1={digest}", SECRET, now=T0 + 60)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        f"t={T0}",
        f"v1={'a' * 64}",
        f"t=abc,v1={'a' * 64}",
        f"t=,v1={'a' * 64}",
        f"t={T0},v1=",
        f"t={T0},v1=nothex",
        f"t={T0},v1={'é' * 64}",  # non-ASCII: used to escape as TypeError from compare_digest
        f"t={chr(0xFF11) * 10},v1={'a' * 64}",  # full-width digits pass str.isdigit()
        f"t={T0};v1={'a' * 64}",
    ],
)
def test_malformed_header_is_rejected(bad: str) -> None:
    with pytest.raises(SignatureError, match="malformed"):
        verify(BODY, bad, SECRET, now=T0)


def test_unknown_schemes_and_spaces_are_tolerated() -> None:
    signed = f"t={T0}, v0=deadbeef, v1={compute(BODY, SECRET, T0)}"
    assert verify(BODY, signed, SECRET, now=T0) == T0


def test_during_rotation_old_and_new_secret_both_verify() -> None:
    signed = header(BODY, ["whsec_new", "whsec_old"], T0)
    assert signed.count("v1=") == 2
    assert verify(BODY, signed, "whsec_new", now=T0) == T0
    assert verify(BODY, signed, "whsec_old", now=T0) == T0
    with pytest.raises(SignatureError):
        verify(BODY, signed, "whsec_neither", now=T0)


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


def exhaust_schedule(worker: Worker, clock: FrozenClock) -> None:
    worker.drain()
    for delay in WEBHOOK_SCHEDULE:
        clock.advance(seconds=delay.total_seconds())
        worker.drain()


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


# -- 6. the endpoint API -----------------------------------------------------------------------
def test_patch_changes_event_types_and_reenables(
    client: TestClient, auth: dict[str, str], worker: Worker, receiver: Receiver
) -> None:
    endpoint = create_endpoint(client, auth, receiver.url(), ["order.*"])
    path = f"{API}/webhook-endpoints/{endpoint['id']}"
    create_channel(client, auth, "one")
    worker.drain()
    assert receiver.requests == []

    changed = client.patch(path, json={"event_types": ["channel.created", "order.*"]}, headers=auth)
    assert changed.status_code == 200, changed.text
    assert changed.json()["event_types"] == ["channel.created", "order.*"]
    create_channel(client, auth, "two")
    worker.drain()
    assert [r.json["data"]["handle"] for r in receiver.requests] == ["two"]

    off = client.patch(path, json={"status": "disabled"}, headers=auth)
    assert off.json()["status"] == "disabled"
    assert off.json()["disabled_reason"]
    create_channel(client, auth, "three")
    worker.drain()
    assert len(receiver.requests) == 1

    on = client.patch(path, json={"status": "enabled"}, headers=auth)
    assert on.status_code == 200
    assert on.json()["status"] == "enabled"
    assert on.json()["disabled_reason"] is None
    assert on.json()["disabled_at"] is None
    create_channel(client, auth, "four")
    worker.drain()
    assert [r.json["data"]["handle"] for r in receiver.requests] == ["two", "four"]

    moved = client.patch(
        path, json={"url": receiver.url("/v2"), "description": "new home"}, headers=auth
    )
    assert moved.json()["url"] == receiver.url("/v2")
    assert moved.json()["description"] == "new home"
    create_channel(client, auth, "five")
    worker.drain()
    assert receiver.requests[-1].path == "/v2"


def test_delete_removes_the_endpoint_and_what_was_queued_for_it(
    client: TestClient, auth: dict[str, str], db: Database, worker: Worker, receiver: Receiver
) -> None:
    receiver.answer = lambda _r: 500
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    create_channel(client, auth, "web")
    worker.drain()
    assert deliveries_of(db, endpoint["id"]) == [("pending", 1)]

    deleted = client.delete(f"{API}/webhook-endpoints/{endpoint['id']}", headers=auth)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert deliveries_of(db, endpoint["id"]) == []
    with db.transaction(readonly=True) as session:
        logged = session.scalar(
            select(func.count())
            .select_from(WebhookAttempt)
            .where(WebhookAttempt.endpoint_id == endpoint["id"])
        )
    assert logged == 0
    assert client.get(f"{API}/webhook-endpoints/{endpoint['id']}", headers=auth).status_code == 404
    worker.drain()
    assert len(receiver.requests) == 1


def test_operator_disable_turns_queued_deliveries_dead_and_delete_drops_them(
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    worker: Worker,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    receiver.answer = lambda _r: 500
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    path = f"{API}/webhook-endpoints/{endpoint['id']}"
    create_channel(client, auth, "web")
    worker.drain()
    assert client.patch(path, json={"status": "disabled"}, headers=auth).status_code == 200
    clock.advance(minutes=1)
    worker.drain()
    assert len(receiver.requests) == 1  # nothing sent to a disabled endpoint
    assert deliveries_of(db, endpoint["id"]) == [("dead", 2)]
    assert attempts_of(client, auth, endpoint["id"])[0]["error"] == "endpoint is disabled"

    assert client.delete(path, headers=auth).status_code == 204
    assert deliveries_of(db, endpoint["id"]) == []
    with db.transaction(readonly=True) as session:
        assert service.list_dead(session) == []


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/rotate-secret"),
        ("GET", "/attempts"),
    ],
)
def test_unknown_endpoint_is_a_404_problem(
    client: TestClient, auth: dict[str, str], method: str, suffix: str
) -> None:
    kwargs: dict[str, Any] = {"json": {"description": "x"}} if method == "PATCH" else {}
    response = client.request(
        method, f"{API}/webhook-endpoints/we_missing{suffix}", headers=auth, **kwargs
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "webhook_endpoint_not_found"
    assert problem["status"] == 404
    assert "we_missing" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "not a url", "event_types": ["channel.*"]}, "url"),
        ({"url": "ftp://example.com/hook", "event_types": ["channel.*"]}, "url"),
        ({"url": "https://example.com/" + "a" * 2100, "event_types": ["*"]}, "url"),
        ({"url": "https://example.com/hook", "event_types": []}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": ["Channel.Created"]}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": ["channel.*.x"]}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": ["channel..created"]}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": ["order*"]}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": ["a." * 60 + "b"]}, "event_types"),
        ({"url": "https://example.com/hook", "event_types": ["*"], "secret": "x"}, "secret"),
        ({"event_types": ["*"]}, "url"),
    ],
)
def test_invalid_endpoint_is_a_422(
    client: TestClient, auth: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = client.post(f"{API}/webhook-endpoints", json=body, headers=auth)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert any(e["path"].startswith(f"body.{field}") for e in problem["errors"]), problem


@pytest.mark.parametrize(
    "body",
    [
        {"url": "nope"},
        {"url": "https://example.com/" + "a" * 2100},  # was a 500 on PostgreSQL
        {"event_types": ["NOPE"]},
        {"event_types": []},
        {"status": "paused"},
    ],
)
def test_invalid_patch_is_a_422(
    client: TestClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    endpoint = create_endpoint(client, auth, "https://example.com/hook", ["*"])
    response = client.patch(f"{API}/webhook-endpoints/{endpoint['id']}", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    unchanged = client.get(f"{API}/webhook-endpoints/{endpoint['id']}", headers=auth).json()
    assert unchanged["url"] == "https://example.com/hook"
    assert unchanged["event_types"] == ["*"]


def test_scopes_guard_every_route(
    client: TestClient, auth: dict[str, str], make_key: Callable[..., str]
) -> None:
    endpoint = create_endpoint(client, auth, "https://example.com/hook", ["*"])
    path = f"{API}/webhook-endpoints/{endpoint['id']}"
    reader = {"Authorization": f"Bearer {make_key(scopes=['webhooks:read'])}"}
    assert client.get(f"{API}/webhook-endpoints", headers=reader).status_code == 200
    assert client.get(path, headers=reader).status_code == 200
    assert client.get(f"{path}/attempts", headers=reader).status_code == 200

    refused = [
        client.post(
            f"{API}/webhook-endpoints",
            json={"url": "https://example.com/x", "event_types": ["*"]},
            headers=reader,
        ),
        client.patch(path, json={"status": "disabled"}, headers=reader),
        client.post(f"{path}/rotate-secret", headers=reader),
        client.delete(path, headers=reader),
    ]
    for response in refused:
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "insufficient_scope"
    assert len(client.get(f"{API}/webhook-endpoints", headers=auth).json()["data"]) == 1
    assert client.get(path, headers=auth).json()["status"] == "enabled"

    other = {"Authorization": f"Bearer {make_key(scopes=['channels:read'])}"}
    assert client.get(f"{API}/webhook-endpoints", headers=other).status_code == 403
    assert client.get(f"{API}/webhook-endpoints").status_code == 401


def test_fan_out_is_idempotent(
    client: TestClient, auth: dict[str, str], db: Database, receiver: Receiver
) -> None:
    """Running the fan-out again for an event (a replay) does not fail or queue twice."""
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    create_channel(client, auth, "web")
    for _ in range(2):
        with db.transaction() as session:
            row = session.scalars(select(OutboxEvent)).one()
            fan_out_to_webhooks(session, to_event(row))
    assert deliveries_of(db, endpoint["id"]) == [("pending", 0)]


# -- 7. the CLI --------------------------------------------------------------------------------
class Cli:
    """Runs ``seamline …`` in-process against the test's database."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def invoke(self, cli_app: typer.Typer, args: list[str]) -> Result:
        return self.runner.invoke(cli_app, args)


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    assert settings.database_url
    assert settings.secret_key
    monkeypatch.setenv("SEAMLINE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SEAMLINE_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("SEAMLINE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "300")  # Rich tables: no truncated ids
    get_settings.cache_clear()
    yield Cli()
    get_settings.cache_clear()


def test_cli_create_list_rotate_attempts(
    cli: Cli, db: Database, worker: Worker, receiver: Receiver, clock: FrozenClock
) -> None:
    created = cli.invoke(cli_app, ["webhooks", "create", receiver.url(), "-e", "channel.*"])
    assert created.exit_code == 0, created.output
    match = re.search(r"created (we_\w+)", created.output)
    assert match
    endpoint_id = match.group(1)
    secret = created.output.strip().splitlines()[-1]
    assert secret.startswith("whsec_")

    listed = cli.invoke(cli_app, ["webhooks", "list"])
    assert listed.exit_code == 0, listed.output
    assert endpoint_id in listed.output
    assert "channel.*" in listed.output
    assert "enabled" in listed.output
    assert secret not in listed.output

    rotated = cli.invoke(cli_app, ["webhooks", "rotate", endpoint_id])
    assert rotated.exit_code == 0, rotated.output
    new_secret = rotated.output.strip().splitlines()[-1]
    assert new_secret.startswith("whsec_")
    assert new_secret != secret

    made = cli.invoke(cli_app, ["channels", "create", "web", "web-eu"])
    assert made.exit_code == 0, made.output
    worker.drain()
    assert len(receiver.requests) == 1
    hit = receiver.requests[0]
    for key in (secret, new_secret):  # rotation grace: both verify
        verify(hit.body, hit.headers["seamline-signature"], key, now=clock().timestamp())

    attempts = cli.invoke(cli_app, ["webhooks", "attempts", endpoint_id])
    assert attempts.exit_code == 0, attempts.output
    assert hit.event_id in attempts.output
    assert "channel.created" in attempts.output
    assert "200" in attempts.output


def test_cli_refuses_bad_input_without_a_traceback(cli: Cli) -> None:
    bad_url = cli.invoke(cli_app, ["webhooks", "create", "not-a-url", "-e", "channel.*"])
    assert bad_url.exit_code == 2
    assert "Traceback" not in bad_url.output
    assert "url" in bad_url.output
    bad_type = cli.invoke(cli_app, ["webhooks", "create", "https://example.com", "-e", "Nope"])
    assert bad_type.exit_code == 2
    assert "event_types" in bad_type.output
    missing = cli.invoke(cli_app, ["webhooks", "rotate", "we_missing"])
    assert missing.exit_code == 1
    assert "webhook_endpoint_not_found" in missing.output
    listed = cli.invoke(cli_app, ["webhooks", "list"])
    assert "https://example.com" not in listed.output


def test_cli_reenable_and_replay_dead_letters(
    cli: Cli,
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    worker: Worker,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    receiver.answer = lambda _r: 500
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    create_channel(client, auth, "web")
    exhaust_schedule(worker, clock)
    assert deliveries_of(db, endpoint["id"]) == [("dead", len(WEBHOOK_SCHEDULE) + 1)]
    sent = len(receiver.requests)

    dead = cli.invoke(cli_app, ["worker", "--dead"])
    assert dead.exit_code == 0, dead.output
    assert f"webhook:{endpoint['id']}" in dead.output
    with db.transaction(readonly=True) as session:
        (letter,) = service.list_dead(session)

    receiver.answer = lambda _r: 200
    enabled = cli.invoke(cli_app, ["webhooks", "enable", endpoint["id"]])
    assert enabled.exit_code == 0, enabled.output
    assert (
        client.get(f"{API}/webhook-endpoints/{endpoint['id']}", headers=auth).json()["status"]
        == "enabled"
    )

    # Ids of deliveries and timers overlap, so an id alone is refused rather than guessed.
    ambiguous = cli.invoke(cli_app, ["worker", "--replay", str(letter.id)])
    assert ambiguous.exit_code == 1
    assert "dead_letter_kind_required" in ambiguous.output
    replayed = cli.invoke(cli_app, ["worker", "--replay", str(letter.id), "--kind", "delivery"])
    assert replayed.exit_code == 0, replayed.output
    assert "re-queued 1" in replayed.output
    worker.drain()
    assert len(receiver.requests) == sent + 1
    assert receiver.requests[-1].event_id == receiver.requests[0].event_id
    assert deliveries_of(db, endpoint["id"]) == [("done", 1)]
    assert cli.invoke(cli_app, ["worker", "--dead"]).output.strip() == "no dead letters"


def test_envelope_timestamps_are_utc(
    client: TestClient, auth: dict[str, str], worker: Worker, receiver: Receiver
) -> None:
    create_endpoint(client, auth, receiver.url(), ["*"])
    create_channel(client, auth, "web")
    worker.drain()
    created_at = parse_time(receiver.requests[0].json["created_at"])
    assert created_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created_at) < timedelta(minutes=5)


# -- docs: the verification snippets in docs/webhooks.md work on a real delivery ---------------
DOCS = Path(__file__).resolve().parents[1] / "docs" / "webhooks.md"

NODE_MAIN = """
const cases = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const verdicts = cases.map((c) =>
  verifySeamline(Buffer.from(c.body, "base64"), c.header, c.secret, c.now));
console.log(JSON.stringify(verdicts));
"""

RUBY_MAIN = """
require "json"
cases = JSON.parse($stdin.read)
puts JSON.generate(cases.map { |c|
  verify_seamline(c["body"].unpack1("m0"), c["header"], c["secret"], now: c["now"])
})
"""

GO_MAIN = """package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

func main() {
	var cases []struct {
		Body   string `json:"body"`
		Header string `json:"header"`
		Secret string `json:"secret"`
		Now    int64  `json:"now"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	verdicts := []bool{}
	for _, c := range cases {
		body, err := base64.StdEncoding.DecodeString(c.Body)
		if err != nil {
			panic(err)
		}
		err = VerifySeamline(body, c.Header, c.Secret, time.Unix(c.Now, 0))
		verdicts = append(verdicts, err == nil)
	}
	out, _ := json.Marshal(verdicts)
	fmt.Println(string(out))
}
"""


def doc_snippet(language: str) -> str:
    """The first ``language`` block of the "Verifying the signature" section of the docs."""
    text = DOCS.read_text()
    section = text[text.index("## Verifying the signature") :]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} snippet in {DOCS}"
    return match.group(1)


def run_snippet(language: str, cases: list[dict[str, Any]], workdir: Path) -> list[bool]:
    code = doc_snippet(language)
    if language == "python":
        namespace: dict[str, Any] = {}
        exec(compile(code, str(DOCS), "exec"), namespace)  # the documented function, as is
        verify_fn = namespace["verify_seamline"]
        return [
            verify_fn(base64.b64decode(c["body"]), c["header"], c["secret"], now=c["now"])
            for c in cases
        ]
    if language == "js":
        (workdir / "verify.js").write_text(code + NODE_MAIN)
        command = ["node", "verify.js"]
    elif language == "ruby":
        (workdir / "verify.rb").write_text(code + RUBY_MAIN)
        command = ["ruby", "verify.rb"]
    else:
        (workdir / "verify.go").write_text(code.replace("package webhooks", "package main", 1))
        (workdir / "main.go").write_text(GO_MAIN)
        command = ["go", "run", "verify.go", "main.go"]
    done = subprocess.run(
        command, input=json.dumps(cases), capture_output=True, text=True, cwd=workdir, timeout=120
    )
    assert done.returncode == 0, done.stderr
    verdicts: list[bool] = json.loads(done.stdout)
    return verdicts


@pytest.mark.parametrize(
    ("language", "binary"),
    [("python", None), ("js", "node"), ("go", "go"), ("ruby", "ruby")],
)
def test_documented_verification_snippets_work(
    language: str,
    binary: str | None,
    client: TestClient,
    auth: dict[str, str],
    worker: Worker,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    if binary and shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed")
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    rotated = client.post(f"{API}/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=auth)
    old, new = endpoint["secret"], rotated.json()["secret"]
    create_channel(client, auth, "web")
    worker.drain()
    hit = receiver.requests[0]
    signature = hit.headers["seamline-signature"]
    t = int(signature.split(",")[0].removeprefix("t="))

    def case(
        body: bytes = hit.body, sig: str = signature, secret: str = new, now: int = t + 5
    ) -> dict[str, Any]:
        return {
            "body": base64.b64encode(body).decode(),
            "header": sig,
            "secret": secret,
            "now": now,
        }

    cases = {
        "new secret": (case(), True),
        "old secret during rotation": (case(secret=old), True),
        "edge of tolerance": (case(now=t - 300), True),
        "wrong secret": (case(secret=new + "x"), False),
        "tampered body": (case(body=hit.body.replace(b"web", b"wob")), False),
        "stale": (case(now=t + 301), False),
        "from the future": (case(now=t - 301), False),
        "malformed": (case(sig="garbage"), False),
        "no signature": (case(sig=f"t={t}"), False),
        "non-hex signature": (case(sig=f"t={t},v1={'é' * 64}"), False),
        "re-timestamped": (case(sig=signature.replace(f"t={t}", f"t={t + 1}")), False),
    }
    verdicts = run_snippet(language, [c for c, _ in cases.values()], tmp_path)
    assert dict(zip(cases, verdicts, strict=True)) == {k: v for k, (_, v) in cases.items()}


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
