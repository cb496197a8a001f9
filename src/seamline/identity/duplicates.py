"""Duplicate suggestions: clusters that look like the same person, for a person to review.

Nothing here merges anything. Candidates come from **blocking** (only clusters sharing a
postcode, a last name and first initial, an email local part or a phone number's last digits
are ever compared, so the work is not quadratic in the number of customers), then each pair is
scored with rapidfuzz on the clusters' *current* traits. The scoring and its thresholds are
documented in docs/identity.md ("Duplicate suggestions"); a reviewer dismisses a pair (kept in
``duplicate_decisions``) or merges it (a staff merge, merges.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from rapidfuzz import fuzz
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from seamline.db.dialect import insert_ignoring_conflict
from seamline.identity import merges, resolution
from seamline.identity import normalize as kinds
from seamline.identity.customer_models import DuplicateDecision
from seamline.identity.models import Identifier, Profile, ProfileTrait
from seamline.identity.profiles import get_profile
from seamline.kit import clock
from seamline.kit.errors import Conflict

# Thresholds (0-100), documented in docs/identity.md.
MIN_SCORE = 85.0  # default floor of the combined score
LAST_NAME_MIN = 85.0  # last names must be this close…
FIRST_NAME_MIN = 70.0  # …and first names this close (an initial counts as 90)
FULL_NAME_MIN = 85.0  # when one side has only a full ``name``
SUPPORT_MIN = 80.0  # a name alone is never enough: the place or a contact must agree too
NAME_WEIGHT, SUPPORT_WEIGHT = 0.6, 0.4
# Work limits of one listing: a block holding more clusters than this is not a signal (a
# big-city postcode, "Smith J") and is skipped; scoring stops after MAX_PAIRS pairs.
MAX_BLOCK = 200
MAX_PAIRS = 500_000
PHONE_SUFFIX = 8

NAME_TRAITS = ("first_name", "firstName", "last_name", "lastName", "name", "address")
_STREET_WORDS = {
    "st": "street",
    "rd": "road",
    "ave": "avenue",
    "av": "avenue",
    "ln": "lane",
    "dr": "drive",
    "ct": "court",
    "pl": "place",
    "sq": "square",
    "blvd": "boulevard",
    "hwy": "highway",
    "str": "strasse",
}


# Latin letters that Unicode does not decompose into a base letter and an accent.
_LETTERS = str.maketrans(
    {"ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "ł": "l", "\u0131": "i", "þ": "th"}
)


def fold(text: object) -> str:
    """Lower-case text without accents or punctuation, for comparing: ``Jösé-Müß`` →
    ``jose muss``. CJK and other scripts are kept (``\\w`` is Unicode-aware)."""
    if not isinstance(text, str | int):
        return ""
    plain = str(text)
    if not plain.isascii():
        decomposed = unicodedata.normalize("NFKD", plain)
        plain = "".join(c for c in decomposed if not unicodedata.combining(c))
        plain = plain.casefold().translate(_LETTERS)
    plain = plain.lower()
    return " ".join(re.sub(r"[^\w]+", " ", plain).split())


def _street(text: object) -> str:
    words = []
    for word in fold(text).split():
        word = _STREET_WORDS.get(word, word)
        if word.endswith("str") and len(word) > 3:
            word += "asse"  # Hauptstr. → hauptstrasse
        words.append(word)
    return " ".join(words)


def _postcode(text: object) -> str:
    return "".join(c for c in fold(text) if c.isalnum()).upper()


@dataclass
class Person:
    """What a cluster looks like now: its current name and address, and contact keys."""

    cluster_id: str
    first: str = ""
    last: str = ""
    full: str = ""
    street: str = ""
    city: str = ""
    postcode: str = ""
    display: dict[str, str] = field(default_factory=dict)
    email_locals: set[str] = field(default_factory=set)
    phone_suffixes: set[str] = field(default_factory=set)

    def blocks(self) -> set[str]:
        """The blocks this cluster sits in."""
        found = set()
        if len(self.postcode) >= 3:
            found.add(f"pc:{self.postcode}")
        tokens = self.full.split()
        last = self.last or (tokens[-1] if tokens else "")
        first = self.first or (tokens[0] if len(tokens) > 1 else "")
        if last:
            found.add(f"nm:{last}:{first[:1]}")
        found |= {f"em:{local}" for local in self.email_locals}
        found |= {f"ph:{suffix}" for suffix in self.phone_suffixes}
        return found


@dataclass(frozen=True)
class FieldMatch:
    field: str
    a: str
    b: str
    score: float
    method: str


@dataclass(frozen=True)
class Suggestion:
    a: Person
    b: Person
    score: float
    evidence: list[FieldMatch]

    @property
    def order(self) -> tuple[int, str, str]:
        return (-round(self.score * 10), self.a.cluster_id, self.b.cluster_id)


def _email_local(value: str) -> str:
    local = value.partition("@")[0].partition("+")[0].replace(".", "")
    return local if len(local) >= 3 else ""


def _text(value: Any) -> str:
    return (
        str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    )


def _person(cluster_id: str, traits: dict[str, Any]) -> Person:
    first = _text(traits.get("first_name") or traits.get("firstName"))
    last = _text(traits.get("last_name") or traits.get("lastName"))
    name = _text(traits.get("name")) or " ".join(p for p in (first, last) if p)
    address = traits.get("address")
    address = address if isinstance(address, dict) else {}
    street = _text(address.get("street") or address.get("line1"))
    city = _text(address.get("city"))
    postcode = _text(address.get("postal_code") or address.get("postalCode") or address.get("zip"))
    display = {"name": name, "street": street, "city": city, "postal_code": postcode}
    return Person(
        cluster_id,
        first=fold(first),
        last=fold(last),
        full=fold(name),
        street=_street(street),
        city=fold(city),
        postcode=_postcode(postcode),
        display={k: v for k, v in display.items() if v},
    )


def people(session: Session, cluster_ids: Sequence[str] | None = None) -> dict[str, Person]:
    """The clusters' current names, addresses and contact keys (all clusters when ``None``).

    One pass over the name and address traits: each trait's current value is its most recent
    observation by event time, ties to the one stored last (as in the customer 360)."""
    current: dict[str, dict[str, Any]] = {}
    contacts: list[Any] = []
    chunks: Iterable[Sequence[str] | None] = (
        [None]
        if cluster_ids is None
        else [cluster_ids[i : i + 500] for i in range(0, len(cluster_ids), 500)]
    )
    for chunk in chunks:
        # The current value is picked in SQL, so only one row per cluster and trait leaves it.
        rank = func.row_number().over(
            partition_by=(Profile.cluster_id, ProfileTrait.name),
            order_by=(ProfileTrait.observed_at.desc(), ProfileTrait.id.desc()),
        )
        ranked = (
            select(Profile.cluster_id, ProfileTrait.name, ProfileTrait.value, rank.label("rank"))
            .join(Profile, Profile.id == ProfileTrait.profile_id)
            .where(ProfileTrait.name.in_(NAME_TRAITS))
        )
        ids = (
            select(Profile.cluster_id, Identifier.kind, Identifier.value)
            .join(Profile, Profile.id == Identifier.profile_id)
            .where(Identifier.kind.in_((kinds.EMAIL, kinds.PHONE)))
        )
        if chunk is not None:
            ranked = ranked.where(Profile.cluster_id.in_(chunk))
            ids = ids.where(Profile.cluster_id.in_(chunk))
        table = ranked.subquery()
        traits = select(table.c.cluster_id, table.c.name, table.c.value).where(table.c.rank == 1)
        for cluster, name, value in session.execute(traits.execution_options(yield_per=5000)):
            current.setdefault(cluster, {})[name] = value
        contacts += session.execute(ids.execution_options(yield_per=5000)).all()
    found = {cluster: _person(cluster, traits) for cluster, traits in current.items()}
    for cluster, kind, value in contacts:
        person = found.get(cluster)
        if person is None:
            continue  # no name, no suggestion: contacts alone are for the identity graph
        if kind == kinds.EMAIL and (local := _email_local(value)):
            person.email_locals.add(local)
        if kind == kinds.PHONE:
            digits = re.sub(r"\D", "", value)
            if len(digits) >= PHONE_SUFFIX:
                person.phone_suffixes.add(digits[-PHONE_SUFFIX:])
    return found


# -- scoring ---------------------------------------------------------------------------------


def _orders(person: Person) -> set[str]:
    found = {person.full}
    if person.first and person.last:
        found |= {f"{person.first} {person.last}", f"{person.last} {person.first}"}
    return found


def _compact(name: str) -> str:
    return name.replace(" ", "")


def _first_name(a: str, b: str) -> float:
    if not a or not b:
        return 0.0
    if (len(a) == 1 or len(b) == 1) and a[0] == b[0]:
        return 90.0  # "J" and "John"
    return float(fuzz.ratio(a, b))


def _name(a: Person, b: Person) -> tuple[float, bool, str]:
    """(score, good enough, method)."""
    if a.first and a.last and b.first and b.last:
        straight = (_first_name(a.first, b.first), float(fuzz.ratio(a.last, b.last)))
        # Given and family names swapped (forms, name orders that differ by culture).
        swapped = (_first_name(a.first, b.last), float(fuzz.ratio(a.last, b.first)))
        first, last = max(straight, swapped, key=lambda s: 0.4 * s[0] + 0.6 * s[1])
        score = 0.4 * first + 0.6 * last
        return score, first >= FIRST_NAME_MIN and last >= LAST_NAME_MIN, "first/last ratio"
    if a.full and b.full:
        # Each side as written and, from first/last, in both orders: "山田太郎" is family name
        # first, "Taro Yamada" given name first; spaces are compared away too.
        score = max(
            max(float(fuzz.token_sort_ratio(x, y)), float(fuzz.ratio(_compact(x), _compact(y))))
            for x in _orders(a)
            for y in _orders(b)
        )
        return score, score >= FULL_NAME_MIN, "token_sort_ratio"
    return 0.0, False, ""


def compare(a: Person, b: Person) -> Suggestion | None:
    """Score two clusters; ``None`` when they cannot be the same person by these rules."""
    name, name_ok, method = _name(a, b)
    if not name_ok:
        return None
    evidence = [FieldMatch("name", a.display["name"], b.display["name"], round(name, 1), method)]
    place = 0.0
    if a.postcode and b.postcode:
        same = a.postcode == b.postcode
        pc = a.display["postal_code"], b.display["postal_code"]
        evidence.append(FieldMatch("postal_code", *pc, 100.0 if same else 0.0, "equal"))
        place = 90.0 if same else 0.0
        if same and a.street and b.street:
            street = float(fuzz.token_sort_ratio(a.street, b.street))
            st = a.display["street"], b.display["street"]
            evidence.append(FieldMatch("street", *st, round(street, 1), "token_sort_ratio"))
            place = (100.0 + street) / 2
    elif a.street and b.street:
        street = float(fuzz.token_sort_ratio(a.street, b.street))
        st = a.display["street"], b.display["street"]
        evidence.append(FieldMatch("street", *st, round(street, 1), "token_sort_ratio"))
        city = float(fuzz.ratio(a.city, b.city)) if a.city and b.city else 90.0
        if a.city and b.city:
            ct = a.display["city"], b.display["city"]
            evidence.append(FieldMatch("city", *ct, round(city, 1), "ratio"))
        place = street * city / 100
    contact = 0.0
    for local in sorted(a.email_locals & b.email_locals)[:1]:
        evidence.append(FieldMatch("email_local_part", local, local, 100.0, "equal"))
        contact = 100.0
    for suffix in sorted(a.phone_suffixes & b.phone_suffixes)[:1]:
        evidence.append(FieldMatch("phone_last_digits", suffix, suffix, 100.0, "equal"))
        contact = 100.0
    support = max(place, contact)
    if support < SUPPORT_MIN:
        return None
    score = round(NAME_WEIGHT * name + SUPPORT_WEIGHT * support, 1)
    first, second = (a, b) if a.cluster_id < b.cluster_id else (b, a)
    if first is not a:
        evidence = [FieldMatch(e.field, e.b, e.a, e.score, e.method) for e in evidence]
    return Suggestion(first, second, score, evidence)


# -- listing ---------------------------------------------------------------------------------


@dataclass
class Listing:
    suggestions: list[Suggestion]
    next_cursor: str | None
    blocks_skipped: int = 0
    pairs_scored: int = 0
    truncated: bool = False


def _decided(session: Session, clusters: Iterable[str] | None = None) -> set[tuple[str, str]]:
    """Decided pairs as pairs of *current* clusters: a decision names two profiles (the
    clusters' canonical profiles when it was made) and keeps holding whichever clusters those
    profiles belong to now, so a cluster that grows or is renamed stays dismissed."""
    a, b = aliased(Profile), aliased(Profile)
    stmt = (
        select(a.cluster_id, b.cluster_id)
        .select_from(DuplicateDecision)
        .join(a, a.id == DuplicateDecision.profile_a_id)
        .join(b, b.id == DuplicateDecision.profile_b_id)
    )
    if clusters is not None:
        wanted = sorted(set(clusters))
        stmt = stmt.where(a.cluster_id.in_(wanted) | b.cluster_id.in_(wanted))
    return {(min(x, y), max(x, y)) for x, y in session.execute(stmt)}


def _encode(suggestion: Suggestion) -> str:
    score, a, b = suggestion.order
    return f"{-score}.{a}.{b}"


def _after(cursor: str) -> tuple[int, str, str]:
    score, a, b = cursor.split(".")  # the route's pattern guarantees the shape
    return (-int(score), a, b)


def list_suggestions(
    session: Session, *, min_score: float = MIN_SCORE, limit: int = 50, cursor: str | None = None
) -> Listing:
    """Every suggested pair, best first: blocks over all clusters, pairs scored within each.

    Computed on each call (no table is maintained on write); see the limits above."""
    everyone = people(session)
    blocks: dict[str, list[str]] = {}
    for person in everyone.values():
        for key in person.blocks():
            blocks.setdefault(key, []).append(person.cluster_id)
    listing = Listing([], None)
    decided = _decided(session)
    # Pairs are gathered block by block (in a fixed order) and no further once MAX_PAIRS are
    # held: memory and time stay bounded however many clusters share blocks.
    pairs: set[tuple[str, str]] = set()
    for key in sorted(blocks):
        members = blocks[key]
        if len(members) > MAX_BLOCK:
            listing.blocks_skipped += 1
            continue
        for pair in combinations(sorted(set(members)), 2):
            if pair in decided or pair in pairs:
                continue
            if len(pairs) >= MAX_PAIRS:
                listing.truncated = True
                break
            pairs.add(pair)
        if listing.truncated:
            break
    found = []
    for a, b in sorted(pairs):
        listing.pairs_scored += 1
        suggestion = compare(everyone[a], everyone[b])
        if suggestion is not None and suggestion.score >= min_score:
            found.append(suggestion)
    found.sort(key=lambda s: s.order)
    if cursor is not None:
        start = _after(cursor)
        found = [s for s in found if s.order > start]
    listing.suggestions = found[:limit]
    if len(found) > limit:
        listing.next_cursor = _encode(found[limit - 1])
    return listing


def _postal_code(column: Any) -> Any:
    """A stored postal code as the blocks compare it (upper case, no spaces or dashes)."""
    return func.upper(func.replace(func.replace(column, " ", ""), "-", ""))


def _neighbours(session: Session, me: Person) -> set[str]:
    """Clusters sharing a postcode, an email local part or a phone number's last digits with
    ``me``, found in SQL (one scan of address traits, email and phone identifiers)."""
    found: set[str] = set()
    if len(me.postcode) >= 3:
        codes = [ProfileTrait.value[key].as_string() for key in ("postal_code", "postalCode")]
        found.update(
            session.scalars(
                select(Profile.cluster_id)
                .join(ProfileTrait, ProfileTrait.profile_id == Profile.id)
                .where(
                    ProfileTrait.name == "address",
                    or_(*(_postal_code(code) == me.postcode for code in codes)),
                )
            )
        )
    matches = [
        and_(
            Identifier.kind == kinds.EMAIL,
            func.replace(Identifier.value, ".", "").like(f"{_like(local)}@%", escape="\\"),
        )
        for local in sorted(me.email_locals)
    ] + [
        and_(Identifier.kind == kinds.PHONE, Identifier.value.like(f"%{suffix}"))
        for suffix in sorted(me.phone_suffixes)
    ]
    if matches:
        found.update(
            session.scalars(
                select(Profile.cluster_id)
                .join(Identifier, Identifier.profile_id == Profile.id)
                .where(or_(*matches))
            )
        )
    found.discard(me.cluster_id)
    return found


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def suggestions_for(
    session: Session, profile_id: str, *, min_score: float = MIN_SCORE, limit: int = 50
) -> list[Suggestion]:
    """The clusters that may be the same person as the cluster of ``profile_id``, best first.

    Fast (no scan of every customer in Python): its neighbours by postcode, email local part
    and phone digits are found in SQL, then only those are read and scored. Addresses without
    a postcode are compared only in the full listing (its name blocks)."""
    cluster = get_profile(session, profile_id).cluster_id
    me = people(session, [cluster]).get(cluster)
    if me is None:
        return []
    decided = _decided(session, [cluster])
    others = sorted(
        c for c in _neighbours(session, me) if (min(cluster, c), max(cluster, c)) not in decided
    )
    found = []
    for other in people(session, others).values():
        suggestion = compare(me, other)
        if suggestion is not None and suggestion.score >= min_score:
            found.append(suggestion)
    found.sort(key=lambda s: s.order)
    return found[:limit]


# -- decisions -------------------------------------------------------------------------------

DISMISSED, MERGED = "dismissed", "merged"


def decide(
    session: Session,
    profile_id: str,
    other_id: str,
    *,
    decision: str,
    reason: str | None,
    by: str | None,
) -> DuplicateDecision:
    """Dismiss a suggested pair (it is not suggested again) or merge it (a staff merge).

    The decision is stored under the two clusters' canonical profiles at this moment, ordered,
    with the pair's score then; a later decision on the same pair replaces it."""
    if decision == MERGED:
        resolution.lock_graph(session)  # the clusters read here are the ones merged
    a = get_profile(session, profile_id).cluster_id
    b = get_profile(session, other_id).cluster_id
    if a == b:
        raise Conflict("the two profiles are already one customer", code="same_cluster")
    pair = (min(a, b), max(a, b))
    found = people(session, list(pair))
    scored = compare(found[a], found[b]) if a in found and b in found else None
    merge_id = None
    if decision == MERGED:
        reason = reason or "duplicate suggestion accepted"
        merge_id = merges.merge_profiles(
            session, profile_id, other_id, reason=reason, by=by
        ).merge_id
    values = {
        "profile_a_id": pair[0],
        "profile_b_id": pair[1],
        "decision": decision,
        "score": None if scored is None else scored.score,
        "reason": reason,
        "decided_by": by,
        "decided_at": clock.now(),
        "merge_id": merge_id,
    }
    if not insert_ignoring_conflict(
        session, DuplicateDecision, values, on=("profile_a_id", "profile_b_id")
    ):
        session.execute(
            update(DuplicateDecision)
            .where(
                DuplicateDecision.profile_a_id == pair[0],
                DuplicateDecision.profile_b_id == pair[1],
            )
            .values(**values)
        )
    row = session.get(DuplicateDecision, pair, populate_existing=True)
    assert row is not None
    return row
