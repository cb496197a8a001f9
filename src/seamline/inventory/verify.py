"""`seamline inventory verify`: the ledger and the holds against the stock rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seamline.inventory.models import Reservation, StockLevel, StockMovement


def verify(session: Session) -> list[dict[str, Any]]:
    """Every stock row whose ``on_hand`` differs from its ledger or whose ``reserved`` differs
    from its held reservations."""
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
    holds = {
        (r[0], r[1]): int(r[2])
        for r in session.execute(
            select(Reservation.location_id, Reservation.variant_id, func.sum(Reservation.quantity))
            .where(Reservation.status == "held")
            .group_by(Reservation.location_id, Reservation.variant_id)
        )
    }
    problems = []
    seen = set()
    for level in session.scalars(
        select(StockLevel).order_by(StockLevel.location_id, StockLevel.variant_id)
    ):
        key = (level.location_id, level.variant_id)
        seen.add(key)
        expected_on_hand = ledger.get(key, 0)
        expected_reserved = holds.get(key, 0)
        if level.on_hand != expected_on_hand or level.reserved != expected_reserved:
            problems.append(
                {
                    "location_id": level.location_id,
                    "variant_id": level.variant_id,
                    "on_hand": level.on_hand,
                    "ledger_on_hand": expected_on_hand,
                    "reserved": level.reserved,
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
