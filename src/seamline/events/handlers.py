"""Event reactions owned by the backbone itself: fanning events out to webhook endpoints."""

from __future__ import annotations

import fnmatch

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from seamline.events.models import Delivery, WebhookEndpoint
from seamline.events.registry import Event, on
from seamline.events.webhooks import consumer_name
from seamline.kit import clock


@on("*", name="webhooks.fanout")
def fan_out_to_webhooks(session: Session, event: Event) -> None:
    """One delivery per enabled endpoint subscribed to this type, in the event's order."""
    endpoints = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
            WebhookEndpoint.status == "enabled"
        )
    ).all()
    # Idempotent: a replayed fan-out skips endpoints that already have this event queued.
    queued = set(session.scalars(select(Delivery.consumer).where(Delivery.event_seq == event.seq)))
    wanted = [
        endpoint_id
        for endpoint_id, patterns in endpoints
        if any(fnmatch.fnmatchcase(event.type, p) for p in patterns)
        and consumer_name(endpoint_id) not in queued
    ]
    if not wanted:
        return
    now = clock.now()
    session.execute(
        insert(Delivery),
        [
            {
                "event_seq": event.seq,
                "consumer": consumer_name(endpoint_id),
                "aggregate_key": f"{event.aggregate_type}:{event.aggregate_id}",
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for endpoint_id in wanted
        ],
    )
