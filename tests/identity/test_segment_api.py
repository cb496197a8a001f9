"""The Segment HTTP tracking API: every call type, limits, gzip, dedup, skew, auth."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.identity.models import Identifier, ProfileTrait
from seamline.kit.clock import FrozenClock
from tests.identity.conftest import cluster_of, events, identifier

Send = Callable[..., Any]
T0 = "2026-03-01T10:00:00+00:00"

SPEC_CALLS: dict[str, dict[str, Any]] = {
    "track": {"userId": "u1", "event": "Order Completed", "properties": {"total": 4200}},
    "identify": {"userId": "u1", "traits": {"name": "Ann", "email": "ann@example.com"}},
    "page": {"anonymousId": "a1", "name": "Home", "category": "Docs", "properties": {"path": "/"}},
    "screen": {"userId": "u1", "name": "Cart", "properties": {"items": 2}},
    "group": {"userId": "u1", "groupId": "acme", "traits": {"plan": "pro"}},
    "alias": {"userId": "u1", "previousId": "a1"},
}


@pytest.mark.parametrize("call_type", sorted(SPEC_CALLS))
def test_every_call_type_is_stored(
    call_type: str, send: Send, db: Database, clock: FrozenClock
) -> None:
    body = {**SPEC_CALLS[call_type], "messageId": f"m-{call_type}", "timestamp": T0}
    response = send(call_type, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    [stored] = events(db)
    assert stored.type == call_type
    assert stored.message_id == f"m-{call_type}"
    assert stored.timestamp == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert stored.received_at == clock()
    primary = ("user_id", "u1") if "userId" in body else ("anonymous_id", "a1")
    assert stored.profile_id == identifier(db, *primary).profile_id


def test_fields_of_each_call_land_in_their_columns(send: Send, db: Database) -> None:
    for call_type, body in SPEC_CALLS.items():
        assert send(call_type, body).status_code == 200
    by_type = {e.type: e for e in events(db)}
    assert by_type["track"].name == "Order Completed"
    assert by_type["track"].properties == {"total": 4200}
    assert (by_type["page"].name, by_type["page"].category) == ("Home", "Docs")
    assert by_type["group"].group_id == "acme"
    assert by_type["group"].traits == {"plan": "pro"}
    assert by_type["alias"].previous_id == "a1"
    assert by_type["identify"].traits["email"] == "ann@example.com"
    with db.transaction(readonly=True) as session:
        traits = {t.name: t.value for t in session.scalars(select(ProfileTrait))}
    assert traits == {"name": "Ann", "email": "ann@example.com"}


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("call_type", "body"),
    [
        ("track", {"event": "x"}),
        ("track", {"userId": "u1"}),
        ("alias", {"userId": "u1"}),
        ("alias", {"previousId": "a1"}),
        ("group", {"userId": "u1"}),
        ("track", {"userId": "u1", "event": "x", "timestamp": "yesterday"}),
        ("track", {"userId": "u\x001", "event": "x"}),
        ("track", {"userId": "   ", "event": "x"}),
        ("identify", {"userId": True}),
        ("identify", {"userId": 1.0}),
        ("track", {"userId": "u1", "event": "x", "properties": {"a": _nested(200)}}),
    ],
    ids=[
        "no-id",
        "no-event",
        "alias-no-previous",
        "alias-no-user",
        "group-no-id",
        "bad-time",
        "nul",
        "blank-id",
        "boolean-id",
        "float-id",
        "too-deep",
    ],
)
def test_invalid_single_call_is_400(send: Send, db: Database, call_type: str, body: Any) -> None:
    response = send(call_type, body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "invalid_call"
    assert events(db) == []


def test_replayed_message_id_is_acknowledged_and_stored_once(send: Send, db: Database) -> None:
    body = {"userId": "u1", "event": "Paid", "messageId": "once"}
    assert send("track", body).json() == {"success": True}
    assert send("track", body).json() == {"success": True}
    batch = {"batch": [{**body, "type": "track"}, {**body, "type": "track"}]}
    assert send("batch", batch).status_code == 200
    assert len(events(db)) == 1
    with db.transaction(readonly=True) as session:
        tracked = session.scalar(
            select(func.count()).where(OutboxEvent.type == "customer.event_tracked")
        )
    assert tracked == 1


def test_dedup_is_per_write_key(
    send: Send, client: TestClient, make_key: Callable[..., str], db: Database
) -> None:
    body = {"userId": "u1", "event": "Paid", "messageId": "same"}
    send("track", body)
    other = make_key(kind="event", name="app")
    response = client.post("/v1/track", json=body, headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 200
    assert len(events(db)) == 2


def test_clock_skew_is_corrected_as_segment_documents(
    send: Send, db: Database, clock: FrozenClock
) -> None:
    device_now = clock() + timedelta(hours=2)  # the device's clock runs 2 h fast
    happened = device_now - timedelta(minutes=5)
    body = {
        "userId": "u1",
        "event": "x",
        "timestamp": happened.isoformat(),
        "sentAt": device_now.isoformat(),
    }
    assert send("track", body).status_code == 200
    [stored] = events(db)
    assert stored.timestamp == clock() - timedelta(minutes=5)
    assert stored.original_timestamp == happened
    assert stored.sent_at == device_now


def test_batch_sent_at_applies_to_its_calls(send: Send, db: Database, clock: FrozenClock) -> None:
    sent = clock() - timedelta(minutes=1)  # the device's clock is a minute slow
    call = {"type": "track", "userId": "u1", "event": "x", "timestamp": sent.isoformat()}
    send("batch", {"batch": [call], "sentAt": sent.isoformat()})
    assert events(db)[0].timestamp == clock()


def test_no_timestamp_means_received_at(send: Send, db: Database, clock: FrozenClock) -> None:
    send("track", {"userId": "u1", "event": "x"})
    assert events(db)[0].timestamp == clock()


def test_context_channel_ip_user_agent_and_campaign_are_kept(send: Send, db: Database) -> None:
    context = {
        "channel": "browser",
        "ip": "203.0.113.9",
        "userAgent": "Mozilla/5.0",
        "campaign": {"name": "spring", "source": "newsletter", "medium": "email"},
    }
    send("page", {"anonymousId": "a1", "name": "Home", "context": context})
    [stored] = events(db)
    assert (stored.channel, stored.ip, stored.user_agent) == (
        "browser",
        "203.0.113.9",
        "Mozilla/5.0",
    )
    assert stored.context["campaign"]["source"] == "newsletter"
    assert identifier(db, "anonymous_id", "a1").source_channel == "browser"


def test_batch_keeps_valid_calls_and_reports_the_rest(send: Send, db: Database) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "ok"},
        {"type": "track", "event": "no id"},
        "not an object",
        {"type": "teleport", "userId": "u1"},
        {"type": "identify", "anonymousId": "a1", "traits": {"email": "nope"}},
        {"type": "track", "userId": "u1", "event": "x", "properties": {"pad": "x" * 33_000}},
        {"type": ["track"], "userId": "u1", "event": "a type that is no text"},
        {"type": {"track": 1}, "userId": "u1"},
    ]
    response = send("batch", {"batch": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3, 5, 6, 7]
    assert "userId or anonymousId" in body["rejected"][0]["reason"]
    assert body["rejected"][3]["reason"].startswith("event_too_large")
    assert sorted(e.type for e in events(db)) == ["identify", "track"]


def test_bad_email_and_phone_are_kept_invalid_and_do_not_link(send: Send, db: Database) -> None:
    traits = {"email": "n/a", "phone": "not a phone"}
    for user in ("u1", "u2"):
        assert send("identify", {"userId": user, "traits": traits}).status_code == 200
    email = identifier(db, "email", "n/a")
    phone = identifier(db, "phone", "not a phone")
    assert (email.valid, phone.valid) == (False, False)
    assert cluster_of(db, "user_id", "u1") != cluster_of(db, "user_id", "u2")
    assert len(events(db)) == 2


def test_event_over_32_kb_is_400(send: Send, db: Database) -> None:
    body = {"userId": "u1", "event": "x", "properties": {"pad": "x" * 33_000}}
    response = send("track", body)
    assert response.status_code == 400
    assert response.json()["code"] == "event_too_large"
    assert events(db) == []


def test_batch_over_500_kb_is_400(send: Send, db: Database) -> None:
    call = {"type": "track", "userId": "u1", "event": "x", "properties": {"pad": "x" * 20_000}}
    response = send("batch", {"batch": [call] * 30})
    assert response.status_code == 400
    assert response.json()["code"] == "batch_too_large"
    assert events(db) == []


def _gzipped(client: TestClient, basic: dict[str, str], path: str, raw: bytes) -> Any:
    headers = {**basic, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    return client.post(path, content=gzip.compress(raw), headers=headers)


def test_gzip_bodies_are_accepted(client: TestClient, basic: dict[str, str], db: Database) -> None:
    batch = {"batch": [{"type": "track", "userId": "u1", "event": "x", "messageId": "g1"}]}
    response = _gzipped(client, basic, "/v1/batch", json.dumps(batch).encode())
    assert response.status_code == 200, response.text
    assert [e.message_id for e in events(db)] == ["g1"]


def test_gzip_bomb_is_refused_without_inflating_it(
    client: TestClient, basic: dict[str, str], db: Database
) -> None:
    bomb = b'{"batch": [' + b" " * 50_000_000 + b"]}"  # 50 MB of spaces, ~50 KB compressed
    response = _gzipped(client, basic, "/v1/batch", bomb)
    assert response.status_code == 400
    assert response.json()["code"] == "batch_too_large"


def test_broken_gzip_and_json_are_400(client: TestClient, basic: dict[str, str]) -> None:
    headers = {**basic, "Content-Encoding": "gzip"}
    response = client.post("/v1/track", content=b"not gzip", headers=headers)
    assert response.json()["code"] == "malformed_gzip"
    response = client.post("/v1/track", content=b'{"userId": ', headers=basic)
    assert (response.status_code, response.json()["code"]) == (400, "malformed_json")
    response = client.post("/v1/track", content=b'{"userId": NaN}', headers=basic)
    assert response.json()["code"] == "malformed_json"


def test_wrong_key_is_401_and_bearer_works(
    client: TestClient, write_key: str, make_key: Callable[..., str]
) -> None:
    body = {"userId": "u1", "event": "x"}
    wrong = {"Authorization": "Basic " + "ZWtfbm9wZTo="}  # "ek_nope:"
    response = client.post("/v1/track", json=body, headers=wrong)
    assert (response.status_code, response.json()["code"]) == (401, "invalid_api_key")
    assert client.post("/v1/track", json=body).status_code == 401
    bearer = {"Authorization": f"Bearer {write_key}"}
    assert client.post("/v1/track", json=body, headers=bearer).status_code == 200
    reader = make_key(scopes=["catalog:read"])
    response = client.post("/v1/track", json=body, headers={"Authorization": f"Bearer {reader}"})
    assert response.status_code == 403


def test_identifiers_remember_first_and_last_seen(send: Send, db: Database) -> None:
    for when in ("2026-03-02T00:00:00Z", "2026-03-01T00:00:00Z", "2026-03-03T00:00:00Z"):
        send("track", {"anonymousId": "a1", "event": "x", "timestamp": when})
    ident = identifier(db, "anonymous_id", "a1")
    assert ident.first_seen == datetime(2026, 3, 1, tzinfo=UTC)
    assert ident.last_seen == datetime(2026, 3, 3, tzinfo=UTC)
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Identifier)) == 1


def test_a_blank_id_in_a_batch_rejects_that_call_only(send: Send, db: Database) -> None:
    batch = [
        {"type": "track", "userId": "ok", "event": "e"},
        {"type": "track", "userId": " ", "event": "e"},
    ]
    response = send("batch", {"batch": batch})
    assert response.status_code == 200, response.text
    assert [r["index"] for r in response.json()["rejected"]] == [1]
    assert len(events(db)) == 1


def test_placeholder_values_never_link_strangers(send: Send, db: Database) -> None:
    zeros = {"device": {"id": "00000000-0000-0000-0000-000000000000"}}
    for visitor, email in (("a1", "one@example.com"), ("a2", "two@example.com")):
        body = {"anonymousId": visitor, "traits": {"email": email, "whatsapp": "yes"}}
        assert send("identify", {**body, "context": zeros}).status_code == 200
    assert cluster_of(db, "anonymous_id", "a1") != cluster_of(db, "anonymous_id", "a2")
    assert identifier(db, "device_id", "00000000-0000-0000-0000-000000000000").valid is False
