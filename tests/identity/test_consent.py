"""Consent: recording changes, the cluster's current state across merges, history paging,
``consent.changed``, ``allows``, consent by identifier, bad input and concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.identity import consent
from seamline.identity.consent_schemas import ConsentChangeIn, ConsentOut
from seamline.identity.customer_models import ConsentChange
from seamline.kit import clock
from tests.identity.conftest import cluster_of, identifier, merges

Send = Callable[..., Any]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def grant(channel: str = "email", purpose: str = "marketing", **extra: Any) -> dict[str, Any]:
    return {
        "channel": channel,
        "purpose": purpose,
        "state": "granted",
        "level": "confirmed",
        "source": "newsletter-form",
        **extra,
    }


def deny(channel: str = "email", purpose: str = "marketing", **extra: Any) -> dict[str, Any]:
    return {"channel": channel, "purpose": purpose, "state": "denied", "source": "unsubscribe"}


def without(change: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in change.items() if k != key}


def post(
    client: TestClient, auth: dict[str, str], profile_id: str, *changes: dict[str, Any]
) -> Any:
    return client.post(
        f"/api/v1/profiles/{profile_id}/consent", json={"changes": list(changes)}, headers=auth
    )


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def consent_events(db: Database) -> list[OutboxEvent]:
    with db.transaction(readonly=True) as session:
        return list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.type == "consent.changed")
                .order_by(OutboxEvent.seq)
            )
        )


@pytest.fixture
def ann(send: Send, db: Database) -> str:
    send("identify", {"userId": "ann", "traits": {"email": "ann@example.com"}, "timestamp": at(0)})
    return identifier(db, "user_id", "ann").profile_id


def test_grant_then_read_with_history(
    client: TestClient, auth: dict[str, str], db: Database, ann: str
) -> None:
    evidence = {"ip": "198.51.100.7", "form_version": "v3", "token": "dbl-opt-in-1"}
    body = ok(post(client, auth, ann, grant(evidence=evidence, effective_at=at(1))))
    assert [r["outcome"] for r in body["results"]] == ["changed"]
    [current] = body["consents"]
    assert current["channel"] == "email"
    assert current["state"] == "granted"
    assert current["level"] == "confirmed"
    assert datetime.fromisoformat(current["effective_at"]) == T0 + timedelta(minutes=1)

    view = ok(client.get(f"/api/v1/profiles/{ann}/consent?history=true", headers=auth))
    assert view["erased"] is False
    assert view["consents"] == body["consents"]
    [change] = view["history"]
    assert change["evidence"] == evidence
    assert change["changed_by"].startswith("key_")

    [event] = consent_events(db)
    assert event.aggregate_type == "profile"
    assert event.aggregate_id == ann
    assert event.payload["state"] == "granted"
    assert event.payload["previous"] is None
    assert "evidence" not in event.payload  # evidence (an IP) stays out of events


def test_reconfirm_and_late_older_change_are_history_only(
    client: TestClient, auth: dict[str, str], db: Database, ann: str
) -> None:
    ok(post(client, auth, ann, grant(effective_at=at(10))))
    again = ok(post(client, auth, ann, grant(effective_at=at(20), source="preference-center")))
    assert again["results"][0]["outcome"] == "reconfirmed"
    assert again["consents"][0]["source"] == "preference-center"  # the latest record backs it
    # A paper form signed before the current record arrives late: kept, does not win.
    older = ok(post(client, auth, ann, deny(), {**deny(), "effective_at": at(5)}))
    assert [r["outcome"] for r in older["results"]] == ["changed", "superseded"]
    assert older["consents"][0]["state"] == "denied"

    assert [e.payload["state"] for e in consent_events(db)] == ["granted", "denied"]
    history = ok(client.get(f"/api/v1/profiles/{ann}/consent/history", headers=auth))
    assert len(history["data"]) == 4
    recorded = [c["recorded_at"] for c in history["data"]]
    assert recorded == sorted(recorded, reverse=True)
    assert len(set(recorded)) == 4  # strictly increasing within a cluster


def test_later_change_in_one_request_wins(
    client: TestClient, auth: dict[str, str], ann: str
) -> None:
    body = ok(post(client, auth, ann, grant(), deny(), grant(level="single")))
    assert [r["outcome"] for r in body["results"]] == ["changed", "changed", "changed"]
    assert (body["consents"][0]["state"], body["consents"][0]["level"]) == ("granted", "single")


def test_cluster_consent_is_read_across_profiles_and_survives_unmerge(
    send: Send, client: TestClient, auth: dict[str, str], db: Database, ann: str
) -> None:
    send("identify", {"anonymousId": "dev1", "traits": {"plan": "x"}, "timestamp": at(1)})
    device = identifier(db, "anonymous_id", "dev1").profile_id
    ok(post(client, auth, ann, grant(effective_at=at(2))))
    ok(post(client, auth, device, grant("sms", "marketing", effective_at=at(3))))
    ok(post(client, auth, device, deny("email") | {"effective_at": at(4)}))
    assert ok(client.get(f"/api/v1/profiles/{ann}/consent", headers=auth))["consents"][0][
        "state"
    ] == ("granted")

    send("track", {"userId": "ann", "anonymousId": "dev1", "event": "Login", "timestamp": at(5)})
    assert cluster_of(db, "anonymous_id", "dev1") == cluster_of(db, "user_id", "ann")
    merged = ok(client.get(f"/api/v1/profiles/{ann}/consent", headers=auth))
    by_channel = {c["channel"]: c for c in merged["consents"]}
    # The device's later denial is the cluster's email consent now; nothing was rewritten.
    assert by_channel["email"]["state"] == "denied"
    assert by_channel["email"]["profile_id"] == device
    assert by_channel["sms"]["state"] == "granted"
    with db.transaction(readonly=True) as session:
        assert consent.allows(session, ann, "sms", "marketing")
        assert not consent.allows(session, ann, "email", "marketing")
        models = consent.current_for_profiles(session, [ann, device])
    assert all(isinstance(m, ConsentOut) for m in models)
    assert [m.channel for m in models] == ["email", "sms"]

    merge = next(m for m in merges(db) if m.undone_at is None and m.trigger == "track")
    ok(
        client.post(
            f"/api/v1/profiles/{ann}/unmerge",
            json={"merge_id": merge.id, "reason": "two people"},
            headers=auth,
        )
    )
    alone = ok(client.get(f"/api/v1/profiles/{ann}/consent", headers=auth))
    assert [(c["channel"], c["state"]) for c in alone["consents"]] == [("email", "granted")]


def test_allows_defaults(client: TestClient, auth: dict[str, str], db: Database, ann: str) -> None:
    with db.transaction(readonly=True) as session:
        assert not consent.allows(session, ann, "email", "marketing")
        assert consent.allows(session, ann, "email", "transactional")
    ok(post(client, auth, ann, deny("sms", "transactional"), grant("push", level="single")))
    ok(post(client, auth, ann, grant("email")))
    with db.transaction(readonly=True) as session:
        assert not consent.allows(session, ann, "sms", "transactional")
        assert consent.allows(session, ann, "push", "marketing")
        assert not consent.allows(session, ann, "push", "marketing", require_confirmed=True)
        assert consent.allows(session, ann, "email", "marketing", require_confirmed=True)
        with pytest.raises(ValueError, match="unknown consent"):
            consent.allows(session, ann, "fax", "marketing")


def test_history_pages_by_cursor(
    client: TestClient, auth: dict[str, str], db: Database, ann: str
) -> None:
    for i in range(5):
        ok(post(client, auth, ann, *(grant() if j % 2 else deny() for j in range(i, i + 5))))
    seen: list[str] = []
    cursor = None
    while True:
        query = f"?limit=7&cursor={cursor}" if cursor else "?limit=7"
        page = ok(client.get(f"/api/v1/profiles/{ann}/consent/history{query}", headers=auth))
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 25
    with db.transaction(readonly=True) as session:
        stored = session.scalars(
            select(ConsentChange.id).order_by(
                ConsentChange.recorded_at.desc(), ConsentChange.id.desc()
            )
        )
        assert seen == list(stored)
    sms = ok(client.get(f"/api/v1/profiles/{ann}/consent/history?channel=sms", headers=auth))
    assert sms["data"] == []
    bad = client.get(
        f"/api/v1/profiles/{ann}/consent/history?cursor=99999999999999_x", headers=auth
    )
    assert bad.status_code in (200, 400)
    assert (
        client.get(f"/api/v1/profiles/{ann}/consent/history?cursor=nope", headers=auth).status_code
        == 422
    )


@pytest.mark.parametrize(
    ("change", "path", "code"),
    [
        ({**grant(), "level": None}, "body.changes.0.level", "level_required"),
        (without(grant(), "level"), "body.changes.0.level", "level_required"),
        ({**deny(), "level": "single"}, "body.changes.0.level", "level_not_allowed"),
        ({**grant(), "channel": "fax"}, "body.changes.0.channel", "literal_error"),
        ({**grant(), "purpose": "spam"}, "body.changes.0.purpose", "literal_error"),
        ({**grant(), "state": "maybe"}, "body.changes.0.state", "literal_error"),
        ({**grant(), "source": ""}, "body.changes.0.source", "string_too_short"),
        ({**grant(), "source": "x" * 81}, "body.changes.0.source", "string_too_long"),
        ({**grant(), "source": "a\x00b"}, "body.changes.0.source", "string_pattern_mismatch"),
        ({**grant(), "effective_at": "2026-03-01T10:00:00"}, "body.changes.0.effective_at",
         "timezone_required"),
        ({**grant(), "effective_at": "0001-01-01T00:00:00+05:00"}, "body.changes.0.effective_at",
         "datetime_range"),
        ({**grant(), "evidence": {"blob": "x" * 5000}}, "body.changes.0.evidence", "too_large"),
        ({**grant(), "evidence": {"a": "\x00"}}, "body.changes.0.evidence", "invalid_attributes"),
        ({**grant(), "colour": "red"}, "body.changes.0.colour", "extra_forbidden"),
    ],
)  # fmt: skip
def test_invalid_changes_are_422_with_field_paths(
    client: TestClient, auth: dict[str, str], db: Database, ann: str, change: dict[str, Any],
    path: str, code: str,
) -> None:  # fmt: skip
    response = post(client, auth, ann, change)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = {(e["path"], e["code"]) for e in response.json()["errors"]}
    assert (path, code) in errors, errors
    with db.transaction(readonly=True) as session:
        assert session.scalars(select(ConsentChange)).first() is None


def test_other_bad_input(client: TestClient, auth: dict[str, str], ann: str) -> None:
    response = post(client, auth, "prf_nope", grant())
    assert response.status_code == 404
    assert response.json()["code"] == "profile_not_found"
    assert client.get("/api/v1/profiles/prf_nope/consent", headers=auth).status_code == 404
    assert client.get("/api/v1/profiles/x%00y/consent", headers=auth).status_code == 404
    assert post(client, auth, ann).status_code == 422  # no changes
    assert post(client, auth, ann, *[grant()] * 21).status_code == 422
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = post(client, auth, ann, grant(effective_at=future))
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "body.changes.0.effective_at"
    # Unicode and emoji in source and evidence are kept as they are.
    body = ok(post(client, auth, ann, grant(source="Filiale Köln 🛍", evidence={"näme": "ü"})))
    assert body["consents"][0]["source"] == "Filiale Köln 🛍"


def test_scopes(client: TestClient, make_key: Callable[..., str], ann: str) -> None:
    reader = {"Authorization": f"Bearer {make_key(scopes=['customers:read'])}"}
    assert client.get(f"/api/v1/profiles/{ann}/consent", headers=reader).status_code == 200
    assert post(client, reader, ann, grant()).status_code == 403


def test_consent_by_identifier_finds_or_creates_the_profile(
    send: Send, client: TestClient, auth: dict[str, str], db: Database, ann: str
) -> None:
    known = ok(
        client.post(
            "/api/v1/consent",
            json={"identifier": {"kind": "email", "value": " ANN@example.com "},
                  "changes": [grant()]},
            headers=auth,
        )
    )  # fmt: skip
    assert known["created_profile"] is False
    assert known["profile_id"] == identifier(db, "email", "ann@example.com").profile_id
    assert known["cluster_id"] == cluster_of(db, "user_id", "ann")

    new = ok(
        client.post(
            "/api/v1/consent",
            json={"identifier": {"kind": "phone", "value": "030 901820", "region": "DE"},
                  "changes": [grant("sms", level="single")]},
            headers=auth,
        )
    )  # fmt: skip
    assert new["created_profile"] is True
    phone = identifier(db, "phone", "+4930901820")
    assert phone.profile_id == new["profile_id"]
    assert "4930901820" not in str(new)  # the answer does not echo the identifier
    # The store's SMS consent joins the person's cluster when the events link them.
    send("identify", {"userId": "ann", "traits": {"phone": "+4930901820"}, "timestamp": at(9)})
    view = ok(client.get(f"/api/v1/profiles/{ann}/consent", headers=auth))
    assert {c["channel"] for c in view["consents"]} == {"email", "sms"}

    for value, kind in [
        ("not-an-email", "email"),
        ("+1 555", "phone"),
        ("AB-12 ?", "loyalty_card"),
    ]:
        response = client.post(
            "/api/v1/consent",
            json={"identifier": {"kind": kind, "value": value}, "changes": [grant()]},
            headers=auth,
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["path"] == "body.identifier.value"


def test_concurrent_changes_keep_a_consistent_history(db: Database, ann: str) -> None:
    """Writers of one cluster are serialised: every ``consent.changed`` names the state the
    previous one left (no lost update), and recorded times strictly increase."""
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(5):
                state = "granted" if (n + i) % 2 else "denied"
                change = ConsentChangeIn.model_validate(
                    {**(grant() if state == "granted" else deny())}
                )
                with db.transaction() as session:
                    consent.record_changes(session, ann, [change], by=f"t{n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with db.transaction(readonly=True) as session:
        rows = list(session.scalars(select(ConsentChange).order_by(ConsentChange.recorded_at)))
    assert len(rows) == 30
    assert len({r.recorded_at for r in rows}) == 30
    previous: dict[str, Any] | None = None
    for event in consent_events(db):
        expected = None if previous is None else {
            "state": previous["state"], "level": previous["level"]
        }  # fmt: skip
        assert event.payload["previous"] == expected
        previous = event.payload
    final = rows[-1]
    with db.transaction(readonly=True) as session:
        [current] = consent.current_for_profiles(session, [ann])
    assert current.change_id == final.id


def test_a_grant_dated_ahead_by_a_fast_clock_does_not_outrank_a_later_unsubscribe(
    client: TestClient, auth: dict[str, str], db: Database, ann: str
) -> None:
    """A client clock four minutes fast (within the allowed skew) dates its grant ahead; an
    unsubscribe recorded a moment later must still win."""
    ahead = (clock.now() + timedelta(minutes=4)).isoformat()
    first = ok(post(client, auth, ann, grant(effective_at=ahead)))
    assert datetime.fromisoformat(first["consents"][0]["effective_at"]) <= clock.now()
    history = ok(client.get(f"/api/v1/profiles/{ann}/consent/history", headers=auth))
    assert history["data"][0]["evidence"]["claimed_effective_at"] == ahead
    later = ok(post(client, auth, ann, deny()))
    assert [r["outcome"] for r in later["results"]] == ["changed"]
    assert later["consents"][0]["state"] == "denied"
    with db.transaction(readonly=True) as session:
        assert not consent.allows(session, ann, "email", "marketing")
