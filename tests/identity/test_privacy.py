"""Privacy requests: export, erase (the canary scan of every table and column), late-event
suppression and consenting again, the request log, and bad input."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import JSON, LargeBinary, String, Text, cast, func, select

from seamline.api.idempotency import IdempotencyRecord
from seamline.db.engine import Database
from seamline.db.models import metadata
from seamline.events.models import Delivery, OutboxEvent, WebhookAttempt, WebhookEndpoint
from seamline.events.outbox import emit
from seamline.identity import consent
from seamline.identity.customer_models import (
    ChannelActivity,
    CustomerOrder,
    DuplicateDecision,
    ErasedIdentifier,
    PrivacyRequest,
    ProfilePreference,
    TimelineEntry,
)
from seamline.identity.models import Identifier, Profile, ProfileTrait, TrackedEvent
from seamline.kit import clock
from seamline.runtime import Runtime
from tests.identity.conftest import cluster_of, identifier, merges

Send = Callable[..., Any]
T0 = datetime(2026, 3, 1, tzinfo=UTC)

CANARY = {
    "email": "canary.person.q7@example.com",
    "phone": "7700900461",
    "handle": "canary_handle_q7",
    "anonymous": "anon-canary-q7",
    "device": "dev-canary-q7",
    "user": "user-canary-q7",
    "name": "Zoë Canaryname",
    "street": "17 Canarystreet",
    "note": "canary-note-q7",
    "ip": "203.0.113.177",
    "agent": "CanaryBrowser/7.7",
    "url": "canary-url-q7",
    "evidence": "canary-evidence-q7",
    "source": "canary-source-q7",
    "timeline": "canary-timeline-q7",
    "preference": "canary-pref-q7",
    "echo": "canary-echo-q7",
    "error": "canary-error-q7",
    "merge_reason": "canary-staff-reason-q7",
}


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def erase(client: TestClient, auth: dict[str, str], profile_id: str, **headers: str) -> Any:
    return client.post(
        f"/api/v1/profiles/{profile_id}/erase",
        json={"reason": "customer request, ticket 4411"},
        headers={**auth, **headers},
    )


def count(db: Database, model: Any, *where: Any) -> int:
    with db.transaction(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def canaries_left(db: Database) -> list[str]:
    """Every text and JSON column of every table, read as stored (and JSON also decoded), searched
    for every canary, case-insensitively."""
    needles = {name: value.lower() for name, value in CANARY.items()}
    found: list[str] = []
    with db.engine.connect() as conn:
        for table in metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
            assert not [
                c for c in table.columns if isinstance(c.type, LargeBinary) and table.name
                != "idempotency_keys"
            ], table.name  # fmt: skip
            if not columns:
                continue
            rows = conn.execute(select(*(cast(c, Text) for c in columns))).all()
            for row in rows:
                for column, raw in zip(columns, row, strict=True):
                    if raw is None:
                        continue
                    texts = [raw.lower()]
                    with contextlib.suppress(ValueError):
                        texts.append(json.dumps(json.loads(raw), ensure_ascii=False).lower())
                    for name, needle in needles.items():
                        if any(needle in t for t in texts):
                            found.append(f"{table.name}.{column.name}: {name}")
    return sorted(set(found))


def person(send: Send) -> None:
    """One person on two devices, joined by their email: every kind of personal data."""
    context = {
        "ip": CANARY["ip"],
        "userAgent": CANARY["agent"],
        "page": {"url": f"https://shop.example/account?ref={CANARY['url']}"},
        "locale": "en-GB",
    }
    traits = {
        "email": CANARY["email"],
        "name": CANARY["name"],
        "address": {"street": CANARY["street"], "city": "London", "country": "GB"},
        "instagram": CANARY["handle"],
    }
    send("identify", {"anonymousId": CANARY["anonymous"], "traits": traits, "context": context,
                      "timestamp": at(0)})  # fmt: skip
    send(
        "identify",
        {
            "userId": CANARY["user"],
            "anonymousId": CANARY["device"],
            "traits": {"email": CANARY["email"], "phone": f"+44{CANARY['phone']}"},
            "context": context,
            "timestamp": at(1),
        },
    )
    send(
        "track",
        {
            "userId": CANARY["user"],
            "event": "Order Completed",
            "properties": {
                "order_id": "ord-q7",
                "total": 42.0,
                "currency": "eur",
                "note": f"please call {CANARY['note']}",
                "products": [{"sku": "TEE-1", "name": CANARY["name"]}],
            },
            "context": context,
            "timestamp": at(2),
        },
    )


def test_erase_leaves_no_personal_data_anywhere(
    send: Send,
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    runtime: Runtime,
) -> None:
    person(send)
    user = identifier(db, "user_id", CANARY["user"]).profile_id
    anonymous = identifier(db, "anonymous_id", CANARY["anonymous"]).profile_id
    assert cluster_of(db, "user_id", CANARY["user"]) == cluster_of(
        db, "anonymous_id", CANARY["anonymous"]
    )
    assert merges(db)  # the two devices were merged by the shared email
    # Staff join a till profile to the person, typing a reason that names them.
    send("track", {"anonymousId": "till-q7", "event": "Receipt printed", "timestamp": at(3)})
    till = identifier(db, "anonymous_id", "till-q7").profile_id
    staff = {"profile_id": till, "reason": f"same person: {CANARY['merge_reason']}"}
    ok(client.post(f"/api/v1/profiles/{user}/merge", json=staff, headers=auth))
    change = {
        "channel": "email",
        "purpose": "marketing",
        "state": "granted",
        "level": "confirmed",
        "source": CANARY["source"],
        "evidence": {"ip": CANARY["ip"], "form": CANARY["evidence"]},
    }
    ok(client.post(f"/api/v1/profiles/{anonymous}/consent", json={"changes": [change]},
                   headers={**auth, "Idempotency-Key": "consent-1"}))  # fmt: skip
    assert count(db, IdempotencyRecord) == 1
    # The other domains' reactions (timeline, orders, activity) run as they would in production.
    runtime.worker().drain()
    other = identifier(db, "email", CANARY["email"]).profile_id
    with db.transaction() as session:
        now = clock.now()
        session.add_all(
            [
                TimelineEntry(
                    profile_id=user,
                    id="tle_q7",
                    event_id="evt_q7",
                    type="message.sent",
                    occurred_at=now,
                    channel="email",
                    aggregate_type="message",
                    aggregate_id="msg_q7",
                    summary=f"Sent to {CANARY['email']}",
                    data={"body": CANARY["timeline"]},
                ),
                ProfilePreference(
                    profile_id=user,
                    name="size",
                    value={"note": CANARY["preference"]},
                    set_at=now,
                    set_by="staff",
                    source="store",
                ),
                DuplicateDecision(
                    profile_a_id=min(user, "prf_zz"),
                    profile_b_id=max(user, "prf_zz"),
                    decision="dismissed",
                    score=0.8,
                    decided_by="staff",
                    decided_at=now,
                ),
            ]
        )
        if session.get(CustomerOrder, (user, "ord-q7")) is None:
            session.add(CustomerOrder(profile_id=user, order_key="ord-q7", source="segment",
                                      channel="web", currency="EUR", total_minor=4200,
                                      placed_at=now))  # fmt: skip
        endpoint = WebhookEndpoint(id="whe_q7", url="https://hooks.example/q7", event_types=["*"],
                                   secret_encrypted="x")  # fmt: skip
        session.add(endpoint)
        session.flush()
        events = list(session.scalars(select(OutboxEvent).where(
            OutboxEvent.aggregate_id.in_([user, anonymous, other]))))  # fmt: skip
        for event in events:
            session.add(Delivery(event_seq=event.seq, consumer="webhook:whe_q7",
                                 aggregate_key=f"profile:{event.aggregate_id}", status="pending",
                                 attempts=1, next_attempt_at=now,
                                 last_error=f"HTTP 500 {CANARY['error']}"))  # fmt: skip
            session.add(WebhookAttempt(endpoint_id="whe_q7", event_id=event.id,
                                       event_type=event.type, attempt=1, ok=False, status_code=500,
                                       error="HTTP 500", response_excerpt=f"echo {CANARY['echo']}",
                                       duration_ms=3))  # fmt: skip
    before = canaries_left(db)
    assert {h.split(": ")[1] for h in before} == set(CANARY), before  # the scan sees them all
    events_before = count(db, TrackedEvent)
    with db.transaction(readonly=True) as session:
        queued = list(
            session.scalars(select(Delivery.id).where(Delivery.consumer == "webhook:whe_q7"))
        )
    identifiers_before = count(db, Identifier)

    response = erase(client, auth, user)
    body = ok(response)
    assert body["previously_erased"] is False
    assert set(body["profile_ids"]) >= {user, anonymous, other}
    # The mistyped phone number (not a valid number: it never linked) went too, unhashed.
    assert body["summary"]["invalid_identifiers"] == 1
    assert body["summary"]["identifiers"] == identifiers_before - 1
    assert body["summary"]["orders_kept"] == 1

    assert canaries_left(db) == []
    runtime.worker().drain()  # what the handlers do with the erasure's own events adds nothing
    assert canaries_left(db) == []
    # Facts stay: the profiles, the events (name, type, time) and the order's money.
    assert count(db, Profile) == len(body["profile_ids"]) + 1  # + the stray phone's
    assert count(db, TrackedEvent) == events_before
    assert count(db, Identifier) == 0
    assert count(db, ErasedIdentifier) == identifiers_before - 1
    assert count(db, ProfileTrait) == 0
    assert count(db, ProfilePreference) == 0
    assert count(db, ChannelActivity) == 0
    assert count(db, DuplicateDecision) == 0
    assert count(db, IdempotencyRecord) == 0  # the sealed consent response is gone too
    with db.transaction(readonly=True) as session:
        order = session.scalars(
            select(TrackedEvent).where(TrackedEvent.name == "Order Completed")
        ).one()
        assert order.properties == {"order_id": "ord-q7", "total": 42.0, "currency": "EUR"}
        assert (order.user_id, order.ip, order.context, order.traits) == (None, None, {}, {})
        kept = session.scalars(select(CustomerOrder)).one()
        assert (kept.order_key, kept.total_minor, kept.currency) == ("ord-q7", 4200, "EUR")
        erased = session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "profile.erased")
        ).one()
        assert erased.payload["privacy_request_id"] == body["privacy_request_id"]
        pending = session.scalars(select(Delivery).where(Delivery.id.in_(queued))).all()
        assert len(pending) == len(queued) > 0
        assert {(d.status, d.last_error) for d in pending} == {
            ("done", "skipped: the profile was erased")
        }
        logged = session.get(PrivacyRequest, body["privacy_request_id"])
        assert logged is not None
        assert logged.kind == "erase"
        assert logged.requested_by
        assert logged.requested_by.startswith("key_")
        assert logged.reason == "customer request, ticket 4411"
        assert not consent.allows(session, user, "email", "transactional")

    view = ok(client.get(f"/api/v1/profiles/{anonymous}/consent", headers=auth))
    assert view["erased"] is True
    assert {c["state"] for c in view["consents"]} == {"denied"}
    assert {c["source"] for c in view["consents"]} == {"privacy:erase"}
    refused = client.post(f"/api/v1/profiles/{anonymous}/consent", json={"changes": [change]},
                          headers=auth)  # fmt: skip
    assert refused.status_code == 409
    assert refused.json()["code"] == "profile_erased"

    # A late event with the erased email (and a device never seen) is acknowledged, not stored.
    dropped = REGISTRY.get_sample_value("seamline_privacy_suppressed_calls_total") or 0.0
    late = {"anonymousId": "new-device", "traits": {"email": CANARY["email"]}, "timestamp": at(9)}
    assert send("identify", late).json() == {"success": True}
    batch = {"batch": [{"type": "track", "userId": CANARY["user"], "event": "Late"},
                       {"type": "track", "anonymousId": "stranger", "event": "Hello"}]}  # fmt: skip
    assert send("batch", batch).json() == {"success": True}
    assert count(db, TrackedEvent) == events_before + 1  # the stranger only
    assert count(db, Identifier) == 1
    assert REGISTRY.get_sample_value("seamline_privacy_suppressed_calls_total") == dropped + 2
    assert canaries_left(db) == []

    # The person comes back and opts in with the same email: it may be recorded again.
    again = ok(
        client.post(
            "/api/v1/consent",
            json={"identifier": {"kind": "email", "value": CANARY["email"].upper()},
                  "changes": [{**change, "source": "signup", "evidence": {}}]},
            headers=auth,
        )
    )  # fmt: skip
    assert again["suppression_lifted"] is True
    assert again["created_profile"] is True
    assert again["profile_id"] not in body["profile_ids"]
    send("identify", {**late, "messageId": "back-1"})
    assert cluster_of(db, "anonymous_id", "new-device") == cluster_of(db, "email", CANARY["email"])
    with db.transaction(readonly=True) as session:
        assert consent.allows(session, again["profile_id"], "email", "marketing")
    # Their old user id stays suppressed until they give it again.
    send("track", {"userId": CANARY["user"], "event": "Still late", "messageId": "late-2"})
    assert count(db, Identifier, Identifier.kind == "user_id") == 0


def test_erasing_again_is_allowed_and_logged(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    send("identify", {"userId": "u9", "traits": {"email": "nine@example.com"}})
    profile = identifier(db, "user_id", "u9").profile_id
    first = ok(erase(client, auth, profile))
    second = ok(erase(client, auth, profile))
    assert second["previously_erased"] is True
    assert second["privacy_request_id"] != first["privacy_request_id"]
    assert second["summary"]["identifiers"] == 0
    log = ok(client.get(f"/api/v1/privacy-requests?profile_id={profile}", headers=auth))
    assert [r["id"] for r in log["data"]] == [
        second["privacy_request_id"],
        first["privacy_request_id"],
    ]
    assert {r["kind"] for r in log["data"]} == {"erase"}


def test_erase_redacts_a_former_partners_records(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    """Ann and a visitor were merged by one call, then unmerged; erasing the visitor removes
    the visitor's identifiers from what Ann keeps (her event, the merge evidence, events)."""
    send("identify", {"userId": "ann", "traits": {"first_name": "Ann"}, "timestamp": at(0)})
    send("identify", {"anonymousId": "visitor-q7", "traits": {"email": "visitor.q7@example.com"},
                      "timestamp": at(1)})  # fmt: skip
    send("track", {"userId": "ann", "anonymousId": "visitor-q7", "event": "Linked",
                   "properties": {"ref": "visitor-q7"}, "timestamp": at(2)})  # fmt: skip
    visitor = identifier(db, "anonymous_id", "visitor-q7").profile_id
    ann = identifier(db, "user_id", "ann").profile_id
    merge = next(m for m in merges(db) if m.trigger == "track")
    unmerge = {"merge_id": merge.id, "reason": "visitor-q7 is not Ann"}
    ok(client.post(f"/api/v1/profiles/{visitor}/unmerge", json=unmerge, headers=auth))
    assert cluster_of(db, "anonymous_id", "visitor-q7") != cluster_of(db, "user_id", "ann")

    body = ok(erase(client, auth, visitor))
    assert ann not in body["profile_ids"]
    assert body["summary"]["partner_records_redacted"] >= 1
    with db.transaction(readonly=True) as session:
        linked = session.scalars(select(TrackedEvent).where(TrackedEvent.name == "Linked")).one()
        assert linked.profile_id == ann
        assert linked.user_id == "ann"  # Ann's own data stays
        assert linked.anonymous_id is None
        assert linked.properties == {"ref": "[erased]"}
        assert session.scalars(select(ProfileTrait).where(ProfileTrait.profile_id == ann)).all()
    left = json.dumps(
        [[m.evidence for m in merges(db)], [e.payload for e in _events(db)]], ensure_ascii=False
    )
    assert "visitor-q7" not in left
    assert "visitor.q7@example.com" not in left
    assert cluster_of(db, "user_id", "ann") == ann


def _events(db: Database) -> list[OutboxEvent]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(OutboxEvent)))


def test_export_is_the_whole_cluster_and_is_logged(
    send: Send, client: TestClient, auth: dict[str, str], db: Database, make_key: Callable[..., str]
) -> None:
    person(send)
    user = identifier(db, "user_id", CANARY["user"]).profile_id
    change = {"channel": "sms", "purpose": "marketing", "state": "granted", "level": "single",
              "source": "checkout"}  # fmt: skip
    ok(client.post(f"/api/v1/profiles/{user}/consent", json={"changes": [change]}, headers=auth))
    anonymous = identifier(db, "anonymous_id", CANARY["anonymous"]).profile_id

    response = client.post(f"/api/v1/profiles/{anonymous}/export", headers=auth)
    doc = ok(response)
    assert response.headers["cache-control"] == "no-store"
    assert doc["format"] == "seamline.customer-export/1"
    assert doc["profile_id"] == anonymous
    assert doc["erased"] is False
    assert {i["value"] for i in doc["identifiers"]} >= {CANARY["email"], CANARY["user"]}
    assert {p["id"] for p in doc["profiles"]} == set(doc["profile_ids"])
    assert any(t["name"] == "name" and t["value"] == CANARY["name"] for t in doc["traits"])
    assert [e["name"] for e in doc["events"] if e["type"] == "track"] == ["Order Completed"]
    assert doc["consent"]["current"][0]["channel"] == "sms"
    assert len(doc["consent"]["history"]) == 1
    assert doc["merges"]
    assert {e["type"] for e in doc["domain_events"]} >= {"profile.merged", "consent.changed"}
    assert "customer.event_tracked" not in {e["type"] for e in doc["domain_events"]}
    json.dumps(doc)  # plain JSON all the way down

    with db.transaction(readonly=True) as session:
        logged = session.get(PrivacyRequest, doc["request_id"])
        assert logged is not None
        assert logged.kind == "export"
        assert logged.requested_by
        assert logged.requested_by.startswith("key_")
        assert logged.summary["events"] == 3
        assert set(logged.profile_ids) == set(doc["profile_ids"])

    again = ok(client.post(f"/api/v1/profiles/{user}/export", headers=auth))
    assert [r["id"] for r in again["privacy_requests"]] == [doc["request_id"]]
    log = ok(client.get("/api/v1/privacy-requests?kind=export&limit=1", headers=auth))
    assert [r["id"] for r in log["data"]] == [again["request_id"]]
    assert log["next_cursor"] == again["request_id"]
    page = ok(client.get(f"/api/v1/privacy-requests?cursor={log['next_cursor']}", headers=auth))
    assert [r["id"] for r in page["data"]] == [doc["request_id"]]

    reader = {"Authorization": f"Bearer {make_key(scopes=['customers:read', 'customers:write'])}"}
    assert client.post(f"/api/v1/profiles/{user}/export", headers=reader).status_code == 403
    assert erase(client, reader, user).status_code == 403
    exporter = {"Authorization": f"Bearer {make_key(scopes=['privacy:read'])}"}
    assert client.post(f"/api/v1/profiles/{user}/export", headers=exporter).status_code == 200
    assert erase(client, exporter, user).status_code == 403


@pytest.mark.parametrize(
    "body",
    [{}, {"reason": ""}, {"reason": "   "}, {"reason": "a\x00b"}, {"reason": "x" * 501},
     {"reason": "ok", "extra": 1}, {"reason": 5}],
)  # fmt: skip
def test_erase_bad_input(
    send: Send, client: TestClient, auth: dict[str, str], db: Database, body: dict[str, Any]
) -> None:
    send("identify", {"userId": "u1", "traits": {"email": "u1@example.com"}})
    profile = identifier(db, "user_id", "u1").profile_id
    response = client.post(f"/api/v1/profiles/{profile}/erase", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["path"].startswith("body")
    assert count(db, Identifier) == 2
    assert count(db, PrivacyRequest) == 0


def test_unknown_profiles(client: TestClient, auth: dict[str, str]) -> None:
    for path in ("/api/v1/profiles/prf_nope/erase", "/api/v1/profiles/prf_nope/export"):
        response = client.post(path, json={"reason": "test"}, headers=auth)
        assert response.status_code == 404
        assert response.json()["code"] == "profile_not_found"
    response = client.get("/api/v1/privacy-requests?profile_id=prf_nope", headers=auth)
    assert response.status_code == 404


def test_an_erased_identifier_needs_a_grant(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    send("identify", {"userId": "u5", "traits": {"email": "five@example.com"}})
    ok(erase(client, auth, identifier(db, "user_id", "u5").profile_id))
    denial = {"channel": "email", "purpose": "marketing", "state": "denied", "source": "form"}
    body = {"identifier": {"kind": "email", "value": "five@example.com"}, "changes": [denial]}
    response = client.post("/api/v1/consent", json=body, headers=auth)
    assert response.status_code == 409
    assert response.json()["code"] == "identifier_erased"
    assert count(db, Identifier) == 0
    assert count(db, ErasedIdentifier) == 2


def test_an_erased_device_only_suppresses_calls_landing_on_it(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    """A shared device (a store kiosk) was in the erased cluster: its own calls are dropped, but
    the next customer who logs in on it is stored as usual."""
    send("identify", {"userId": "ann", "anonymousId": "kiosk-1", "traits": {"email": "a@x.io"}})
    ok(erase(client, auth, identifier(db, "user_id", "ann").profile_id))
    send("page", {"anonymousId": "kiosk-1", "name": "Home", "messageId": "k1"})
    assert count(db, TrackedEvent, TrackedEvent.message_id == "k1") == 0
    send("identify", {"userId": "bob", "anonymousId": "kiosk-1", "messageId": "k2"})
    assert count(db, TrackedEvent, TrackedEvent.message_id == "k2") == 1
    assert cluster_of(db, "anonymous_id", "kiosk-1") == cluster_of(db, "user_id", "bob")
    # Ann's email is hers: any call carrying it is dropped, whoever it lands on.
    send("identify", {"userId": "carl", "traits": {"email": "A@x.io"}, "messageId": "k3"})
    assert count(db, TrackedEvent, TrackedEvent.message_id == "k3") == 0


def test_suppression_checks_a_batch_in_one_go(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    from seamline.identity import normalize, privacy

    send("identify", {"userId": "gone", "traits": {"email": "gone@example.com"}})
    ok(erase(client, auth, identifier(db, "user_id", "gone").profile_id))
    user = normalize.opaque(normalize.USER_ID, "gone")
    other = normalize.opaque(normalize.USER_ID, "here")
    email = normalize.email("GONE@example.com")
    anonymous = normalize.opaque(normalize.ANONYMOUS_ID, "a-1")
    assert user
    assert other
    assert email
    assert anonymous
    with db.transaction(readonly=True) as session:
        verdicts = privacy.suppressed_calls(
            session,
            [(user, [user]), (other, [other]), (anonymous, [anonymous, email]), (other, [])],
        )
    assert verdicts == [True, False, True, False]


def test_a_domain_event_delivered_after_the_erasure_records_nothing(
    send: Send, client: TestClient, auth: dict[str, str], db: Database, runtime: Runtime
) -> None:
    """A support message about the person, still undelivered when they are erased, must not
    put a timeline entry or channel activity back on the erased profile."""
    send("identify", {"userId": "u-late", "traits": {"email": "late.tl@example.com"}})
    profile = identifier(db, "user_id", "u-late").profile_id
    runtime.worker().drain()
    with db.transaction() as session:
        emit(
            session,
            "conversation.message_received",
            aggregate_type="conversation",
            aggregate_id="cnv_late",
            payload={"profile_id": profile, "text": "hello", "channel": "web"},
        )
    ok(erase(client, auth, profile))
    runtime.worker().drain()
    assert count(db, TimelineEntry, TimelineEntry.profile_id == profile) == 0
    assert count(db, ChannelActivity, ChannelActivity.profile_id == profile) == 0


def test_an_alias_from_an_erased_user_id_is_dropped(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    """``previousId`` is stored as an anonymous id (a device kind, which alone does not
    suppress), but it is often the person's old user id: an erased one must not come back
    through ``alias`` — single or in a batch."""
    from structlog.testing import capture_logs

    send("identify", {"userId": "old-user-q7", "traits": {"email": "old-q7@example.com"}})
    ok(erase(client, auth, identifier(db, "user_id", "old-user-q7").profile_id))
    dropped = REGISTRY.get_sample_value("seamline_privacy_suppressed_calls_total") or 0.0
    alias = {"userId": "new-user-q7", "previousId": "old-user-q7", "messageId": "al-1"}
    with capture_logs() as logs:
        assert send("alias", alias).json() == {"success": True}
        batch = {
            "batch": [
                {"type": "alias", "userId": "new-user-q7", "previousId": "old-user-q7",
                 "messageId": "al-2"},
                {"type": "alias", "userId": "other-q7", "previousId": "anon-q7",
                 "messageId": "al-3"},
            ]
        }  # fmt: skip
        assert send("batch", batch).json() == {"success": True}
    assert count(db, TrackedEvent, TrackedEvent.message_id.in_(["al-1", "al-2"])) == 0
    assert count(db, TrackedEvent, TrackedEvent.message_id == "al-3") == 1  # others are stored
    assert count(db, Identifier, Identifier.value == "old-user-q7") == 0
    assert count(db, Identifier, Identifier.value == "new-user-q7") == 0
    assert REGISTRY.get_sample_value("seamline_privacy_suppressed_calls_total") == dropped + 2
    suppressed = [e for e in logs if e.get("event") == "tracking_call_suppressed"]
    assert [e["erased_kind"] for e in suppressed] == ["user_id", "user_id"]
    assert "old-user-q7" not in json.dumps(suppressed, default=str)
