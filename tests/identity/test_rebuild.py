"""``seamline identity rebuild``: the whole-graph rebuild gives the incremental resolution's
clusters, link decisions and a consistent set of merge pointers."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from typer.testing import CliRunner

from seamline.cli.main import app as cli
from seamline.db.engine import Database
from seamline.events.models import OutboxEvent
from seamline.identity import merges as merge_service
from seamline.identity.models import IdentityLink, Profile, ProfileMerge
from seamline.identity.rebuild import RebuildReport, rebuild
from tests.identity.conftest import cluster_of
from tests.identity.test_resolution import T0, _ingest_one_by_one, _reset, at, identity_calls

Send = Callable[..., Any]


def _clusters(db: Database) -> dict[str, str]:
    with db.transaction(readonly=True) as session:
        rows = session.execute(select(Profile.id, Profile.cluster_id)).all()
    return {p: c for p, c in rows}  # noqa: C416


def _decisions(db: Database) -> dict[tuple[str, str], str]:
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(
                IdentityLink.identifier_a_id, IdentityLink.identifier_b_id, IdentityLink.decision
            )
        ).all()
    return {(a, b): d for a, b, d in rows}


def _run(db: Database, *, dry_run: bool = False) -> RebuildReport:
    with db.transaction() as session:
        report = rebuild(session, dry_run=dry_run)
        if dry_run:
            session.rollback()
    return report


def _scramble(db: Database, *, pointers: bool = False) -> None:
    """Forget the clusters: every profile alone, every link 'linked' (and, with ``pointers``,
    every merge pointer undone)."""
    with db.transaction() as session:
        session.execute(update(Profile).values(cluster_id=Profile.id))
        session.execute(update(IdentityLink).values(decision="linked"))
        if pointers:
            session.execute(
                update(ProfileMerge)
                .where(ProfileMerge.undone_at.is_(None))
                .values(undone_at=T0, undone_reason="superseded")
            )


def _assert_pointers_span_clusters(db: Database) -> None:
    """The active merge pointers of each cluster join exactly its profiles, without cycles."""
    clusters = _clusters(db)
    with db.transaction(readonly=True) as session:
        active = session.execute(
            select(ProfileMerge.profile_id, ProfileMerge.into_profile_id).where(
                ProfileMerge.undone_at.is_(None)
            )
        ).all()
    parent = {pid: pid for pid in clusters}

    def find(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in active:
        assert clusters[a] == clusters[b], "an active pointer crosses two clusters"
        assert find(a) != find(b), "redundant active pointer"
        parent[find(a)] = find(b)
    by_cluster: dict[str, set[str]] = {}
    for pid, cluster in clusters.items():
        by_cluster.setdefault(cluster, set()).add(find(pid))
    assert all(len(roots) == 1 for roots in by_cluster.values())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(calls=identity_calls(), seed=st.randoms(use_true_random=False))
def test_rebuild_equals_incremental_resolution(
    db: Database, calls: list[dict[str, Any]], seed: random.Random
) -> None:
    _reset(db)
    shuffled = list(calls)
    seed.shuffle(shuffled)
    _ingest_one_by_one(db, shuffled, "key_a")
    expected_clusters, expected_decisions = _clusters(db), _decisions(db)
    _assert_pointers_span_clusters(db)

    # On a consistent graph the rebuild finds nothing to do.
    report = _run(db)
    assert (report.changed_profiles, report.changed_links) == (0, 0)
    assert report.merges_added == report.merges_undone == 0
    assert report.profiles == len(expected_clusters)

    _scramble(db, pointers=seed.random() < 0.5)
    dry = _run(db, dry_run=True)
    assert dry.changed_profiles == sum(1 for p, c in expected_clusters.items() if p != c)
    assert _clusters(db) == {p: p for p in expected_clusters}  # the dry run wrote nothing

    _run(db)
    assert _clusters(db) == expected_clusters
    assert _decisions(db) == expected_decisions
    _assert_pointers_span_clusters(db)


def test_rebuild_keeps_unmerges(send: Send, db: Database) -> None:
    device = {"device": {"id": "tablet-1"}}
    send("identify", {"userId": "ann", "anonymousId": "a1", "context": device, "timestamp": at(0)})
    send(
        "identify", {"anonymousId": "a1", "traits": {"email": "x@example.com"}, "timestamp": at(1)}
    )
    with db.transaction(readonly=True) as session:
        merge = session.scalars(
            select(ProfileMerge).where(ProfileMerge.undone_at.is_(None)).order_by(ProfileMerge.id)
        ).first()
        assert merge is not None
    with db.transaction() as session:
        merge_service.unmerge(session, merge.profile_id, merge.id, reason="test", by=None)
    expected_clusters, expected_decisions = _clusters(db), _decisions(db)
    assert "refused" in expected_decisions.values()

    assert _run(db, dry_run=True).changed_profiles == 0
    _scramble(db)
    report = _run(db)
    assert report.changed_profiles > 0
    assert _clusters(db) == expected_clusters
    assert _decisions(db) == expected_decisions
    _assert_pointers_span_clusters(db)
    with db.transaction(readonly=True) as session:
        rebuilt = session.scalars(select(ProfileMerge).where(ProfileMerge.trigger == "rebuild"))
        assert all(m.evidence["rebuild"]["previous_cluster_id"] for m in rebuilt)
        kinds = {e.type for e in session.scalars(select(OutboxEvent))}
    assert "profile.merged" in kinds


def test_rebuild_undoes_pointers_of_split_clusters(send: Send, db: Database) -> None:
    send("identify", {"userId": "u1", "anonymousId": "a1", "timestamp": at(0)})
    u1, a1 = cluster_of(db, "user_id", "u1"), cluster_of(db, "anonymous_id", "a1")
    assert u1 == a1
    # A corrupted state: the anonymous profile put in a cluster of its own, a pointer left over.
    with db.transaction() as session:
        session.execute(update(Profile).values(cluster_id=Profile.id))
    report = _run(db)
    assert report.changed_profiles == 1
    assert cluster_of(db, "anonymous_id", "a1") == cluster_of(db, "user_id", "u1")
    assert report.merges_added == report.merges_undone == 0  # the pointer was still right
    _assert_pointers_span_clusters(db)


def test_cli_rebuild(send: Send, db: Database, cli_env: dict[str, str]) -> None:
    send("identify", {"userId": "u1", "anonymousId": "a1", "timestamp": at(0)})
    send("identify", {"userId": "u2", "anonymousId": "a2", "timestamp": at(0)})
    _scramble(db)
    runner = CliRunner()
    dry = runner.invoke(cli, ["identity", "rebuild", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "2 profiles would change" in dry.output
    assert cluster_of(db, "anonymous_id", "a1") != cluster_of(db, "user_id", "u1")
    done = runner.invoke(cli, ["identity", "rebuild"])
    assert done.exit_code == 0, done.output
    assert "2 profiles changed" in done.output
    assert cluster_of(db, "anonymous_id", "a1") == cluster_of(db, "user_id", "u1")
    again = runner.invoke(cli, ["identity", "rebuild"])
    assert "0 profiles changed" in again.output
