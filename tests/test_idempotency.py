"""Idempotency keys: Stripe's semantics on every mutating request under /api/."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seamline.api.idempotency import IdempotencyMiddleware, IdempotencyRecord, _request_hash
from seamline.auth import service as keys
from seamline.auth.service import hash_token
from seamline.channels import service as channel_service
from seamline.channels.models import Channel
from seamline.db.engine import Database
from seamline.kit.clock import FrozenClock
from seamline.kit.crypto import SecretBox
from seamline.runtime import Runtime

URL = "/api/v1/channels"


def body(handle: str = "web") -> dict[str, Any]:
    return {"kind": "web", "name": "Web store", "handle": handle}


def channel_count(db: Database) -> int:
    with db.transaction(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(Channel)) or 0)


def test_same_key_same_body_replays_first_response(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    headers = {**auth, "Idempotency-Key": "create-web-1"}
    first = client.post(URL, json=body(), headers=headers)
    second = client.post(URL, json=body(), headers=headers)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    assert second.headers["content-type"] == first.headers["content-type"]
    assert channel_count(db) == 1


def test_same_key_different_body_is_refused(client: TestClient, auth: dict[str, str]) -> None:
    headers = {**auth, "Idempotency-Key": "k-1"}
    assert client.post(URL, json=body("a"), headers=headers).status_code == 201
    reused = client.post(URL, json=body("b"), headers=headers)
    assert reused.status_code == 422
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["code"] == "idempotency_key_reused"


def test_same_key_on_another_path_is_a_different_request(
    client: TestClient, auth: dict[str, str]
) -> None:
    headers = {**auth, "Idempotency-Key": "k-path"}
    assert client.post(URL, json=body("a"), headers=headers).status_code == 201
    other = client.post(
        "/api/v1/webhook-endpoints",
        json={"url": "https://example.test/h", "event_types": ["*"]},
        headers=headers,
    )
    assert other.json()["code"] == "idempotency_key_reused"


def test_keys_are_scoped_to_the_api_key(
    client: TestClient, make_key: Callable[..., str], db: Database
) -> None:
    a = {"Authorization": f"Bearer {make_key(name='a')}", "Idempotency-Key": "shared"}
    b = {"Authorization": f"Bearer {make_key(name='b')}", "Idempotency-Key": "shared"}
    assert client.post(URL, json=body("one"), headers=a).status_code == 201
    second = client.post(URL, json=body("two"), headers=b)
    assert second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert channel_count(db) == 2


def test_rejected_requests_release_the_key(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    headers = {**auth, "Idempotency-Key": "fix-and-retry"}
    invalid = client.post(URL, json={"kind": "web", "handle": "x"}, headers=headers)
    assert invalid.status_code == 422
    # Nothing was executed, so the client may fix the body and retry with the same key.
    fixed = client.post(URL, json=body(), headers=headers)
    assert fixed.status_code == 201
    assert channel_count(db) == 1


def test_unauthenticated_requests_store_nothing(client: TestClient, db: Database) -> None:
    response = client.post(URL, json=body(), headers={"Idempotency-Key": "anon"})
    assert response.status_code == 401
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 0


def test_business_errors_are_replayed(client: TestClient, auth: dict[str, str]) -> None:
    assert client.post(URL, json=body(), headers=auth).status_code == 201
    headers = {**auth, "Idempotency-Key": "dup"}
    first = client.post(URL, json=body(), headers=headers)
    again = client.post(URL, json=body(), headers=headers)
    assert first.status_code == again.status_code == 409
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["code"] == "channel_handle_taken"


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
def test_invalid_keys_are_refused(client: TestClient, auth: dict[str, str], key: str) -> None:
    response = client.post(URL, json=body(), headers={**auth, "Idempotency-Key": key})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"


def test_keys_expire_after_the_retention_window(
    client: TestClient, auth: dict[str, str], clock: FrozenClock, db: Database
) -> None:
    headers = {**auth, "Idempotency-Key": "old"}
    assert client.post(URL, json=body("first"), headers=headers).status_code == 201
    clock.advance(hours=23)
    assert client.post(URL, json=body("second"), headers=headers).status_code == 422
    clock.advance(hours=2)
    # Past 24 h the key is forgotten: the request is new.
    assert client.post(URL, json=body("second"), headers=headers).status_code == 201
    assert channel_count(db) == 2


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Hold channel creation at the critical moment: (entered, release)."""
    entered, release = threading.Event(), threading.Event()
    original = channel_service.create_channel

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(10), "the test never released the request"
        return original(*args, **kwargs)

    monkeypatch.setattr(channel_service, "create_channel", held)
    yield entered, release
    release.set()


def test_same_key_while_running_is_409(
    live_server: str,
    auth: dict[str, str],
    gate: tuple[threading.Event, threading.Event],
    db: Database,
) -> None:
    entered, release = gate
    headers = {**auth, "Idempotency-Key": "in-flight"}
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=live_server, timeout=20) as http:
        first = pool.submit(http.post, URL, json=body(), headers=headers)
        assert entered.wait(10)
        racing = http.post(URL, json=body(), headers=headers)
        assert racing.status_code == 409
        assert racing.json()["code"] == "idempotency_key_in_use"
        assert racing.headers["retry-after"] == "1"
        release.set()
        assert first.result().status_code == 201
        replay = http.post(URL, json=body(), headers=headers)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.result().json()
    assert channel_count(db) == 1


def test_fifty_parallel_requests_with_one_key_have_one_effect(
    live_server: str, auth: dict[str, str], db: Database
) -> None:
    headers = {**auth, "Idempotency-Key": "stampede"}
    barrier = threading.Barrier(50)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=live_server, timeout=30) as http:
            barrier.wait()
            return http.post(URL, json=body(), headers=headers)

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(send, range(50)))
    created = [r for r in responses if r.status_code == 201]
    in_flight = [r for r in responses if r.status_code == 409]
    assert len(created) + len(in_flight) == 50, {r.status_code for r in responses}
    assert created, "at least the first request completes"
    assert all(r.json()["code"] == "idempotency_key_in_use" for r in in_flight)
    assert len({r.content for r in created}) == 1, "every 201 carries the identical body"
    assert sum(1 for r in created if "idempotent-replayed" not in r.headers) == 1
    with httpx.Client(base_url=live_server, timeout=30) as http:
        after = http.post(URL, json=body(), headers=headers)
    assert after.content == created[0].content
    assert channel_count(db) == 1


def test_an_abandoned_attempt_can_be_taken_over(
    client: TestClient, auth: dict[str, str], clock: FrozenClock, db: Database
) -> None:
    token = auth["Authorization"].split()[1]
    # A first attempt died after claiming the key (no response stored).
    middleware = IdempotencyMiddleware(
        app=None,  # type: ignore[arg-type]
        db=db,
        box=SecretBox("unused"),
        ttl=timedelta(hours=24),
        lock=timedelta(seconds=60),
    )
    scope = {"method": "POST", "path": URL, "query_string": b""}
    raw = json.dumps(body()).encode()
    assert middleware._begin(hash_token(token), token, "crashed", _request_hash(scope, raw)) is None
    headers = {**auth, "Idempotency-Key": "crashed", "Content-Type": "application/json"}
    assert client.post(URL, content=raw, headers=headers).status_code == 409
    clock.advance(seconds=61)
    taken_over = client.post(URL, content=raw, headers=headers)
    assert taken_over.status_code == 201
    assert channel_count(db) == 1


def test_stored_responses_are_sealed(
    client: TestClient, auth: dict[str, str], db: Database
) -> None:
    """A replayable response may carry a secret shown once; it is never stored in clear."""
    headers = {**auth, "Idempotency-Key": "hook"}
    created = client.post(
        "/api/v1/webhook-endpoints",
        json={"url": "https://example.test/h", "event_types": ["*"]},
        headers=headers,
    )
    secret = created.json()["secret"]
    with db.transaction(readonly=True) as session:
        stored = session.scalars(select(IdempotencyRecord.response_body)).one()
    assert stored is not None
    assert secret.encode() not in stored
    replay = client.post(
        "/api/v1/webhook-endpoints",
        json={"url": "https://example.test/h", "event_types": ["*"]},
        headers=headers,
    )
    assert replay.json()["secret"] == secret


def test_the_worker_purges_expired_keys(
    client: TestClient, auth: dict[str, str], clock: FrozenClock, runtime: Runtime, db: Database
) -> None:
    assert (
        client.post(URL, json=body(), headers={**auth, "Idempotency-Key": "a"}).status_code == 201
    )
    worker = runtime.worker()
    assert worker.keep_house() == 0, "nothing has expired yet"
    clock.advance(hours=25)
    assert (
        client.post(URL, json=body("b"), headers={**auth, "Idempotency-Key": "b"}).status_code
        == 201
    )
    clock.advance(minutes=11)
    assert worker.keep_house() == 1, "only the expired key goes"
    assert worker.keep_house() == 0, "chores run at most every ten minutes"
    with db.transaction(readonly=True) as session:
        assert list(session.scalars(select(IdempotencyRecord.key))) == ["b"]


def test_a_revoked_key_gets_no_replay(
    client: TestClient, make_key: Callable[..., str], db: Database
) -> None:
    """A stored response may hold a secret shown once: never hand it to a revoked key."""
    token = make_key(name="leaky")
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "hook"}
    hook = {"url": "https://example.test/h", "event_types": ["*"]}
    assert client.post("/api/v1/webhook-endpoints", json=hook, headers=headers).status_code == 201
    with db.transaction() as session:
        key_id = next(k.id for k in keys.list_keys(session) if k.name == "leaky")
        keys.revoke_key(session, key_id)
    again = client.post("/api/v1/webhook-endpoints", json=hook, headers=headers)
    assert again.status_code == 401
    assert "secret" not in again.text
