"""Forms that must take effect once: a double click or a browser's resend of the same form
books stock once. Each such form carries a one-time ``form_key`` (random, written when the page
renders); the action claims it in its own transaction, in the idempotency-key table under the
staff member's scope, so a second submit finds it taken and changes nothing."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seamline.api.idempotency import IdempotencyRecord
from seamline.kit import clock

KEEP = timedelta(hours=24)  # as long as an API idempotency key (purged by the same chore)
ALREADY_DONE = "Already done: this form was sent twice, and only the first one counted."


def first_submit(session: Session, staff_id: str, form_key: str) -> bool:
    """Claim ``form_key`` for ``staff_id`` in the caller's transaction: ``True`` the first time,
    ``False`` if the same form was already sent (the caller then does nothing)."""
    now = clock.now()
    record = IdempotencyRecord(
        scope=f"console:{staff_id}"[:64],
        key=form_key,
        request_hash="",
        status="done",
        created_at=now,
        expires_at=now + KEEP,
    )
    try:
        with session.begin_nested():
            session.add(record)
            session.flush()
    except IntegrityError:
        return False
    return True
