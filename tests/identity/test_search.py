"""The console's one-box customer search: whole clusters, read in a fixed number of statements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from seamline.db.engine import Database
from seamline.identity import profiles
from seamline.identity.models import Profile
from seamline.identity.search import find_customers
from tests.identity.conftest import cluster_of
from tests.statements import recorded

Send = Callable[..., Any]


def customers(send: Send, count: int) -> None:
    """``count`` customers named Ann; the first is a merge of a visitor (email, phone) and an
    account (name), so her name and contact details sit on different profiles."""
    send(
        "identify",
        {
            "anonymousId": "visitor-0",
            "traits": {"email": "ann.0@example.com", "phone": "+44 20 7946 0000"},
            "timestamp": "2026-05-01T09:00:00Z",
        },
    )
    for n in range(count):
        send(
            "identify",
            {
                "userId": f"user-{n}",
                "anonymousId": f"visitor-{n}",
                "traits": {
                    "first_name": "Ann",
                    "last_name": f"Lee {n}",
                    "email": f"ann.{n}@example.com",
                },
                "timestamp": f"2026-05-01T10:{n:02d}:00Z",
            },
        )


def test_a_search_with_many_hits_reads_them_in_four_statements(send: Send, db: Database) -> None:
    customers(send, 25)
    with db.transaction(readonly=True) as session, recorded(db) as sent:
        hits = find_customers(session, "ann")
    queries = [s for s in sent if s.strip().upper() not in ("BEGIN", "BEGIN (IMPLICIT)")]
    assert len(queries) == 4, queries
    assert len(hits) == 20
    assert all(hit.name is not None and hit.name.startswith("Ann Lee ") for hit in hits)
    assert len({hit.profile_id for hit in hits}) == 20
    first = cluster_of(db, "email", "ann.0@example.com")
    with db.transaction(readonly=True) as session:
        exact = find_customers(session, "+442079460000")
    # The name from the account, the phone (as sent) from the visitor's profile.
    assert [(h.profile_id, h.name, h.email, h.phone, h.matched_on) for h in exact] == [
        (first, "Ann Lee 0", "ann.0@example.com", "+44 20 7946 0000", "phone")
    ]


def test_clusters_traits_is_current_traits_of_each_cluster(send: Send, db: Database) -> None:
    customers(send, 6)
    send(
        "identify",
        {"userId": "user-3", "traits": {"last_name": "", "plan": "gold"}},
    )
    with db.transaction(readonly=True) as session:
        members: dict[str, list[str]] = {}
        for profile_id, cluster_id in session.execute(select(Profile.id, Profile.cluster_id)):
            members.setdefault(cluster_id, []).append(profile_id)
        together = profiles.clusters_traits(session, [*members, "no-such-cluster"])
        one_by_one = {c: profiles.current_traits(session, ids) for c, ids in members.items()}
    assert together.pop("no-such-cluster") == {}
    assert together == one_by_one
    assert len(together) == 6
    merged = together[cluster_of(db, "email", "ann.0@example.com")]
    assert merged["phone"]["value"] == "+44 20 7946 0000"
    assert merged["first_name"]["value"] == "Ann"
