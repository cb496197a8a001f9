"""Find a customer from one search box: email, phone, loyalty card, handle, user id or name.

Identifiers are matched exactly on their normalised key (the same normalisation ingestion uses,
so "  Maya.Okafor@Example.com " finds maya.okafor@example.com and "(212) 555-0199" finds
+12125550199); names are matched as a case-insensitive substring of the ``name``,
``first_name`` and ``last_name`` traits (or Segment's ``firstName``/``lastName``). Results are
whole clusters, one row per customer, read with four statements however many match (the
identifier match, the name match, the clusters' members, their current traits).
The name match scans the trait table: fine for a store's console at tens of thousands of
customers; a trigram index (PostgreSQL ``pg_trgm``) is the step after that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session

from seamline.identity import normalize
from seamline.identity.models import Identifier, Profile, ProfileTrait
from seamline.identity.profiles import clusters_traits

# Segment's spec writes firstName/lastName; many sources write first_name/last_name.
NAME_TRAITS = ("name", "first_name", "last_name", "firstName", "lastName")
QUERY_MAX = 200


@dataclass(frozen=True)
class CustomerHit:
    profile_id: str  # the cluster's id: a profile id that opens the whole cluster's 360
    name: str | None
    email: str | None
    phone: str | None
    matched_on: str  # "email", "phone", "loyalty_card", "name", …


def _identifier_candidates(q: str) -> list[tuple[str, str]]:
    found: list[normalize.IdentifierValue | None] = []
    if "@" in q:
        found.append(normalize.email(q))
    if sum(ch.isdigit() for ch in q) >= 6:
        found.append(normalize.phone(q, region="US"))
    found.append(normalize.loyalty_card(q))
    found.append(normalize.opaque(normalize.USER_ID, q))
    handle = q.removeprefix("@")
    found.append(normalize.social_handle("instagram", handle))
    return [(v.kind, v.value) for v in found if v is not None]


def find_customers(session: Session, query: str, *, limit: int = 20) -> list[CustomerHit]:
    q = " ".join(query.replace("\x00", "").split())[:QUERY_MAX]
    if not q:
        return []
    matched: dict[str, str] = {}
    candidates = _identifier_candidates(q)
    if candidates:
        clauses = [
            (Identifier.kind == kind) & (Identifier.value == value) for kind, value in candidates
        ]
        rows = session.execute(
            select(Profile.cluster_id, Identifier.kind)
            .join(Profile, Profile.id == Identifier.profile_id)
            .where(or_(*clauses))
            .limit(limit)
        )
        for cluster_id, kind in rows:
            matched.setdefault(cluster_id, kind.partition(":")[0])
    if len(q) >= 2 and len(matched) < limit:
        pattern = (
            "%" + q.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        names = session.scalars(
            select(Profile.cluster_id)
            .join(ProfileTrait, ProfileTrait.profile_id == Profile.id)
            .where(
                ProfileTrait.name.in_(NAME_TRAITS),
                func.lower(cast(ProfileTrait.value, String)).like(pattern, escape="\\"),
            )
            .distinct()
            .limit(limit)
        )
        for cluster_id in names:
            matched.setdefault(cluster_id, "name")
    hits = []
    chosen = list(matched.items())[:limit]
    traits_of = clusters_traits(session, [cluster_id for cluster_id, _ in chosen])
    for cluster_id, matched_on in chosen:
        traits = traits_of[cluster_id]
        hits.append(
            CustomerHit(
                profile_id=cluster_id,
                name=display_name(traits),
                email=_text(traits.get("email")),
                phone=_text(traits.get("phone")),
                matched_on=matched_on,
            )
        )
    return hits


def _text(trait: dict[str, Any] | None) -> str | None:
    value = trait.get("value") if trait else None
    return value if isinstance(value, str) and value.strip() else None


def display_name(traits: dict[str, dict[str, Any]]) -> str | None:
    name = _text(traits.get("name"))
    if name:
        return name
    parts = [
        _text(traits.get("first_name")) or _text(traits.get("firstName")),
        _text(traits.get("last_name")) or _text(traits.get("lastName")),
    ]
    joined = " ".join(p for p in parts if p)
    return joined or None
