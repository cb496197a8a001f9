"""Event reactions owned by the backbone itself: fanning events out to webhook endpoints."""

from __future__ import annotations

import fnmatch

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from seamline.events.models import Delivery, WebhookEndpoint
from seamline.events.outbox import FANOUT
from seamline.events.registry import Event, on, on_many
from seamline.events.webhooks import consumer_name
from seamline.kit import clock


@on("*", name=FANOUT)
def fan_out_to_webhooks(session: Session, event: Event) -> None:
    """One delivery per enabled endpoint subscribed to this type, in the event's order."""
    fan_out_many(session, [event])


@on_many(FANOUT)
def fan_out_many(session: Session, events: list[Event]) -> None:
    """The fan-out of several events: the endpoints are read once, and the deliveries already
    queued only for the events some endpoint wants (none, when nobody subscribed to them)."""
    endpoints = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
            WebhookEndpoint.status == "enabled"
        )
    ).all()
    if not endpoints:
        return
    wanted = {
        event.seq: [
            endpoint_id
            for endpoint_id, patterns in endpoints
            if any(fnmatch.fnmatchcase(event.type, p) for p in patterns)
        ]
        for event in events
    }
    seqs = sorted(seq for seq, ids in wanted.items() if ids)
    if not seqs:
        return
    # Idempotent: a replayed fan-out skips endpoints that already have this event queued.
    queued = {
        (seq, consumer)
        for seq, consumer in session.execute(
            select(Delivery.event_seq, Delivery.consumer).where(Delivery.event_seq.in_(seqs))
        )
    }
    now = clock.now()
    rows = [
        {
            "event_seq": event.seq,
            "consumer": consumer_name(endpoint_id),
            "aggregate_key": f"{event.aggregate_type}:{event.aggregate_id}",
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for event in events
        for endpoint_id in wanted[event.seq]
        if (event.seq, consumer_name(endpoint_id)) not in queued
    ]
    if rows:
        session.execute(insert(Delivery), rows)
