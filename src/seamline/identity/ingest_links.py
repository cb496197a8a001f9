"""The links a batch of calls observes, and the one resolution they need (ingest.py).

Each call's valid, linking identifiers are paired; the pairs are checked against the stored
links in one query, newer observations written in bulk, and then the batch resolves **once**
around the calls whose pairs could change a cluster (docs/identity.md, "The resolution rule").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import combinations
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from seamline.db import bulk
from seamline.identity import resolution
from seamline.identity.models import Identifier, IdentityLink, Profile
from seamline.identity.rules import IdentityRules

if TYPE_CHECKING:  # ingest imports this module
    from seamline.identity.ingest import Found, _Prepared

_CHUNK = 500


def _table(model: Any) -> Table:
    """The mapped class's table, typed for Core statements."""
    return cast(Table, model.__table__)


class Links:
    """The batch's co-occurrence pairs, checked against the stored links in one query.

    Newer observations are written in bulk: stored links are updated on their ORM rows and
    new ones inserted in one statement at the end of the batch. Then the batch resolves
    **once**, around the calls whose pairs could change a cluster — the rule gives the same
    clusters whatever order the edges arrive in (rules.py; a property test proves it), so one
    resolution after all the batch's edges equals one per call, at a fraction of the cost.
    """

    def __init__(
        self, session: Session, kept: Sequence[_Prepared], found: Found, rules: IdentityRules
    ) -> None:
        self.session, self.found, self.rules = session, found, rules
        self.pairs: dict[str, list[tuple[str, str]]] = {}
        links: dict[str, bool] = {}  # kind -> rules.links(kind), asked once per kind
        for p in kept:
            for v in p.values:
                if v.kind not in links:
                    links[v.kind] = rules.links(v.kind)
            linking = sorted({found[v.key][0] for v in p.values if v.valid and links[v.kind]})
            if len(linking) > 1:
                self.pairs[p.event_id] = list(combinations(linking, 2))
        self.rows: dict[tuple[str, str], IdentityLink] = {}
        # Loaded under the graph lock when the batch already holds it (it created identifiers):
        # then nobody can have changed them since, and they need no second read.
        self.locked = bool(session.info.get(resolution.GRAPH_LOCK))
        self.known = self._load(self._all_pairs())
        self.new: dict[tuple[str, str], tuple[datetime, str]] = {}  # not inserted yet
        self.changed: list[tuple[_Prepared, list[str]]] = []  # calls with newer observations

    def _all_pairs(self) -> list[tuple[str, str]]:
        return sorted({pair for pairs in self.pairs.values() for pair in pairs})

    def _load(
        self, pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[datetime, str]]:
        known: dict[tuple[str, str], tuple[datetime, str]] = {}
        self.rows = {}
        for start in range(0, len(pairs), _CHUNK):
            # ORM objects, kept so a newer observation updates them without a query.
            rows = self.session.scalars(
                bulk.by_key(
                    self.session,
                    IdentityLink,
                    (IdentityLink.identifier_a_id, IdentityLink.identifier_b_id),
                    pairs[start : start + _CHUNK],
                ).execution_options(populate_existing=True)
            )
            for r in rows:
                pair = (r.identifier_a_id, r.identifier_b_id)
                known[pair] = (r.observed_at, r.message_id)
                self.rows[pair] = r
        return known

    def _stale(
        self, pairs: Sequence[tuple[str, str]], observed: tuple[datetime, str]
    ) -> list[tuple[str, str]]:
        return [pair for pair in pairs if pair not in self.known or self.known[pair] < observed]

    def record(self, p: _Prepared) -> None:
        """Note the call's pairs that are new or observed more recently than stored."""
        pairs = self.pairs.get(p.event_id)
        if not pairs:
            return
        observed = (p.timestamp, p.message_id)
        if not self._stale(pairs, observed):
            return
        if not self.locked:
            # Under the lock, the stored links are re-read: another transaction may have moved them.
            resolution.lock_graph(self.session)
            self.locked = True
            self.known = self._load(self._all_pairs())
        stale = self._stale(pairs, observed)
        if not stale:
            return
        for pair in stale:
            self.known[pair] = observed
            link = self.rows.get(pair)
            if link is None:
                self.new[pair] = max(self.new.get(pair, observed), observed)
            elif (link.observed_at, link.message_id) < observed:
                link.observed_at, link.message_id = observed
        self.changed.append((p, sorted({a for pair in pairs for a in pair})))

    def resolve(self, key_id: str) -> int:
        """Store the observations, then resolve once around every call that could move a
        profile; returns how many calls needed it (0: no resolution ran)."""
        if self.new:
            rows = [
                {
                    "identifier_a_id": a,
                    "identifier_b_id": b,
                    "observed_at": observed_at,
                    "message_id": message_id,
                    "decision": "linked",
                }
                for (a, b), (observed_at, message_id) in sorted(self.new.items())
            ]
            bulk.copy_rows(self.session, _table(IdentityLink), rows)
            self.new = {}
        self.session.flush()
        if not self.changed:
            return 0
        clusters = _clusters(self.session, sorted({a for _, ids in self.changed for a in ids}))
        settled = _unrefused(
            self.session,
            sorted({clusters[ids[0]] for _, ids in self.changed if ids[0] in clusters}),
        )
        seeds: set[str] = set()
        triggers: dict[str, resolution.Trigger] = {}
        for p, ids in self.changed:
            # Settled: one cluster no refused (or blocked) link touches. Its component is that
            # cluster, holding at most one value of each unique kind, so the rule accepts every
            # edge in any order — a new observation inside it moves no profile, refuses no link
            # and adds no merge. (A call joining it to another cluster brings it in anyway.)
            owners = {clusters.get(i) for i in ids}
            if len(owners) == 1 and owners <= settled:
                continue
            seeds.update(ids)
            triggers.setdefault(
                p.message_id, resolution.Trigger(p.incoming.call_type, p.message_id, key_id)
            )
        if seeds:
            first = next(iter(triggers.values()))
            resolution.resolve(
                self.session, sorted(seeds), trigger=first, triggers=triggers, rules=self.rules
            )
        return len(triggers)


def _clusters(session: Session, identifier_ids: Sequence[str]) -> dict[str, str]:
    """Identifier id -> the cluster of its profile."""
    found: dict[str, str] = {}
    for start in range(0, len(identifier_ids), _CHUNK):
        rows = session.execute(
            select(Identifier.id, Profile.cluster_id)
            .join(Profile, Profile.id == Identifier.profile_id)
            .where(bulk.among(session, Identifier.id, identifier_ids[start : start + _CHUNK]))
        )
        found.update((row[0], row[1]) for row in rows)
    return found


def _unrefused(session: Session, clusters: Sequence[str]) -> set[str]:
    """The clusters no refused link touches: their profiles, those profiles' identifiers,
    then the refused links at either end of them — index probes only (``bulk.by_key``), so
    the cost follows the batch, not the size of the graph."""
    touched: set[str] = set()
    for start in range(0, len(clusters), _CHUNK):
        chunk = [(c,) for c in clusters[start : start + _CHUNK]]
        cluster_of: dict[str, str] = {
            row[0]: row[1]
            for row in session.execute(
                bulk.by_key(
                    session,
                    (Profile.id, Profile.cluster_id),
                    (Profile.cluster_id,),
                    chunk,
                    unique=False,
                )
            )
        }
        profiles = sorted(cluster_of)
        owner: dict[str, str] = {}
        for p_start in range(0, len(profiles), _CHUNK):
            owner.update(
                (row[0], row[1])
                for row in session.execute(
                    bulk.by_key(
                        session,
                        (Identifier.id, Identifier.profile_id),
                        (Identifier.profile_id,),
                        [(p,) for p in profiles[p_start : p_start + _CHUNK]],
                        unique=False,
                    )
                )
            )
        identifiers = sorted(owner)
        for i_start in range(0, len(identifiers), _CHUNK):
            ids = [(i,) for i in identifiers[i_start : i_start + _CHUNK]]
            for end in (IdentityLink.identifier_a_id, IdentityLink.identifier_b_id):
                ends = session.scalars(
                    bulk.by_key(
                        session,
                        (end,),
                        (end,),
                        ids,
                        unique=False,
                        where=[IdentityLink.decision == "refused"],
                    )
                )
                touched.update(cluster_of[owner[e]] for e in ends)
    return set(clusters) - touched
