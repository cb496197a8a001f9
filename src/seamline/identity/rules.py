"""The identity resolution rule, as a pure function of the identity graph (no database).

Input: profiles (each holding one or more identifiers) and co-occurrence edges between
identifiers, each stamped with the time of its most recent observation. Output: the clusters.

The rule, in one sentence: take the edges from the most recent to the oldest and join the two
sides unless that would put two different values of a unique kind (two user ids, two loyalty
cards) into one cluster; such an edge is refused. Because the order is a function of the edges
themselves (event time, then message id, then the identifiers' values) and never of arrival
order or database ids, the same calls give the same clusters whatever order they arrive in,
and "a shared device stays with the most recent account" holds by event time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from seamline.identity import normalize as kinds

Key = tuple[str, str]  # (kind, value)


@dataclass(frozen=True)
class IdentityRules:
    """Which identifier kinds link profiles, and which are unique per cluster.

    A kind ending in ``:*`` covers a family (``social:*``, ``external:*``). The defaults are
    documented in docs/identity.md; pass another instance to the services to change them.
    """

    linking_kinds: frozenset[str] = frozenset(
        {
            kinds.USER_ID,
            kinds.ANONYMOUS_ID,
            kinds.EMAIL,
            kinds.PHONE,
            kinds.LOYALTY_CARD,
            kinds.DEVICE_ID,
            f"{kinds.SOCIAL}:*",
            f"{kinds.EXTERNAL}:*",
        }
    )
    unique_kinds: frozenset[str] = frozenset({kinds.USER_ID, kinds.LOYALTY_CARD})
    # Country for national phone numbers when the call names none (None: only +… numbers).
    default_phone_region: str | None = None
    # The order in which a cluster's identifiers name it (its canonical profile).
    rank: tuple[str, ...] = (
        kinds.USER_ID,
        kinds.LOYALTY_CARD,
        f"{kinds.EXTERNAL}:*",
        kinds.EMAIL,
        kinds.PHONE,
        f"{kinds.SOCIAL}:*",
        kinds.DEVICE_ID,
        kinds.ANONYMOUS_ID,
    )

    @staticmethod
    def _matches(kind: str, patterns: frozenset[str]) -> bool:
        # Two set lookups (asked for every identifier of every call a drain resolves).
        return kind in patterns or kind.partition(":")[0] + ":*" in patterns

    def links(self, kind: str) -> bool:
        return self._matches(kind, self.linking_kinds)

    def unique(self, kind: str) -> bool:
        return self._matches(kind, self.unique_kinds)

    def sort_key(self, key: Key) -> tuple[int, str, str]:
        kind, value = key
        family = kind.partition(":")[0] + ":*"
        for index, pattern in enumerate(self.rank):
            if pattern in (kind, family):
                return (index, kind, value)
        return (len(self.rank), kind, value)


DEFAULT_RULES = IdentityRules()


@dataclass(frozen=True)
class Edge:
    """Two identifiers seen together, last at ``observed_at`` in message ``message_id``."""

    a: Key
    b: Key
    observed_at: datetime
    message_id: str

    def order(self) -> tuple[datetime, str, Key, Key]:
        low, high = sorted((self.a, self.b))
        return (self.observed_at, self.message_id, low, high)


@dataclass
class Partition:
    """The result: each profile's canonical profile, and what happened to each edge."""

    canonical: dict[str, str] = field(default_factory=dict)
    # Accepted edges with the profile that joined and the profile it joined (sides at union).
    accepted: list[tuple[Edge, str, str]] = field(default_factory=list)
    refused: list[Edge] = field(default_factory=list)


def partition(
    profiles: Mapping[str, Sequence[Key]],
    edges: Iterable[Edge],
    rules: IdentityRules = DEFAULT_RULES,
) -> Partition:
    """Cluster ``profiles`` (profile id → its identifiers) along ``edges`` by the rule above.

    Edges whose identifiers belong to no profile in ``profiles`` are ignored. A profile's own
    identifiers are always together (they arrived as one unit).
    """
    owner = {key: pid for pid, keys in profiles.items() for key in keys}
    parent = {pid: pid for pid in profiles}
    # Per root: the unique-kind values it holds, and its best (canonical) identifier.
    uniques: dict[str, dict[str, str]] = {}
    best: dict[str, tuple[tuple[int, str, str], str]] = {}
    for pid, keys in profiles.items():
        uniques[pid] = {k: v for k, v in keys if rules.unique(k)}
        ranked = [(rules.sort_key(key), pid) for key in keys] or [((999, "", pid), pid)]
        best[pid] = min(ranked)

    def find(pid: str) -> str:
        while parent[pid] != pid:
            parent[pid] = parent[parent[pid]]
            pid = parent[pid]
        return pid

    result = Partition()
    for edge in sorted(edges, key=Edge.order, reverse=True):
        if edge.a not in owner or edge.b not in owner:
            continue
        ra, rb = find(owner[edge.a]), find(owner[edge.b])
        if ra == rb:
            continue
        ua, ub = uniques[ra], uniques[rb]
        if any(ub.get(kind, value) != value for kind, value in ua.items()):
            result.refused.append(edge)
            continue
        # The side with the better canonical identifier survives; the other joins it.
        keep, join = (ra, rb) if best[ra] <= best[rb] else (rb, ra)
        parent[join] = keep
        uniques[keep] = {**ua, **ub}
        best[keep] = min(best[ra], best[rb])
        side_of_join = owner[edge.a] if ra == join else owner[edge.b]
        side_of_keep = owner[edge.b] if ra == join else owner[edge.a]
        result.accepted.append((edge, side_of_join, side_of_keep))
    for pid in profiles:
        result.canonical[pid] = best[find(pid)][1]
    return result
