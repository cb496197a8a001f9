"""Erasing a customer: the whole cluster, in the caller's transaction (docs/privacy.md,
"Erase").

One rule per table: personal data is deleted or blanked; facts that are not personal (ids,
event names and times, the financial facts of orders) stay; a keyed hash of every erased
identifier is kept (suppression.py) so a late event cannot silently recreate the person.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from cryptography.fernet import InvalidToken
from prometheus_client import Counter
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from seamline.api.idempotency import IdempotencyRecord
from seamline.db.dialect import insert_ignoring_conflict
from seamline.events.models import Delivery, OutboxEvent, WebhookAttempt
from seamline.events.outbox import emit
from seamline.identity import consent, normalize, resolution
from seamline.identity.customer_models import (
    CONSENT_CHANNELS,
    CONSENT_PURPOSES,
    ChannelActivity,
    Consent,
    ConsentChange,
    CustomerOrder,
    DuplicateDecision,
    ErasedIdentifier,
    PrivacyRequest,
    ProfilePreference,
    TimelineEntry,
)
from seamline.identity.models import (
    Identifier,
    IdentityLink,
    Profile,
    ProfileMerge,
    ProfileTrait,
    TrackedEvent,
)
from seamline.identity.normalize import IdentifierValue
from seamline.identity.profiles import cluster_members, get_profile
from seamline.identity.rules import DEFAULT_RULES
from seamline.identity.suppression import identifier_hash, require_key
from seamline.kit import clock
from seamline.kit.crypto import SecretBox
from seamline.kit.ids import new_id

log = structlog.get_logger("seamline.privacy")

PROFILE_ERASED = "profile.erased"
ERASED = "[erased]"
ERASURE_SOURCE = "privacy:erase"
_CHUNK = 500
_PAGE = 1000
# Values shorter than this are only redacted where they are a whole string: replacing a
# two-letter anonymous id inside other text would mangle it and protect nothing.
_SUBSTRING_MIN = 6

PRIVACY_REQUESTS = Counter(
    "seamline_privacy_requests_total", "Privacy requests completed", ["kind"]
)

# Progress steps, in order (the CLI sizes its bar with them).
ERASE_STEPS = (
    "identifiers",
    "traits",
    "events",
    "timeline",
    "preferences and activity",
    "consent",
    "merges",
    "domain events",
    "idempotency records",
    "other domains",
)

Progress = Callable[[str], None]


def no_progress(_step: str) -> None:
    return None


def chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class Redactor:
    """Removes the erased identifiers' values from text and JSON kept about other people."""

    values: frozenset[str]

    @classmethod
    def of(cls, values: Iterable[str]) -> Redactor:
        return cls(frozenset(v.strip() for v in values if v and v.strip()))

    def text(self, text: str) -> str:
        if text.strip() in self.values:
            return ERASED
        for value in self.values:
            if len(value) >= _SUBSTRING_MIN and value.lower() in text.lower():
                text = re.sub(re.escape(value), ERASED, text, flags=re.IGNORECASE)
        return text

    def json(self, doc: Any) -> Any:
        if isinstance(doc, str):
            return self.text(doc)
        if isinstance(doc, list):
            return [self.json(item) for item in doc]
        if isinstance(doc, dict):
            return {self.text(str(k)): self.json(v) for k, v in doc.items()}
        return doc


# -- erase --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErasureScope:
    """What other domains' erase hooks receive: whose data to remove, within this transaction."""

    request_id: str
    profile_ids: tuple[str, ...]
    redactor: Redactor


ErasureHook = Callable[[Session, ErasureScope], dict[str, int]]
_hooks: dict[str, ErasureHook] = {}


def on_erase(name: str) -> Callable[[ErasureHook], ErasureHook]:
    """Register a domain's eraser (orders blank addresses, support deletes messages …); it runs
    inside the erasure's transaction and returns counts for the request's summary."""

    def register(fn: ErasureHook) -> ErasureHook:
        _hooks[name] = fn
        return fn

    return register


@dataclass
class Erasure:
    request_id: str
    profile_id: str
    cluster_id: str
    profile_ids: list[str]
    erased_at: datetime
    previously_erased: bool
    summary: dict[str, int] = field(default_factory=dict)


# Order facts kept in an erased tracked event's properties (numbers, a currency code, ids).
ORDER_FACT_NUMBERS = frozenset(
    {"total", "subtotal", "revenue", "value", "tax", "shipping", "discount", "quantity", "price"}
)
ORDER_FACT_IDS = frozenset({"order_id", "checkout_id"})
# Keys of a domain event's payload kept when the event is about an erased profile.
PAYLOAD_KEPT = frozenset(
    {
        "event_id",
        "profile_id",
        "into_profile_id",
        "from_profile_id",
        "cluster_id",
        "from_cluster_id",
        "merge_id",
        "change_id",
        "order_id",
        "channel",
        "purpose",
        "state",
        "level",
        "timestamp",
        "effective_at",
        "occurred_at",
    }
)


def _kept_properties(properties: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for name, value in properties.items():
        if name in ORDER_FACT_NUMBERS and isinstance(value, int | float):
            if not isinstance(value, bool):
                kept[name] = value
        elif name == "currency" and isinstance(value, str) and re.fullmatch(r"[A-Za-z]{3}", value):
            kept[name] = value.upper()
        elif (
            name in ORDER_FACT_IDS
            and isinstance(value, str | int)
            and not isinstance(value, bool)
            and len(str(value)) <= 255
            and redactor.text(str(value)) == str(value)
        ):
            kept[name] = value
    return kept


def _minimal_payload(payload: dict[str, Any], request_id: str) -> dict[str, Any]:
    kept: dict[str, Any] = {
        k: v
        for k, v in payload.items()
        if k in PAYLOAD_KEPT
        and (v is None or isinstance(v, bool | int) or (isinstance(v, str) and len(v) <= 80))
    }
    kept["erased"] = True
    kept["privacy_request_id"] = request_id
    return kept


def erase(
    session: Session,
    profile_id: str,
    *,
    reason: str,
    by: str | None,
    box: SecretBox,
    progress: Progress | None = None,
) -> Erasure:
    """Erase the whole cluster of ``profile_id`` in the caller's transaction (docs/privacy.md).

    Running it again on an erased cluster is allowed: it removes anything that arrived during
    the first run (a call being stored at that very moment) and is logged as its own request.
    """
    step = progress or no_progress
    key = require_key(session)
    # Queued ingestion: calls acknowledged before the erasure are stored first (waiting for
    # a worker draining them), so they are erased below rather than stored after it; later
    # ones meet the suppression list. Before the graph lock, which a drain takes after locking
    # its inbox rows. (Imported here: ingestion imports privacy, which imports this module.)
    from seamline.identity import ingest_queue

    ingest_queue.drain_all_before(session)
    resolution.lock_graph(session)
    profile = get_profile(session, profile_id)
    consent.lock_cluster(session, profile.cluster_id)
    session.refresh(profile)
    members = cluster_members(session, profile.cluster_id)
    member_set = set(members)
    previously = consent.is_erased(session, profile.cluster_id)
    now = clock.now()
    request_id = new_id("prq")
    summary: dict[str, int] = {"profiles": len(members)}

    # Identifiers: keep a keyed hash, remember their values (to redact other people's records
    # that mention them), then delete them and every link they have.
    identifiers: list[Identifier] = []
    for chunk in chunks(members):
        identifiers += session.scalars(select(Identifier).where(Identifier.profile_id.in_(chunk)))
    ids = sorted(i.id for i in identifiers)
    redactor = Redactor.of([i.value for i in identifiers] + [i.raw for i in identifiers])
    # Only valid identifiers are suppressed: an invalid one ("n/a") names nobody in particular.
    for ident in (i for i in identifiers if i.valid):
        insert_ignoring_conflict(
            session,
            ErasedIdentifier,
            {
                "kind": ident.kind,
                "value_hash": identifier_hash(key, ident.kind, ident.value),
                "request_id": request_id,
                "erased_at": now,
            },
            on=("kind", "value_hash"),
        )
    links, partners = _delete_identifiers(session, ids)
    summary["identifiers"] = len(ids)
    summary["identity_links"] = links
    step("identifiers")

    summary["traits"] = _delete_by_profile(session, ProfileTrait, members)
    step("traits")

    summary["events_blanked"], carried = _blank_events(session, members, redactor)
    # Invalid identifiers the person's calls carried (a mistyped phone number): deleted, not
    # suppressed — a placeholder such as "n/a" must not block everyone else's calls.
    stray = [
        i
        for i in resolution.find_identifiers(session, carried).values()
        if not i.valid and i.profile_id not in member_set
    ]
    more_links, more_partners = _delete_identifiers(session, sorted(i.id for i in stray))
    partners |= more_partners
    summary["identity_links"] += more_links
    summary["invalid_identifiers"] = len(stray)
    redactor = Redactor.of([*redactor.values, *(i.value for i in stray), *(i.raw for i in stray)])
    step("events")

    timeline = 0
    for chunk in chunks(members):
        timeline += _rowcount(
            session.execute(
                update(TimelineEntry)
                .where(TimelineEntry.profile_id.in_(chunk))
                .values(data={}, summary=ERASED)
            )
        )
    summary["timeline_entries_blanked"] = timeline
    step("timeline")

    summary["preferences"] = _delete_by_profile(session, ProfilePreference, members)
    summary["channel_activity"] = _delete_by_profile(session, ChannelActivity, members)
    decisions = 0
    for chunk in chunks(members):
        decisions += _rowcount(
            session.execute(
                delete(DuplicateDecision).where(
                    or_(
                        DuplicateDecision.profile_a_id.in_(chunk),
                        DuplicateDecision.profile_b_id.in_(chunk),
                    )
                )
            )
        )
    summary["duplicate_decisions"] = decisions
    step("preferences and activity")

    granted_before = {
        (c.channel, c.purpose)
        for c in consent.current_for_profiles(session, members)
        if c.state == consent.GRANTED
    }
    summary["consent_changes"] = _delete_by_profile(session, ConsentChange, members)
    summary["consents"] = _delete_by_profile(session, Consent, members)
    _record_withdrawal(session, profile.id, request_id, by, now)
    step("consent")

    merges = 0
    for chunk in chunks(members):
        touching = session.scalars(
            select(ProfileMerge).where(
                or_(ProfileMerge.profile_id.in_(chunk), ProfileMerge.into_profile_id.in_(chunk))
            )
        )
        for merge in touching:
            if merge.profile_id in member_set and merge.into_profile_id in member_set:
                evidence: dict[str, Any] = {"erased": True, "privacy_request_id": request_id}
            else:
                partners.update({merge.profile_id, merge.into_profile_id} - member_set)
                evidence = redactor.json(merge.evidence)
                if isinstance(evidence.get("unmerge"), dict) and "reason" in evidence["unmerge"]:
                    evidence["unmerge"] = {**evidence["unmerge"], "reason": ERASED}
            # A staff merge's reason is free text a person typed ("same as ann@…").
            inside = merge.profile_id in member_set and merge.into_profile_id in member_set
            why = ERASED if inside else redactor.text(merge.reason)
            if evidence != merge.evidence or why != merge.reason:
                merge.evidence = evidence
                merge.reason = why
                merges += 1
    summary["merges_scrubbed"] = merges
    partners -= member_set
    summary["partner_records_redacted"] = _redact_partners(session, sorted(partners), redactor)
    step("merges")

    scrubbed, skipped, attempts = _scrub_outbox(
        session, members, sorted(partners), redactor, request_id, now
    )
    summary["domain_events_scrubbed"] = scrubbed
    summary["deliveries_skipped"] = skipped
    summary["webhook_attempts_scrubbed"] = attempts
    step("domain events")

    summary["idempotency_records"] = _drop_idempotency_records(session, box, members, redactor)
    step("idempotency records")

    scope = ErasureScope(request_id, tuple(members), redactor)
    for name, hook in sorted(_hooks.items()):
        for counted, value in hook(session, scope).items():
            summary[f"{name}.{counted}"] = value
    summary["orders_kept"] = sum(
        session.scalar(select(func.count()).where(CustomerOrder.profile_id.in_(chunk))) or 0
        for chunk in chunks(members)
    )
    step("other domains")

    log_request(
        session,
        request_id,
        "erase",
        profile,
        members,
        by=by,
        reason=reason,
        requested_at=now,
        summary=summary,
    )
    for channel, purpose in sorted(granted_before):
        emit(
            session,
            consent.CONSENT_CHANGED,
            aggregate_type="profile",
            aggregate_id=profile.id,
            payload={
                "profile_id": profile.id,
                "cluster_id": profile.cluster_id,
                "channel": channel,
                "purpose": purpose,
                "state": consent.DENIED,
                "level": None,
                "previous": {"state": consent.GRANTED},
                "source": ERASURE_SOURCE,
                "privacy_request_id": request_id,
            },
        )
    emit(
        session,
        PROFILE_ERASED,
        aggregate_type="profile",
        aggregate_id=profile.id,
        payload={
            "privacy_request_id": request_id,
            "profile_id": profile.id,
            "cluster_id": profile.cluster_id,
            "profile_ids": members,
            "erased_at": now.isoformat(),
            "previously_erased": previously,
        },
    )
    PRIVACY_REQUESTS.labels(kind="erase").inc()
    log.info("profile_erased", privacy_request_id=request_id, profiles=len(members), by=by)
    return Erasure(request_id, profile.id, profile.cluster_id, members, now, previously, summary)


def _delete_by_profile(session: Session, model: Any, members: Sequence[str]) -> int:
    count = 0
    for chunk in chunks(members):
        count += _rowcount(session.execute(delete(model).where(model.profile_id.in_(chunk))))
    return count


def _record_withdrawal(
    session: Session, profile_id: str, request_id: str, by: str | None, now: datetime
) -> None:
    """One ``denied`` record per channel and purpose on the erased profile: the history is
    personal data and goes, but that consent ended by erasure is kept (with no personal data),
    and every read — ``allows``, the 360 — sees "denied" without a special case."""
    tick = timedelta(microseconds=1)
    for index, (channel, purpose) in enumerate(
        (c, p) for c in CONSENT_CHANNELS for p in CONSENT_PURPOSES
    ):
        change_id = new_id("cns")
        recorded_at = now + tick * index
        session.add(
            ConsentChange(
                profile_id=profile_id,
                id=change_id,
                channel=channel,
                purpose=purpose,
                state=consent.DENIED,
                level=None,
                source=ERASURE_SOURCE,
                effective_at=now,
                recorded_at=recorded_at,
                changed_by=by,
                evidence={"privacy_request_id": request_id},
            )
        )
        session.add(
            Consent(
                profile_id=profile_id,
                channel=channel,
                purpose=purpose,
                state=consent.DENIED,
                level=None,
                source=ERASURE_SOURCE,
                effective_at=now,
                recorded_at=recorded_at,
                change_id=change_id,
            )
        )
    session.flush()


def _event_pages(session: Session, profile_id: str) -> Iterable[list[TrackedEvent]]:
    last = ""
    while True:
        page = list(
            session.scalars(
                select(TrackedEvent)
                .where(TrackedEvent.profile_id == profile_id, TrackedEvent.id > last)
                .order_by(TrackedEvent.id)
                .limit(_PAGE)
            )
        )
        if not page:
            return
        yield page
        last = page[-1].id


def _carried(event: TrackedEvent) -> list[IdentifierValue]:
    """The identifiers a stored call carried in its traits and context, read as ingestion
    reads them (ingest._identifiers)."""
    context = event.context or {}
    nested = context.get("traits")
    traits: dict[str, Any] = dict(nested) if isinstance(nested, dict) else {}
    if event.type == "identify":
        traits.update(event.traits or {})
    region = normalize.region_of(context, traits) or DEFAULT_RULES.default_phone_region
    return normalize.from_context(context) + normalize.from_traits(traits, region=region)


def _blank_events(
    session: Session, members: Sequence[str], redactor: Redactor
) -> tuple[int, dict[tuple[str, str], IdentifierValue]]:
    """Tracked events stay as facts (type, name, time, channel, message id) with every personal
    field blanked; an order's numbers, currency and id stay in ``properties``. Returns the
    count and the *invalid* identifiers the calls carried (they never link, so they sit on
    profiles of their own, outside the cluster)."""
    count = 0
    invalid: dict[tuple[str, str], IdentifierValue] = {}
    for profile_id in members:
        for page in _event_pages(session, profile_id):
            for event in page:
                invalid.update({v.key: v for v in _carried(event) if not v.valid})
                event.properties = _kept_properties(event.properties or {}, redactor)
                event.traits, event.context = {}, {}
                event.user_id = event.anonymous_id = event.previous_id = event.group_id = None
                event.ip = event.user_agent = None
                count += 1
            session.flush()
            for event in page:
                session.expunge(event)
    return count, invalid


def _delete_identifiers(session: Session, ids: Sequence[str]) -> tuple[int, set[str]]:
    """Delete identifiers and every link they have; returns the links deleted and the profiles
    at the other end of them (other people who were seen with these identifiers)."""
    partners: set[str] = set()
    links = 0
    gone = set(ids)
    for chunk in chunks(ids):
        linked = or_(
            IdentityLink.identifier_a_id.in_(chunk), IdentityLink.identifier_b_id.in_(chunk)
        )
        pairs = session.execute(
            select(IdentityLink.identifier_a_id, IdentityLink.identifier_b_id).where(linked)
        ).all()
        other_ids = {x for pair in pairs for x in pair} - gone
        if other_ids:
            partners.update(
                session.scalars(
                    select(Identifier.profile_id).where(Identifier.id.in_(sorted(other_ids)))
                )
            )
        links += _rowcount(session.execute(delete(IdentityLink).where(linked)))
    for chunk in chunks(ids):
        session.execute(delete(Identifier).where(Identifier.id.in_(chunk)))
    return links, partners


def _redact_partners(session: Session, partners: Sequence[str], redactor: Redactor) -> int:
    """Other people's records that mention an erased identifier: the events and traits of
    profiles that were linked or merged with the erased ones (a shared device, an unmerge)."""
    count = 0
    for profile_id in partners:
        for page in _event_pages(session, profile_id):
            for event in page:
                before = (
                    event.properties,
                    event.traits,
                    event.context,
                    event.user_id,
                    event.anonymous_id,
                    event.previous_id,
                )
                event.properties = redactor.json(event.properties)
                event.traits = redactor.json(event.traits)
                event.context = redactor.json(event.context)
                for column in ("user_id", "anonymous_id", "previous_id", "group_id"):
                    value = getattr(event, column)
                    if value is not None and value.strip() in redactor.values:
                        setattr(event, column, None)
                after = (
                    event.properties,
                    event.traits,
                    event.context,
                    event.user_id,
                    event.anonymous_id,
                    event.previous_id,
                )
                count += before != after
            session.flush()
        for trait in session.scalars(
            select(ProfileTrait).where(ProfileTrait.profile_id == profile_id)
        ):
            value = redactor.json(trait.value)
            if value != trait.value:
                trait.value = value
                count += 1
    session.flush()
    return count


def _scrub_outbox(
    session: Session,
    members: Sequence[str],
    partners: Sequence[str],
    redactor: Redactor,
    request_id: str,
    now: datetime,
) -> tuple[int, int, int]:
    """Domain events about the erased profiles keep only ids and states; their undelivered
    deliveries are skipped and their webhook attempt logs blanked. Events about linked
    profiles (a ``profile.merged`` naming an erased email) get the values redacted."""
    scrubbed = skipped = attempts = 0
    member_set = set(members)
    for chunk in chunks([*members, *partners]):
        last = 0
        while True:
            page = list(
                session.scalars(
                    select(OutboxEvent)
                    .where(
                        OutboxEvent.aggregate_type == "profile",
                        OutboxEvent.aggregate_id.in_(chunk),
                        OutboxEvent.seq > last,
                    )
                    .order_by(OutboxEvent.seq)
                    .limit(_PAGE)
                )
            )
            if not page:
                break
            last = page[-1].seq
            own: list[OutboxEvent] = []
            for event in page:
                if event.aggregate_id in member_set:
                    payload = _minimal_payload(event.payload, request_id)
                    own.append(event)
                else:
                    payload = redactor.json(event.payload)
                if payload != event.payload:
                    event.payload = payload
                    scrubbed += 1
            session.flush()
            if own:
                seqs = [e.seq for e in own]
                skipped += _rowcount(
                    session.execute(
                        update(Delivery)
                        .where(Delivery.event_seq.in_(seqs), Delivery.status != "done")
                        .values(
                            status="done",
                            done_at=now,
                            locked_until=None,
                            last_error="skipped: the profile was erased",
                        )
                    )
                )
                session.execute(
                    update(Delivery)
                    .where(
                        Delivery.event_seq.in_(seqs),
                        Delivery.last_error.is_not(None),
                        Delivery.last_error != "skipped: the profile was erased",
                    )
                    .values(last_error="[erased]")
                )
                attempts += _rowcount(
                    session.execute(
                        update(WebhookAttempt)
                        .where(WebhookAttempt.event_id.in_([e.id for e in own]))
                        .values(response_excerpt=None, error=None)
                    )
                )
            for event in page:
                session.expunge(event)
    return scrubbed, skipped, attempts


def _drop_idempotency_records(
    session: Session, box: SecretBox, members: Sequence[str], redactor: Redactor
) -> int:
    """Stored responses (sealed) that mention the erased profiles or identifiers are deleted: a
    replay would otherwise hand the erased data back. Kept at most ``idempotency_ttl_hours``,
    so the scan is bounded by a day of keyed requests."""
    needles = {pid.encode() for pid in members}
    for value in redactor.values:
        if len(value) >= _SUBSTRING_MIN:
            needles.add(value.encode("utf-8", "surrogatepass"))
            needles.add(json.dumps(value)[1:-1].encode())
    doomed: list[int] = []
    last = 0
    while True:
        page = session.execute(
            select(IdempotencyRecord.id, IdempotencyRecord.response_body)
            .where(IdempotencyRecord.id > last, IdempotencyRecord.response_body.is_not(None))
            .order_by(IdempotencyRecord.id)
            .limit(_PAGE)
        ).all()
        if not page:
            break
        last = page[-1][0]
        for record_id, sealed in page:
            if sealed is None:
                continue
            try:
                body = box.open_bytes(sealed).lower()
            except InvalidToken:
                continue  # sealed under another secret key: unreadable by anyone here
            if any(needle.lower() in body for needle in needles):
                doomed.append(record_id)
    for start in range(0, len(doomed), _CHUNK):
        session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.id.in_(doomed[start : start + _CHUNK])
            )
        )
    return len(doomed)


def log_request(
    session: Session,
    request_id: str,
    kind: str,
    profile: Profile,
    members: list[str],
    *,
    by: str | None,
    reason: str | None,
    requested_at: datetime,
    summary: dict[str, Any],
) -> None:
    """Record a completed privacy request: who asked, when, for which profiles, what was done."""
    session.add(
        PrivacyRequest(
            id=request_id,
            kind=kind,
            profile_id=profile.id,
            cluster_id=profile.cluster_id,
            profile_ids=members,
            status="completed",
            requested_by=by,
            reason=reason,
            requested_at=requested_at,
            completed_at=clock.now(),
            summary=summary,
        )
    )
    session.flush()
