"""Webhook endpoint and event log routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from seamline.api.deps import DB, scoped
from seamline.events import service
from seamline.events.schemas import (
    EventOut,
    WebhookAttemptOut,
    WebhookEndpointCreate,
    WebhookEndpointOut,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)
from seamline.kit.crypto import SecretBox
from seamline.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from seamline.kit.schemas import REFERENCE_PATTERN

router = APIRouter(tags=["webhooks"])

# Cursors are row sequence numbers: at most 18 digits, so they always fit a BIGINT.
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")]
EndpointId = Annotated[str, Path(max_length=40, pattern=REFERENCE_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def _box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


@router.post("/webhook-endpoints", status_code=status.HTTP_201_CREATED, **scoped("webhooks:write"))
def create_endpoint(
    body: WebhookEndpointCreate, db: DB, request: Request
) -> WebhookEndpointWithSecret:
    """Subscribe a URL; the response carries the signing secret, shown this once."""
    with db.transaction() as session:
        endpoint, secret = service.create_endpoint(session, body, box=_box(request))
        out = WebhookEndpointOut.model_validate(endpoint)
    return WebhookEndpointWithSecret(**out.model_dump(), secret=secret)


@router.get("/webhook-endpoints", **scoped("webhooks:read"))
def list_endpoints(db: DB) -> Page[WebhookEndpointOut]:
    with db.transaction(readonly=True) as session:
        rows = service.list_endpoints(session)
        return Page[WebhookEndpointOut](data=[WebhookEndpointOut.model_validate(r) for r in rows])


@router.get("/webhook-endpoints/{endpoint_id}", **scoped("webhooks:read"))
def get_endpoint(endpoint_id: EndpointId, db: DB) -> WebhookEndpointOut:
    with db.transaction(readonly=True) as session:
        return WebhookEndpointOut.model_validate(service.get_endpoint(session, endpoint_id))


@router.patch("/webhook-endpoints/{endpoint_id}", **scoped("webhooks:write"))
def update_endpoint(
    endpoint_id: EndpointId, body: WebhookEndpointUpdate, db: DB
) -> WebhookEndpointOut:
    """Change URL, event types or description; ``status: enabled`` re-enables a disabled one."""
    with db.transaction() as session:
        return WebhookEndpointOut.model_validate(
            service.update_endpoint(session, endpoint_id, body)
        )


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret", **scoped("webhooks:write"))
def rotate_secret(endpoint_id: EndpointId, db: DB, request: Request) -> WebhookEndpointWithSecret:
    """A new secret; deliveries carry signatures with both secrets for the next 24 hours."""
    with db.transaction() as session:
        endpoint, secret = service.rotate_secret(session, endpoint_id, box=_box(request))
        out = WebhookEndpointOut.model_validate(endpoint)
    return WebhookEndpointWithSecret(**out.model_dump(), secret=secret)


@router.delete(
    "/webhook-endpoints/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    **scoped("webhooks:write"),
)
def delete_endpoint(endpoint_id: EndpointId, db: DB) -> None:
    with db.transaction() as session:
        service.delete_endpoint(session, endpoint_id)


@router.get("/webhook-endpoints/{endpoint_id}/attempts", **scoped("webhooks:read"))
def list_attempts(
    endpoint_id: EndpointId, db: DB, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[WebhookAttemptOut]:
    """Every delivery attempt to this endpoint, newest first."""
    with db.transaction(readonly=True) as session:
        rows, next_cursor = service.list_attempts(
            session, endpoint_id, limit=limit, before=int(cursor) if cursor else None
        )
        return Page[WebhookAttemptOut](
            data=[WebhookAttemptOut.model_validate(r) for r in rows], next_cursor=next_cursor
        )


@router.get("/events", tags=["events"], **scoped("events:read"))
def list_events(
    db: DB,
    type_prefix: Annotated[
        str | None, Query(alias="type", max_length=100, pattern=r"^[a-z_.]+$")
    ] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[EventOut]:
    """Domain events in the order they were written; page with ``cursor``.

    An event whose transaction commits late can land behind a cursor already read, so when
    catching up, start again a little before your last cursor and dedupe by event id.
    """
    with db.transaction(readonly=True) as session:
        events, next_cursor = service.list_events(
            session, type_prefix=type_prefix, after=int(cursor) if cursor else None, limit=limit
        )
    return Page[EventOut](data=[EventOut(**e.envelope()) for e in events], next_cursor=next_cursor)
