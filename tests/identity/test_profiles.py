"""Customer 360 and unmerge: the cluster read, the timeline, and the unmerge round trip."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.identity import profiles
from seamline.identity.models import Profile
from tests.identity.conftest import cluster_of, identifier, merges

Send = Callable[..., Any]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def view(client: TestClient, auth: dict[str, str], profile_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/profiles/{profile_id}", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def clusters(db: Database) -> dict[str, str]:
    with db.transaction(readonly=True) as session:
        return {p.id: p.cluster_id for p in session.scalars(select(Profile))}


def two_customers(send: Send) -> None:
    """Ann (user u1, anonymous a1) and a visitor (anonymous a2, an email), seen until t5."""
    traits = {"first_name": "Ann", "created_at": "2020-01-01"}
    send("identify", {"userId": "u1", "anonymousId": "a1", "traits": traits, "timestamp": at(0)})
    send("page", {"anonymousId": "a1", "name": "Home", "timestamp": at(1)})
    send(
        "identify",
        {
            "anonymousId": "a2",
            "traits": {"email": "v@example.com", "plan": "gold"},
            "timestamp": at(2),
        },
    )
    send("track", {"anonymousId": "a2", "event": "Browse", "timestamp": at(3)})
    send("track", {"userId": "u1", "event": "Order Completed", "timestamp": at(5)})
    send("track", {"anonymousId": "a2", "event": "Browse", "timestamp": at(5)})


def test_unmerge_round_trip(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    two_customers(send)
    ann = identifier(db, "user_id", "u1").profile_id
    visitor = identifier(db, "anonymous_id", "a2").profile_id
    before = {ann: view(client, auth, ann), visitor: view(client, auth, visitor)}
    before_clusters = clusters(db)
    assert before[ann]["cluster_id"] != before[visitor]["cluster_id"]

    # One call carries both ids (inside both customers' seen windows): the clusters merge.
    link = {"userId": "u1", "anonymousId": "a2", "event": "Linked", "messageId": "m-link"}
    send("track", {**link, "timestamp": at(4)})
    merged = view(client, auth, visitor)
    assert merged["cluster_id"] == before[ann]["cluster_id"]
    assert set(merged["profile_ids"]) == set(before[ann]["profile_ids"]) | set(
        before[visitor]["profile_ids"]
    )
    assert merged["traits"]["plan"]["value"] == "gold"
    merge = next(m for m in merges(db) if m.trigger_message_id == "m-link")

    response = client.post(
        f"/api/v1/profiles/{visitor}/unmerge",
        json={"merge_id": merge.id, "reason": "two different people"},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    assert response.json()["profile_cluster_id"] != response.json()["into_cluster_id"]

    # Both sides are exactly as before the merge, field by field. The one new fact is the
    # linking call itself: it stays on the profile it arrived on (Ann's user id).
    assert clusters(db) == before_clusters
    for profile_id, old in before.items():
        new = view(client, auth, profile_id)
        linking = [e for e in new["events"] if e["message_id"] == "m-link"]
        new["events"] = [e for e in new["events"] if e["message_id"] != "m-link"]
        assert len(linking) == (1 if profile_id == ann else 0)
        assert new.keys() == old.keys()
        for field in old:
            assert new[field] == old[field], field

    undone = next(m for m in merges(db) if m.id == merge.id)
    assert undone.undone_at is not None
    assert undone.undone_reason == "unmerged"
    assert undone.evidence["unmerge"]["reason"] == "two different people"
    assert undone.evidence["unmerge"]["by"]
    with db.transaction(readonly=True) as session:
        kinds = [e.type for e in session.scalars(select(OutboxEvent))]
    assert "profile.unmerged" in kinds

    again = client.post(
        f"/api/v1/profiles/{visitor}/unmerge",
        json={"merge_id": merge.id, "reason": "again"},
        headers=auth,
    )
    assert again.status_code == 409
    assert again.json()["code"] == "merge_already_undone"

    # The same observation (or an older one) does not re-merge: the link is blocked up to it.
    send("track", {**link, "timestamp": at(4)})
    send("track", {**link, "messageId": "m-old", "timestamp": at(3)})
    assert cluster_of(db, "anonymous_id", "a2") != cluster_of(db, "user_id", "u1")
    # A newer observation of the pair is new evidence: they merge again.
    send("track", {**link, "messageId": "m-new", "timestamp": at(6)})
    assert cluster_of(db, "anonymous_id", "a2") == cluster_of(db, "user_id", "u1")


def test_unmerge_refuses_unknown_merges_and_profiles(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    two_customers(send)
    ann = identifier(db, "user_id", "u1").profile_id
    visitor = identifier(db, "anonymous_id", "a2").profile_id
    ann_merge = next(m for m in merges(db) if m.undone_at is None)
    body = {"merge_id": ann_merge.id, "reason": "test"}
    # A merge of another cluster is not found through this profile.
    response = client.post(f"/api/v1/profiles/{visitor}/unmerge", json=body, headers=auth)
    assert response.status_code == 404
    assert response.json()["code"] == "merge_not_found"
    response = client.post("/api/v1/profiles/prf_nope/unmerge", json=body, headers=auth)
    assert response.status_code == 404
    assert response.json()["code"] == "profile_not_found"
    response = client.post(f"/api/v1/profiles/{ann}/unmerge", json={"merge_id": "x"}, headers=auth)
    assert response.status_code == 422


def test_360_reads_the_whole_cluster_with_resolved_traits(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    two_customers(send)
    later = {"first_name": "Anne", "created_at": "2024-05-05"}
    send("identify", {"userId": "u1", "traits": later, "timestamp": at(7)})
    # An older call arriving late does not win "latest" (event time, not arrival).
    send("identify", {"userId": "u1", "traits": {"first_name": "A."}, "timestamp": at(6)})
    anonymous = identifier(db, "anonymous_id", "a1").profile_id
    body = view(client, auth, anonymous)
    assert body["profile_id"] == anonymous
    assert body["cluster_id"] == identifier(db, "user_id", "u1").profile_id
    assert len(body["profile_ids"]) == 2
    assert {(i["kind"], i["value"]) for i in body["identifiers"]} == {
        ("user_id", "u1"),
        ("anonymous_id", "a1"),
    }
    u1 = next(i for i in body["identifiers"] if i["kind"] == "user_id")
    assert u1["first_seen"].startswith("2026-03-01T00:00")
    assert u1["valid"] is True
    assert body["traits"]["first_name"]["value"] == "Anne"
    assert body["traits"]["first_name"]["strategy"] == "non_empty"
    assert body["traits"]["created_at"] == {**body["traits"]["created_at"], "value": "2020-01-01"}
    assert body["traits"]["created_at"]["strategy"] == "first"
    times = [e["timestamp"] for e in body["events"]]
    assert times == sorted(times, reverse=True)
    assert len(times) == 5

    missing = client.get("/api/v1/profiles/prf_missing", headers=auth)
    assert missing.status_code == 404
    assert missing.json()["code"] == "profile_not_found"


def test_non_empty_traits_survive_a_blank_form_and_latest_ones_clear(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    first = {"first_name": "Anne", "plan": "gold", "address": {"city": "Leeds"}}
    send("identify", {"userId": "u7", "traits": first, "timestamp": at(1)})
    blank = {"first_name": "", "plan": None, "address": {}}
    send("identify", {"userId": "u7", "traits": blank, "timestamp": at(2)})
    traits = view(client, auth, identifier(db, "user_id", "u7").profile_id)["traits"]
    assert traits["first_name"]["value"] == "Anne"  # non_empty: a blank form keeps the name
    assert traits["address"]["value"] == {"city": "Leeds"}
    assert traits["plan"]["value"] is None  # latest: a null sent later clears
    # A brand may choose another strategy per trait (SEAMLINE_TRAIT_STRATEGIES).
    try:
        profiles.configure_strategies({"plan": "non_empty", "first_name": "latest"})
        traits = view(client, auth, identifier(db, "user_id", "u7").profile_id)["traits"]
        assert traits["plan"]["value"] == "gold"
        assert traits["first_name"]["value"] == ""
        with pytest.raises(ValueError, match="unknown trait strategies"):
            profiles.configure_strategies({"plan": "loudest"})
    finally:
        profiles.configure_strategies({})


def test_timeline_pages_newest_first_and_filters(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    for minute in range(7):
        context = {"channel": "mobile" if minute % 2 else "web"}
        send(
            "track",
            {"userId": "u9", "event": f"E{minute}", "context": context, "timestamp": at(minute)},
        )
    send("page", {"userId": "u9", "name": "Home", "timestamp": at(3)})
    profile = identifier(db, "user_id", "u9").profile_id
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/api/v1/profiles/{profile}/timeline", params=params, headers=auth)
        assert page.status_code == 200, page.text
        seen += [e["name"] for e in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 8
    assert len(set(seen)) == 8
    assert seen[0] == "E6"
    assert seen[-1] == "E0"
    tracks = client.get(
        f"/api/v1/profiles/{profile}/timeline",
        params={"type": "track", "channel": "mobile"},
        headers=auth,
    ).json()["data"]
    assert [e["name"] for e in tracks] == ["E5", "E3", "E1"]
    bad = client.get(
        f"/api/v1/profiles/{profile}/timeline",
        params={"cursor": "99999999999999999999_x"},
        headers=auth,
    )
    assert bad.status_code == 400
