"""The customer's timeline: tracked calls and domain events, merged in one cursor order.

Two tables feed it and neither is copied into the other: ``tracked_events`` (every Segment
call, on the profile it arrived on) and ``timeline_entries`` (domain events about a customer,
written by the handler in handlers.py). A page is read from each with the same keyset —
newest first by (event time, id) — and the two are merged; see docs/customer-360.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import Integer, Select, and_, bindparam, or_, select, union_all
from sqlalchemy.orm import Session

from seamline.db.rowset import insert_rows
from seamline.identity.customer_models import TimelineEntry
from seamline.identity.models import TrackedEvent
from seamline.kit.errors import BadRequest
from seamline.kit.ids import new_id
from seamline.kit.money import Money
from seamline.kit.pagination import MAX_LIMIT

LATEST = 20
CALL_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
TRACKED, DOMAIN = "tracked", "domain"
Kind = Literal["tracked", "domain"]
# Above this many profiles a cluster is read with one IN list instead of one ordered arm per
# profile (a UNION ALL of that size costs more to plan than it saves).
MAX_ARMS = 32
SUMMARY_MAX = 255

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


# -- cursor -------------------------------------------------------------------------------------


def encode_cursor(at: datetime, row_id: str) -> str:
    """``<event time in µs since the epoch>_<id>``: exact integers, no float rounding."""
    return f"{(at - _EPOCH) // _MICRO}_{row_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    micros, _, row_id = cursor.partition("_")
    try:
        at = _EPOCH + timedelta(microseconds=int(micros))
    except (ValueError, OverflowError):
        raise BadRequest("the cursor is not one this API gave", code="invalid_cursor") from None
    if not row_id:
        raise BadRequest("the cursor is not one this API gave", code="invalid_cursor")
    return at, row_id


# -- reading ------------------------------------------------------------------------------------

# Table columns, not ORM attributes: plain Core statements cost less to execute.
_TRACKED = TrackedEvent.__table__.c
_DOMAIN = TimelineEntry.__table__.c


class _Source:
    """One table the timeline reads, with the columns that play each part."""

    def __init__(self, columns: tuple[Any, ...], at: Any) -> None:
        self.columns, self.at = columns, at
        table = columns[0].table.c
        self.profile, self.row_id, self.type, self.channel = (
            table.profile_id,
            table.id,
            table.type,
            table.channel,
        )


_SOURCES = {
    TRACKED: _Source(
        (
            _TRACKED.id,
            _TRACKED.profile_id,
            _TRACKED.message_id,
            _TRACKED.type,
            _TRACKED.name,
            _TRACKED.category,
            _TRACKED.channel,
            _TRACKED.timestamp,
            _TRACKED.received_at,
            _TRACKED.properties,
            _TRACKED.traits,
        ),
        _TRACKED.timestamp,
    ),
    DOMAIN: _Source(
        (
            _DOMAIN.id,
            _DOMAIN.profile_id,
            _DOMAIN.event_id,
            _DOMAIN.type,
            _DOMAIN.channel,
            _DOMAIN.occurred_at,
            _DOMAIN.aggregate_type,
            _DOMAIN.aggregate_id,
            _DOMAIN.summary,
            _DOMAIN.data,
        ),
        _DOMAIN.occurred_at,
    ),
}


@lru_cache(maxsize=512)
def _statement(kind: str, arms: int, keyset: bool, by_type: bool, by_channel: bool) -> Select[Any]:
    """The page query of one table, built once per shape (values are bound parameters).

    ``arms`` > 0: one ordered, limited arm per profile (``m0``, ``m1`` …) merged by UNION ALL —
    each arm is a short range of the (profile_id, time) index, so a page costs the same however
    long the histories are (an IN list would read and sort every row of the cluster).
    ``arms`` = 0: one IN list (``members``), for a single profile or a very large cluster."""
    source = _SOURCES[kind]
    conditions: list[Any] = []
    if keyset:
        stamp = bindparam("stamp", type_=source.at.type)
        last_id = bindparam("last_id", type_=source.row_id.type)
        conditions.append(or_(source.at < stamp, and_(source.at == stamp, source.row_id < last_id)))
    if by_type:
        conditions.append(source.type == bindparam("type"))
    if by_channel:
        conditions.append(source.channel == bindparam("channel"))
    order = (source.at.desc(), source.row_id.desc())
    limit = bindparam("limit", type_=Integer)

    def arm(where: Any) -> Select[Any]:
        return select(*source.columns).where(where, *conditions).order_by(*order).limit(limit)

    if arms == 0:
        return arm(source.profile.in_(bindparam("members", expanding=True)))
    merged = union_all(
        *(select(arm(source.profile == bindparam(f"m{i}")).subquery()) for i in range(arms))
    ).subquery()
    return (
        select(merged)
        .order_by(merged.c[source.at.key].desc(), merged.c[source.row_id.key].desc())
        .limit(limit)
    )


def _newest_first(
    session: Session,
    kind: str,
    members: Sequence[str],
    keyset: tuple[datetime, str] | None,
    type_: str | None,
    channel: str | None,
    limit: int,
) -> list[Any]:
    """Rows of ``members`` from one table, newest first by (time, id), ``limit`` of them."""
    arms = len(members) if 1 < len(members) <= MAX_ARMS else 0
    stmt = _statement(kind, arms, keyset is not None, type_ is not None, channel is not None)
    params: dict[str, Any] = {"limit": limit}
    if arms:
        params.update({f"m{i}": member for i, member in enumerate(members)})
    else:
        params["members"] = list(members)
    if keyset is not None:
        params["stamp"], params["last_id"] = keyset
    if type_ is not None:
        params["type"] = type_
    if channel is not None:
        params["channel"] = channel
    return list(session.connection().execute(stmt, params).all())


def _tracked_item(row: Any) -> dict[str, Any]:
    return {
        "kind": TRACKED,
        "id": row.id,
        "profile_id": row.profile_id,
        "type": row.type,
        "name": row.name,
        "category": row.category,
        "channel": row.channel,
        "timestamp": row.timestamp,
        "summary": tracked_summary(row.type, row.name),
        "message_id": row.message_id,
        "received_at": row.received_at,
        "properties": row.properties,
        "traits": row.traits,
        "event_id": None,
        "aggregate_type": None,
        "aggregate_id": None,
        "data": None,
    }


def _domain_item(row: Any) -> dict[str, Any]:
    return {
        "kind": DOMAIN,
        "id": row.id,
        "profile_id": row.profile_id,
        "type": row.type,
        "name": None,
        "category": None,
        "channel": row.channel,
        "timestamp": row.occurred_at,
        "summary": row.summary,
        "message_id": None,
        "received_at": None,
        "properties": {},
        "traits": {},
        "event_id": row.event_id,
        "aggregate_type": row.aggregate_type,
        "aggregate_id": row.aggregate_id,
        "data": row.data,
    }


def page(
    session: Session,
    members: Sequence[str],
    *,
    cursor: str | None = None,
    limit: int = LATEST,
    type_: str | None = None,
    kind: Kind | None = None,
    channel: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The cluster's timeline newest first by (event time, id), tracked calls and domain
    events merged; ``type_`` is a call type (``track`` …) or a domain event type
    (``order.placed``). At most two indexed queries, whatever the histories' length."""
    limit = max(1, min(limit, MAX_LIMIT))
    keyset = decode_cursor(cursor) if cursor is not None else None
    want_tracked = kind != DOMAIN and (type_ is None or type_ in CALL_TYPES)
    want_domain = kind != TRACKED and (type_ is None or type_ not in CALL_TYPES)
    items: list[dict[str, Any]] = []
    if want_tracked and members:
        rows = _newest_first(session, TRACKED, members, keyset, type_, channel, limit + 1)
        items += [_tracked_item(r) for r in rows]
    if want_domain and members:
        rows = _newest_first(session, DOMAIN, members, keyset, type_, channel, limit + 1)
        items += [_domain_item(r) for r in rows]
    items.sort(key=lambda item: (item["timestamp"], item["id"]), reverse=True)
    more = len(items) > limit
    items = items[:limit]
    next_cursor = encode_cursor(items[-1]["timestamp"], items[-1]["id"]) if more else None
    return items, next_cursor


# -- writing ------------------------------------------------------------------------------------


def record_entries(session: Session, entries: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """Put domain events on profiles' timelines, each (event, profile) once — the unique
    index decides, so a redelivery records nothing. ``entries``: ``profile_id``,
    ``event_id``, ``event_type``, ``occurred_at``, ``channel``, ``aggregate_type``,
    ``aggregate_id``, ``data``. Returns the (event id, profile id) of the entries that were
    new. One insert per ``ENTRY_CHUNK`` entries."""
    new: set[tuple[str, str]] = set()
    rows = [
        {
            "profile_id": e["profile_id"],
            "id": new_id("tle"),
            "event_id": e["event_id"],
            "type": e["event_type"][:80],
            "occurred_at": e["occurred_at"],
            "channel": e["channel"],
            "aggregate_type": e["aggregate_type"][:40],
            "aggregate_id": e["aggregate_id"][:80],
            "summary": summarize(e["event_type"], e["data"]),
            "data": e["data"],
        }
        for e in entries
    ]
    table = TimelineEntry.__table__
    for start in range(0, len(rows), ENTRY_CHUNK):
        stmt = (
            insert_rows(session, TimelineEntry, rows[start : start + ENTRY_CHUNK])
            .on_conflict_do_nothing(index_elements=["event_id", "profile_id"])
            .returning(table.c.event_id, table.c.profile_id)
        )
        new.update((event_id, profile_id) for event_id, profile_id in session.execute(stmt))
    return new


# Timeline rows per insert statement (10 parameters each).
ENTRY_CHUNK = 200


# -- summaries: one short line a person reads in the console ------------------------------------

_NOUNS = {
    "cart": "Cart",
    "saved_list": "Saved list",
    "order": "Order",
    "return": "Return",
    "payment": "Payment",
    "loyalty": "Loyalty",
    "conversation": "Conversation",
    "message": "Message",
    "consent": "Consent",
    "profile": "Profile",
}
# The reference shown after the noun ("Order ord_123 shipped"), by payload field.
_REFERENCES = ("order_id", "cart_id", "return_id", "payment_id", "conversation_id", "message_id")
# Specific wording; {money:field} is an amount in minor units with the payload's currency.
_TEMPLATES = {
    "order.placed": "Order {order_id} placed, {money:total_minor}",
    "order.refunded": "Refund of {money:amount_minor} on order {order_id}",
    "return.requested": "Return requested for order {order_id}",
    "saved_list.created": "Saved list “{name}” started",
    "saved_list.item_moved_to_cart": "Moved {moved} from a saved list to cart {cart_id}",
    "payment.captured": "Payment of {money:amount_minor} captured",
    "payment.refunded": "Payment refund of {money:amount_minor}",
    "loyalty.points_earned": "Earned {points} points",
    "loyalty.points_redeemed": "Redeemed {points} points",
    "loyalty.tier_changed": "Loyalty tier is now {tier}",
    "conversation.opened": "Conversation opened on {channel}",
    "message.sent": "Message sent by {channel}",
    "message.received": "Message received on {channel}",
    "consent.changed": "Consent {state} for {purpose} {channel}",
    "profile.preferences_changed": "Preferences changed: {changed_names}",
}
_FIELD = re.compile(r"\{(money:)?([a-z_]+)\}")


def _text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text[:80] if text and text.isprintable() else None


def _money(payload: dict[str, Any], field: str) -> str | None:
    amount, currency = payload.get(field), payload.get("currency")
    if isinstance(amount, bool) or not isinstance(amount, int) or not isinstance(currency, str):
        return None
    try:
        return Money(amount, currency).format()
    except (ValueError, TypeError, LookupError):
        return None


def _fill(template: str, payload: dict[str, Any]) -> str | None:
    values = dict(payload)
    changed = payload.get("changed")
    if isinstance(changed, dict):
        values["changed_names"] = ", ".join(sorted(str(k) for k in changed)) or "none"
    missing = False

    def field(match: re.Match[str]) -> str:
        nonlocal missing
        money, name = match.group(1), match.group(2)
        text = _money(payload, name) if money else _text(values.get(name))
        if text is None:
            missing = True
            return ""
        return text

    filled = _FIELD.sub(field, template)
    return None if missing else filled


def summarize(event_type: str, payload: dict[str, Any]) -> str:
    """A short human line for a domain event: a specific wording when the payload has what it
    needs, else the event type in words with the object's reference ("Order ord_1 shipped")."""
    template = _TEMPLATES.get(event_type)
    if template is not None:
        filled = _fill(template, payload)
        if filled is not None:
            return filled[:SUMMARY_MAX]
    prefix, _, rest = event_type.partition(".")
    noun = _NOUNS.get(prefix, prefix.replace("_", " ").capitalize())
    words = [noun]
    reference = next((r for f in _REFERENCES if (r := _text(payload.get(f)))), None)
    if reference:
        words.append(reference)
    words.append(rest.replace("_", " ").replace(".", " ") or "updated")
    return " ".join(words)[:SUMMARY_MAX]


def tracked_summary(call_type: str, name: str | None) -> str:
    """The line for a tracked call: the event's name, or what the call did.

    customer360.SQL_360 writes the same line in SQL for the 360 on PostgreSQL: change both."""
    if call_type == "track":
        return name or "Tracked event"
    if call_type in ("page", "screen"):
        return f"Viewed {call_type} {name}" if name else f"Viewed a {call_type}"
    return {
        "identify": "Identified",
        "group": "Joined a group",
        "alias": "Linked a previous id",
    }.get(call_type, call_type)
