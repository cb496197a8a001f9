"""Event and timer reactions of the orders domain."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from seamline.events.registry import on_timer
from seamline.orders import checkout, fulfilment


@on_timer(checkout.EXPIRE_TIMER)
def checkout_expired(session: Session, key: str, payload: dict[str, Any]) -> None:
    """A checkout still paying after its payment window: its process died (checkout.py)."""
    checkout.expire(session, payload)


@on_timer(fulfilment.REMIND_TIMER)
def pickup_reminder(session: Session, key: str, payload: dict[str, Any]) -> None:
    fulfilment.remind(session, payload)


@on_timer(fulfilment.EXPIRE_TIMER)
def pickup_expired(session: Session, key: str, payload: dict[str, Any]) -> None:
    fulfilment.expire(session, payload)
