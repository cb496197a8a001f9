"""Commit or release many holds at once: the lean path of checkout's step 3 (and of the release
of a failed checkout); the hold itself is ``reservations_many.reserve_many``.

``reservations.commit``/``release`` work one hold at a time — a claim, a re-read, a stock
update, a ledger row, an event, each its own statement. Here a checkout's holds are claimed in
one conditional ``UPDATE reservations … RETURNING``, their stock rows updated in one statement
with the rows locked in (location, variant, bucket) order, and the sale movements inserted in
one statement; on PostgreSQL all three are one statement (data-modifying CTEs). The events
report, per hold, the totals after it, as one statement per hold would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache

from sqlalchemy import TextClause, bindparam, insert, text, update
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.events import timers
from seamline.events.outbox import Pending, emit_rows
from seamline.inventory import buckets, reservations
from seamline.inventory.models import Reservation, StockMovement

# The statements' shared pieces live with the multi-line hold.
from seamline.inventory.reservations_many import (
    _NOW_TYPE,
    _RETURNING,
    _SOLD_RETURNING,
    _event,
    _params,
    _postgres,
    _totals,
    _values,
)
from seamline.inventory.schemas import ReservationOut
from seamline.inventory.stock import expire_key
from seamline.kit import clock
from seamline.kit.errors import Conflict


@dataclass(frozen=True)
class _Claimed:
    id: str
    location_id: str
    variant_id: str
    bucket: int
    quantity: int
    reference: str
    channel_id: str | None
    expires_at: datetime | None
    created_at: datetime

    def out(self, status: str, now: datetime) -> ReservationOut:
        return ReservationOut(
            id=self.id,
            location_id=self.location_id,
            variant_id=self.variant_id,
            quantity=self.quantity,
            reference=self.reference,
            channel_id=self.channel_id,
            status=status,
            expires_at=self.expires_at,
            created_at=self.created_at,
            updated_at=now,
        )


def _claim(
    session: Session, ids: Sequence[str], status: str, now: datetime, *, live: bool
) -> list[_Claimed]:
    """Move the still-held reservations among ``ids`` to ``status`` (one statement); with
    ``live`` only those not past their expiry. In (location, variant, bucket) order."""
    stmt = update(Reservation).where(Reservation.id.in_(list(ids)), Reservation.status == "held")
    if live:
        stmt = stmt.where(Reservation.expires_at.is_(None) | (Reservation.expires_at > now))
    rows = session.execute(
        stmt.values(status=status, updated_at=now)
        .returning(
            Reservation.id,
            Reservation.location_id,
            Reservation.variant_id,
            Reservation.bucket,
            Reservation.quantity,
            Reservation.reference,
            Reservation.channel_id,
            Reservation.expires_at,
            Reservation.created_at,
        )
        .execution_options(synchronize_session=False)
    ).all()
    claimed = [_Claimed(*row) for row in rows]
    return sorted(claimed, key=lambda c: (c.location_id, c.variant_id, c.bucket, c.id))


@lru_cache(maxsize=64)
def _unhold_statement(postgres: bool, rows: int, sale: bool) -> TextClause:
    """The give-back statement, built once per dialect, row count and kind (a ``text()``
    parses its SQL for parameters each time one is made)."""
    sql = _unhold_sql(postgres, rows, sale)
    return text(sql).bindparams(bindparam("now", type_=_NOW_TYPE))


def _unhold_sql(postgres: bool, rows: int, sale: bool) -> str:
    lock = " FOR UPDATE OF s" if postgres else ""
    values = _values(rows, ("VARCHAR", "VARCHAR", "INTEGER", "BIGINT"))
    on_hand = " on_hand = stock_levels.on_hand - v.qty," if sale else ""
    return (
        f"WITH v(loc, var, bkt, qty) AS (VALUES {values}),"  # noqa: S608 (bound values)
        " locked AS MATERIALIZED ("
        "  SELECT s.location_id, s.variant_id, s.bucket FROM stock_levels s"
        "  JOIN v ON s.location_id = v.loc AND s.variant_id = v.var AND s.bucket = v.bkt"
        f"  ORDER BY s.location_id, s.variant_id, s.bucket{lock})"
        f" UPDATE stock_levels SET{on_hand} reserved = stock_levels.reserved - v.qty,"
        " updated_at = :now"
        " FROM v JOIN locked ON locked.location_id = v.loc AND locked.variant_id = v.var"
        " AND locked.bucket = v.bkt"
        " WHERE stock_levels.location_id = v.loc AND stock_levels.variant_id = v.var"
        " AND stock_levels.bucket = v.bkt AND stock_levels.reserved >= v.qty "
        f"{_RETURNING}"
    )


def _unhold(
    session: Session, claimed: Sequence[_Claimed], now: datetime, *, sale: bool
) -> dict[tuple[str, str, int], buckets.Totals]:
    """Give every claimed hold's units back to its bucket (and with ``sale`` take them off
    ``on_hand``) in one statement; the buckets' totals after it."""
    wanted: dict[tuple[str, str, int], int] = {}
    for c in claimed:
        key = (c.location_id, c.variant_id, c.bucket)
        wanted[key] = wanted.get(key, 0) + c.quantity
    rows = [(*key, quantity) for key, quantity in wanted.items()]
    stmt = _unhold_statement(_postgres(session), len(rows), sale)
    found = session.execute(stmt, {**_params(rows), "now": now}).all()
    done = {(str(r[0]), str(r[1]), int(r[2])): _totals(r) for r in found}
    if len(done) != len(rows):  # the CHECK constraints make this unreachable
        raise Conflict("reserved units are missing", code="reservation_inconsistent")
    return done


def _after_each(
    claimed: Sequence[_Claimed], done: dict[tuple[str, str, int], buckets.Totals], *, sale: bool
) -> list[buckets.Totals]:
    """The totals after each hold in turn (``claimed`` is in lock order), as one statement per
    hold would have reported them: a bucket's final totals plus what the holds after it on the
    same bucket gave back."""
    later: dict[tuple[str, str, int], int] = {}
    out: list[buckets.Totals] = []
    for c in reversed(claimed):
        key = (c.location_id, c.variant_id, c.bucket)
        final = done.get(key)
        if final is None:  # the CHECK constraints make this unreachable
            raise Conflict("reserved units are missing", code="reservation_inconsistent")
        back = later.get(key, 0)
        out.append(
            replace(
                final,
                on_hand=final.on_hand + (back if sale else 0),
                reserved=final.reserved + back,
            )
        )
        later[key] = back + c.quantity
    return out[::-1]


# PostgreSQL: claim, sell (rows locked in (location, variant, bucket) order) and write the
# ledger in one statement; one row per claimed hold, with its bucket's totals after.
_COMMIT_PG = (
    "WITH claimed AS ("  # noqa: S608 (constants only; values are bound parameters)
    " UPDATE reservations SET status = 'committed', updated_at = :now"
    " WHERE reservations.id IN :ids AND reservations.status = 'held'"
    " AND (reservations.expires_at IS NULL OR reservations.expires_at > :now)"
    " RETURNING reservations.id, reservations.location_id, reservations.variant_id,"
    " reservations.bucket, reservations.quantity, reservations.reference,"
    " reservations.channel_id, reservations.expires_at, reservations.created_at),"
    " wanted AS (SELECT location_id AS loc, variant_id AS var, bucket AS bkt,"
    " SUM(quantity) AS qty FROM claimed GROUP BY location_id, variant_id, bucket),"
    " locked AS MATERIALIZED ("
    " SELECT s.location_id, s.variant_id, s.bucket FROM stock_levels s"
    " JOIN wanted ON s.location_id = wanted.loc AND s.variant_id = wanted.var"
    " AND s.bucket = wanted.bkt"
    " ORDER BY s.location_id, s.variant_id, s.bucket FOR UPDATE OF s),"
    " sold AS ("
    " UPDATE stock_levels SET on_hand = stock_levels.on_hand - wanted.qty,"
    " reserved = stock_levels.reserved - wanted.qty, updated_at = :now"
    " FROM wanted JOIN locked ON locked.location_id = wanted.loc"
    " AND locked.variant_id = wanted.var AND locked.bucket = wanted.bkt"
    " WHERE stock_levels.location_id = wanted.loc AND stock_levels.variant_id = wanted.var"
    " AND stock_levels.bucket = wanted.bkt AND stock_levels.reserved >= wanted.qty "
    f"{_SOLD_RETURNING}),"
    " moved AS ("
    " INSERT INTO stock_movements"
    " (location_id, variant_id, kind, quantity, reason, actor, reference, created_at)"
    " SELECT location_id, variant_id, 'sale', -quantity, '', CAST(:actor AS VARCHAR),"
    " reference, :now FROM claimed ORDER BY location_id, variant_id, bucket, id)"
    " SELECT claimed.id, claimed.location_id, claimed.variant_id, claimed.bucket,"
    " claimed.quantity, claimed.reference, claimed.channel_id, claimed.expires_at,"
    " claimed.created_at, sold.location_id, sold.variant_id, sold.bucket, sold.on_hand,"
    " sold.reserved, sold.other_on_hand, sold.other_reserved"
    " FROM claimed LEFT JOIN sold ON sold.location_id = claimed.location_id"
    " AND sold.variant_id = claimed.variant_id AND sold.bucket = claimed.bucket"
)

# Built once: a ``text()`` parses its SQL for parameters each time one is made.
_COMMIT_PG_STATEMENT = text(_COMMIT_PG).bindparams(
    bindparam("now", type_=_NOW_TYPE), bindparam("ids", expanding=True)
)


def _commit_postgres(
    session: Session, ids: Sequence[str], now: datetime, actor: str | None
) -> tuple[list[_Claimed], dict[tuple[str, str, int], buckets.Totals]]:
    rows = session.execute(
        _COMMIT_PG_STATEMENT, {"now": now, "ids": list(ids), "actor": actor}
    ).all()
    claimed = sorted(
        (_Claimed(*row[:9]) for row in rows),
        key=lambda c: (c.location_id, c.variant_id, c.bucket, c.id),
    )
    done = {(str(r[9]), str(r[10]), int(r[11])): _totals(r[9:]) for r in rows if r[9] is not None}
    return claimed, done


def commit_many(
    session: Session,
    reservation_ids: Sequence[str],
    *,
    caller: Caller | None = None,
    events: list[Pending] | None = None,
) -> list[ReservationOut]:
    """``reservations.commit`` for every id, all or nothing: the holds become sales (stock
    movements). A hold that is not held (released, expired, committed) raises the Conflict the
    per-line commit raises, for the caller's transaction to roll back. ``events`` collects the
    ``inventory.changed`` events for the caller to emit with its own; without it they are
    emitted here."""
    ids = list(dict.fromkeys(reservation_ids))
    if not ids:
        return []
    now = clock.now()
    actor = caller.key_id if caller is not None else None
    done: dict[tuple[str, str, int], buckets.Totals] = {}
    if _postgres(session):
        claimed, done = _commit_postgres(session, ids, now, actor)
    else:
        claimed = _claim(session, ids, "committed", now, live=True)
    if len(claimed) != len(ids):
        got = {c.id for c in claimed}
        missing = sorted(i for i in ids if i not in got)
        # Explain as the per-line path does (409 reservation_<status>, or expired); an id
        # that names no reservation at all is skipped, as checkout always did.
        if any(session.get(Reservation, i) is not None for i in missing):
            for reservation_id in missing:
                if session.get(Reservation, reservation_id) is not None:
                    reservations.commit(session, reservation_id, caller=caller)
            raise Conflict("the hold changed concurrently", code="reservation_conflict")
    if not claimed:
        return []
    if not _postgres(session):
        done = _unhold(session, claimed, now, sale=True)
        session.execute(
            insert(StockMovement),
            [
                {
                    "location_id": c.location_id,
                    "variant_id": c.variant_id,
                    "kind": "sale",
                    "quantity": -c.quantity,
                    "reason": "",
                    "actor": actor,
                    "reference": c.reference,
                    "created_at": now,
                }
                for c in claimed
            ],
        )
    pending = [
        _event(t, "sale", on_hand=-c.quantity, reserved=-c.quantity)
        for c, t in zip(claimed, _after_each(claimed, done, sale=True), strict=True)
    ]
    for c in claimed:
        if c.expires_at is not None:  # a hold without a TTL has no timer
            timers.cancel(session, expire_key(c.id))
    if events is None:
        emit_rows(session, pending)
    else:
        events.extend(pending)
    by_id = {c.id: c for c in claimed}
    return [by_id[i].out("committed", now) for i in ids if i in by_id]


def release_many(session: Session, reservation_ids: Sequence[str]) -> list[ReservationOut]:
    """Release whichever of ``reservation_ids`` are still held (the others are left alone, as
    checkout's release does one by one); returns the released ones."""
    ids = list(dict.fromkeys(reservation_ids))
    if not ids:
        return []
    now = clock.now()
    claimed = _claim(session, ids, "released", now, live=False)
    if not claimed:
        return []
    done = _unhold(session, claimed, now, sale=False)
    pending = [
        _event(t, "release", reserved=-c.quantity)
        for c, t in zip(claimed, _after_each(claimed, done, sale=False), strict=True)
    ]
    for c in claimed:
        if c.expires_at is not None:
            timers.cancel(session, expire_key(c.id))
    emit_rows(session, pending)
    return [c.out("released", now) for c in claimed]
