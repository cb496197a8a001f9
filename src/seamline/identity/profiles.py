"""Reading a cluster: its profiles, identifiers and current traits.

A cluster is read from the profile the caller names: ``profiles`` by ``cluster_id``, then every
child table by ``profile_id IN (…)``. Other modules (merges, consent, the 360 in
customer360.py) build on these; see docs/identity.md and docs/customer-360.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, Text, bindparam, case, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from seamline.db.lookup import get_or_404, not_found, usable_id
from seamline.identity.models import Identifier, Profile, ProfileTrait

# How a trait's current value is chosen from its history (docs/customer-360.md, "Traits"):
# ``latest`` (a later null clears), ``first`` (never changes once known), ``non_empty`` (the
# latest value that is not null, "", [] or {} — a form sent with an empty name does not wipe
# the name). Names not listed use ``latest``. ``SEAMLINE_TRAIT_STRATEGIES`` adds to or
# overrides this table (``configure_strategies``).
LATEST, FIRST, NON_EMPTY = "latest", "first", "non_empty"
STRATEGIES = (LATEST, FIRST, NON_EMPTY)
DEFAULT_TRAIT_STRATEGIES: dict[str, str] = {
    "created_at": FIRST,
    "createdAt": FIRST,
    **dict.fromkeys(
        (
            "name",
            "first_name",
            "firstName",
            "last_name",
            "lastName",
            "email",
            "phone",
            "address",
            "birthday",
        ),
        NON_EMPTY,
    ),
}
TRAIT_STRATEGIES: dict[str, str] = dict(DEFAULT_TRAIT_STRATEGIES)
_EMPTY_JSON = ("null", '""', "[]", "{}")


def configure_strategies(overrides: Mapping[str, str]) -> None:
    """Apply ``SEAMLINE_TRAIT_STRATEGIES`` over the defaults (for this process)."""
    unknown = sorted({v for v in overrides.values() if v not in STRATEGIES})
    if unknown:
        raise ValueError(f"unknown trait strategies {unknown}; use one of {list(STRATEGIES)}")
    TRAIT_STRATEGIES.clear()
    TRAIT_STRATEGIES.update({**DEFAULT_TRAIT_STRATEGIES, **overrides})


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def get_profile(session: Session, profile_id: str) -> Profile:
    return get_or_404(session, Profile, profile_id, what="profile", code="profile_not_found")


def cluster_members(session: Session, cluster_id: str) -> list[str]:
    return list(
        session.scalars(
            select(Profile.id).where(Profile.cluster_id == cluster_id).order_by(Profile.id)
        )
    )


# The 360's statements are built once: values are bound, so each call reuses the compiled SQL.
MEMBERS: BindParameter[Any] = bindparam("members", expanding=True)
# Table columns, not ORM attributes: plain Core statements cost less to execute.
_P, _I, _T = Profile.__table__.c, Identifier.__table__.c, ProfileTrait.__table__.c
_CLUSTER = (
    select(_P.id, _P.cluster_id)
    .where(
        _P.cluster_id
        == select(_P.cluster_id).where(_P.id == bindparam("profile_id")).scalar_subquery()
    )
    .order_by(_P.id)
)
_IDENTIFIERS = (
    select(
        _I.kind,
        _I.value,
        _I.valid,
        _I.profile_id,
        _I.source_channel,
        _I.first_seen,
        _I.last_seen,
    )
    .where(_I.profile_id.in_(MEMBERS))
    .order_by(_I.kind, _I.value)
)


def cluster_of(session: Session, profile_id: str) -> tuple[str, list[str]]:
    """The cluster id and member profile ids of ``profile_id``, in one query (404 if none)."""
    members: list[Any] = []
    if usable_id(profile_id):
        members = list(session.connection().execute(_CLUSTER, {"profile_id": profile_id}))
    if not members:
        raise not_found("profile", profile_id, "profile_not_found")
    return members[0].cluster_id, [m.id for m in members]


def identifiers(session: Session, members: Sequence[str]) -> list[dict[str, Any]]:
    rows = session.connection().execute(_IDENTIFIERS, {"members": list(members)})
    return [row._asdict() for row in rows]


@lru_cache(maxsize=8)
def _traits_statement(
    firsts: tuple[str, ...], non_empties: tuple[str, ...], per_cluster: bool = False
) -> Select[Any]:
    """The current-trait read over ``members``; ``per_cluster`` ranks within each member's
    cluster (and selects the cluster id first) so one statement serves many clusters."""
    trait = _T
    # ``first`` names rank by earliest time; ``non_empty`` names put empty values last; every
    # name then by latest time, last stored.
    order: list[Any] = [trait.observed_at.desc(), trait.id.desc()]
    if firsts:
        order.insert(0, case((trait.name.in_(firsts), trait.observed_at)).asc())
    if non_empties:
        empty = func.coalesce(cast(trait.value, Text), "null").in_(_EMPTY_JSON)
        order.insert(0, case((trait.name.in_(non_empties) & empty, 1), else_=0).asc())
    partition: list[Any] = [trait.name]
    columns: list[Any] = []
    if per_cluster:
        partition.insert(0, Profile.cluster_id)
        columns.append(Profile.cluster_id)
    rank = func.row_number().over(partition_by=partition, order_by=order)
    ranked = select(
        *columns,
        trait.name,
        trait.value,
        trait.observed_at,
        trait.source,
        trait.profile_id,
        rank.label("rank"),
    ).where(trait.profile_id.in_(MEMBERS))
    if per_cluster:
        ranked = ranked.join(Profile, Profile.id == trait.profile_id)
    subquery = ranked.subquery()
    cluster_column = [subquery.c.cluster_id] if per_cluster else []
    return (
        select(
            *cluster_column,
            subquery.c.name,
            subquery.c.value,
            subquery.c.observed_at,
            subquery.c.source,
            subquery.c.profile_id,
        )
        .where(subquery.c.rank == 1)
        .order_by(*cluster_column, subquery.c.name)
    )


def _strategy_names(strategies: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    firsts = tuple(sorted(name for name, strategy in strategies.items() if strategy == FIRST))
    non_empties = tuple(
        sorted(name for name, strategy in strategies.items() if strategy == NON_EMPTY)
    )
    return firsts, non_empties


def _chosen(row: Any, strategies: Mapping[str, str]) -> dict[str, Any]:
    return {
        "value": row.value,
        "observed_at": row.observed_at,
        "source": row.source,
        "profile_id": row.profile_id,
        "strategy": strategies.get(row.name, LATEST),
    }


def current_traits(
    session: Session, members: Sequence[str], strategies: dict[str, str] = TRAIT_STRATEGIES
) -> dict[str, dict[str, Any]]:
    """Each trait's current value across the cluster, chosen in SQL by the same rule as
    ``resolve_traits``: one window over the cluster's history (ranked by the strategy's
    order), so only the chosen rows leave the database."""
    rows = session.connection().execute(
        _traits_statement(*_strategy_names(strategies)), {"members": list(members)}
    )
    return {row.name: _chosen(row, strategies) for row in rows}


def clusters_traits(
    session: Session, clusters: Sequence[str], strategies: dict[str, str] = TRAIT_STRATEGIES
) -> dict[str, dict[str, dict[str, Any]]]:
    """``current_traits`` of several clusters at once, by cluster id: two statements (the
    clusters' members, then one ranked read over all of them) whatever their number. A
    cluster with no trait maps to ``{}``."""
    found: dict[str, dict[str, dict[str, Any]]] = {cluster: {} for cluster in clusters}
    if not found:
        return found
    members = list(session.scalars(select(Profile.id).where(Profile.cluster_id.in_(list(found)))))
    if not members:
        return found
    rows = session.connection().execute(
        _traits_statement(*_strategy_names(strategies), per_cluster=True), {"members": members}
    )
    for row in rows:
        found.setdefault(row.cluster_id, {})[row.name] = _chosen(row, strategies)
    return found


def resolve_traits(
    rows: Sequence[ProfileTrait], strategies: dict[str, str] = TRAIT_STRATEGIES
) -> dict[str, dict[str, Any]]:
    """Each trait's current value: the most recent observation by event time (``latest``), the
    earliest (``first``), or the most recent non-empty one (``non_empty``, else the most
    recent); ties go to the observation stored last (its id).

    The reference for ``current_traits`` (which the 360 uses), kept for tests and tools that
    already hold a history in memory."""
    chosen: dict[str, ProfileTrait] = {}
    for row in rows:
        held = chosen.get(row.name)
        if held is None:
            chosen[row.name] = row
            continue
        strategy = strategies.get(row.name, LATEST)
        if strategy == FIRST:
            better = (row.observed_at, held.id) < (held.observed_at, row.id)
        elif strategy == NON_EMPTY and is_empty(row.value) != is_empty(held.value):
            better = is_empty(held.value)
        else:
            better = (row.observed_at, row.id) > (held.observed_at, held.id)
        if better:
            chosen[row.name] = row
    return {
        name: {
            "value": row.value,
            "observed_at": row.observed_at,
            "source": row.source,
            "profile_id": row.profile_id,
            "strategy": strategies.get(name, LATEST),
        }
        for name, row in sorted(chosen.items())
    }
