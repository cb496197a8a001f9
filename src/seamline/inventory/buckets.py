"""Stock rows and their buckets: the only code that writes ``stock_levels``.

An ordinary SKU keeps one row per location (bucket 0). A hot SKU — many buyers holding the same
variant at once — is split over ``N`` rows (``stock_splits``) so concurrent holds lock different
rows instead of queueing on one:

- **Hold (fast path):** one ``UPDATE`` of a bucket chosen at random among those with enough free
  units; on PostgreSQL the choice skips rows another transaction has locked (``FOR UPDATE SKIP
  LOCKED``), so holds on a hot SKU run side by side. Units never leave a bucket that holds them.
- **Hold (slow path):** when no single unlocked bucket has the units — the last units are spread
  over buckets, or every bucket is busy — lock all the location's buckets in bucket order, decide
  on the exact total, and move free units into one bucket before holding there.
- **Release and sale** touch only the bucket the hold records.
- **Reads** sum the buckets in one statement, so they see one consistent snapshot: exact.
- **Rebalancing** (slow path, re-splitting) moves free units between buckets of the same location
  and variant; reserved units and the ledger are never touched by it.

Every change returns the location's totals after it: the changed bucket's new values plus the
other buckets as this transaction sees them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, func, select, update
from sqlalchemy.orm import Session, aliased

from seamline.db.dialect import insert_ignoring_conflict
from seamline.inventory.models import StockLevel, StockSplit
from seamline.kit import clock


@dataclass(frozen=True)
class Totals:
    """A location's stock of one variant, summed over its buckets (after a change)."""

    location_id: str
    variant_id: str
    on_hand: int
    reserved: int
    bucket: int = 0

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


def _where(location_id: str, variant_id: str) -> ColumnElement[bool]:
    return (StockLevel.location_id == location_id) & (StockLevel.variant_id == variant_id)


def _others() -> tuple[Any, Any]:
    """Scalar subqueries: the other buckets' on_hand and reserved (for RETURNING)."""
    other = aliased(StockLevel)
    same = (
        (other.location_id == StockLevel.location_id)
        & (other.variant_id == StockLevel.variant_id)
        & (other.bucket != StockLevel.bucket)
    )
    on_hand = select(func.coalesce(func.sum(other.on_hand), 0)).where(same).scalar_subquery()
    reserved = select(func.coalesce(func.sum(other.reserved), 0)).where(same).scalar_subquery()
    return on_hand, reserved


_OTHERS = _others()
_RETURNING = (StockLevel.bucket, StockLevel.on_hand, StockLevel.reserved, *_OTHERS)


def _totals(row: Any, location_id: str, variant_id: str) -> Totals | None:
    if row is None:
        return None
    return Totals(
        location_id,
        variant_id,
        on_hand=int(row[1]) + int(row[3]),
        reserved=int(row[2]) + int(row[4]),
        bucket=int(row[0]),
    )


def _returning(stmt: Any, location_id: str, variant_id: str, session: Session) -> Totals | None:
    row = session.execute(stmt.returning(*_RETURNING)).first()
    return _totals(row, location_id, variant_id)


# The hold statements run on every reserve: built once, with parameters (building SQLAlchemy
# expressions per call costs more CPU than the database spends running them).
_HERE = (StockLevel.location_id == bindparam("loc")) & (StockLevel.variant_id == bindparam("var"))
_FREE = StockLevel.on_hand - StockLevel.reserved >= bindparam("needed")
_HOLD_VALUES = {
    "reserved": StockLevel.reserved + bindparam("quantity"),
    "updated_at": bindparam("now"),
}
# Any bucket with the units that no other transaction has locked: never waits.
_HOLD_ANY_FREE_BUCKET = (
    update(StockLevel)
    .where(
        _HERE,
        StockLevel.bucket
        == select(StockLevel.bucket)
        .where(_HERE, _FREE)
        .order_by(func.random())
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery(),
        _FREE,
    )
    .values(**_HOLD_VALUES)
    .returning(*_RETURNING)
)
# Bucket 0, waiting for its lock: the one statement an ordinary (unsplit) SKU needs. Bucket 0
# comes first in the lock order, so holding it before the slow path locks the rest is safe.
_HOLD_FIRST_BUCKET = (
    update(StockLevel)
    .where(_HERE, StockLevel.bucket == 0, _FREE)
    .values(**_HOLD_VALUES)
    .returning(*_RETURNING)
)

# How many buckets each variant has, as recently seen by this process. Only the choice of the
# first statement depends on it, never correctness: a stale figure costs one extra statement.
_SPLIT_HINT_SECONDS = 2.0
_split_hints: dict[str, tuple[float, int]] = {}


def _split_hint(session: Session, variant_id: str) -> int:
    seen = _split_hints.get(variant_id)
    now = time.monotonic()
    if seen is not None and now - seen[0] < _SPLIT_HINT_SECONDS:
        return seen[1]
    count = split_count(session, variant_id)
    if len(_split_hints) > 10_000:
        _split_hints.clear()
    _split_hints[variant_id] = (now, count)
    return count


def split_count(session: Session, variant_id: str) -> int:
    return (
        session.scalar(select(StockSplit.buckets).where(StockSplit.variant_id == variant_id)) or 1
    )


def ensure_rows(session: Session, location_id: str, variant_id: str) -> int:
    """Create the location's bucket rows if missing; returns the number of buckets in use."""
    buckets = split_count(session, variant_id)
    for bucket in range(buckets):
        insert_ignoring_conflict(
            session,
            StockLevel,
            {
                "location_id": location_id,
                "variant_id": variant_id,
                "bucket": bucket,
                "on_hand": 0,
                "reserved": 0,
                "updated_at": clock.now(),
            },
            on=["location_id", "variant_id", "bucket"],
        )
    return buckets


def totals(session: Session, location_id: str, variant_id: str) -> Totals:
    row = session.execute(
        select(
            func.coalesce(func.sum(StockLevel.on_hand), 0),
            func.coalesce(func.sum(StockLevel.reserved), 0),
        ).where(_where(location_id, variant_id))
    ).one()
    return Totals(location_id, variant_id, int(row[0]), int(row[1]))


def _lock_all(session: Session, location_id: str, variant_id: str) -> list[StockLevel]:
    """Every bucket of the location, locked in bucket order (the one order all writers use).

    A re-split may insert buckets while this statement waits for a lock; the rows it inserted
    are not in the statement's snapshot. So the rows are counted again afterwards (a new
    snapshot under READ COMMITTED) and locked again until the set is stable."""
    stmt = (
        select(StockLevel)
        .where(_where(location_id, variant_id))
        .order_by(StockLevel.bucket)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    levels = list(session.scalars(stmt))
    while True:
        present = session.scalar(
            select(func.count()).select_from(StockLevel).where(_where(location_id, variant_id))
        )
        if present == len(levels):
            return levels
        levels = list(session.scalars(stmt))


def _set_on_hand(session: Session, level: StockLevel, on_hand: int) -> None:
    session.execute(
        update(StockLevel)
        .where(_where(level.location_id, level.variant_id), StockLevel.bucket == level.bucket)
        .values(on_hand=on_hand, updated_at=clock.now())
    )
    level.on_hand = on_hand


def _gather(session: Session, levels: list[StockLevel], into: StockLevel, units: int) -> None:
    """Move ``units`` free units from the other (locked) buckets into ``into``."""
    for level in sorted(levels, key=lambda x: x.reserved - x.on_hand):
        if units <= 0:
            break
        if level is into:
            continue
        take = min(units, level.on_hand - level.reserved)
        if take > 0:
            _set_on_hand(session, level, level.on_hand - take)
            units -= take
    if units > 0:  # callers check the total first; refuse rather than invent units
        raise RuntimeError("not enough free units to gather")


def _try_any_free_bucket(session: Session, params: dict[str, Any]) -> Any:
    """The fast path on any bucket, taking no lock when it fails.

    Under READ COMMITTED, PostgreSQL re-checks a row another transaction changed meanwhile; when
    the re-check fails the row is skipped but stays locked until the transaction ends. Such a
    stray lock on some bucket, kept while the slow path waits for the buckets in bucket order
    (or while a caller waits on another location), closes a deadlock cycle. Rolling the failed
    attempt back to its savepoint releases every lock it took."""
    if session.get_bind().dialect.name == "sqlite":  # one writer at a time: no row locks
        return session.execute(_HOLD_ANY_FREE_BUCKET, params).first()
    attempt = session.begin_nested()
    row = session.execute(_HOLD_ANY_FREE_BUCKET, params).first()
    if row is None:
        attempt.rollback()
    else:
        attempt.commit()
    return row


def hold(
    session: Session,
    location_id: str,
    variant_id: str,
    quantity: int,
    *,
    keep: int = 0,
    wait: bool = True,
    in_order: bool = False,
) -> Totals | None:
    """``reserved += quantity`` in one bucket, leaving at least ``keep`` free units at the
    location. Returns the totals (with the bucket used) or None if the units are not there.

    With ``wait=False`` only the fast path runs: it never waits for a lock and keeps none when
    it fails, so a caller may try several locations in any order and then wait on them in one
    fixed order (no deadlocks). ``in_order`` skips the fast path: a transaction that holds the
    same location and variant twice must take its buckets in bucket order from the start."""
    needed = quantity + keep
    params = {
        "loc": location_id,
        "var": variant_id,
        "needed": needed,
        "quantity": quantity,
        "now": clock.now(),
    }
    if not in_order:
        split = _split_hint(session, variant_id) > 1
        if split or not wait:
            row = _try_any_free_bucket(session, params)
        else:
            row = session.execute(_HOLD_FIRST_BUCKET, params).first()
        done = _totals(row, location_id, variant_id)
        if done is not None or not wait:
            return done
    levels = _lock_all(session, location_id, variant_id)
    free = sum(x.on_hand - x.reserved for x in levels)
    if free - keep < quantity:
        return None
    target = max(levels, key=lambda x: (x.on_hand - x.reserved, -x.bucket))
    missing = quantity - (target.on_hand - target.reserved)
    if missing > 0:
        _gather(session, levels, target, missing)
        _set_on_hand(session, target, target.on_hand + missing)
    return _returning(
        update(StockLevel)
        .where(_where(location_id, variant_id), StockLevel.bucket == target.bucket)
        .values(reserved=StockLevel.reserved + quantity, updated_at=clock.now()),
        location_id,
        variant_id,
        session,
    )


def unhold(
    session: Session,
    location_id: str,
    variant_id: str,
    bucket: int,
    quantity: int,
    *,
    sale: bool = False,
) -> Totals | None:
    """``reserved -= quantity`` in the hold's bucket; with ``sale`` the units also leave
    ``on_hand``. None if the bucket does not carry them (the CHECKs make that a bug)."""
    values: dict[str, Any] = {
        "reserved": StockLevel.reserved - quantity,
        "updated_at": clock.now(),
    }
    if sale:
        values["on_hand"] = StockLevel.on_hand - quantity
    stmt = (
        update(StockLevel)
        .where(
            _where(location_id, variant_id),
            StockLevel.bucket == bucket,
            StockLevel.reserved >= quantity,
        )
        .values(**values)
    )
    return _returning(stmt, location_id, variant_id, session)


def add(session: Session, location_id: str, variant_id: str, quantity: int) -> Totals:
    """Put ``quantity`` units on the shelf, spread evenly over the location's buckets."""
    buckets = ensure_rows(session, location_id, variant_id)
    if buckets == 1:
        result = _returning(
            update(StockLevel)
            .where(_where(location_id, variant_id), StockLevel.bucket == 0)
            .values(on_hand=StockLevel.on_hand + quantity, updated_at=clock.now()),
            location_id,
            variant_id,
            session,
        )
        assert result is not None  # bucket 0 always exists once ensure_rows ran
        return result
    # Lock the rows and spread over those that exist now: a concurrent re-split may have
    # changed the count since it was read (and deletes only rows it has locked).
    levels = _lock_all(session, location_id, variant_id)
    current = split_count(session, variant_id)
    targets = [x for x in levels if x.bucket < current] or levels[:1]
    share, extra = divmod(quantity, len(targets))
    for i, level in enumerate(targets):
        units = share + (1 if i < extra else 0)
        if units:
            _set_on_hand(session, level, level.on_hand + units)
    return totals(session, location_id, variant_id)


def remove(session: Session, location_id: str, variant_id: str, quantity: int) -> Totals | None:
    """Take ``quantity`` free units off the shelf (never reserved ones); None if not there."""
    ensure_rows(session, location_id, variant_id)
    levels = _lock_all(session, location_id, variant_id)
    if sum(x.on_hand - x.reserved for x in levels) < quantity:
        return None
    left = quantity
    for level in sorted(levels, key=lambda x: (x.reserved - x.on_hand, x.bucket)):
        take = min(left, level.on_hand - level.reserved)
        if take > 0:
            _set_on_hand(session, level, level.on_hand - take)
            left -= take
    return totals(session, location_id, variant_id)


def swap_on_hand(
    session: Session, location_id: str, variant_id: str, expected: int, counted: int
) -> tuple[Totals, bool]:
    """Compare-and-swap the location's ``on_hand`` from ``expected`` to ``counted``.

    Returns the totals and whether the swap happened (not if ``on_hand`` is not ``expected`` or
    ``counted`` is below the reserved units).
    """
    ensure_rows(session, location_id, variant_id)
    levels = _lock_all(session, location_id, variant_id)
    on_hand = sum(x.on_hand for x in levels)
    reserved = sum(x.reserved for x in levels)
    if on_hand != expected or counted < reserved:
        return Totals(location_id, variant_id, on_hand, reserved), False
    delta = counted - on_hand
    if delta > 0:
        first = levels[0]
        _set_on_hand(session, first, first.on_hand + delta)
    elif delta < 0:
        left = -delta
        for level in sorted(levels, key=lambda x: (x.reserved - x.on_hand, x.bucket)):
            take = min(left, level.on_hand - level.reserved)
            if take > 0:
                _set_on_hand(session, level, level.on_hand - take)
                left -= take
    return Totals(location_id, variant_id, counted, reserved), True


def resplit(session: Session, variant_id: str, buckets: int) -> None:
    """Keep the variant's stock in ``buckets`` rows per location from now on.

    Free units are spread evenly over the new buckets. Buckets beyond the new count keep only
    the units their holds reserve; units their holds give back stay there (free, and found by
    the slow path) until the next re-split moves them, and that re-split deletes the buckets it
    leaves empty.
    """
    # The split row exists while re-splitting (inserted if missing, so two concurrent re-splits
    # queue on its lock instead of racing to insert it); one bucket is stored as 1.
    insert_ignoring_conflict(
        session,
        StockSplit,
        {"variant_id": variant_id, "buckets": 1, "updated_at": clock.now()},
        on=["variant_id"],
    )
    split = session.scalars(
        select(StockSplit)
        .where(StockSplit.variant_id == variant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    split.buckets = buckets
    split.updated_at = clock.now()
    session.flush()
    locations = session.scalars(
        select(StockLevel.location_id)
        .where(StockLevel.variant_id == variant_id)
        .distinct()
        .order_by(StockLevel.location_id)
    ).all()
    for location_id in locations:
        ensure_rows(session, location_id, variant_id)
        levels = _lock_all(session, location_id, variant_id)
        free = sum(x.on_hand - x.reserved for x in levels)
        share, extra = divmod(free, buckets)
        for level in levels:
            if level.bucket < buckets:
                wanted = level.reserved + share + (1 if level.bucket < extra else 0)
            else:
                wanted = level.reserved
            if wanted != level.on_hand:
                _set_on_hand(session, level, wanted)
        session.execute(
            delete(StockLevel).where(
                _where(location_id, variant_id),
                StockLevel.bucket >= buckets,
                StockLevel.on_hand == 0,
            )
        )
