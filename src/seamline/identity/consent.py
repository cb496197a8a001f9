"""Consent per profile, channel and purpose: recording changes, the cluster's current state,
and the one question other domains ask — may we send this? (docs/privacy.md)

A change is stored on a *profile* (``consent_changes``, append-only) and the profile's latest
change per (channel, purpose) is kept in ``consents``. A cluster's consent is read across its
profiles: the latest change by ``effective_at``, then by ``recorded_at`` (strictly increasing
within a cluster), then by id — so merges and unmerges never rewrite a consent row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, or_, select
from sqlalchemy.orm import Session

from seamline.db.dialect import lock_for_transaction
from seamline.events.outbox import emit
from seamline.identity import normalize, resolution, suppression
from seamline.identity.consent_schemas import (
    ChangeResult,
    ConsentChangeIn,
    ConsentChangeOut,
    ConsentOut,
    IdentifierIn,
    Outcome,
)
from seamline.identity.customer_models import (
    CONSENT_CHANNELS,
    CONSENT_PURPOSES,
    Consent,
    ConsentChange,
    PrivacyRequest,
)
from seamline.identity.models import Profile
from seamline.identity.normalize import IdentifierValue
from seamline.identity.profiles import cluster_members, get_profile
from seamline.kit import clock
from seamline.kit.errors import BadRequest, Conflict, FieldError, Unprocessable
from seamline.kit.ids import new_id
from seamline.kit.pagination import MAX_LIMIT

CONSENT_CHANGED = "consent.changed"
MARKETING, TRANSACTIONAL = "marketing", "transactional"
GRANTED, DENIED = "granted", "denied"
# How far in the future an ``effective_at`` may be (clock skew between client and server).
FUTURE_SKEW = timedelta(minutes=5)
HISTORY_PAGE = 20
_CHUNK = 500
_TICK = timedelta(microseconds=1)


def lock_cluster(session: Session, cluster_id: str) -> None:
    """Serialise consent writes (and erasure) of one cluster until the transaction ends."""
    key = f"consent:{cluster_id}"
    if not session.info.get(key):
        lock_for_transaction(session, key)
        session.info[key] = True


def is_erased(session: Session, cluster_id: str) -> bool:
    """Whether the cluster was erased (its profiles keep their cluster id: no identifier is
    left that could re-resolve them)."""
    return bool(
        session.scalar(
            select(
                exists().where(
                    PrivacyRequest.kind == "erase",
                    PrivacyRequest.status == "completed",
                    PrivacyRequest.cluster_id == cluster_id,
                )
            )
        )
    )


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _rank(row: Consent | ConsentChange) -> tuple[datetime, datetime, str]:
    change_id = row.change_id if isinstance(row, Consent) else row.id
    return (row.effective_at, row.recorded_at, change_id)


def _current_rows(session: Session, profile_ids: Sequence[str]) -> dict[tuple[str, str], Consent]:
    best: dict[tuple[str, str], Consent] = {}
    for chunk in _chunks(sorted(set(profile_ids))):
        for row in session.scalars(select(Consent).where(Consent.profile_id.in_(chunk))):
            key = (row.channel, row.purpose)
            if key not in best or _rank(row) > _rank(best[key]):
                best[key] = row
    return best


_CONSENT = Consent.__table__.c
# Table columns, not ORM entities: the 360 reads these rows on every call.
_CURRENT_COLUMNS = (
    _CONSENT.channel,
    _CONSENT.purpose,
    _CONSENT.state,
    _CONSENT.level,
    _CONSENT.source,
    _CONSENT.effective_at,
    _CONSENT.recorded_at,
    _CONSENT.profile_id,
    _CONSENT.change_id,
)
_CURRENT = select(*_CURRENT_COLUMNS).where(
    _CONSENT.profile_id.in_(bindparam("members", expanding=True))
)
_CHANNEL_ORDER = {c: i for i, c in enumerate(CONSENT_CHANNELS)}


def current_for_profiles(session: Session, profile_ids: Sequence[str]) -> list[ConsentOut]:
    """The current consent of a cluster (pass all its profile ids), one entry per channel and
    purpose that has a record, ordered by channel and purpose. Used by the customer 360.

    Same choice as ``_current_rows`` (latest by effective time, recorded time, change id), on
    plain rows: no ORM entity is loaded."""
    best: dict[tuple[str, str], Any] = {}
    connection = session.connection()
    for chunk in _chunks(sorted(set(profile_ids))):
        for row in connection.execute(_CURRENT, {"members": list(chunk)}):
            key = (row.channel, row.purpose)
            held = best.get(key)
            if held is None or (row.effective_at, row.recorded_at, row.change_id) > (
                held.effective_at,
                held.recorded_at,
                held.change_id,
            ):
                best[key] = row
    return [
        ConsentOut.model_validate(best[key]._asdict())
        for key in sorted(best, key=lambda k: (_CHANNEL_ORDER.get(k[0], 99), k[1]))
    ]


def allows(
    session: Session,
    profile_id: str,
    channel: str,
    purpose: str,
    *,
    require_confirmed: bool = False,
) -> bool:
    """May a message of ``purpose`` be sent to the person of ``profile_id`` on ``channel``?

    - ``marketing``: only with a current ``granted`` record (``confirmed`` too when
      ``require_confirmed``, e.g. double opt-in markets).
    - ``transactional`` (order confirmations, pick-up codes): allowed unless the current
      record is ``denied`` — their basis is the contract, not consent.
    - An erased cluster allows nothing. An unknown profile is a 404 ``profile_not_found``.
    """
    if channel not in CONSENT_CHANNELS or purpose not in CONSENT_PURPOSES:
        raise ValueError(f"unknown consent channel or purpose: {channel!r}, {purpose!r}")
    profile = get_profile(session, profile_id)
    if is_erased(session, profile.cluster_id):
        return False
    members = cluster_members(session, profile.cluster_id)
    row = _current_rows(session, members).get((channel, purpose))
    if row is None:
        return purpose == TRANSACTIONAL
    if row.state != GRANTED:
        return False
    return not (require_confirmed and purpose == MARKETING and row.level != "confirmed")


# -- recording ----------------------------------------------------------------------------------


@dataclass
class Recorded:
    profile_id: str
    cluster_id: str
    members: list[str]
    results: list[ChangeResult] = field(default_factory=list)
    created_profile: bool = False
    suppression_lifted: bool = False

    def consents(self, session: Session) -> list[ConsentOut]:
        return current_for_profiles(session, self.members)


def record_changes(
    session: Session,
    profile_id: str,
    changes: Sequence[ConsentChangeIn],
    *,
    by: str | None,
    extra_evidence: dict[str, object] | None = None,
) -> Recorded:
    """Append ``changes`` (in order) to the history of ``profile_id`` and update the current
    state; emit ``consent.changed`` for each change of the cluster's (state, level)."""
    profile = get_profile(session, profile_id)
    lock_cluster(session, profile.cluster_id)
    session.refresh(profile)  # a merge may have moved it while we waited for the lock
    if is_erased(session, profile.cluster_id):
        raise Conflict(
            "this customer was erased; record consent through POST /api/v1/consent with an "
            "identifier the person gives again",
            code="profile_erased",
        )
    members = cluster_members(session, profile.cluster_id)
    now = clock.now()
    for index, change in enumerate(changes):
        if change.effective_at is not None and change.effective_at > now + FUTURE_SKEW:
            raise Unprocessable(
                "a change cannot take effect in the future",
                errors=[
                    FieldError(
                        f"body.changes.{index}.effective_at",
                        "more than 5 minutes in the future",
                        "in_future",
                    )
                ],
            )
    last = session.scalar(
        select(func.max(ConsentChange.recorded_at)).where(ConsentChange.profile_id.in_(members))
    )
    # What the cluster holds per (channel, purpose): (rank, state, level).
    cluster_now = {
        key: (_rank(r), r.state, r.level) for key, r in _current_rows(session, members).items()
    }
    own = {
        (r.channel, r.purpose): r
        for r in session.scalars(select(Consent).where(Consent.profile_id == profile.id))
    }
    done = Recorded(profile.id, profile.cluster_id, members)
    for change in changes:
        recorded_at = now if last is None or now > last else last + _TICK
        last = recorded_at
        evidence = dict(change.evidence)
        if extra_evidence:
            evidence.update(extra_evidence)
        effective_at = change.effective_at or now
        if effective_at > now:
            # Within the allowed skew, a client's clock ahead of ours must not make its change
            # outrank one recorded after it (an unsubscribe a minute later would lose): the
            # change takes effect now; the time the client claimed is kept as evidence.
            evidence["claimed_effective_at"] = effective_at.isoformat()
            effective_at = now
        row = ConsentChange(
            profile_id=profile.id,
            id=new_id("cns"),
            channel=change.channel,
            purpose=change.purpose,
            state=change.state,
            level=change.level,
            source=change.source,
            effective_at=effective_at,
            recorded_at=recorded_at,
            changed_by=by,
            evidence=evidence,
        )
        session.add(row)
        rank = _rank(row)
        key = (change.channel, change.purpose)
        held = own.get(key)
        if held is None or rank > _rank(held):
            if held is None:
                held = Consent(profile_id=profile.id, channel=row.channel, purpose=row.purpose)
                session.add(held)
                own[key] = held
            held.state, held.level, held.source = row.state, row.level, row.source
            held.effective_at, held.recorded_at = row.effective_at, row.recorded_at
            held.change_id = row.id
        previous = cluster_now.get(key)
        if previous is not None and rank < previous[0]:
            outcome: Outcome = "superseded"
        elif previous is not None and previous[1:] == (row.state, row.level):
            outcome = "reconfirmed"
            cluster_now[key] = (rank, row.state, row.level)
        else:
            outcome = "changed"
            cluster_now[key] = (rank, row.state, row.level)
            emit(
                session,
                CONSENT_CHANGED,
                aggregate_type="profile",
                aggregate_id=profile.id,
                payload={
                    "profile_id": profile.id,
                    "cluster_id": profile.cluster_id,
                    "change_id": row.id,
                    "channel": row.channel,
                    "purpose": row.purpose,
                    "state": row.state,
                    "level": row.level,
                    "previous": None
                    if previous is None
                    else {"state": previous[1], "level": previous[2]},
                    "source": row.source,
                    "effective_at": row.effective_at.isoformat(),
                    "changed_by": by,
                },
            )
        done.results.append(
            ChangeResult(
                change_id=row.id,
                channel=row.channel,
                purpose=row.purpose,
                state=row.state,
                level=row.level,
                outcome=outcome,
            )
        )
    session.flush()
    return done


def identifier_value(identifier: IdentifierIn) -> IdentifierValue:
    """The identifier normalised as the event API does; 422 when it is not a valid one."""
    value: IdentifierValue | None
    if identifier.kind == "email":
        value = normalize.email(identifier.value)
    elif identifier.kind == "phone":
        value = normalize.phone(identifier.value, region=identifier.region)
    elif identifier.kind == "loyalty_card":
        value = normalize.loyalty_card(identifier.value)
    else:
        value = normalize.opaque(normalize.USER_ID, identifier.value)
    if value is None or not value.valid:
        raise Unprocessable(
            f"not a valid {identifier.kind}",
            errors=[
                FieldError(
                    "body.identifier.value",
                    f"not a valid {identifier.kind}"
                    + (" (E.164, or give a region)" if identifier.kind == "phone" else ""),
                    "invalid_identifier",
                )
            ],
        )
    return value


def record_for_identifier(
    session: Session,
    identifier: IdentifierIn,
    changes: Sequence[ConsentChangeIn],
    *,
    by: str | None,
) -> Recorded:
    """Record consent for whoever holds ``identifier``, creating a profile for an unknown one.

    An identifier that was erased stays suppressed (nothing about it is stored, late events
    carrying it are dropped) until the person *grants* consent again: then the suppression
    is lifted for this identifier only and the grant records where it came from.
    """
    value = identifier_value(identifier)
    grants = any(c.state == GRANTED for c in changes)
    erased_by = suppression.erased_request(session, value)
    if erased_by is not None and not grants:
        raise Conflict(
            "this identifier was erased: nothing is stored or sent for it; only a grant of "
            "consent by the person records it again",
            code="identifier_erased",
        )
    found = resolution.find_identifiers(session, [value.key]).get(value.key)
    created = False
    if found is None:
        resolution.lock_graph(session)
        found = resolution.find_identifiers(session, [value.key]).get(value.key)
        if found is None:
            found = resolution.create_identifier(
                session, value, seen_at=clock.now(), channel=None, key_id=by
            )
            created = True
    lifted = False
    extra: dict[str, object] | None = None
    if erased_by is not None:
        suppression.lift_suppression(session, value)
        lifted = True
        extra = {"suppression_lifted": {"erasure_request_id": erased_by}}
    done = record_changes(session, found.profile_id, changes, by=by, extra_evidence=extra)
    done.created_profile = created
    done.suppression_lifted = lifted
    return done


# -- history ------------------------------------------------------------------------------------


def _encode(row: ConsentChange) -> str:
    micros = int((row.recorded_at - datetime(1970, 1, 1, tzinfo=UTC)) / _TICK)
    return f"{micros}_{row.id}"


def _decode(cursor: str) -> tuple[datetime, str]:
    micros, _, change_id = cursor.partition("_")
    try:
        stamp = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
    except (ValueError, OverflowError):
        raise BadRequest("the cursor is not one this API gave", code="invalid_cursor") from None
    if not change_id:
        raise BadRequest("the cursor is not one this API gave", code="invalid_cursor")
    return stamp, change_id


def history(
    session: Session,
    members: Sequence[str],
    *,
    cursor: str | None = None,
    limit: int = HISTORY_PAGE,
    channel: str | None = None,
    purpose: str | None = None,
) -> tuple[list[ConsentChangeOut], str | None]:
    """The cluster's consent changes, newest recorded first, by (recorded_at, id) cursor."""
    limit = max(1, min(limit, MAX_LIMIT))
    stmt = select(ConsentChange).where(ConsentChange.profile_id.in_(sorted(members)))
    if channel is not None:
        stmt = stmt.where(ConsentChange.channel == channel)
    if purpose is not None:
        stmt = stmt.where(ConsentChange.purpose == purpose)
    if cursor is not None:
        stamp, change_id = _decode(cursor)
        stmt = stmt.where(
            or_(
                ConsentChange.recorded_at < stamp,
                and_(ConsentChange.recorded_at == stamp, ConsentChange.id < change_id),
            )
        )
    stmt = stmt.order_by(ConsentChange.recorded_at.desc(), ConsentChange.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    next_cursor = _encode(rows[limit - 1]) if len(rows) > limit else None
    return [ConsentChangeOut.model_validate(r) for r in rows[:limit]], next_cursor


def profile_and_members(session: Session, profile_id: str) -> tuple[Profile, list[str]]:
    profile = get_profile(session, profile_id)
    return profile, cluster_members(session, profile.cluster_id)
