"""Recompute every profile's cluster from the identity graph: ``seamline identity rebuild``.

The rule is the one in rules.py, applied to the whole graph at once instead of one component
at a time: take the links from the most recent to the oldest (event time, message id, then
the identifiers' kinds and values) and join the two sides unless that would put two values of
a unique kind in one cluster. Links an unmerge blocked are left out up to the observation they
were blocked at, and a profile's own identifiers are always together — exactly as
``resolution.resolve`` does (tests/identity/test_rebuild.py compares the two on generated
call sets, through the real ingestion path).

How it stays fast and small on millions of identifiers:

- The database numbers every identifier by its byte-wise (kind, value) order (``k``) and ranks
  profiles by their best identifier (``IdentityRules.rank``, then ``k``, then id), so each
  profile becomes an integer position whose order *is* the canonical order: a cluster's
  canonical profile is its smallest position, and the union-find keeps the smaller position
  as the root (no per-root "best" to carry). One temporary table of identifiers carries
  ``k`` and the profile position, so the link query joins it once per side.
- The links come sorted by the database on event time, message id and two integers (the
  pair's lower and higher ``k``, which stand for the rule's kind/value comparisons), already
  translated to the two profiles' positions; PostgreSQL sends them (and the profiles) as
  binary ``COPY … TO STDOUT`` with typed columns, SQLite through its cursor. Python keeps a
  list of ints (the union-find), the profile ids, and the unique-kind values of the profiles
  that have any — never ORM objects. Links an unmerge blocked are looked up beforehand (few)
  and recognised in the stream by their two ``k``.
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
# Best-identifier key of a profile: rk * _K_SPAN + k (k < _K_SPAN); profiles without any
# identifier come after every other (then by id, as before).
_K_SPAN = 1 << 32
_NO_IDENTIFIER = 1 << 62
# Session memory for the two big sorts (ranking identifiers, ordering the links).
_WORK_MEM = "1536MB"


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

    def least(self, a: str, b: str) -> str:
        return f"LEAST({a}, {b})" if self.postgres else f"MIN({a}, {b})"

    def greatest(self, a: str, b: str) -> str:
        return f"GREATEST({a}, {b})" if self.postgres else f"MAX({a}, {b})"

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


def _copy_out(
    session: Session, sql: _Sql, query: str, types: Sequence[str], params: Sequence[Any] = ()
) -> Iterator[tuple[Any, ...]]:
    """Rows of ``query``: binary ``COPY … TO STDOUT`` with typed columns on PostgreSQL (no
    cursor round trips, no text parsing); SQLite's cursor otherwise."""
    if not sql.postgres:
        yield from _stream(session, sql, query, params)
        return
    statement = f"COPY ({query}) TO STDOUT (FORMAT BINARY)"
    with _raw(session).cursor() as cursor, cursor.copy(statement, params or None) as copy:
        copy.set_types(list(types))
        yield from copy.rows()


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
    """Fill temporary tables ``rebuild_pos(id, cluster_id, pos)``: every profile, numbered in
    the order of its best identifier (rules.rank, kind, value; then the profile id), and
    ``rebuild_ipos(id, k, pos)``: every identifier with its byte-wise (kind, value) position
    ``k`` and its profile's ``pos`` — so the link query joins one integer-keyed table per side
    and sorts on integers instead of ``CASE … COLLATE``."""
    kinds = [row[0] for row in _execute(session, "SELECT DISTINCT kind FROM identifiers")]
    rank = {kind: rules.sort_key((kind, ""))[0] for kind in kinds}
    cases = " ".join(f"WHEN {sql.ph} THEN {rank[k]}" for k in kinds)
    rank_expr = f"CASE kind {cases} ELSE {len(rules.rank)} END" if kinds else "0"
    for name in ("rebuild_ipos", "rebuild_pos", "rebuild_ident"):
        _execute(session, f"DROP TABLE IF EXISTS {name}")
    temp = "CREATE TEMPORARY TABLE"
    on_commit = " ON COMMIT DROP" if sql.postgres else ""
    # Only fixed SQL and COLLATE clauses are interpolated; the kinds are bound parameters.
    # (kind, value) is unique, so k is a total order equal to the rule's string comparison.
    _execute(
        session,
        f"""
        {temp} rebuild_ident{on_commit} AS
        SELECT id, profile_id, {rank_expr} AS rk,
               ROW_NUMBER() OVER (ORDER BY {sql.c("kind")}, {sql.c("value")}) AS k
        FROM identifiers
        """,  # noqa: S608
        kinds,
    )
    # Best identifier per profile: the smallest (rk, k), packed in one integer.
    _execute(
        session,
        f"""
        {temp} rebuild_pos{on_commit} AS
        SELECT p.id, p.cluster_id,
               ROW_NUMBER() OVER (ORDER BY COALESCE(b.best, {_NO_IDENTIFIER}),
                                  {sql.c("p.id")}) - 1 AS pos
        FROM profiles p
        LEFT JOIN (
            SELECT profile_id, MIN(rk * {_K_SPAN} + k) AS best
            FROM rebuild_ident GROUP BY profile_id
        ) b ON b.profile_id = p.id
        """,  # noqa: S608
    )
    _execute(
        session,
        f"""
        {temp} rebuild_ipos{on_commit} AS
        SELECT i.id, i.k, p.pos FROM rebuild_ident i JOIN rebuild_pos p ON p.id = i.profile_id
        """,  # noqa: S608
    )
    identifiers = _execute(session, "SELECT COUNT(*) FROM rebuild_ident")[0][0]
    _execute(session, "DROP TABLE rebuild_ident")
    _execute(session, "ANALYZE rebuild_pos")
    _execute(session, "ANALYZE rebuild_ipos")
    profiles = _execute(session, "SELECT COUNT(*) FROM rebuild_pos")[0][0]
    return int(profiles), int(identifiers)


def _ids_of(session: Session, sql: _Sql, keys: set[int]) -> dict[int, str]:
    """Identifier ids by their position ``k`` (few: blocked and changed links)."""
    found: dict[int, str] = {}
    if not keys:
        return found
    _execute(session, "CREATE INDEX IF NOT EXISTS rebuild_ipos_k ON rebuild_ipos (k)")
    ordered = sorted(keys)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        marks = ", ".join([sql.ph] * len(chunk))
        query = f"SELECT k, id FROM rebuild_ipos WHERE k IN ({marks})"  # noqa: S608
        found.update((int(k), i) for k, i in _execute(session, query, chunk))
    return found


def _blocked_keys(
    session: Session, sql: _Sql, blocks: dict[tuple[str, str], tuple[datetime, str]]
) -> set[tuple[int, int]]:
    """The links (as identifier positions) an unmerge blocked at or after their observation."""
    refused: set[tuple[int, int]] = set()
    if not blocks:
        return refused
    _execute(session, "CREATE INDEX IF NOT EXISTS rebuild_ipos_id ON rebuild_ipos (id)")
    firsts = sorted({a for a, _ in blocks})
    for start in range(0, len(firsts), _CHUNK):
        chunk = firsts[start : start + _CHUNK]
        marks = ", ".join([sql.ph] * len(chunk))
        query = (
            "SELECT l.identifier_a_id, l.identifier_b_id, l.observed_at, l.message_id, "  # noqa: S608
            "ia.k, ib.k FROM identity_links l "
            "JOIN rebuild_ipos ia ON ia.id = l.identifier_a_id "
            "JOIN rebuild_ipos ib ON ib.id = l.identifier_b_id "
            f"WHERE l.identifier_a_id IN ({marks})"
        )
        for a, b, observed_at, message_id, ka, kb in _execute(session, query, chunk):
            block = blocks.get((a, b))
            if block is not None and (_as_datetime(observed_at), message_id) <= block:
                refused.add((int(ka), int(kb)))
    return refused


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
        _execute(session, f"SET LOCAL work_mem = '{_WORK_MEM}'")
    try:
        return _rebuild(session, sql, rules, report, tell, dry_run)
    finally:
        if not sql.postgres:
            for name in ("rebuild_ipos", "rebuild_pos", "rebuild_ident"):
                _execute(session, f"DROP TABLE IF EXISTS {name}")


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
    # Read in table order and placed by position: no sort needed.
    started = time.perf_counter()
    n = report.profiles
    ids: list[str] = [""] * n
    current: list[str] = [""] * n
    rows = _copy_out(
        session, sql, "SELECT pos, id, cluster_id FROM rebuild_pos", ("int8", "text", "text")
    )
    for done, (pos, pid, cluster_id) in enumerate(rows, 1):
        ids[pos] = pid
        current[pos] = pid if cluster_id == pid else cluster_id
        if done % 500_000 == 0:
            tell(PHASES[1], done, n)
    # Unique-kind values per profile (user id, loyalty card …); most profiles have none.
    unique_kinds = [
        row[0]
        for row in _execute(session, "SELECT DISTINCT kind FROM identifiers")
        if rules.unique(row[0])
    ]
    uniques: dict[int, dict[str, str]] = {}
    if unique_kinds:
        marks = ", ".join([sql.ph] * len(unique_kinds))
        rows = _copy_out(
            session,
            sql,
            "SELECT p.pos, i.kind, i.value FROM identifiers i "  # noqa: S608
            f"JOIN rebuild_pos p ON p.id = i.profile_id WHERE i.kind IN ({marks})",
            ("int8", "text", "text"),
            unique_kinds,
        )
        for pos, kind, value in rows:
            uniques.setdefault(pos, {})[sys.intern(kind)] = value
    tell(PHASES[1], n, n)
    report.seconds["read_profiles"] = time.perf_counter() - started

    # The rule: links most recent first; join unless a unique kind would conflict.
    started = time.perf_counter()
    parent = list(range(n))
    blocked = _blocked_keys(session, sql, _blocked(session))
    report.links = int(_execute(session, "SELECT COUNT(*) FROM identity_links")[0][0])
    # The rule's order, on integers: the pair's lower then higher (kind, value) position
    # stand for the CASE … COLLATE "C" comparisons of the two identifiers.
    links = _copy_out(
        session,
        sql,
        f"""
        SELECT a.pos, b.pos, a.k, b.k, l.decision = 'linked'
        FROM identity_links l
        JOIN rebuild_ipos a ON a.id = l.identifier_a_id
        JOIN rebuild_ipos b ON b.id = l.identifier_b_id
        ORDER BY l.observed_at DESC, {sql.c("l.message_id")} DESC,
                 {sql.least("a.k", "b.k")} DESC, {sql.greatest("a.k", "b.k")} DESC
        """,  # noqa: S608
        ("int8", "int8", "int8", "int8", "bool"),
    )
    decisions: list[tuple[int, int, bool]] = []
    refused = 0
    done = 0
    for done, (pa, pb, ka, kb, linked) in enumerate(links, 1):
        if not done % 500_000:
            tell(PHASES[2], done, report.links)
        if blocked and (ka, kb) in blocked:
            refuse = True
        else:
            # find(pa), find(pb) with path halving, inline (the hot loop).
            ra = pa
            while (up := parent[ra]) != ra:
                parent[ra] = up = parent[up]
                ra = up
            rb = pb
            while (up := parent[rb]) != rb:
                parent[rb] = up = parent[up]
                rb = up
            refuse = False
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
        if refuse:
            refused += 1
            if linked:
                decisions.append((ka, kb, False))
        elif not linked:
            decisions.append((ka, kb, True))
    report.refused_links = refused
    tell(PHASES[2], report.links, report.links)
    report.seconds["resolve"] = time.perf_counter() - started

    started = time.perf_counter()

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

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
        _write_decisions(session, sql, decisions)
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


def _write_decisions(session: Session, sql: _Sql, changed: list[tuple[int, int, bool]]) -> None:
    if not changed:
        return
    names = _ids_of(session, sql, {k for ka, kb, _ in changed for k in (ka, kb)})
    rows = [(names[ka], names[kb], "linked" if linked else "refused") for ka, kb, linked in changed]
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
            resolution.emit_unmerged(
                session,
                merge,
                cluster_id=ids[roots[a]] if a is not None else None,
                reason=REBUILD,
                detail="identity rebuild: the two profiles are no longer one cluster",
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
