"""Set-based writes of the identity graph: link decisions, profiles' clusters, identifiers'
first/last seen — one statement for a whole batch on PostgreSQL (arrays through ``unnest``),
``executemany`` or the ORM on SQLite. Objects the session already holds get the new values as
their loaded state, so later reads in the transaction agree with the rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, or_, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from seamline.db import bulk
from seamline.identity.models import Identifier, IdentityLink, Profile
from seamline.kit import clock

# Ids per read of the profiles a resolution may move.
_CHUNK = 500


def _table(model: Any) -> Table:
    """The mapped class's table, typed for Core statements."""
    return cast(Table, model.__table__)


def decide_links(session: Session, decided: Sequence[tuple[str, str, str]]) -> None:
    """Write links' new decisions (pair order), and into link objects the session holds."""
    if not decided:
        return
    ordered = sorted(decided)
    if bulk.is_postgres(session):
        session.execute(
            _DECIDE,
            {
                "a": bulk.TextArray(a for a, _, _ in ordered),
                "b": bulk.TextArray(b for _, b, _ in ordered),
                "d": bulk.TextArray(d for _, _, d in ordered),
            },
        )
    else:
        table = _table(IdentityLink)
        stmt = (
            update(table)
            .where(
                table.c.identifier_a_id == bindparam("pa"),
                table.c.identifier_b_id == bindparam("pb"),
            )
            .values(decision=bindparam("d"))
        )
        session.execute(stmt, [{"pa": a, "pb": b, "d": d} for a, b, d in ordered])
    for a, b, decision in ordered:
        held = session.identity_map.get(identity_key(IdentityLink, (a, b)))
        if held is not None:
            set_committed_value(held, "decision", decision)


_DECIDE = text(
    """
    UPDATE identity_links AS l SET decision = v.d
    FROM unnest(CAST(:a AS TEXT[]), CAST(:b AS TEXT[]), CAST(:d AS TEXT[])) AS v(a, b, d)
    WHERE l.identifier_a_id = v.a AND l.identifier_b_id = v.b
    """
)


def move_profiles(session: Session, ids: Sequence[str], canonical: Mapping[str, str]) -> None:
    """Set each profile's ``cluster_id`` to its canonical profile where it differs.

    On PostgreSQL the changed profiles are found with a plain read and written with one
    ``UPDATE`` (``_MOVE``; a batch moves thousands); profiles the session holds as objects
    get the new values as their loaded state. Elsewhere, through the ORM."""
    if not bulk.is_postgres(session):
        profiles = session.scalars(select(Profile).where(bulk.among(session, Profile.id, ids)))
        for profile in profiles:
            if profile.cluster_id != canonical[profile.id]:
                profile.cluster_id = canonical[profile.id]
        return
    moved: list[tuple[str, str]] = []
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(Profile.id, Profile.cluster_id).where(
                bulk.among(session, Profile.id, ids[start : start + _CHUNK])
            )
        )
        moved += [(pid, canonical[pid]) for pid, cluster in rows if cluster != canonical[pid]]
    if not moved:
        return
    moved.sort()  # rows are updated in id order, as the ORM's flush did
    now = clock.now()
    session.execute(
        _MOVE,
        {
            "ids": bulk.TextArray(pid for pid, _ in moved),
            "clusters": bulk.TextArray(c for _, c in moved),
            "now": now,
        },
    )
    for pid, cluster in moved:
        held = session.identity_map.get(identity_key(Profile, pid))
        if held is not None:
            set_committed_value(held, "cluster_id", cluster)
            set_committed_value(held, "updated_at", now)


_MOVE = text(
    """
    UPDATE profiles AS p SET cluster_id = v.cluster_id, updated_at = :now
    FROM unnest(CAST(:ids AS TEXT[]), CAST(:clusters AS TEXT[])) AS v(id, cluster_id)
    WHERE p.id = v.id
    """
)


def touch_seen(session: Session, seen: dict[str, tuple[datetime, datetime]]) -> None:
    """Widen identifiers' first/last seen to the events' times; the condition touches (and
    locks) only rows whose window grows, in id order (no deadlocks between two drains).

    On PostgreSQL one statement for the whole batch (``_TOUCH``: the ids and times as three
    arrays); elsewhere one ``executemany``. The per-row ``executemany`` was one statement
    per identifier on the server too (4,300 per 5,000-call drain)."""
    if not seen:
        return
    ordered = sorted(seen.items())
    if bulk.is_postgres(session):
        session.execute(
            _TOUCH,
            {
                # Times as their text, cast by the statement: one string array each.
                "ids": bulk.TextArray(ident for ident, _ in ordered),
                "firsts": bulk.TextArray(str(first) for _, (first, _) in ordered),
                "lasts": bulk.TextArray(str(last) for _, (_, last) in ordered),
            },
        )
        return
    table = _table(Identifier)
    first, last = (
        bindparam("f", type_=table.c.first_seen.type),
        bindparam("l", type_=table.c.last_seen.type),
    )
    stmt = (
        update(table)
        .where(
            table.c.id == bindparam("i"), or_(table.c.last_seen < last, table.c.first_seen > first)
        )
        .values(
            last_seen=case((table.c.last_seen < last, last), else_=table.c.last_seen),
            first_seen=case((table.c.first_seen > first, first), else_=table.c.first_seen),
        )
    )
    rows = [{"i": ident, "f": f, "l": lt} for ident, (f, lt) in ordered]
    session.execute(stmt, rows)


# The rows whose window grows are locked first, in id order (``ORDER BY … FOR UPDATE`` locks
# in the sorted order), then widened; the ``UPDATE`` re-reads each locked row's current times.
_TOUCH = text(
    """
    WITH v AS MATERIALIZED (
        SELECT * FROM unnest(
            CAST(:ids AS TEXT[]), CAST(:firsts AS TIMESTAMPTZ[]), CAST(:lasts AS TIMESTAMPTZ[])
        ) AS v(id, f, l)
    ), locked AS (
        SELECT i.id FROM v JOIN identifiers AS i ON i.id = v.id
        WHERE i.last_seen < v.l OR i.first_seen > v.f
        ORDER BY i.id
        FOR UPDATE OF i
    )
    UPDATE identifiers AS i
    SET first_seen = LEAST(i.first_seen, v.f), last_seen = GREATEST(i.last_seen, v.l)
    FROM v
    WHERE i.id = v.id AND i.id IN (SELECT id FROM locked)
    """
)
