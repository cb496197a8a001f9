"""Operator-facing rules of the event backbone: webhook endpoints, dead letters, the event log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from seamline.db.lookup import get_or_404
from seamline.db.pagination import keyset_page
from seamline.events import outbox
from seamline.events.models import Delivery, OutboxEvent, Timer, WebhookAttempt, WebhookEndpoint
from seamline.events.registry import Event
from seamline.events.schemas import WebhookEndpointCreate, WebhookEndpointUpdate
from seamline.events.webhooks import consumer_name
from seamline.events.worker import to_event
from seamline.kit import clock
from seamline.kit.crypto import SecretBox
from seamline.kit.errors import FieldError, Unprocessable
from seamline.kit.ids import new_id, new_secret

ROTATION_GRACE = timedelta(hours=24)


def create_endpoint(
    session: Session, data: WebhookEndpointCreate, *, box: SecretBox
) -> tuple[WebhookEndpoint, str]:
    """Subscribe a URL to event types; returns the endpoint and its secret (shown once)."""
    secret = new_secret("whsec", 24)
    now = clock.now()
    endpoint = WebhookEndpoint(
        id=new_id("we"),
        url=str(data.url),
        description=data.description,
        event_types=data.event_types,
        secret_encrypted=box.seal(secret),
        status="enabled",
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    session.flush()
    outbox.webhooks_changed(session)
    return endpoint, secret


def get_endpoint(session: Session, endpoint_id: str, *, lock: bool = False) -> WebhookEndpoint:
    return get_or_404(
        session,
        WebhookEndpoint,
        endpoint_id,
        what="webhook endpoint",
        code="webhook_endpoint_not_found",
        for_update=lock,
    )


def list_endpoints(session: Session) -> list[WebhookEndpoint]:
    return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def update_endpoint(
    session: Session, endpoint_id: str, data: WebhookEndpointUpdate
) -> WebhookEndpoint:
    """Change an endpoint; re-enabling clears the reason it was disabled."""
    endpoint = get_endpoint(session, endpoint_id, lock=True)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if "url" in changes:
        endpoint.url = str(changes["url"])
    if "event_types" in changes:
        endpoint.event_types = changes["event_types"]
    if "description" in changes:
        endpoint.description = changes["description"]
    if changes.get("status") == "enabled" and endpoint.status != "enabled":
        endpoint.status, endpoint.disabled_reason, endpoint.disabled_at = "enabled", None, None
        outbox.webhooks_changed(session)
    elif changes.get("status") == "disabled" and endpoint.status != "disabled":
        endpoint.status, endpoint.disabled_reason = "disabled", "disabled by an operator"
        endpoint.disabled_at = clock.now()
    endpoint.updated_at = clock.now()
    return endpoint


def rotate_secret(
    session: Session, endpoint_id: str, *, box: SecretBox
) -> tuple[WebhookEndpoint, str]:
    """New secret now; the old one keeps signing (as a second ``v1``) for 24 hours."""
    endpoint = get_endpoint(session, endpoint_id, lock=True)
    secret = new_secret("whsec", 24)
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = clock.now() + ROTATION_GRACE
    endpoint.secret_encrypted = box.seal(secret)
    endpoint.updated_at = clock.now()
    return endpoint, secret


def delete_endpoint(session: Session, endpoint_id: str) -> None:
    """Remove an endpoint, its attempt log, and whatever was still queued or dead for it."""
    endpoint = get_endpoint(session, endpoint_id, lock=True)
    # Dead letters go too: replaying them could only fail again ("endpoint was deleted").
    session.execute(
        delete(Delivery).where(
            Delivery.consumer == consumer_name(endpoint.id),
            Delivery.status.in_(("pending", "dead")),
        )
    )
    session.delete(endpoint)


def list_attempts(
    session: Session, endpoint_id: str, *, limit: int = 50, before: int | None = None
) -> tuple[list[WebhookAttempt], str | None]:
    """Newest attempts first, paginated by cursor."""
    get_endpoint(session, endpoint_id)
    stmt = select(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint_id)
    return keyset_page(session, stmt, WebhookAttempt.id, after=before, limit=limit, descending=True)


def list_events(
    session: Session, *, type_prefix: str | None = None, after: int | None = None, limit: int = 50
) -> tuple[list[Event], str | None]:
    """The outbox in write (sequence) order; ``after`` is a cursor.

    On PostgreSQL sequence numbers are taken at insert, not at commit, so an event from a
    transaction that commits late can appear behind a cursor already passed: the log is for
    inspection and catching up; the guaranteed paths are webhooks and the stream.
    """
    stmt = select(OutboxEvent)
    if type_prefix:
        stmt = stmt.where(OutboxEvent.type.startswith(type_prefix, autoescape=True))
    rows, cursor = keyset_page(session, stmt, OutboxEvent.seq, after=after, limit=limit)
    return [to_event(r) for r in rows], cursor


@dataclass(frozen=True)
class DeadLetter:
    kind: str
    id: int
    consumer: str
    reference: str
    attempts: int
    last_error: str | None


def list_dead(session: Session) -> list[DeadLetter]:
    """Every delivery and timer the worker gave up on, oldest first."""
    out: list[DeadLetter] = []
    rows = session.execute(
        select(Delivery, OutboxEvent.id)
        .join(OutboxEvent, OutboxEvent.seq == Delivery.event_seq)
        .where(Delivery.status == "dead")
        .order_by(Delivery.id)
    )
    for delivery, event_id in rows:
        out.append(
            DeadLetter(
                "delivery",
                delivery.id,
                delivery.consumer,
                event_id,
                delivery.attempts,
                delivery.last_error,
            )
        )
    for timer in session.scalars(select(Timer).where(Timer.status == "dead").order_by(Timer.id)):
        out.append(
            DeadLetter("timer", timer.id, timer.kind, timer.key, timer.attempts, timer.last_error)
        )
    return out


def replay_dead(session: Session, *, kind: str | None = None, ids: list[int] | None = None) -> int:
    """Put dead deliveries/timers back in the queue with a fresh retry budget.

    Delivery ids and timer ids are separate sequences, so replaying by id needs ``kind``:
    otherwise ``--replay 5`` would also re-fire an unrelated timer 5.
    """
    if kind not in (None, "delivery", "timer"):
        raise Unprocessable(
            f"unknown dead letter kind {kind!r}",
            code="invalid_dead_letter_kind",
            errors=[FieldError("kind", "delivery or timer", "invalid")],
        )
    if ids is not None and kind is None:
        raise Unprocessable(
            "say which kind of dead letter the ids are (delivery or timer)",
            code="dead_letter_kind_required",
            errors=[FieldError("kind", "required when replaying by id", "required")],
        )
    now = clock.now()
    count = 0
    if kind in (None, "delivery"):
        stmt = update(Delivery).where(Delivery.status == "dead")
        if ids is not None:
            stmt = stmt.where(Delivery.id.in_(ids))
        result = session.execute(
            stmt.values(status="pending", attempts=0, next_attempt_at=now, locked_until=None)
        )
        count += int(getattr(result, "rowcount", 0) or 0)
    if kind in (None, "timer"):
        tstmt = update(Timer).where(Timer.status == "dead")
        if ids is not None:
            tstmt = tstmt.where(Timer.id.in_(ids))
        result = session.execute(tstmt.values(status="pending", attempts=0, fire_at=now))
        count += int(getattr(result, "rowcount", 0) or 0)
    return count


def undelivered_count(session: Session) -> int:
    """Deliveries not done yet (pending or dead): zero means every consumer has every event."""
    return int(
        session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status != "done"))
        or 0
    )


def prune_delivered(session: Session, *, older_than: timedelta) -> int:
    """Delete done deliveries, and events none of whose deliveries is still open, older than
    ``older_than`` (the retention of the event log). Returns the rows removed."""
    horizon = clock.now() - older_than
    removed = session.execute(
        delete(Delivery).where(Delivery.status == "done", Delivery.done_at < horizon)
    )
    open_deliveries = select(Delivery.id).where(Delivery.event_seq == OutboxEvent.seq)
    events = session.execute(
        delete(OutboxEvent).where(OutboxEvent.created_at < horizon, ~open_deliveries.exists())
    )
    return int(removed.rowcount or 0) + int(events.rowcount or 0)  # type: ignore[attr-defined]
