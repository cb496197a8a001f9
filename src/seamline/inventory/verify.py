"""`seamline inventory verify`: the ledger and the holds against the stock rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, literal, null, select, union_all
from sqlalchemy.orm import Session

from seamline.inventory.models import Reservation, StockLevel, StockMovement


def _facts(session: Session) -> list[tuple[str, str, str, int | None, int, int]]:
    """Ledger sums, held quantities per bucket and the stock rows, in ONE statement: a single
    snapshot of a live database on every backend (three statements under READ COMMITTED could
    each see a different moment and report drift that is not there)."""
    ledger = select(
        literal("ledger"),
        StockMovement.location_id,
        StockMovement.variant_id,
        null(),
        func.sum(StockMovement.quantity),
        literal(0),
    ).group_by(StockMovement.location_id, StockMovement.variant_id)
    holds = (
        select(
            literal("holds"),
            Reservation.location_id,
            Reservation.variant_id,
            Reservation.bucket,
            func.sum(Reservation.quantity),
            literal(0),
        )
        .where(Reservation.status == "held")
        .group_by(Reservation.location_id, Reservation.variant_id, Reservation.bucket)
    )
    rows = select(
        literal("row"),
        StockLevel.location_id,
        StockLevel.variant_id,
        StockLevel.bucket,
        StockLevel.on_hand,
        StockLevel.reserved,
    )
    facts = []
    result: Any = session.execute(union_all(ledger, holds, rows))
    for kind, loc, var, bucket, a, b in result:
        facts.append(
            (str(kind), str(loc), str(var), None if bucket is None else int(bucket), int(a), int(b))
        )
    return facts


def verify(session: Session) -> list[dict[str, Any]]:
    """Every (location, variant) whose ``on_hand`` (summed over its buckets) differs from its
    ledger, or any of whose buckets' ``reserved`` differs from the held reservations recorded
    on that bucket."""
    ledger: dict[tuple[str, str], int] = {}
    bucket_holds: dict[tuple[str, str, int], int] = {}
    rows: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for kind, loc, var, bucket, a, b in _facts(session):
        if kind == "ledger":
            ledger[(loc, var)] = a
        elif kind == "holds":
            bucket_holds[(loc, var, bucket or 0)] = a
        else:
            rows.setdefault((loc, var), []).append((bucket or 0, a, b))
    holds: dict[tuple[str, str], int] = {}
    for (loc, var, _), quantity in bucket_holds.items():
        holds[(loc, var)] = holds.get((loc, var), 0) + quantity
    problems = []
    for key in sorted(set(rows) | set(ledger) | set(holds)):
        levels = rows.get(key, [])
        on_hand = sum(x[1] for x in levels)
        reserved = sum(x[2] for x in levels)
        misplaced = any(x[2] != bucket_holds.get((key[0], key[1], x[0]), 0) for x in levels)
        if on_hand != ledger.get(key, 0) or reserved != holds.get(key, 0) or misplaced:
            problems.append(
                {
                    "location_id": key[0],
                    "variant_id": key[1],
                    "on_hand": on_hand,
                    "ledger_on_hand": ledger.get(key, 0),
                    "reserved": reserved,
                    "held_reserved": holds.get(key, 0),
                }
            )
    return problems
