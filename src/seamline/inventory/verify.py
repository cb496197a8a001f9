"""`seamline inventory verify`: the ledger and the holds against the stock rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seamline.inventory.models import Reservation, StockLevel, StockMovement


def verify(session: Session) -> list[dict[str, Any]]:
    """Every (location, variant) whose ``on_hand`` (summed over its buckets) differs from its
    ledger, or any of whose buckets' ``reserved`` differs from the held reservations recorded
    on that bucket."""
    ledger = {
        (r[0], r[1]): int(r[2])
        for r in session.execute(
            select(
                StockMovement.location_id,
                StockMovement.variant_id,
                func.sum(StockMovement.quantity),
            ).group_by(StockMovement.location_id, StockMovement.variant_id)
        )
    }
    bucket_holds = {
        (r[0], r[1], int(r[2])): int(r[3])
        for r in session.execute(
            select(
                Reservation.location_id,
                Reservation.variant_id,
                Reservation.bucket,
                func.sum(Reservation.quantity),
            )
            .where(Reservation.status == "held")
            .group_by(Reservation.location_id, Reservation.variant_id, Reservation.bucket)
        )
    }
    holds: dict[tuple[str, str], int] = {}
    for (loc, var, _), quantity in bucket_holds.items():
        holds[(loc, var)] = holds.get((loc, var), 0) + quantity
    rows: dict[tuple[str, str], list[StockLevel]] = {}
    for level in session.scalars(
        select(StockLevel).order_by(
            StockLevel.location_id, StockLevel.variant_id, StockLevel.bucket
        )
    ):
        rows.setdefault((level.location_id, level.variant_id), []).append(level)
    problems = []
    seen = set()
    for key, levels in rows.items():
        seen.add(key)
        on_hand = sum(x.on_hand for x in levels)
        reserved = sum(x.reserved for x in levels)
        expected_on_hand = ledger.get(key, 0)
        expected_reserved = holds.get(key, 0)
        misplaced = any(
            x.reserved != bucket_holds.get((key[0], key[1], x.bucket), 0) for x in levels
        )
        if on_hand != expected_on_hand or reserved != expected_reserved or misplaced:
            problems.append(
                {
                    "location_id": key[0],
                    "variant_id": key[1],
                    "on_hand": on_hand,
                    "ledger_on_hand": expected_on_hand,
                    "reserved": reserved,
                    "held_reserved": expected_reserved,
                }
            )
    for key in sorted((set(ledger) | set(holds)) - seen):
        if not ledger.get(key, 0) and not holds.get(key, 0):
            continue
        problems.append(
            {
                "location_id": key[0],
                "variant_id": key[1],
                "on_hand": 0,
                "ledger_on_hand": ledger.get(key, 0),
                "reserved": 0,
                "held_reserved": holds.get(key, 0),
            }
        )
    return problems
