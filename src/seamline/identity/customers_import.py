"""Importing customers from a CSV file: one row per customer, all rows or none.

Each row names one person: its identifiers (external id, user id, email, phone, loyalty card)
become one profile together, its name and address become traits observed with source
``import:<system or file>``. The whole file is checked first (values, repeats inside the file,
and against the database: a row must not join two different accounts); only then is anything
written, in bulk, in the caller's transaction. Re-importing a file creates nothing new.
The rules are in docs/identity.md ("Importing customers").
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Table, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from seamline.identity import normalize, resolution, suppression
from seamline.identity.merges import unique_conflict
from seamline.identity.models import (
    Identifier,
    IdentityLink,
    Profile,
    ProfileMerge,
    ProfileTrait,
)
from seamline.identity.normalize import IdentifierValue
from seamline.identity.rules import DEFAULT_RULES, IdentityRules, Key
from seamline.kit import clock
from seamline.kit.errors import FieldError, Unprocessable
from seamline.kit.ids import new_id, new_ids

IDENTIFIER_COLUMNS = ("external_id", "user_id", "email", "phone", "loyalty_card")
NAME_COLUMNS = ("first_name", "last_name", "name")
ADDRESS_COLUMNS = {"street": "street", "city": "city", "postcode": "postal_code"}
ADDRESS_ALIASES = {"postal_code": "postcode"}
OTHER_COLUMNS = ("country", "source")
COLUMNS = (*IDENTIFIER_COLUMNS, *NAME_COLUMNS, *ADDRESS_COLUMNS, *ADDRESS_ALIASES, *OTHER_COLUMNS)
TRAIT_NAMES = (*NAME_COLUMNS, "address")
MAX_ROWS = 1_000_000
MAX_TRAIT = 500  # characters in a name or address cell
MAX_REPORTED_ERRORS = 100
CHUNK = 2000
IMPORT = "import"
_SYSTEM = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
Progress = Callable[[int], None]


class ImportReport(BaseModel):
    rows: int
    profiles_created: int
    identifiers_created: int
    identifiers_known: int
    traits_recorded: int
    rows_linked: int
    merges: int
    dry_run: bool = False


@dataclass
class Row:
    number: int  # the spreadsheet row (the header is row 1)
    identifiers: list[IdentifierValue]
    columns: dict[Key, str]  # which column each identifier came from, for error reports
    traits: dict[str, Any]
    source: str | None


@dataclass
class Parsed:
    rows: list[Row] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)

    def fail(self, row: int, column: str, message: str, code: str = "invalid") -> None:
        self.errors.append(FieldError(f"row.{row}.{column}", message, code))


def _records(text: str, parsed: Parsed) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text))
    number = 1
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        if not header or header == [""]:
            parsed.fail(1, "row", "the file is empty", "empty")
            return
        seen: set[str] = set()
        for name in header:
            if name in seen:
                parsed.fail(1, name, "column appears twice", "duplicate_column")
            elif name not in COLUMNS:
                parsed.fail(1, name, "unknown column", "unknown_column")
            seen.add(name)
        if not seen & set(IDENTIFIER_COLUMNS):
            columns = ", ".join(IDENTIFIER_COLUMNS)
            parsed.fail(1, "row", f"needs one of the columns {columns}", "missing_column")
        if parsed.errors:
            return
        for values in reader:
            number += 1
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                parsed.fail(number, "row", f"{len(values)} cells, header has {len(header)}")
                continue
            yield number, dict(zip(header, values, strict=True))
    except csv.Error as exc:
        parsed.fail(number + 1, "row", f"unreadable CSV: {exc}", "unreadable")


def _row(
    number: int, cells: dict[str, str], parsed: Parsed, source: str | None, region: str | None
) -> Row | None:
    before = len(parsed.errors)
    get: dict[str, str] = {}
    for name, value in cells.items():
        if "\x00" in value:
            parsed.fail(number, name, "contains a NUL character", "nul")
        get[ADDRESS_ALIASES.get(name, name)] = value.strip()
    system = get.get("source") or source
    bad_source = system is not None and not _SYSTEM.match(system)
    if bad_source:
        parsed.fail(number, "source", "lower-case letters, digits, '_', '.', '-'", "invalid")
        system = None
    country = get.get("country") or None
    if country is not None and not _COUNTRY.match(country):
        parsed.fail(number, "country", "an ISO 3166 two-letter code, e.g. GB", "invalid")
        country = None
    region = country.upper() if country else region

    values: dict[str, IdentifierValue | None] = {}
    raw = {name: get.get(name, "") for name in IDENTIFIER_COLUMNS}
    if raw["external_id"] and system is None and not bad_source:
        parsed.fail(number, "external_id", "needs a source (a source column or --source)")
    elif raw["external_id"] and system is not None:
        values["external_id"] = normalize.external_id(system, raw["external_id"])
    if raw["user_id"]:
        values["user_id"] = normalize.opaque(normalize.USER_ID, raw["user_id"])
    if raw["email"]:
        values["email"] = normalize.email(raw["email"])
    if raw["phone"]:
        values["phone"] = normalize.phone(raw["phone"], region=region)
    if raw["loyalty_card"]:
        values["loyalty_card"] = normalize.loyalty_card(raw["loyalty_card"])
    identifiers: list[IdentifierValue] = []
    columns: dict[Key, str] = {}
    for column, ident in values.items():
        if ident is None:
            parsed.fail(number, column, "longer than 255 characters", "too_long")
        elif not ident.valid:
            what = "a valid phone number (+… or with a country)" if column == "phone" else "valid"
            parsed.fail(number, column, f"not {what}", "invalid")
        else:
            identifiers.append(ident)
            columns[ident.key] = column
    if not values and not any(raw.values()):
        parsed.fail(number, "row", f"no identifier ({', '.join(IDENTIFIER_COLUMNS)})", "missing")

    traits: dict[str, Any] = {}
    for name in NAME_COLUMNS:
        if get.get(name):
            traits[name] = get[name]
    address = {key: get[column] for column, key in ADDRESS_COLUMNS.items() if get.get(column)}
    if country:
        address["country"] = country.upper()
    if address:
        traits["address"] = address
    for name in (*NAME_COLUMNS, *ADDRESS_COLUMNS):
        if len(get.get(name, "")) > MAX_TRAIT:
            parsed.fail(number, name, f"longer than {MAX_TRAIT} characters", "too_long")
    if len(parsed.errors) > before:
        return None
    return Row(number, identifiers, columns, traits, system)


def parse(
    text: str,
    *,
    source: str | None = None,
    region: str | None = None,
    progress: Progress | None = None,
) -> Parsed:
    """Check a whole file without the database: cells, and identifiers repeated across rows
    (two rows cannot both be the person an email names)."""
    parsed = Parsed()
    if source is not None and not _SYSTEM.match(source):
        parsed.fail(1, "source", "lower-case letters, digits, '_', '.', '-'")
        return parsed
    first: dict[Key, int] = {}
    for number, cells in _records(text, parsed):
        if len(parsed.rows) >= MAX_ROWS:
            parsed.fail(number, "row", f"a file holds at most {MAX_ROWS} rows", "too_many_rows")
            break
        row = _row(number, cells, parsed, source, region)
        if progress is not None and number % 1000 == 0:
            progress(1000)
        if row is None:
            continue
        repeated = False
        for value in row.identifiers:
            if value.key in first:
                column = row.columns[value.key]
                parsed.fail(number, column, f"repeats row {first[value.key]}", "duplicate")
                repeated = True
            first.setdefault(value.key, number)
        if not repeated:
            parsed.rows.append(row)
    return parsed


def refuse(parsed: Parsed) -> Unprocessable:
    return Unprocessable(
        f"the CSV has {len(parsed.errors)} problem(s); nothing was imported",
        code="csv_invalid",
        errors=parsed.errors[:MAX_REPORTED_ERRORS],
    )


# -- against the database --------------------------------------------------------------------


def _known(session: Session, keys: Sequence[Key]) -> dict[Key, tuple[str, str]]:
    """(kind, value) → (identifier id, profile id) for the identifiers that exist.

    One kind at a time, so each chunk is a range lookup on the (kind, value) unique index (a
    row-value ``IN`` is not one on SQLite)."""
    by_kind: dict[str, list[str]] = {}
    for kind, value in keys:
        by_kind.setdefault(kind, []).append(value)
    found: dict[Key, tuple[str, str]] = {}
    for kind, values in sorted(by_kind.items()):
        for start in range(0, len(values), 500):
            rows = session.execute(
                select(Identifier.value, Identifier.id, Identifier.profile_id).where(
                    Identifier.kind == kind, Identifier.value.in_(values[start : start + 500])
                )
            )
            for value, ident_id, profile_id in rows:
                found[(kind, value)] = (ident_id, profile_id)
    return found


def _table(model: Any) -> Table:
    """The model's table: a Core ``executemany`` skips the ORM's per-row bookkeeping."""
    table: Table = model.__table__
    return table


def _in_chunks(session: Session, stmt: Any, column: Any, ids: Sequence[str]) -> list[Any]:
    out: list[Any] = []
    for start in range(0, len(ids), 500):
        out += session.execute(stmt.where(column.in_(ids[start : start + 500]))).all()
    return out


@dataclass
class _Plan:
    """What each row does: the profile its traits go on, and the profiles it links."""

    new_profile: dict[int, str] = field(default_factory=dict)  # row → new profile id
    target: dict[int, str] = field(default_factory=dict)  # row → profile of its traits
    links: dict[int, list[tuple[Key, Key]]] = field(default_factory=dict)


def _groups(row: Row, known: dict[Key, tuple[str, str]], cluster_of: dict[str, str]) -> set[str]:
    """The customers a row's identifiers sit in now (``row:<n>`` for the identifiers it adds)."""
    return {
        cluster_of[known[v.key][1]] if v.key in known else f"row:{row.number}"
        for v in row.identifiers
    }


def _refuse_erased(session: Session, parsed: Parsed) -> None:
    """A row carrying an identifier of an erased person would silently recreate them: it is a
    row error until the person consents again (``POST /api/v1/consent`` lifts the block)."""
    rows = [r for r in parsed.rows if r.identifiers]
    verdicts = suppression.suppressed_calls(
        session, [(r.identifiers[0], r.identifiers) for r in rows]
    )
    for row, erased in zip(rows, verdicts, strict=True):
        if erased:
            parsed.fail(
                row.number,
                "row",
                "carries an identifier of an erased customer; they must consent again first",
                "identifier_erased",
            )


def _check_links(
    session: Session,
    parsed: Parsed,
    known: dict[Key, tuple[str, str]],
    cluster_of: dict[str, str],
    rules: IdentityRules,
) -> None:
    """A row whose identifiers sit in several customers (or add to a known one) joins them;
    refuse the rows that would put two values of a unique kind (two accounts) in one, taking
    the rows in file order."""
    joining = [r for r in parsed.rows if len(_groups(r, known, cluster_of)) > 1]
    if not joining:
        return
    clusters = sorted({g for r in joining for g in _groups(r, known, cluster_of)} - {""})
    held: dict[str, set[Key]] = {}
    for cluster, kind, value in _in_chunks(
        session,
        select(Profile.cluster_id, Identifier.kind, Identifier.value).join(
            Identifier, Identifier.profile_id == Profile.id
        ),
        Profile.cluster_id,
        [c for c in clusters if not c.startswith("row:")],
    ):
        if rules.unique(kind):
            held.setdefault(cluster, set()).add((kind, value))
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for row in joining:
        held[f"row:{row.number}"] = {
            v.key for v in row.identifiers if v.key not in known and rules.unique(v.kind)
        }
        roots = {find(group) for group in _groups(row, known, cluster_of)}
        together = {key for root in roots for key in held.get(root, set())}
        kind = unique_conflict(together, rules)
        if kind is not None:
            column = next((c for k, c in row.columns.items() if k[0] == kind), "row")
            parsed.fail(
                row.number,
                column,
                f"would join two customers with different {kind} values",
                "unique_kind_conflict",
            )
            continue
        keep, *rest = sorted(roots)
        for root in rest:
            parent[root] = keep
        held[keep] = together


def _plan(
    parsed: Parsed,
    known: dict[Key, tuple[str, str]],
    cluster_of: dict[str, str],
    rules: IdentityRules,
) -> _Plan:
    plan = _Plan()
    profile_ids = new_ids("prf")
    for row in parsed.rows:
        if any(v.key not in known for v in row.identifiers):
            plan.new_profile[row.number] = next(profile_ids)
        ranked = sorted(row.identifiers, key=lambda v: rules.sort_key(v.key))
        best = ranked[0]
        plan.target[row.number] = (
            known[best.key][1] if best.key in known else plan.new_profile[row.number]
        )
        # One link from the row's best identifier to the best one in each other customer.
        group = {
            v.key: cluster_of[known[v.key][1]] if v.key in known else "" for v in row.identifiers
        }
        others: dict[str, Key] = {}
        for value in ranked:
            if group[value.key] != group[best.key]:
                others.setdefault(group[value.key], value.key)
        if others:
            plan.links[row.number] = [(best.key, key) for key in others.values()]
    return plan


def _current_traits(session: Session, profile_ids: Sequence[str]) -> dict[tuple[str, str], Any]:
    """(profile, trait) → the profile's latest value of the traits an import writes."""
    latest: dict[tuple[str, str], tuple[datetime, str, Any]] = {}
    stmt = select(
        ProfileTrait.profile_id,
        ProfileTrait.name,
        ProfileTrait.observed_at,
        ProfileTrait.id,
        ProfileTrait.value,
    ).where(ProfileTrait.name.in_(TRAIT_NAMES))
    for profile, name, observed, trait_id, value in _in_chunks(
        session, stmt, ProfileTrait.profile_id, profile_ids
    ):
        held = latest.get((profile, name))
        if held is None or (observed, trait_id) > held[:2]:
            latest[(profile, name)] = (observed, trait_id, value)
    return {k: v[2] for k, v in latest.items()}


def import_rows(
    session: Session,
    parsed: Parsed,
    *,
    name: str,
    by: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    rules: IdentityRules = DEFAULT_RULES,
) -> ImportReport:
    """Write a parsed file: all rows or none (raises ``Unprocessable`` listing every problem).

    ``name`` (the file's name) is the trait source of rows without a source system."""
    if parsed.errors:
        raise refuse(parsed)
    resolution.lock_graph(session)  # identifiers are created and clusters may join
    _refuse_erased(session, parsed)
    if parsed.errors:
        raise refuse(parsed)
    keys = sorted({v.key for r in parsed.rows for v in r.identifiers})
    known = _known(session, keys)
    profile_ids = sorted({profile for _, profile in known.values()})
    cluster_of: dict[str, str] = dict(
        _in_chunks(session, select(Profile.id, Profile.cluster_id), Profile.id, profile_ids)
    )
    _check_links(session, parsed, known, cluster_of, rules)
    if parsed.errors:
        raise refuse(parsed)
    plan = _plan(parsed, known, cluster_of, rules)
    existing = sorted({p for n, p in plan.target.items() if n not in plan.new_profile})
    current = _current_traits(session, existing)
    now = clock.now()
    import_id = new_id("imp")
    report = ImportReport(
        rows=len(parsed.rows),
        profiles_created=len(plan.new_profile),
        identifiers_created=sum(v.key not in known for r in parsed.rows for v in r.identifiers),
        identifiers_known=sum(v.key in known for r in parsed.rows for v in r.identifiers),
        traits_recorded=0,
        rows_linked=len(plan.links),
        merges=0,
        dry_run=dry_run,
    )
    created: dict[Key, str] = {}
    identifier_ids, trait_ids = new_ids("idn"), new_ids("trt")
    for start in range(0, len(parsed.rows), CHUNK):
        chunk = parsed.rows[start : start + CHUNK]
        profiles, identifiers, traits = [], [], []
        for row in chunk:
            profile_id = plan.new_profile.get(row.number)
            if profile_id is not None:
                profiles.append(
                    {
                        "id": profile_id,
                        "cluster_id": profile_id,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            for value in row.identifiers:
                if value.key in known or profile_id is None:
                    continue
                created[value.key] = next(identifier_ids)
                identifiers.append(
                    {
                        "id": created[value.key],
                        "kind": value.kind,
                        "value": value.value,
                        "raw": value.raw,
                        "valid": True,
                        "profile_id": profile_id,
                        "source_channel": IMPORT,
                        "source_key_id": by,
                        "first_seen": now,
                        "last_seen": now,
                    }
                )
            target = plan.target[row.number]
            source = f"{IMPORT}:{row.source or name}"[:80]
            for trait, value in row.traits.items():
                if (target, trait) in current and current[(target, trait)] == value:
                    continue  # already said: a re-import records nothing new
                traits.append(
                    {
                        "profile_id": target,
                        "id": next(trait_ids),
                        "name": trait,
                        "value": value,
                        "source": source,
                        "observed_at": now,
                        "event_id": None,
                    }
                )
        report.traits_recorded += len(traits)
        if not dry_run:
            for model, rows in (
                (Profile, profiles),
                (Identifier, identifiers),
                (ProfileTrait, traits),
            ):
                if rows:
                    session.execute(insert(_table(model)), rows)
        if progress is not None:
            progress(len(chunk))
    if plan.links and not dry_run:
        _link(session, parsed, plan, known, created, import_id, now, by, rules, report)
    return report


def _record_links(session: Session, observed: dict[tuple[str, str], str], now: datetime) -> None:
    """``resolution.record_links`` in bulk: insert the new pairs, move known ones to now."""
    pairs = sorted(observed)
    stale: list[tuple[str, str]] = []
    fresh = set(pairs)
    for start in range(0, len(pairs), 500):
        chunk = pairs[start : start + 500]
        for a, b, at, message_id in session.execute(
            select(
                IdentityLink.identifier_a_id,
                IdentityLink.identifier_b_id,
                IdentityLink.observed_at,
                IdentityLink.message_id,
            ).where(tuple_(IdentityLink.identifier_a_id, IdentityLink.identifier_b_id).in_(chunk))
        ):
            fresh.discard((a, b))
            if (at, message_id) < (now, observed[(a, b)]):
                stale.append((a, b))
    rows = [
        {
            "identifier_a_id": a,
            "identifier_b_id": b,
            "observed_at": now,
            "message_id": observed[(a, b)],
            "decision": "linked",
        }
        for a, b in sorted(fresh)
    ]
    for start in range(0, len(rows), CHUNK):
        session.execute(insert(_table(IdentityLink)), rows[start : start + CHUNK])
    for a, b in stale:
        session.execute(
            update(IdentityLink)
            .where(IdentityLink.identifier_a_id == a, IdentityLink.identifier_b_id == b)
            .values(observed_at=now, message_id=observed[(a, b)])
        )


def _link(
    session: Session,
    parsed: Parsed,
    plan: _Plan,
    known: dict[Key, tuple[str, str]],
    created: dict[Key, str],
    import_id: str,
    now: datetime,
    by: str | None,
    rules: IdentityRules,
    report: ImportReport,
) -> None:
    """Record each joining row's links (observed now) and resolve them together: the merges
    are ordinary pointers (trigger ``import``) that unmerge can undo."""
    ident = {**{k: v[0] for k, v in known.items()}, **created}
    observed: dict[tuple[str, str], str] = {}
    for number, pairs in sorted(plan.links.items()):
        for a, b in pairs:
            low, high = sorted((ident[a], ident[b]))
            observed[(low, high)] = f"{IMPORT}:{import_id}:{number}"
    _record_links(session, observed, now)
    seeds = {i for pair in observed for i in pair}
    trigger = resolution.Trigger(
        IMPORT, f"{IMPORT}:{import_id}", by, reason=f"listed as one customer in import {import_id}"
    )
    resolution.resolve(session, sorted(seeds), trigger=trigger, rules=rules)
    rows = {r.number: r for r in parsed.rows}
    for number in plan.links:
        ids = [ident[v.key] for v in rows[number].identifiers]
        clusters = session.scalars(
            select(func.count(func.distinct(Profile.cluster_id)))
            .join(Identifier, Identifier.profile_id == Profile.id)
            .where(Identifier.id.in_(ids))
        ).one()
        if clusters != 1:
            # Only evidence dated after now (a call from the future) can outrank the import.
            raise Unprocessable(
                "more recent evidence keeps a row's customers apart; nothing was imported",
                code="csv_invalid",
                errors=[FieldError(f"row.{number}.row", "kept apart by newer evidence")],
            )
    report.merges = session.scalars(
        select(func.count()).where(ProfileMerge.trigger_message_id == trigger.message_id)
    ).one()
