"""Purchase metrics and channel activity, kept up to date incrementally from events.

Each order is one ``customer_orders`` row (``order_key`` unique), on the profile it was
reported for; ``profile_metrics`` (per profile and currency) and ``channel_activity`` (per
profile and channel) are running aggregates updated with atomic upserts, so concurrent
workers never lose an increment. Reads sum the cluster's profiles; merges and unmerges
rewrite nothing. The rules are in docs/customer-360.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache
from typing import Any

import structlog
from babel.numbers import get_currency_precision, list_currencies
from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    bindparam,
    case,
    delete,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from seamline.db.dialect import insert_ignoring_conflict
from seamline.db.rowset import insert_rows
from seamline.identity.customer_models import ChannelActivity, CustomerOrder, ProfileMetric

log = structlog.get_logger("seamline.identity.metrics")

# Where an order was reported from. The order domain computes totals on the server, so it
# is authoritative: its report replaces a tracked one (a client-sent total is never trusted).
TRACKED, DOMAIN = "segment", "orders"
MAX_MINOR = 2**63 - 1
ORDER_KEY_MAX = 255


# -- money from Segment's decimal major units -------------------------------------------------


@cache
def _currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def currency_code(value: object) -> str | None:
    """An ISO 4217 code Babel knows (case-insensitive), or None."""
    if not isinstance(value, str):
        return None
    code = value.strip().upper()
    return code if code in _currencies() else None


def to_minor(amount: object, currency: str) -> int | None:
    """Segment's decimal amount in major units (``29.99``, ``"29.99"``) as integer minor units
    of ``currency`` (exponent from Babel: JPY 0, EUR 2, BHD 3), rounded half up.

    None for anything that is not a finite, non-negative number that fits a bigint."""
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        return None
    try:
        # str() of a float is its shortest round-trip text: 29.99 stays 29.99, not 29.98999….
        value = Decimal(str(amount).strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0 or value > Decimal(MAX_MINOR):
        return None
    scaled = value.scaleb(get_currency_precision(currency))
    minor = int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return minor if minor <= MAX_MINOR else None


def order_key(value: object) -> str | None:
    """The order id both sources report (Segment ``order_id``, the domain's ``order_id``)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    key = str(value).strip()
    return key if 0 < len(key) <= ORDER_KEY_MAX and "\x00" not in key else None


# -- upserts that work on both backends --------------------------------------------------------


def _insert(session: Session, model: Any) -> Any:
    module: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return module.insert(model.__table__)


def _earliest(column: Any, new: Any) -> Any:
    return case((or_(column.is_(None), new < column), new), else_=column)


def _latest(column: Any, new: Any) -> Any:
    return case((or_(column.is_(None), new > column), new), else_=column)


def touch_channel(session: Session, profile_id: str, channel: str, seen_at: datetime) -> None:
    """Count one event of the profile on ``channel`` and widen its first/last seen."""
    touch_channels(session, [(profile_id, channel, seen_at)])


def touch_channels(session: Session, seen: Sequence[tuple[str, str, datetime]]) -> None:
    """``touch_channel`` for several (profile, channel, time) at once: one upsert per
    ``TOUCH_CHUNK`` distinct (profile, channel), each adding its count and widening its first
    and last seen — what touching them one by one leaves."""
    merged: dict[tuple[str, str], list[Any]] = {}
    for profile_id, channel, at in seen:
        found = merged.get((profile_id, channel))
        if found is None:
            merged[(profile_id, channel)] = [at, at, 1]
        else:
            found[0], found[1], found[2] = min(found[0], at), max(found[1], at), found[2] + 1
    rows = [
        {
            "profile_id": profile_id,
            "channel": channel,
            "first_seen": first,
            "last_seen": last,
            "events_count": count,
        }
        # Sorted: concurrent workers upserting the same rows take their locks in one order.
        for (profile_id, channel), (first, last, count) in sorted(merged.items())
    ]
    table = ChannelActivity.__table__
    for start in range(0, len(rows), TOUCH_CHUNK):
        stmt = insert_rows(session, ChannelActivity, rows[start : start + TOUCH_CHUNK])
        stmt = stmt.on_conflict_do_update(
            index_elements=["profile_id", "channel"],
            set_={
                "first_seen": _earliest(table.c.first_seen, stmt.excluded.first_seen),
                "last_seen": _latest(table.c.last_seen, stmt.excluded.last_seen),
                "events_count": table.c.events_count + stmt.excluded.events_count,
            },
        )
        session.execute(stmt)


# (profile, channel) rows per upsert statement (5 parameters each).
TOUCH_CHUNK = 500


def _add_order(session: Session, row: dict[str, Any]) -> None:
    session.execute(
        _add_order_statement(session.get_bind().dialect.name),
        {
            "profile_id": row["profile_id"],
            "currency": row["currency"],
            "total_minor": row["total_minor"],
            "refunded_minor": row["refunded_minor"],
            "placed_at": row["placed_at"],
        },
    )


@cache
def _add_order_statement(dialect: str) -> Any:
    """The upsert that counts an order in its profile's metrics, built once per dialect."""
    table = ProfileMetric.__table__
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).values(
        profile_id=bindparam("profile_id", type_=String),
        currency=bindparam("currency", type_=String),
        orders_count=1,
        total_spent_minor=bindparam("total_minor", type_=BigInteger),
        refunded_minor=bindparam("refunded_minor", type_=BigInteger),
        first_purchase_at=bindparam("placed_at", type_=table.c.first_purchase_at.type),
        last_purchase_at=bindparam("placed_at", type_=table.c.last_purchase_at.type),
    )
    return stmt.on_conflict_do_update(
        index_elements=["profile_id", "currency"],
        set_={
            "orders_count": table.c.orders_count + 1,
            "total_spent_minor": table.c.total_spent_minor + stmt.excluded.total_spent_minor,
            "refunded_minor": table.c.refunded_minor + stmt.excluded.refunded_minor,
            "first_purchase_at": _earliest(
                table.c.first_purchase_at, stmt.excluded.first_purchase_at
            ),
            "last_purchase_at": _latest(table.c.last_purchase_at, stmt.excluded.last_purchase_at),
        },
    )


def _remove_order(session: Session, row: Any) -> None:
    """Take an order out of its profile's metrics (only when the order domain re-reports an
    order first known from tracking). First/last purchase are re-read from the orders left."""
    where = (ProfileMetric.profile_id == row.profile_id, ProfileMetric.currency == row.currency)
    session.execute(
        update(ProfileMetric)
        .where(*where)
        .values(
            orders_count=ProfileMetric.orders_count - 1,
            total_spent_minor=ProfileMetric.total_spent_minor - row.total_minor,
            refunded_minor=ProfileMetric.refunded_minor - row.refunded_minor,
        )
    )
    first, last = session.execute(
        select(func.min(CustomerOrder.placed_at), func.max(CustomerOrder.placed_at)).where(
            CustomerOrder.profile_id == row.profile_id,
            CustomerOrder.currency == row.currency,
            CustomerOrder.order_key != row.order_key,
        )
    ).one()
    session.execute(
        update(ProfileMetric).where(*where).values(first_purchase_at=first, last_purchase_at=last)
    )


def _locked_order(session: Session, key: str) -> Any:
    stmt = select(CustomerOrder.__table__).where(CustomerOrder.order_key == key)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt).first()


@dataclass(frozen=True)
class OrderReport:
    """One source's report of a purchase."""

    profile_id: str
    order_key: str
    source: str
    currency: str
    total_minor: int
    placed_at: datetime
    channel: str | None
    event_id: str | None


def record_order(session: Session, report: OrderReport) -> bool:
    """Count an order once, whichever sources report it; returns whether metrics changed.

    The first report is counted. A later report of the same ``order_key`` is ignored, except
    that the order domain's report replaces a tracked one (figures, profile and refunds):
    the domain computes totals on the server and reports its own refunds.
    """
    row = {
        "profile_id": report.profile_id,
        "order_key": report.order_key,
        "source": report.source,
        "channel": report.channel,
        "currency": report.currency,
        "total_minor": report.total_minor,
        "refunded_minor": 0,
        "placed_at": report.placed_at,
        "event_id": report.event_id,
    }
    if insert_ignoring_conflict(session, CustomerOrder, row, on=("order_key",)):
        _add_order(session, row)
        return True
    held = _locked_order(session, report.order_key)
    if held is None or held.source == DOMAIN or report.source != DOMAIN:
        return False  # already counted; only the domain overrides tracking
    _remove_order(session, held)
    session.execute(delete(CustomerOrder).where(CustomerOrder.order_key == report.order_key))
    session.execute(_insert(session, CustomerOrder).values(**row))
    _add_order(session, row)
    return True


def record_refund(
    session: Session,
    key: str,
    *,
    source: str,
    amount_minor: int | None,
    currency: str | None,
) -> int:
    """Refund part (or, without an amount, the rest) of a known order; returns the amount
    counted. Refunds count only from the source that owns the order (so one refund reported
    by both sources counts once), never beyond the order's total, and in its currency."""
    held = _locked_order(session, key)
    if held is None or held.source != source:
        return 0
    if currency is not None and currency != held.currency:
        log.warning("refund_currency_mismatch", order_key=key, order=held.currency, got=currency)
        return 0
    remaining = held.total_minor - held.refunded_minor
    amount: int = remaining if amount_minor is None else min(amount_minor, remaining)
    if amount <= 0:
        return 0
    session.execute(
        update(CustomerOrder)
        .where(CustomerOrder.order_key == key)
        .values(refunded_minor=CustomerOrder.refunded_minor + amount)
    )
    session.execute(
        update(ProfileMetric)
        .where(ProfileMetric.profile_id == held.profile_id, ProfileMetric.currency == held.currency)
        .values(refunded_minor=ProfileMetric.refunded_minor + amount)
    )
    return amount


# -- the cluster read -------------------------------------------------------------------------


def _average(total: int, count: int) -> int | None:
    """total / count in minor units, rounded half up (integers only, no floats)."""
    return (2 * total + count) // (2 * count) if count else None


_MEMBERS: BindParameter[Any] = bindparam("members", expanding=True)
_M, _C = ProfileMetric.__table__.c, ChannelActivity.__table__.c
_PURCHASES = (
    select(
        literal(0, Integer).label("part"),
        _M.currency.label("key"),
        func.sum(_M.orders_count).label("orders"),
        func.sum(_M.total_spent_minor).label("total"),
        func.sum(_M.refunded_minor).label("refunded"),
        func.min(_M.first_purchase_at).label("first"),
        func.max(_M.last_purchase_at).label("last"),
    )
    .where(_M.profile_id.in_(_MEMBERS))
    .group_by(_M.currency)
    .having(func.sum(_M.orders_count) > 0)
)
_CHANNELS = (
    select(
        literal(1, Integer),
        _C.channel,
        literal(0, BigInteger),
        literal(0, BigInteger),
        literal(0, BigInteger),
        null(),
        func.max(_C.last_seen),
    )
    .where(_C.profile_id.in_(_MEMBERS))
    .group_by(_C.channel)
)
# Purchases per currency and last seen per channel in one statement (one round trip): rows of
# part 0 are purchases, part 1 channels; result types come from the first arm.
_METRICS_UNION = union_all(_PURCHASES, _CHANNELS).subquery()
_METRICS = select(_METRICS_UNION).order_by(_METRICS_UNION.c.part, _METRICS_UNION.c.key)


def cluster_metrics(session: Session, members: Sequence[str]) -> dict[str, Any]:
    """Purchases per currency and channels, summed over the cluster's profiles.

    customer360.SQL_360 computes the same figures for the 360 on PostgreSQL: change both."""
    rows = session.connection().execute(_METRICS, {"members": list(members)}).all()
    purchases = [row[1:] for row in rows if row.part == 0]
    channels = [(row.key, row.last) for row in rows if row.part == 1]
    return {
        "purchases": [
            {
                "currency": currency,
                "orders_count": int(count),
                "total_spent": int(total),
                "refunded": int(refunded),
                "lifetime_value": int(total) - int(refunded),
                "average_order_value": _average(int(total), int(count)),
                "first_purchase_at": first,
                "last_purchase_at": last,
            }
            for currency, count, total, refunded, first, last in purchases
        ],
        "channels_used": [channel for channel, _ in channels],
        "channels_count": len(channels),
        "last_seen": dict(channels),
    }
