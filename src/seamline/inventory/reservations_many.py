"""Holds of many lines at once: the lean path checkout takes (reserve, commit, release).

``reservations.reserve``/``commit``/``release`` work one line at a time — a bucket choice, a
conditional update, a reservation row, an event, each its own statement. A checkout holds and
sells every line of a cart together, so here each step is one multi-row statement:

- **Hold** (``reserve_many``): one ``UPDATE stock_levels … FROM (VALUES …)`` holding every line
  in bucket 0 of its location, all or nothing, after locking the rows in the one lock order
  (location, variant) in the same statement; one multi-row ``INSERT`` of the reservations;
  their ``inventory.changed`` through ``outbox.emit_rows`` (``emit_many`` in two INSERTs). It
  covers the common case only — every line at a named location, an unsplit SKU, no share cap,
  no timer — and otherwise, or when any line lacks its units, changes nothing, keeps no lock
  (its savepoint is rolled back) and answers None: the caller then takes the per-line path,
  which also explains refusals.
- **Commit** and **release** of many holds: ``reservations_settle.py``.

Never oversold: the hold's condition (``on_hand - reserved >= quantity + keep``) is evaluated
on each row's latest version under its lock, exactly as the per-line statement does.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, TextClause, bindparam, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from seamline.events.outbox import Pending, emit_rows
from seamline.inventory import availability, buckets, reservations
from seamline.inventory.availability import Policy
from seamline.inventory.models import Reservation, StockLevel
from seamline.inventory.schemas import ReservationCreate, ReservationOut
from seamline.inventory.stock import totals_out
from seamline.kit import clock
from seamline.kit.ids import new_id

_NOW_TYPE = cast(Table, StockLevel.__table__).c.updated_at.type


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _values(rows: int, types: Sequence[str]) -> str:
    """``(CAST(:p0_0 AS …), …), …`` for ``rows`` rows (bound as ``p<row>_<column>``)."""
    return ", ".join(
        "(" + ", ".join(f"CAST(:p{i}_{j} AS {t})" for j, t in enumerate(types)) + ")"
        for i in range(rows)
    )


def _params(rows: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    return {f"p{i}_{j}": value for i, row in enumerate(rows) for j, value in enumerate(row)}


_OTHERS = (
    "(SELECT COALESCE(SUM(o.on_hand), 0) FROM stock_levels o"
    " WHERE o.location_id = stock_levels.location_id AND o.variant_id = stock_levels.variant_id"
    " AND o.bucket <> stock_levels.bucket),"
    " (SELECT COALESCE(SUM(o.reserved), 0) FROM stock_levels o"
    " WHERE o.location_id = stock_levels.location_id AND o.variant_id = stock_levels.variant_id"
    " AND o.bucket <> stock_levels.bucket)"
)
_RETURNING = (
    "RETURNING stock_levels.location_id, stock_levels.variant_id, stock_levels.bucket,"
    f" stock_levels.on_hand, stock_levels.reserved, {_OTHERS}"
)


_SOLD_RETURNING = (
    "RETURNING stock_levels.location_id, stock_levels.variant_id, stock_levels.bucket,"
    " stock_levels.on_hand, stock_levels.reserved,"
    " (SELECT COALESCE(SUM(o.on_hand), 0) FROM stock_levels o"
    " WHERE o.location_id = stock_levels.location_id AND o.variant_id = stock_levels.variant_id"
    " AND o.bucket <> stock_levels.bucket) AS other_on_hand,"
    " (SELECT COALESCE(SUM(o.reserved), 0) FROM stock_levels o"
    " WHERE o.location_id = stock_levels.location_id AND o.variant_id = stock_levels.variant_id"
    " AND o.bucket <> stock_levels.bucket) AS other_reserved"
)


def _totals(row: Any) -> buckets.Totals:
    return buckets.Totals(
        str(row[0]),
        str(row[1]),
        on_hand=int(row[3]) + int(row[5]),
        reserved=int(row[4]) + int(row[6]),
        bucket=int(row[2]),
    )


def _event(t: buckets.Totals, cause: str, *, on_hand: int = 0, reserved: int = 0) -> Pending:
    """``inventory.changed`` as ``stock.changed`` writes it."""
    return Pending(
        "inventory.changed",
        "stock",
        f"{t.location_id}:{t.variant_id}",
        {
            **totals_out(t).model_dump(),
            "delta_on_hand": on_hand,
            "delta_reserved": reserved,
            "cause": cause,
        },
    )


# -- hold ------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _hold_statement(postgres: bool, lines: int) -> TextClause:
    """The hold statement for ``lines`` lines, built once per dialect and line count (a
    ``text()`` parses its SQL for parameters, and its cache key is computed, each time one is
    made)."""
    return text(_hold_sql(postgres, lines)).bindparams(bindparam("now", type_=_NOW_TYPE))


def _hold_sql(postgres: bool, lines: int) -> str:
    """Every line's bucket 0 locked in (location, variant) order, then held — only if every
    line has its units (``ready``), and only for SKUs that are not split over buckets. On
    PostgreSQL the same statement inserts the reservations (``ins``) and answers the held rows
    with how many were inserted; elsewhere the insert is a statement of its own."""
    lock = " FOR UPDATE OF s" if postgres else ""
    types = ("VARCHAR", "VARCHAR", "BIGINT", "BIGINT") + (
        ("VARCHAR", "VARCHAR") if postgres else ()
    )
    columns = "loc, var, qty, needed" + (", ref, rid" if postgres else "")
    values = _values(lines, types)
    head = (
        f"WITH v({columns}) AS (VALUES {values}),"  # noqa: S608 (bound values)
        # A SKU split over buckets takes the per-line path (a random unlocked bucket): no row
        # is locked then, and the caller goes on in the same transaction.
        " split AS (SELECT 1 FROM stock_splits sp JOIN v ON sp.variant_id = v.var"
        "  WHERE sp.buckets > 1),"
        " locked AS MATERIALIZED ("
        "  SELECT s.location_id, s.variant_id, s.on_hand - s.reserved AS free"
        "  FROM stock_levels s JOIN v ON s.location_id = v.loc AND s.variant_id = v.var"
        "  WHERE s.bucket = 0 AND NOT EXISTS (SELECT 1 FROM split)"
        f"  ORDER BY s.location_id, s.variant_id{lock}),"
        " ready AS ("
        "  SELECT COUNT(*) AS n FROM locked"
        "  JOIN v ON locked.location_id = v.loc AND locked.variant_id = v.var"
        "  WHERE locked.free >= v.needed)"
    )
    update = (
        " UPDATE stock_levels SET reserved = stock_levels.reserved + v.qty, updated_at = :now"
        " FROM v, ready"
        " WHERE stock_levels.location_id = v.loc AND stock_levels.variant_id = v.var"
        " AND stock_levels.bucket = 0 AND ready.n = :lines"
        " AND stock_levels.on_hand - stock_levels.reserved >= v.needed "
    )
    if not postgres:
        return f"{head}{update}{_RETURNING}"
    return (
        f"{head}, held AS ({update}{_SOLD_RETURNING}),"  # noqa: S608 (constants only)
        " ins AS ("
        "  INSERT INTO reservations (id, location_id, variant_id, quantity, reference, bucket,"
        "  channel_id, status, expires_at, created_at, updated_at)"
        "  SELECT v.rid, v.loc, v.var, v.qty, v.ref, 0, CAST(:channel AS VARCHAR), 'held', NULL,"
        "  :now, :now FROM v JOIN held ON held.location_id = v.loc AND held.variant_id = v.var"
        "  ON CONFLICT (reference, location_id, variant_id) WHERE status = 'held' DO NOTHING"
        "  RETURNING id)"
        " SELECT held.location_id, held.variant_id, held.bucket, held.on_hand, held.reserved,"
        " held.other_on_hand, held.other_reserved, (SELECT COUNT(*) FROM ins),"
        " EXISTS (SELECT 1 FROM split) FROM (SELECT 1) AS one LEFT JOIN held ON TRUE"
    )


def _eligible(
    session: Session, data: ReservationCreate, policy: Policy | None
) -> dict[str, int] | None:
    """The units each location must keep, if the lean path applies to ``data``."""
    if data.ttl_seconds or not data.lines:
        return None
    pairs = {(line.location_id, line.variant_id) for line in data.lines}
    refs = {(line.reference, line.variant_id) for line in data.lines}
    if len(pairs) != len(data.lines) or len(refs) != len(data.lines):
        return None  # the per-line path holds repeats in bucket order, or refuses them
    keep: dict[str, int] = {}
    if data.channel_id is None:
        policy = None
    elif policy is None or policy.channel_id != data.channel_id:
        policy = availability.channel_policy(session, data.channel_id)
    for line in data.lines:
        if line.location_id is None:
            return None
        if policy is None:
            keep[line.location_id] = 0
            continue
        if policy.share_percent < 100 or line.location_id not in policy.kinds:
            return None
        if policy.restricted and line.location_id not in policy.location_ids:
            return None  # refused by the per-line path
        keep[line.location_id] = policy.keep_at(line.location_id)
    return keep


class HoldFailed(Exception):
    """``reserve_many(savepoint=False)`` tried and failed: its transaction holds row locks (or
    changes) of the attempt and must be rolled back before the per-line path is taken."""


def reserve_many(
    session: Session,
    data: ReservationCreate,
    *,
    policy: Policy | None = None,
    savepoint: bool = True,
    events: list[Pending] | None = None,
) -> list[ReservationOut] | None:
    """Hold every line of ``data`` in three statements (and ``emit_rows``); None — nothing
    changed, no lock kept — when the lean path does not apply or a line lacks its units, for
    the caller to use ``reservations.reserve``. Lines come back in request order. ``policy``
    is the channel's (``availability.channel_policy``), when the caller has it already.

    Without ``savepoint`` (two statements fewer) a failed attempt raises ``HoldFailed``
    instead: the caller rolls its transaction back and starts again on the per-line path.
    Given ``events``, the lines' ``inventory.changed`` are appended there for the caller to
    emit with its own."""
    keep = _eligible(session, data, policy)
    if keep is None:
        return None
    lines = data.lines
    now = clock.now()
    records = [
        {
            "id": new_id("res"),
            "location_id": line.location_id,
            "variant_id": line.variant_id,
            "quantity": line.quantity,
            "reference": line.reference,
            "bucket": 0,
            "channel_id": data.channel_id,
            "status": "held",
            "expires_at": None,
            "created_at": now,
            "updated_at": now,
        }
        for line in lines
    ]
    postgres = _postgres(session)
    rows = [
        (
            line.location_id,
            line.variant_id,
            line.quantity,
            line.quantity + keep[str(line.location_id)],
        )
        + ((line.reference, r["id"]) if postgres else ())
        for line, r in zip(lines, records, strict=True)
    ]
    stmt = _hold_statement(postgres, len(rows))
    attempt = session.begin_nested() if savepoint else None

    def failed() -> None:
        if attempt is None:
            raise HoldFailed
        attempt.rollback()

    params = {**_params(rows), "now": now, "lines": len(rows), "channel": data.channel_id}
    answered = session.execute(stmt, params).all()
    split = postgres and bool(answered and answered[0][8])
    found = [r for r in answered if r[0] is not None]
    by_pair = {(str(r[0]), str(r[1])): _totals(r) for r in found}
    if len(by_pair) != len(lines):
        # Nothing was held. On PostgreSQL the rows stay locked until the transaction (or the
        # savepoint) is rolled back — except when a SKU is split (no row was locked); on
        # SQLite (no row locks) nothing is left behind: go on line by line.
        if postgres and not split:
            failed()
        elif attempt is not None:
            attempt.rollback()
        return None
    if postgres:
        inserted = int(found[0][7])
    else:
        table = cast(Table, Reservation.__table__)
        inserted = len(
            session.execute(
                sqlite.insert(table)
                .values(records)
                .on_conflict_do_nothing(
                    index_elements=["reference", "location_id", "variant_id"],
                    index_where=reservations.LIVE,
                )
                .returning(table.c.id)
            ).all()
        )
    if inserted != len(records):  # a concurrent identical request: the per-line path
        failed()
        return None
    if attempt is not None:
        attempt.commit()
    changed = [
        _event(by_pair[(str(line.location_id), line.variant_id)], "reserve", reserved=line.quantity)
        for line in lines
    ]
    if events is not None:  # the caller emits them with its own
        events += changed
    else:
        emit_rows(session, changed)
    return [
        ReservationOut(
            id=r["id"],
            location_id=r["location_id"],
            variant_id=r["variant_id"],
            quantity=r["quantity"],
            reference=r["reference"],
            channel_id=r["channel_id"],
            status="held",
            expires_at=None,
            created_at=now,
            updated_at=now,
        )
        for r in records
    ]
