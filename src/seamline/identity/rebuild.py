"""Recompute every profile's cluster from the identity graph: ``seamline identity rebuild``.

The rule is the one in rules.py, applied to the whole graph at once instead of one component
at a time: take the links from the most recent to the oldest (event time, message id, then
the identifiers' kinds and values) and join the two sides unless that would put two values of
a unique kind in one cluster. Links an unmerge blocked are left out up to the observation they
were blocked at, and a profile's own identifiers are always together — exactly as
``resolution.resolve`` does (tests/identity/test_rebuild.py compares the two on generated
call sets, through the real ingestion path).

How it stays fast and small on millions of identifiers:

- The database ranks profiles by their best identifier (``IdentityRules.rank``, then kind and
  value, then id) into a temporary table, so each profile becomes an integer position whose
  order *is* the canonical order: a cluster's canonical profile is its smallest position, and
  the union-find keeps the smaller position as the root (no per-root "best" to carry).
- The links come sorted by the database (the rule's order, byte-wise: ``COLLATE "C"`` on
  PostgreSQL, SQLite's default) through a server-side cursor, already translated to the two
  profiles' positions. Python keeps two lists of ints, the profile ids, and the unique-kind
  values of the profiles that have any — never ORM objects.
- Only differences are written: changed ``cluster_id`` (PostgreSQL: ``COPY`` into a temporary
  table and one ``UPDATE … FROM``; SQLite: ``executemany``), changed link decisions, and the
  merge pointers of the clusters that changed.

Merge pointers. Resolution keeps the active ``profile_merges`` pointers a spanning forest of
every cluster (unmerge relies on it to split a cluster in two). Where the rebuild changes
clusters it keeps that true: a pointer whose two profiles end up in different clusters is
undone (``undone_reason = 'rebuild'``, with a ``profile.unmerged`` event), and the parts of a
new cluster not yet joined by pointers get one pointer each to the canonical profile
(``trigger = 'rebuild'``, evidence: the previous cluster ids, and a ``profile.merged`` event).
Clusters that do not change are not touched. On PostgreSQL the whole run holds the
``identity.graph`` advisory lock, so no ingestion changes the graph meanwhile.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from seamline.events.outbox import emit
from seamline.identity import resolution
from seamline.identity.models import IdentityLink, Profile, ProfileMerge
from seamline.identity.rules import DEFAULT_RULES, IdentityRules
from seamline.kit import clock
from seamline.kit.ids import new_id


def _table(model: Any) -> Table:
    """The mapped class's table, typed for Core statements."""
    return cast(Table, model.__table__)


# progress(phase, done, total): called as each phase advances (phases: see PHASES).
ProgressFn = Callable[[str, int, int], None]
PHASES = ("ranking profiles", "reading profiles", "resolving links", "writing changes")
REBUILD = "rebuild"
_FETCH = 20_000
_CHUNK = 500


@dataclass
class RebuildReport:
    """What the rebuild found (and, unless a dry run, wrote)."""

    profiles: int = 0
    identifiers: int = 0
    links: int = 0
    clusters: int = 0
    refused_links: int = 0
    changed_profiles: int = 0
    changed_links: int = 0
    merges_added: int = 0
    merges_undone: int = 0
    dry_run: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    # A few of the changed profiles: (profile id, old cluster id, new cluster id).
    examples: list[tuple[str, str, str]] = field(default_factory=list)


class _Sql:
    """The few spellings that differ between the two databases."""

    def __init__(self, session: Session) -> None:
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.ph = "%s" if self.postgres else "?"

    def c(self, expr: str) -> str:
        """Byte-wise (code point) comparison, which is how Python compares the rule's strings."""
        return f'{expr} COLLATE "C"' if self.postgres else expr


def _raw(session: Session) -> Any:
    """The DBAPI connection under the session's transaction."""
    return session.connection().connection.driver_connection


def _stream(session: Session, sql: _Sql, query: str, params: Sequence[Any] = ()) -> Iterator[Any]:
    """Rows of ``query`` without loading them all: a named (server-side) cursor on PostgreSQL;
    SQLite's cursor already steps through the result."""
    raw = _raw(session)
    if sql.postgres:
        with raw.cursor(name=f"rebuild_{new_id('cur')}") as cursor:
            cursor.itersize = _FETCH
            cursor.execute(query, params)
            yield from cursor
    else:
        cursor = raw.cursor()
        try:
            cursor.execute(query, params)
            while rows := cursor.fetchmany(_FETCH):
                yield from rows
        finally:
            cursor.close()


def _execute(session: Session, query: str, params: Sequence[Any] = ()) -> Any:
    cursor = _raw(session).cursor()
    try:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else None
    finally:
        cursor.close()


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def _rank_positions(session: Session, sql: _Sql, rules: IdentityRules) -> tuple[int, int]:
    """Fill temporary table ``rebuild_pos(id, cluster_id, pos)``: every profile, numbered in
    the order of its best identifier (rules.rank, kind, value; then the profile id)."""
    kinds = [row[0] for row in _execute(session, "SELECT DISTINCT kind FROM identifiers")]
    rank = {kind: rules.sort_key((kind, ""))[0] for kind in kinds}
    cases = " ".join(f"WHEN {sql.ph} THEN {rank[k]}" for k in kinds)
    rank_expr = f"CASE kind {cases} ELSE {len(rules.rank)} END" if kinds else "0"
    _execute(session, "DROP TABLE IF EXISTS rebuild_pos")
    on_commit = " ON COMMIT DROP" if sql.postgres else ""
    # Only fixed SQL and COLLATE clauses are interpolated; the kinds are bound parameters.
    _execute(
        session,
        f"""
        CREATE TEMPORARY TABLE rebuild_pos{on_commit} AS
        SELECT s.id, s.cluster_id,
               ROW_NUMBER() OVER (ORDER BY s.rk, {sql.c("s.bk")}, {sql.c("s.bv")},
                                  {sql.c("s.id")}) - 1 AS pos
        FROM (
            SELECT p.id, p.cluster_id, COALESCE(b.rk, 999) AS rk, COALESCE(b.kind, '') AS bk,
                   COALESCE(b.value, p.id) AS bv
            FROM profiles p
            LEFT JOIN (
                SELECT profile_id, kind, value, rk,
                       ROW_NUMBER() OVER (PARTITION BY profile_id
                                          ORDER BY rk, {sql.c("kind")}, {sql.c("value")}) AS n
                FROM (SELECT profile_id, kind, value, {rank_expr} AS rk FROM identifiers) x
            ) b ON b.profile_id = p.id AND b.n = 1
        ) s
        """,  # noqa: S608
        kinds,
    )
    _execute(session, "CREATE UNIQUE INDEX rebuild_pos_id ON rebuild_pos (id)")
    _execute(session, "ANALYZE rebuild_pos")
    profiles = _execute(session, "SELECT COUNT(*) FROM rebuild_pos")[0][0]
    identifiers = _execute(session, "SELECT COUNT(*) FROM identifiers")[0][0]
    return int(profiles), int(identifiers)


def _blocked(session: Session) -> dict[tuple[str, str], tuple[datetime, str]]:
    """Every link an unmerge blocked, with the observation it is blocked up to."""
    found: dict[tuple[str, str], tuple[datetime, str]] = {}
    undone = session.execute(
        select(ProfileMerge.evidence).where(ProfileMerge.undone_reason == "unmerged")
    ).scalars()
    for evidence in undone:
        for a, b, observed, message_id in evidence.get("unmerge", {}).get("blocked_links", []):
            upto = (datetime.fromisoformat(observed), message_id)
            found[(a, b)] = max(found.get((a, b), upto), upto)
    return found


def rebuild(
    session: Session,
    *,
    rules: IdentityRules = DEFAULT_RULES,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
) -> RebuildReport:
    """Recompute every cluster; write the differences unless ``dry_run`` (the caller's
    transaction commits, or rolls back for a dry run)."""
    report = RebuildReport(dry_run=dry_run)
    tell = progress or (lambda phase, done, total: None)
    sql = _Sql(session)
    resolution.lock_graph(session)
    if sql.postgres:
        _execute(session, "SET LOCAL work_mem = '256MB'")
    try:
        return _rebuild(session, sql, rules, report, tell, dry_run)
    finally:
        if not sql.postgres:
            _execute(session, "DROP TABLE IF EXISTS rebuild_pos")


def _rebuild(
    session: Session,
    sql: _Sql,
    rules: IdentityRules,
    report: RebuildReport,
    tell: ProgressFn,
    dry_run: bool,
) -> RebuildReport:
    started = time.perf_counter()
    tell(PHASES[0], 0, 1)
    report.profiles, report.identifiers = _rank_positions(session, sql, rules)
    tell(PHASES[0], 1, 1)
    report.seconds["rank"] = time.perf_counter() - started

    # Profiles by position: ids, current cluster ids (sharing the id string when equal).
    started = time.perf_counter()
    n = report.profiles
    ids: list[str] = []
    current: list[str] = []
    for pid, cluster_id in _stream(
        session, sql, "SELECT id, cluster_id FROM rebuild_pos ORDER BY pos"
    ):
        ids.append(pid)
        current.append(pid if cluster_id == pid else cluster_id)
        if len(ids) % 100_000 == 0:
            tell(PHASES[1], len(ids), n)
    # Unique-kind values per profile (user id, loyalty card …); most profiles have none.
    unique_kinds = [
        row[0]
        for row in _execute(session, "SELECT DISTINCT kind FROM identifiers")
        if rules.unique(row[0])
    ]
    uniques: dict[int, dict[str, str]] = {}
    if unique_kinds:
        marks = ", ".join([sql.ph] * len(unique_kinds))
        rows = _stream(
            session,
            sql,
            "SELECT p.pos, i.kind, i.value FROM identifiers i "  # noqa: S608
            f"JOIN rebuild_pos p ON p.id = i.profile_id WHERE i.kind IN ({marks})",
            unique_kinds,
        )
        for pos, kind, value in rows:
            uniques.setdefault(pos, {})[sys.intern(kind)] = value
    tell(PHASES[1], n, n)
    report.seconds["read_profiles"] = time.perf_counter() - started

    # The rule: links most recent first; join unless a unique kind would conflict.
    started = time.perf_counter()
    parent = list(range(n))

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    blocks = _blocked(session)
    report.links = int(_execute(session, "SELECT COUNT(*) FROM identity_links")[0][0])
    a_low = (
        f"({sql.c('ia.kind')} < {sql.c('ib.kind')} OR "
        f"(ia.kind = ib.kind AND {sql.c('ia.value')} < {sql.c('ib.value')}))"
    )
    order = ", ".join(
        f"CASE WHEN {a_low} THEN {sql.c(low)} ELSE {sql.c(high)} END DESC"
        for low, high in (
            ("ia.kind", "ib.kind"),
            ("ia.value", "ib.value"),
            ("ib.kind", "ia.kind"),
            ("ib.value", "ia.value"),
        )
    )
    links = _stream(
        session,
        sql,
        f"""
        SELECT pa.pos, pb.pos, l.decision, l.identifier_a_id, l.identifier_b_id,
               l.observed_at, l.message_id
        FROM identity_links l
        JOIN identifiers ia ON ia.id = l.identifier_a_id
        JOIN identifiers ib ON ib.id = l.identifier_b_id
        JOIN rebuild_pos pa ON pa.id = ia.profile_id
        JOIN rebuild_pos pb ON pb.id = ib.profile_id
        ORDER BY l.observed_at DESC, {sql.c("l.message_id")} DESC, {order}
        """,  # noqa: S608
    )
    decisions: list[tuple[str, str, str]] = []
    for done, (pa, pb, decision, a_id, b_id, observed_at, message_id) in enumerate(links, 1):
        if done % 100_000 == 0:
            tell(PHASES[2], done, report.links)
        refuse = False
        block = blocks.get((a_id, b_id)) if blocks else None
        if block is not None and (_as_datetime(observed_at), message_id) <= block:
            refuse = True
        else:
            ra, rb = find(pa), find(pb)
            if ra != rb:
                ua, ub = uniques.get(ra), uniques.get(rb)
                if ua and ub and any(ub.get(k, v) != v for k, v in ua.items()):
                    refuse = True
                else:
                    # The smaller position holds the better identifier: it stays the root.
                    keep, join = (ra, rb) if ra < rb else (rb, ra)
                    parent[join] = keep
                    if ua or ub:
                        uniques[keep] = {**(ua or {}), **(ub or {})}
                        uniques.pop(join, None)
        wanted = "refused" if refuse else "linked"
        report.refused_links += refuse
        if wanted != decision:
            decisions.append((a_id, b_id, wanted))
    tell(PHASES[2], report.links, report.links)
    report.seconds["resolve"] = time.perf_counter() - started

    started = time.perf_counter()
    roots = [find(i) for i in range(n)]
    parent = []  # freed: roots holds the answer
    report.clusters = sum(1 for i, r in enumerate(roots) if i == r)
    changed = [i for i in range(n) if ids[roots[i]] != current[i]]
    report.changed_profiles = len(changed)
    report.changed_links = len(decisions)
    report.examples = [(ids[i], current[i], ids[roots[i]]) for i in changed[:10]]
    if not dry_run:
        total = len(changed) + len(decisions)
        tell(PHASES[3], 0, total)
        _write_clusters(session, sql, [(ids[i], ids[roots[i]]) for i in changed])
        _write_decisions(session, decisions)
        tell(PHASES[3], total, total)
        if changed:
            _repoint(session, ids, current, roots, changed, report)
    report.seconds["write"] = time.perf_counter() - started
    return report


def _write_clusters(session: Session, sql: _Sql, rows: list[tuple[str, str]]) -> None:
    if not rows:
        return
    now = clock.now()
    if sql.postgres:
        _execute(
            session,
            "CREATE TEMPORARY TABLE rebuild_changes (id varchar(40), cluster_id varchar(40)) "
            "ON COMMIT DROP",
        )
        with _raw(session).cursor() as cursor:
            with cursor.copy("COPY rebuild_changes (id, cluster_id) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(
                "UPDATE profiles p SET cluster_id = c.cluster_id, updated_at = %s "
                "FROM rebuild_changes c WHERE p.id = c.id",
                (now,),
            )
        return
    table = _table(Profile)
    stmt = (
        update(table)
        .where(table.c.id == bindparam("pid"))
        .values(cluster_id=bindparam("cid"), updated_at=now)
    )
    session.execute(stmt, [{"pid": pid, "cid": cid} for pid, cid in rows])


def _write_decisions(session: Session, rows: list[tuple[str, str, str]]) -> None:
    if not rows:
        return
    table = _table(IdentityLink)
    stmt = (
        update(table)
        .where(table.c.identifier_a_id == bindparam("a"), table.c.identifier_b_id == bindparam("b"))
        .values(decision=bindparam("d"))
    )
    session.execute(stmt, [{"a": a, "b": b, "d": d} for a, b, d in rows])


def _repoint(
    session: Session,
    ids: list[str],
    current: list[str],
    roots: list[int],
    changed: list[int],
    report: RebuildReport,
) -> None:
    """Keep the active merge pointers a spanning forest of each cluster that changed."""
    new_roots = {roots[i] for i in changed}
    old_clusters = {current[i] for i in changed}
    affected = [i for i in range(len(ids)) if roots[i] in new_roots or current[i] in old_clusters]
    position = {ids[i]: i for i in affected}
    now = clock.now()
    active: dict[str, ProfileMerge] = {}
    keys = sorted(position)
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        for column in (ProfileMerge.profile_id, ProfileMerge.into_profile_id):
            found = session.scalars(
                select(ProfileMerge).where(column.in_(chunk), ProfileMerge.undone_at.is_(None))
            )
            active.update({m.id: m for m in found})
    parent = {i: i for i in affected}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for merge_id in sorted(active):
        merge = active[merge_id]
        a, b = position.get(merge.profile_id), position.get(merge.into_profile_id)
        if a is None or b is None or roots[a] != roots[b] or find(a) == find(b):
            merge.undone_at, merge.undone_reason = now, REBUILD
            report.merges_undone += 1
            emit(
                session,
                "profile.unmerged",
                aggregate_type="profile",
                aggregate_id=merge.profile_id,
                payload={
                    "merge_id": merge.id,
                    "profile_id": merge.profile_id,
                    "from_profile_id": merge.into_profile_id,
                    "cluster_id": ids[roots[a]] if a is not None else None,
                    "reason": REBUILD,
                    "detail": "identity rebuild: the two profiles are no longer one cluster",
                },
            )
        else:
            parent[find(a)] = find(b)
    for i in sorted(affected):
        root = roots[i]
        if find(i) == find(root):
            continue
        parent[find(i)] = find(root)
        evidence = {"rebuild": {"previous_cluster_id": current[i], "at": now.isoformat()}}
        merge = ProfileMerge(
            id=new_id("mrg"),
            profile_id=ids[i],
            into_profile_id=ids[root],
            cluster_id=ids[root],
            trigger=REBUILD,
            trigger_message_id=None,
            triggered_by=None,
            reason="identity rebuild",
            evidence=evidence,
            created_at=now,
        )
        session.add(merge)
        report.merges_added += 1
        emit(
            session,
            "profile.merged",
            aggregate_type="profile",
            aggregate_id=ids[i],
            payload={
                "merge_id": merge.id,
                "profile_id": ids[i],
                "into_profile_id": ids[root],
                "cluster_id": ids[root],
                "reason": merge.reason,
                "evidence": evidence,
                "trigger": {"call": REBUILD, "message_id": None},
            },
        )
    session.flush()
