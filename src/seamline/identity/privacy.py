"""Privacy requests: export everything about a customer's cluster, erase it, keep it erased,
and the log of every request (docs/privacy.md).

This module is the entry point other code uses: ``export`` and ``list_requests`` live here,
erasure in erasure.py and the erased-identifier check in suppression.py (re-exported).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from seamline.db.base import Base
from seamline.db.pagination import keyset_page
from seamline.events.models import OutboxEvent
from seamline.identity import consent
from seamline.identity.customer_models import (
    ChannelActivity,
    ConsentChange,
    CustomerOrder,
    PrivacyRequest,
    ProfileMetric,
    ProfilePreference,
    TimelineEntry,
)
from seamline.identity.erasure import (
    ERASE_STEPS,
    PRIVACY_REQUESTS,
    PROFILE_ERASED,
    Erasure,
    ErasureScope,
    Progress,
    chunks,
    erase,
    log_request,
    no_progress,
    on_erase,
)
from seamline.identity.models import (
    Identifier,
    Profile,
    ProfileMerge,
    ProfileTrait,
    TrackedEvent,
)
from seamline.identity.profiles import cluster_members, get_profile
from seamline.identity.suppression import (
    configure,
    erased_request,
    identifier_hash,
    lift_suppression,
    suppressed,
    suppressed_calls,
)
from seamline.kit import clock
from seamline.kit.ids import new_id

__all__ = [
    "ERASE_STEPS",
    "EXPORT_STEPS",
    "PROFILE_ERASED",
    "Erasure",
    "ErasureScope",
    "Exported",
    "configure",
    "erase",
    "erased_request",
    "export",
    "identifier_hash",
    "lift_suppression",
    "list_requests",
    "on_erase",
    "suppressed",
    "suppressed_calls",
]

EXPORT_FORMAT = "seamline.customer-export/1"
# ingest.EVENT_TRACKED (ingestion imports this module, so the name is repeated here).
EVENT_TRACKED = "customer.event_tracked"
_CHUNK = 500

EXPORT_STEPS = (
    "profiles",
    "identifiers",
    "traits",
    "events",
    "consent",
    "merges",
    "timeline",
    "orders",
    "domain events",
    "privacy requests",
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _row(obj: Base, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        column.key: _plain(getattr(obj, column.key))
        for column in obj.__table__.columns
        if column.key not in skip
    }


def _rows(
    session: Session, model: Any, members: Sequence[str], *order: Any
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for chunk in chunks(members):
        stmt = select(model).where(model.profile_id.in_(chunk)).order_by(*order)
        out += [_row(r) for r in session.scalars(stmt)]
    return out


# -- export -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    request_id: str
    document: dict[str, Any]


def export(
    session: Session, profile_id: str, *, by: str | None, progress: Progress | None = None
) -> Exported:
    """Everything stored about the cluster of ``profile_id``, as one JSON document; the request
    is logged (``privacy_requests``, kind ``export``) in the same transaction."""
    step = progress or no_progress
    profile = get_profile(session, profile_id)
    members = cluster_members(session, profile.cluster_id)
    now = clock.now()
    request_id = new_id("prq")
    doc: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "request_id": request_id,
        "exported_at": now.isoformat(),
        "profile_id": profile.id,
        "cluster_id": profile.cluster_id,
        "profile_ids": members,
        "erased": consent.is_erased(session, profile.cluster_id),
    }
    profiles: list[dict[str, Any]] = []
    for chunk in chunks(members):
        stmt = select(Profile).where(Profile.id.in_(chunk)).order_by(Profile.id)
        profiles += [_row(p) for p in session.scalars(stmt)]
    doc["profiles"] = profiles
    step("profiles")
    doc["identifiers"] = _rows(session, Identifier, members, Identifier.kind, Identifier.value)
    step("identifiers")
    doc["traits"] = _rows(session, ProfileTrait, members, ProfileTrait.observed_at, ProfileTrait.id)
    doc["preferences"] = _rows(session, ProfilePreference, members, ProfilePreference.name)
    step("traits")
    doc["events"] = _rows(session, TrackedEvent, members, TrackedEvent.timestamp, TrackedEvent.id)
    doc["channel_activity"] = _rows(session, ChannelActivity, members, ChannelActivity.channel)
    step("events")
    doc["consent"] = {
        "current": [
            c.model_dump(mode="json") for c in consent.current_for_profiles(session, members)
        ],
        "history": _rows(
            session, ConsentChange, members, ConsentChange.recorded_at, ConsentChange.id
        ),
    }
    step("consent")
    merges: dict[str, dict[str, Any]] = {}
    for chunk in chunks(members):
        found = session.scalars(
            select(ProfileMerge).where(
                or_(ProfileMerge.profile_id.in_(chunk), ProfileMerge.into_profile_id.in_(chunk))
            )
        )
        merges.update({m.id: _row(m) for m in found})
    doc["merges"] = [merges[k] for k in sorted(merges)]
    step("merges")
    doc["timeline"] = _rows(
        session, TimelineEntry, members, TimelineEntry.occurred_at, TimelineEntry.id
    )
    step("timeline")
    doc["orders"] = _rows(session, CustomerOrder, members, CustomerOrder.placed_at)
    doc["metrics"] = _rows(session, ProfileMetric, members, ProfileMetric.currency)
    step("orders")
    domain_events: list[dict[str, Any]] = []
    for chunk in chunks(members):
        events_stmt = (
            select(OutboxEvent)
            .where(
                OutboxEvent.aggregate_type == "profile",
                OutboxEvent.aggregate_id.in_(chunk),
                # Each restates a tracked event, which is exported whole above.
                OutboxEvent.type != EVENT_TRACKED,
            )
            .order_by(OutboxEvent.seq)
        )
        domain_events += [_row(e, skip=("seq",)) for e in session.scalars(events_stmt)]
    doc["domain_events"] = sorted(domain_events, key=lambda e: (e["created_at"], e["id"]))
    step("domain events")
    doc["privacy_requests"] = [
        _row(r)
        for r in session.scalars(
            select(PrivacyRequest)
            .where(
                or_(
                    PrivacyRequest.cluster_id == profile.cluster_id,
                    PrivacyRequest.profile_id.in_(members[:_CHUNK]),
                )
            )
            .order_by(PrivacyRequest.requested_at, PrivacyRequest.id)
        )
    ]
    step("privacy requests")
    summary = {
        name: len(doc[name])
        for name in (
            "profiles",
            "identifiers",
            "traits",
            "preferences",
            "events",
            "channel_activity",
            "merges",
            "timeline",
            "orders",
            "metrics",
            "domain_events",
        )
    }
    summary["consent_changes"] = len(doc["consent"]["history"])
    log_request(
        session,
        request_id,
        "export",
        profile,
        members,
        by=by,
        reason=None,
        requested_at=now,
        summary=summary,
    )
    PRIVACY_REQUESTS.labels(kind="export").inc()
    return Exported(request_id, doc)


# -- the request log ----------------------------------------------------------------------------


def list_requests(
    session: Session,
    *,
    profile_id: str | None = None,
    kind: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[PrivacyRequest], str | None]:
    """The privacy request log, newest first; ``profile_id`` finds the requests about its
    cluster (and those that named it)."""
    stmt = select(PrivacyRequest)
    if profile_id is not None:
        profile = get_profile(session, profile_id)
        stmt = stmt.where(
            or_(
                PrivacyRequest.cluster_id == profile.cluster_id,
                PrivacyRequest.profile_id == profile.id,
            )
        )
    if kind is not None:
        stmt = stmt.where(PrivacyRequest.kind == kind)
    return keyset_page(session, stmt, PrivacyRequest.id, after=cursor, limit=limit, descending=True)
