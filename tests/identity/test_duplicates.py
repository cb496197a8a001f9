"""Duplicate suggestions and staff merges: look-alikes are suggested, never merged on their
own; a reviewer dismisses (for good) or merges (a staff merge that unmerge undoes exactly)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.identity import duplicates
from seamline.identity.models import IdentityLink, Profile
from seamline.identity.rules import IdentityRules
from tests.identity.conftest import cluster_of, identifier, merges

Send = Callable[..., Any]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def person(
    send: Send,
    anonymous_id: str,
    name: dict[str, str],
    street: str | None = None,
    postcode: str | None = None,
    *,
    minute: int = 0,
    **ids: str,
) -> str:
    """A visitor identified with a name and address; returns the profile it arrived on."""
    address = {k: v for k, v in (("street", street), ("postal_code", postcode)) if v}
    traits: dict[str, Any] = {**name, **({"address": address} if address else {})}
    body: dict[str, Any] = {"anonymousId": anonymous_id, "traits": traits, "timestamp": at(minute)}
    if "user_id" in ids:
        body["userId"] = ids.pop("user_id")
    body["traits"].update(ids)
    response = send("identify", body)
    assert response.status_code == 200, response.text
    return anonymous_id


def profile(db: Database, anonymous_id: str) -> str:
    return identifier(db, "anonymous_id", anonymous_id).profile_id


def jon_and_john(send: Send) -> None:
    person(send, "a-jon", {"first_name": "Jon", "last_name": "Smith"}, "1 High St", "SW1A 1AA")
    person(
        send,
        "a-john",
        {"first_name": "John", "last_name": "Smith"},
        "1 High Street",
        "SW1A1AA",
        minute=1,
    )


def listing(client: TestClient, auth: dict[str, str], **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/duplicate-suggestions", params=params, headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def for_profile(client: TestClient, auth: dict[str, str], profile_id: str) -> list[Any]:
    response = client.get(f"/api/v1/profiles/{profile_id}/duplicate-suggestions", headers=auth)
    assert response.status_code == 200, response.text
    found: list[Any] = response.json()
    return found


def view(client: TestClient, auth: dict[str, str], profile_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/profiles/{profile_id}", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def clusters(db: Database) -> dict[str, str]:
    with db.transaction(readonly=True) as session:
        return {p.id: p.cluster_id for p in session.scalars(select(Profile))}


def test_look_alikes_are_suggested_and_never_merged(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    jon_and_john(send)
    # Ingestion never merges on a name and an address: the two stay two customers.
    assert cluster_of(db, "anonymous_id", "a-jon") != cluster_of(db, "anonymous_id", "a-john")
    assert merges(db) == []

    body = listing(client, auth)
    assert len(body["data"]) == 1
    pair = body["data"][0]
    assert {pair["a"]["name"], pair["b"]["name"]} == {"Jon Smith", "John Smith"}
    assert pair["score"] >= duplicates.MIN_SCORE
    fields = {e["field"]: e for e in pair["evidence"]}
    assert fields["postal_code"]["score"] == 100
    assert fields["street"]["score"] == 100  # "St" is "Street"
    assert 85 <= fields["name"]["score"] < 100
    assert body["next_cursor"] is None

    jon = profile(db, "a-jon")
    mine = for_profile(client, auth, jon)
    assert len(mine) == 1
    assert mine[0]["score"] == pair["score"]
    assert {mine[0]["a"]["cluster_id"], mine[0]["b"]["cluster_id"]} == {
        cluster_of(db, "anonymous_id", "a-jon"),
        cluster_of(db, "anonymous_id", "a-john"),
    }
    # A higher floor hides it; the suggestion still merged nothing.
    assert listing(client, auth, min_score=99)["data"] == []
    assert cluster_of(db, "anonymous_id", "a-jon") != cluster_of(db, "anonymous_id", "a-john")


def test_no_suggestion_for_other_postcodes_or_names(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    smith = {"first_name": "John", "last_name": "Smith"}
    person(send, "p1", smith, "1 High Street", "SW1A 1AA")
    person(send, "p2", smith, "1 High Street", "EC1A 1BB")  # same name, another postcode
    person(send, "p3", {"first_name": "Jane", "last_name": "Smith"}, "1 High Street", "SW1A 1AA")
    person(send, "p4", {"first_name": "John", "last_name": "Brown"}, "1 High Street", "SW1A 1AA")
    person(send, "p5", {"name": "John Smith"})  # a name and nothing else to back it
    assert listing(client, auth)["data"] == []
    assert for_profile(client, auth, profile(db, "p1")) == []


def test_contacts_back_a_name_without_an_address(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    # The same mailbox name at two providers, the same mobile written two ways.
    person(send, "e1", {"name": "Ann Lee"}, email="ann.lee@example.com")
    person(send, "e2", {"name": "Ann Lee"}, email="annlee@example.org")
    pair = listing(client, auth)["data"]
    assert len(pair) == 1
    assert "email_local_part" in {e["field"] for e in pair[0]["evidence"]}


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (
            ({"first_name": "José", "last_name": "Müller"}, "Hauptstraße 5", "10115"),
            ({"first_name": "Jose", "last_name": "Mueller"}, "Hauptstr. 5", "10115"),
        ),
        (
            ({"first_name": "Jürgen", "last_name": "Weiß"}, "Bahnhofstraße 1", "80331"),
            ({"first_name": "JURGEN", "last_name": "WEISS"}, "Bahnhofstrasse 1", "80331"),
        ),
        (
            ({"first_name": "太郎", "last_name": "山田"}, "千代田1-1", "100-0001"),
            ({"name": "山田太郎"}, "千代田 1-1", "1000001"),
        ),
        (
            ({"first_name": "Zoë", "last_name": "Ørsted"}, "Nørregade 3", "1165"),
            ({"first_name": "Zoe", "last_name": "Orsted"}, "Norregade 3", "1165"),
        ),
    ],
    ids=["accents", "eszett-and-case", "cjk-name-order", "nordic"],
)
def test_unicode_names_match(
    send: Send,
    client: TestClient,
    auth: dict[str, str],
    db: Database,
    one: tuple[dict[str, str], str, str],
    other: tuple[dict[str, str], str, str],
) -> None:
    person(send, "u-one", *one)
    person(send, "u-other", *other, minute=1)
    found = for_profile(client, auth, profile(db, "u-one"))
    assert len(found) == 1, found
    assert found[0]["score"] >= duplicates.MIN_SCORE
    assert len(listing(client, auth)["data"]) == 1


def test_dismissed_pairs_do_not_come_back(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    jon_and_john(send)
    jon, john = profile(db, "a-jon"), profile(db, "a-john")
    response = client.post(
        "/api/v1/duplicate-suggestions/decisions",
        json={"profile_id": jon, "other_profile_id": john, "decision": "dismissed", "reason": "no"},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    decision = response.json()
    assert decision["decision"] == "dismissed"
    assert decision["merge_id"] is None
    assert decision["score"] >= duplicates.MIN_SCORE
    assert decision["profile_a_id"] < decision["profile_b_id"]
    assert decision["decided_by"]
    assert listing(client, auth)["data"] == []
    assert for_profile(client, auth, jon) == []

    # The clusters grow and are renamed (an account logs in on Jon's browser): still dismissed.
    send("identify", {"userId": "jon-account", "anonymousId": "a-jon", "timestamp": at(5)})
    assert cluster_of(db, "anonymous_id", "a-jon") == profile_of_user(db, "jon-account")
    assert listing(client, auth)["data"] == []
    assert for_profile(client, auth, jon) == []
    # Deciding again replaces the decision rather than failing.
    again = client.post(
        "/api/v1/duplicate-suggestions/decisions",
        json={"profile_id": john, "other_profile_id": jon, "decision": "dismissed"},
        headers=auth,
    )
    assert again.status_code == 200, again.text


def profile_of_user(db: Database, user_id: str) -> str:
    return identifier(db, "user_id", user_id).profile_id


def test_merging_a_suggestion_is_a_staff_merge_that_unmerge_undoes(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    jon_and_john(send)
    send("track", {"anonymousId": "a-jon", "event": "Browse", "timestamp": at(3)})
    jon, john = profile(db, "a-jon"), profile(db, "a-john")
    before = {jon: view(client, auth, jon), john: view(client, auth, john)}
    before_clusters = clusters(db)

    response = client.post(
        "/api/v1/duplicate-suggestions/decisions",
        json={
            "profile_id": jon,
            "other_profile_id": john,
            "decision": "merged",
            "reason": "same customer, checked by phone",
        },
        headers=auth,
    )
    assert response.status_code == 200, response.text
    merge_id = response.json()["merge_id"]
    assert merge_id
    assert cluster_of(db, "anonymous_id", "a-jon") == cluster_of(db, "anonymous_id", "a-john")
    merge = next(m for m in merges(db) if m.id == merge_id)
    assert merge.trigger == "staff"
    assert merge.triggered_by == response.json()["decided_by"]
    assert merge.reason == "same customer, checked by phone"
    assert (merge.trigger_message_id or "").startswith("staff:")
    with db.transaction(readonly=True) as session:
        merged_events = [
            e.payload
            for e in session.scalars(
                select(OutboxEvent).where(OutboxEvent.type == "profile.merged")
            )
        ]
    assert [p["merge_id"] for p in merged_events] == [merge_id]
    assert merged_events[0]["trigger"]["call"] == "staff"
    # A merged pair is no longer suggested (it is one customer).
    assert listing(client, auth)["data"] == []
    # Later calls on either side do not undo a staff merge.
    send("track", {"anonymousId": "a-john", "event": "Later", "timestamp": at(1)})
    assert cluster_of(db, "anonymous_id", "a-jon") == cluster_of(db, "anonymous_id", "a-john")

    undone = client.post(
        f"/api/v1/profiles/{jon}/unmerge",
        json={"merge_id": merge_id, "reason": "not the same after all"},
        headers=auth,
    )
    assert undone.status_code == 200, undone.text
    assert clusters(db) == before_clusters
    for profile_id, old in before.items():
        new = view(client, auth, profile_id)
        new["events"] = [e for e in new["events"] if e["name"] != "Later"]
        for field in old:
            assert new[field] == old[field], field
    # The reviewed pair stays decided: not suggested again after the unmerge.
    assert listing(client, auth)["data"] == []


def test_staff_merge_route_and_its_refusals(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    person(send, "s1", {"name": "Ann"}, user_id="acct-1")
    person(send, "s2", {"name": "Ann"}, user_id="acct-2")
    person(send, "s3", {"name": "Ann"})
    one, two, three = profile(db, "s1"), profile(db, "s2"), profile(db, "s3")

    def merge(a: str, b: str) -> Any:
        body = {"profile_id": b, "reason": "same person"}
        return client.post(f"/api/v1/profiles/{a}/merge", json=body, headers=auth)

    refused = merge(one, two)
    assert refused.status_code == 409
    assert refused.json()["code"] == "unique_kind_conflict"
    assert refused.json()["kind"] == "user_id"
    assert cluster_of(db, "anonymous_id", "s1") != cluster_of(db, "anonymous_id", "s2")
    with db.transaction(readonly=True) as session:
        assert not list(
            session.scalars(select(IdentityLink).where(IdentityLink.message_id.like("staff:%")))
        )

    done = merge(three, one)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["cluster_id"] == profile_of_user(db, "acct-1")
    assert {one, three} <= set(body["profile_ids"])
    # s3 now belongs to acct-1's customer, so it cannot join acct-2's either.
    assert merge(three, two).json()["code"] == "unique_kind_conflict"

    same = merge(one, three)
    assert same.status_code == 409
    assert same.json()["code"] == "same_cluster"
    missing = merge(one, "prf_missing")
    assert missing.status_code == 404
    assert missing.json()["code"] == "profile_not_found"
    assert merge("prf_missing", one).status_code == 404
    bad = client.post(f"/api/v1/profiles/{one}/merge", json={"profile_id": two}, headers=auth)
    assert bad.status_code == 422


def test_staff_merge_of_profiles_without_linking_identifiers(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    # An invalid email arrives on a profile of its own; it never links on its own, but a
    # person may still say it belongs to someone.
    person(send, "v1", {"name": "Bo"}, email="n/a")
    person(send, "v2", {"name": "Bo"})
    invalid = identifier(db, "email", "n/a")
    assert invalid.valid is False
    response = client.post(
        f"/api/v1/profiles/{invalid.profile_id}/merge",
        json={"profile_id": profile(db, "v2"), "reason": "typed by the shop"},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    assert cluster_of(db, "email", "n/a") == cluster_of(db, "anonymous_id", "v2")


def test_staff_merge_holds_under_rules_where_nothing_links(db: Database) -> None:
    """The staff link is honoured by resolution whatever the linking kinds are."""
    from seamline.identity import customers_import
    from seamline.identity import merges as merge_service

    text = "external_id,first_name\nc1,Al\nc2,Al\n"
    with db.transaction() as session:
        customers_import.import_rows(
            session, customers_import.parse(text, source="pos"), name="f.csv"
        )
    rules = IdentityRules(linking_kinds=frozenset())
    c1 = identifier(db, "external:pos", "c1").profile_id
    c2 = identifier(db, "external:pos", "c2").profile_id
    with db.transaction() as session:
        done = merge_service.merge_profiles(session, c1, c2, reason="same", by=None, rules=rules)
    assert cluster_of(db, "external:pos", "c1") == cluster_of(db, "external:pos", "c2")
    with db.transaction() as session:
        merge_service.unmerge(session, c1, done.merge_id, reason="no", by=None, rules=rules)
    assert cluster_of(db, "external:pos", "c1") != cluster_of(db, "external:pos", "c2")


def test_listing_pages_best_first(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    for n, postcode in enumerate(("AB1 1AA", "AB2 2BB", "AB3 3CC")):
        last = f"Tester{'x' * n}"
        person(send, f"x{n}", {"first_name": "Sam", "last_name": last}, "2 Mill Lane", postcode)
        person(send, f"y{n}", {"first_name": "Sam", "last_name": last}, "2 Mill Ln", postcode)
    seen: list[float] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        body = listing(client, auth, **params)
        seen += [s["score"] for s in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 3
    assert seen == sorted(seen, reverse=True)


def test_decisions_refuse_one_customer_and_unknown_profiles(
    send: Send, client: TestClient, auth: dict[str, str], db: Database
) -> None:
    jon_and_john(send)
    jon = profile(db, "a-jon")
    url = "/api/v1/duplicate-suggestions/decisions"
    same = client.post(
        url,
        json={"profile_id": jon, "other_profile_id": jon, "decision": "dismissed"},
        headers=auth,
    )
    assert same.status_code == 409
    assert same.json()["code"] == "same_cluster"
    missing = client.post(
        url,
        json={"profile_id": jon, "other_profile_id": "prf_nope", "decision": "merged"},
        headers=auth,
    )
    assert missing.status_code == 404
    assert (
        client.get("/api/v1/profiles/prf_nope/duplicate-suggestions", headers=auth).status_code
        == 404
    )


def test_the_listing_stops_gathering_pairs_at_the_cap(
    send: Send, client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(4):
        person(
            send, f"cap{n}", {"first_name": "Sam", "last_name": "Capper"}, "9 Cap Row", "CP1 1AA"
        )
    assert listing(client, auth)["truncated"] is False
    monkeypatch.setattr(duplicates, "MAX_PAIRS", 2)
    body = listing(client, auth, min_score=0)
    assert body["truncated"] is True
    assert len(body["data"]) <= 2
