"""Postcode centroids for "pick up near me": imported from GeoNames postal-code files.

GeoNames (https://download.geonames.org/export/zip/, CC BY 4.0) publishes one tab-separated
file per country: country code, postal code, place name, three admin levels (name and code),
latitude, longitude, accuracy. ``seamline locations postcodes FILE`` loads such a file (or
``allCountries.txt``); the API takes batches of centroids.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from sqlalchemy import delete, func, insert, select, tuple_
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.inventory.models import PostcodeCentroid
from seamline.inventory.schemas import COUNTRIES, Coordinates, PostcodeIn
from seamline.kit.errors import FieldError, Unprocessable

_KNOWN = frozenset(COUNTRIES)
_SEPARATORS = re.compile(r"[\s-]+")


def normalize(postcode: str) -> str:
    """``"sw1a 1aa"`` → ``"SW1A1AA"``: upper case, no spaces or dashes."""
    return _SEPARATORS.sub("", postcode).upper()


def locate(session: Session, country: str, postcode: str) -> Coordinates:
    """The centroid of a postcode, or 422 ``unknown_postcode``."""
    row = session.get(PostcodeCentroid, (country.upper(), normalize(postcode)))
    if row is None:
        raise Unprocessable(
            f"postcode {postcode!r} in {country} is not known; import centroids first "
            "(seamline locations postcodes FILE)",
            code="unknown_postcode",
            errors=[FieldError("query.postcode", "not a known postcode", "unknown")],
        )
    return Coordinates(latitude=row.latitude, longitude=row.longitude)


def upsert(session: Session, centroids: Iterable[PostcodeIn], *, chunk: int = 1000) -> int:
    """Insert or replace centroids (in chunks); returns how many were written."""
    rows = {
        (c.country, normalize(c.postcode)): {
            "country": c.country,
            "postcode": normalize(c.postcode),
            "place": c.place,
            "latitude": c.coordinates.latitude,
            "longitude": c.coordinates.longitude,
        }
        for c in centroids
    }
    keys = list(rows)
    for start in range(0, len(keys), chunk):
        part = keys[start : start + chunk]
        session.execute(
            delete(PostcodeCentroid).where(
                tuple_(PostcodeCentroid.country, PostcodeCentroid.postcode).in_(part)
            )
        )
        session.execute(insert(PostcodeCentroid), [rows[k] for k in part])
    return len(keys)


def put(session: Session, centroids: Iterable[PostcodeIn], *, caller: Caller | None = None) -> int:
    """Add or replace centroids through the API (brand-wide: not for location-limited keys)."""
    if caller is not None:
        caller.require_location(None)
    return upsert(session, centroids)


def read_geonames(path: Path) -> Iterator[tuple[int, PostcodeIn | str]]:
    """(line number, centroid or the reason the line is unusable) for each line of a file."""
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        number = 0
        while True:
            number += 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a field longer than the csv module allows
                yield number, f"unreadable line: {exc}"
                continue
            if "\ufffd" in "".join(row):
                yield number, "not UTF-8 text"
                continue
            if len(row) < 11:
                yield number, f"expected at least 11 tab-separated columns, found {len(row)}"
                continue
            country, postcode, place = row[0].strip(), row[1].strip(), row[2].strip()
            if country not in _KNOWN:
                yield number, f"column 1: unknown country {country!r}"
                continue
            try:
                latitude, longitude = float(row[9]), float(row[10])
                centroid = PostcodeIn(
                    country=country,
                    postcode=postcode,
                    place=place[:200],
                    coordinates=Coordinates(latitude=latitude, longitude=longitude),
                )
            except ValueError as exc:
                yield number, f"columns 2/10/11: {str(exc).splitlines()[0]}"
                continue
            yield number, centroid


def import_geonames(
    session: Session, path: Path, *, advance: Callable[[int], None] | None = None
) -> tuple[int, list[tuple[int, str]]]:
    """Load a GeoNames file; all or nothing. Returns (written, [(line, problem)])."""
    good: dict[tuple[str, str], PostcodeIn] = {}
    problems: list[tuple[int, str]] = []
    for number, item in read_geonames(path):
        if isinstance(item, str):
            problems.append((number, item))
        else:
            # GeoNames lists a postcode once per place; the first place is its centroid.
            good.setdefault((item.country, normalize(item.postcode)), item)
        if advance is not None:
            advance(1)
    if problems:
        return 0, problems
    return upsert(session, good.values()), []


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(PostcodeCentroid)) or 0)
