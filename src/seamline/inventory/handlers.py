"""Inventory's reactions: releasing holds whose time is up."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from seamline.events.registry import on_timer
from seamline.inventory.models import Reservation
from seamline.inventory.reservations import claim, let_go
from seamline.inventory.stock import EXPIRE_KIND
from seamline.kit import clock


@on_timer(EXPIRE_KIND)
def expire(session: Session, key: str, payload: dict[str, Any]) -> None:
    """Release a hold whose time is up, if it is still held (a no-op otherwise)."""
    reservation_id = str(payload.get("reservation_id", ""))
    reservation = session.get(Reservation, reservation_id)
    if reservation is None or reservation.status != "held":
        return
    if reservation.expires_at is None or reservation.expires_at > clock.now():
        return  # extended after this timer was due; the rescheduled timer handles it
    claimed = claim(session, reservation_id, "expired")
    if claimed is not None:
        let_go(session, claimed, "expire")
