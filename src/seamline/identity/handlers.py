"""Event reactions of the identity domain: the timeline, purchase metrics, channel activity.

Two consumers, so each event costs one delivery here:

- ``identity.tracked`` (``customer.event_tracked``): turns the Segment e-commerce calls
  ``Order Completed`` / ``Order Refunded`` into orders and refunds (its delivery is written for
  those calls only; ingestion counts every call's channel itself).
- ``identity.timeline`` (domain events about a customer): puts the event on the profile's
  timeline, counts its channel, and turns ``order.placed`` / ``order.refunded`` into orders
  and refunds. The timeline row's unique (event, profile) makes the whole reaction idempotent.

The worker runs both in its transaction with the delivery (exactly once in effect). The event
contract is in docs/customer-360.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.events.registry import Event, on, on_many

# ingest_queue registers the worker's round job that drains the queued-ingestion inbox.
from seamline.identity import ingest_queue, metrics, timeline  # noqa: F401
from seamline.identity.customer_models import CustomerOrder, PrivacyRequest
from seamline.identity.ingest import EVENT_TRACKED
from seamline.identity.models import Profile, TrackedEvent

log = structlog.get_logger("seamline.identity.handlers")

# Domain events that concern a customer (when their payload names a ``profile_id``).
TIMELINE_TYPES = (
    "cart.*",
    "saved_list.*",
    "order.*",
    "return.*",
    "payment.*",
    "loyalty.*",
    "conversation.*",
    "message.*",
    "consent.*",
    "profile.preferences_changed",
)
# Events the customer acted in, so their channel counts as one the customer used (a message
# the brand sent, or a consent's contact channel, does not).
ACTIVITY_PREFIXES = ("cart.", "order.", "return.", "payment.", "conversation.")
ORDER_PLACED, ORDER_REFUNDED = "order.placed", "order.refunded"
# Segment e-commerce spec v2 names, and the v1 names some clients still send.
ORDER_COMPLETED_CALLS = frozenset({"Order Completed", "Completed Order"})
ORDER_REFUNDED_CALLS = frozenset({"Order Refunded", "Refunded Order"})
ORDER_CALLS = ORDER_COMPLETED_CALLS | ORDER_REFUNDED_CALLS
CHANNEL_MAX = 40
ID_MAX = 40


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def _channel(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= CHANNEL_MAX else None


def _minor(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= metrics.MAX_MINOR else None


# -- tracked calls ---------------------------------------------------------------------------


TRACKED = "identity.tracked"


def _tracked_acts(payload: dict[str, Any]) -> bool:
    """Whether ``tracked_calls`` does anything with the call: only Segment order and refund
    calls (ingestion counts every call's channel itself); every other call gets no delivery."""
    name = payload.get("name")
    if not (payload.get("type") == "track" and isinstance(name, str) and name in ORDER_CALLS):
        return False
    return (
        isinstance(payload.get("profile_id"), str) and _time(payload.get("timestamp")) is not None
    )


@on(EVENT_TRACKED, name=TRACKED, when=_tracked_acts)
def tracked_call(session: Session, event: Event) -> None:
    """Orders and refunds from Segment e-commerce calls."""
    tracked_calls(session, [event])


@on_many(TRACKED)
def tracked_calls(session: Session, events: list[Event]) -> None:
    """``tracked_call`` for several events: the order and refund calls one by one, in event
    order. (A call's channel activity is counted by ingestion, in the transaction that
    stores the call: one upsert per batch of calls, not a delivery per call.)"""
    for event in events:
        payload = event.payload
        profile_id = payload.get("profile_id")
        at = _time(payload.get("timestamp"))
        if not isinstance(profile_id, str) or at is None:
            continue
        name = payload.get("name")
        if payload.get("type") == "track" and name in ORDER_CALLS:
            channel = _channel(payload.get("channel"))
            _tracked_commerce(session, event, profile_id, at, channel)


def _tracked_commerce(
    session: Session, event: Event, profile_id: str, at: datetime, channel: str | None
) -> None:
    payload = event.payload
    name = payload.get("name")
    properties = session.scalar(
        select(TrackedEvent.properties).where(
            TrackedEvent.profile_id == profile_id, TrackedEvent.id == payload.get("event_id")
        )
    )
    if not isinstance(properties, dict):
        return  # the call is gone (erased)
    if name in ORDER_COMPLETED_CALLS:
        _tracked_order(session, profile_id, properties, at, channel, event.id)
    else:
        _tracked_refund(session, properties)


def _segment_order_id(properties: dict[str, Any]) -> str | None:
    return metrics.order_key(properties.get("order_id", properties.get("orderId")))


def _tracked_order(
    session: Session,
    profile_id: str,
    properties: dict[str, Any],
    at: datetime,
    channel: str | None,
    event_id: str,
) -> None:
    key = _segment_order_id(properties)
    currency = metrics.currency_code(properties.get("currency"))
    # Segment: ``total`` includes tax and shipping; ``revenue`` is the older, narrower field.
    amount = properties.get("total", properties.get("revenue"))
    total = metrics.to_minor(amount, currency) if currency else None
    if key is None or currency is None or total is None:
        log.info("order_not_counted", event_id=event_id, reason="order_id, currency or total")
        return
    report = metrics.OrderReport(
        profile_id, key, metrics.TRACKED, currency, total, at, channel, event_id
    )
    metrics.record_order(session, report)


def _tracked_refund(session: Session, properties: dict[str, Any]) -> None:
    key = _segment_order_id(properties)
    if key is None:
        return
    currency = metrics.currency_code(properties.get("currency"))
    amount = properties.get("total", properties.get("amount"))
    minor: int | None = None
    if amount is not None:
        # Without a currency the refund is read in the order's own currency.
        held = currency or _order_currency(session, key)
        minor = metrics.to_minor(amount, held) if held else None
        if minor is None:
            return  # an amount we cannot read is not taken as a full refund
    metrics.record_refund(
        session, key, source=metrics.TRACKED, amount_minor=minor, currency=currency
    )


def _order_currency(session: Session, key: str) -> str | None:
    return session.scalar(select(CustomerOrder.currency).where(CustomerOrder.order_key == key))


# -- domain events ---------------------------------------------------------------------------


def _profiles_named(payload: dict[str, Any]) -> list[str]:
    named: list[str] = []
    candidates = [payload.get("profile_id")]
    extra = payload.get("profile_ids")
    if isinstance(extra, list):
        candidates += extra
    for value in candidates:
        if isinstance(value, str) and 0 < len(value) <= ID_MAX and value not in named:
            named.append(value)
    return named


TIMELINE = "identity.timeline"


def _names_a_profile(payload: dict[str, Any]) -> bool:
    """Whether the event concerns a customer (an anonymous cart's events do not, yet)."""
    return bool(_profiles_named(payload))


@on(*TIMELINE_TYPES, name=TIMELINE, when=_names_a_profile)
def domain_event(session: Session, event: Event) -> None:
    """Put a domain event on the timeline of each profile it names (``profile_id``, and any
    ``profile_ids``); count its channel; count orders and refunds of the first profile."""
    domain_events(session, [event])


@on_many(TIMELINE)
def domain_events(session: Session, events: list[Event]) -> None:
    """``domain_event`` for several events: the profiles, erasures and timeline rows of all
    of them in one statement each, their channel counts in one upsert; orders and refunds
    one by one, in event order."""
    named = {event.seq: _profiles_named(event.payload) for event in events}
    everyone = {profile_id for ids in named.values() for profile_id in ids}
    if not everyone:
        return
    cluster_of = dict(
        session.execute(
            select(Profile.id, Profile.cluster_id).where(Profile.id.in_(sorted(everyone)))
        ).all()
    )
    # An erased person's late domain events (delivered after the erasure) record nothing.
    erased = set(
        session.scalars(
            select(PrivacyRequest.cluster_id).where(
                PrivacyRequest.kind == "erase",
                PrivacyRequest.status == "completed",
                PrivacyRequest.cluster_id.in_(sorted(set(cluster_of.values()))),
            )
        )
    )
    entries: list[dict[str, Any]] = []
    for event in events:
        payload = event.payload
        at = _time(payload.get("occurred_at")) or event.created_at
        channel = _channel(payload.get("channel"))
        for profile_id in named[event.seq]:
            if profile_id not in cluster_of:
                log.info("timeline_profile_unknown", event_id=event.id, profile_id=profile_id)
                continue
            if cluster_of[profile_id] in erased:
                log.info("timeline_profile_erased", event_id=event.id, profile_id=profile_id)
                continue
            entries.append(
                {
                    "profile_id": profile_id,
                    "event_id": event.id,
                    "event_type": event.type,
                    "occurred_at": at,
                    "channel": channel,
                    "aggregate_type": event.aggregate_type,
                    "aggregate_id": event.aggregate_id,
                    "data": payload,
                    "event": event,
                    "first": profile_id == named[event.seq][0],
                }
            )
    if not entries:
        return
    new = timeline.record_entries(session, entries)
    touched: list[tuple[str, str, datetime]] = []
    for entry in entries:
        event, profile_id, channel = entry["event"], entry["profile_id"], entry["channel"]
        if (event.id, profile_id) not in new:
            continue  # delivered before: everything below happened then
        if channel is not None and event.type.startswith(ACTIVITY_PREFIXES):
            touched.append((profile_id, channel, entry["occurred_at"]))
        if entry["first"]:
            _domain_order(session, event, profile_id, entry["occurred_at"], channel)
    metrics.touch_channels(session, touched)


def _domain_order(
    session: Session, event: Event, profile_id: str, at: datetime, channel: str | None
) -> None:
    payload = event.payload
    if event.type not in (ORDER_PLACED, ORDER_REFUNDED):
        return
    key = metrics.order_key(payload.get("order_id"))
    currency = metrics.currency_code(payload.get("currency"))
    if key is None:
        log.warning("order_event_unreadable", event_id=event.id, reason="order_id")
        return
    if event.type == ORDER_PLACED:
        total = _minor(payload.get("total_minor"))
        if currency is None or total is None:
            log.warning("order_event_unreadable", event_id=event.id, reason="currency or total")
            return
        placed = _time(payload.get("placed_at")) or at
        report = metrics.OrderReport(
            profile_id, key, metrics.DOMAIN, currency, total, placed, channel, event.id
        )
        metrics.record_order(session, report)
        return
    amount = payload.get("amount_minor")
    minor = _minor(amount)
    if amount is not None and minor is None:
        log.warning("order_event_unreadable", event_id=event.id, reason="amount_minor")
        return
    metrics.record_refund(
        session, key, source=metrics.DOMAIN, amount_minor=minor, currency=currency
    )
