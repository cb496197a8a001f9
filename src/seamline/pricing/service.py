"""Rules of promotions and personal codes (tax and shipping rates: ``rates_service.py``).

Every write builds the engine's own :class:`~seamline.pricing.promotions.Promotion` from the
result and lets its validation decide: a row the API accepted is a row the engine can price
(carts load them through ``loader.to_engine``), and the rules live in one place. The engine's
errors (``promotion.value``) come back as 422 field errors on the request (``body.value``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.catalog.models import Collection, Product
from seamline.channels.models import Channel
from seamline.db.lookup import get_or_404
from seamline.db.pagination import keyset_page
from seamline.events.outbox import emit
from seamline.identity.models import Profile
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, ServiceBusy, Unprocessable
from seamline.kit.ids import new_id, read_aloud_code
from seamline.pricing import loader
from seamline.pricing.common import PricingInputError
from seamline.pricing.models import Promotion
from seamline.pricing.schemas import IssueCode, PromotionCreate, PromotionUpdate

# How often a freshly generated personal code may collide before giving up (24^6 codes).
ISSUE_ATTEMPTS = 5


# -- shared helpers --------------------------------------------------------------------------


def engine_errors(exc: PricingInputError, prefix: str, fields: dict[str, str]) -> Unprocessable:
    """The engine's ``promotion.value``-style errors as request errors (``body.value``).

    ``prefix`` is the engine's object name (``promotion.``); ``fields`` renames engine fields
    whose API name differs (``channels`` -> ``channel_ids``)."""
    errors = []
    for error in exc.errors:
        path = error.path.removeprefix(prefix)
        head, dot, rest = path.partition(".")
        errors.append(
            FieldError(f"body.{fields.get(head, head)}{dot}{rest}", error.message, error.code)
        )
    return Unprocessable("the request has invalid fields", errors=errors)


def require_brand_wide(caller: Caller | None) -> None:
    """Pricing is brand-wide: a key limited to locations may read it but not change it."""
    if caller is not None:
        caller.require_location(None)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- promotions ------------------------------------------------------------------------------

_ENGINE_FIELDS = {"channels": "channel_ids"}


def _snapshot(promotion: Promotion) -> dict[str, Any]:
    return {
        "id": promotion.id,
        "name": promotion.name,
        "code": promotion.code,
        "kind": promotion.kind,
        "value": promotion.value,
        "applies_to": promotion.applies_to,
        "target_ids": list(promotion.target_ids),
        "min_subtotal": promotion.min_subtotal,
        "currency": promotion.currency,
        "starts_at": iso(promotion.starts_at),
        "ends_at": iso(promotion.ends_at),
        "channel_ids": promotion.channel_ids,
        "profile_id": promotion.profile_id,
        "usage_limit": promotion.usage_limit,
        "usage_limit_per_profile": promotion.usage_limit_per_profile,
        "used_count": promotion.used_count,
        "active": promotion.active,
    }


def _validate(promotion: Promotion) -> None:
    """Let the engine judge the promotion as it will be stored."""
    try:
        loader.to_engine(promotion)
    except PricingInputError as exc:
        raise engine_errors(exc, "promotion.", _ENGINE_FIELDS) from exc


def code_taken(code: str, path: str = "body.code") -> Conflict:
    return Conflict(
        f"another promotion uses the code {code!r}",
        code="code_taken",
        errors=[FieldError(path, "already taken (codes match case-insensitively)", "taken")],
    )


def _check_code_free(session: Session, code: str, own_id: str | None) -> None:
    holder = session.scalar(select(Promotion.id).where(Promotion.code_key == loader.code_key(code)))
    if holder is not None and holder != own_id:
        raise code_taken(code)


def _flush(session: Session, code: str | None) -> None:
    try:
        session.flush()
    except IntegrityError as exc:  # lost a race with a concurrent write of the same code
        raise code_taken(code or "") from exc


def _check_references(
    session: Session,
    *,
    applies_to: str,
    target_ids: Iterable[str],
    channel_ids: Iterable[str] | None,
    profile_id: str | None,
) -> None:
    """Refuse ids of things that do not exist: a typo would make a promotion silently inert."""
    checks: list[tuple[str, Any, Iterable[str], str]] = []
    if applies_to == "products":
        checks.append(("target_ids", Product, target_ids, "product_not_found"))
    elif applies_to == "collections":
        checks.append(("target_ids", Collection, target_ids, "collection_not_found"))
    if channel_ids is not None:
        checks.append(("channel_ids", Channel, channel_ids, "channel_not_found"))
    if profile_id is not None:
        checks.append(("profile_id", Profile, [profile_id], "profile_not_found"))
    for field, model, ids, code in checks:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            continue
        found = set(session.scalars(select(model.id).where(model.id.in_(wanted))))
        for i, value in enumerate(ids):
            if value not in found:
                path = f"body.{field}" if field == "profile_id" else f"body.{field}.{i}"
                raise Unprocessable(
                    f"no {code.removesuffix('_not_found')} {value!r}",
                    code=code,
                    errors=[FieldError(path, "does not exist", "unknown")],
                )


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def create_promotion(
    session: Session, data: PromotionCreate, *, caller: Caller | None = None
) -> Promotion:
    """Create a promotion: automatic (no code) or entered as a code, unique case-insensitively."""
    require_brand_wide(caller)
    now = clock.now()
    promotion = Promotion(
        id=new_id("promo"),
        name=data.name,
        code=data.code,
        code_key=loader.code_key(data.code) if data.code is not None else None,
        kind=data.kind,
        value=data.value,
        applies_to=data.applies_to,
        target_ids=_unique(data.target_ids),
        min_subtotal=data.min_subtotal,
        currency=data.currency,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        channel_ids=None if data.channel_ids is None else _unique(data.channel_ids),
        profile_id=data.profile_id,
        usage_limit=data.usage_limit,
        usage_limit_per_profile=data.usage_limit_per_profile,
        used_count=0,
        active=data.active,
        created_at=now,
        updated_at=now,
    )
    _validate(promotion)
    _check_references(
        session,
        applies_to=data.applies_to,
        target_ids=data.target_ids,
        channel_ids=data.channel_ids,
        profile_id=data.profile_id,
    )
    if data.code is not None:
        _check_code_free(session, data.code, None)
    session.add(promotion)
    _flush(session, data.code)
    _emit(session, "promotion.created", promotion)
    return promotion


def _emit(session: Session, event_type: str, promotion: Promotion, **extra: Any) -> None:
    emit(
        session,
        event_type,
        aggregate_type="promotion",
        aggregate_id=promotion.id,
        payload={**_snapshot(promotion), **extra},
    )


def _find(session: Session, promotion_id: str, *, for_update: bool = False) -> Promotion:
    return get_or_404(
        session,
        Promotion,
        promotion_id,
        what="promotion",
        code="promotion_not_found",
        for_update=for_update,
    )


def get_promotion(session: Session, promotion_id: str) -> Promotion:
    return _find(session, promotion_id)


def list_promotions(
    session: Session,
    *,
    active: bool | None = None,
    code: str | None = None,
    profile_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Promotion], str | None]:
    """Promotions in id (creation) order; ``code`` matches as checkout does (any case)."""
    stmt = select(Promotion)
    if active is not None:
        stmt = stmt.where(Promotion.active == active)
    if code is not None:
        stmt = stmt.where(Promotion.code_key == loader.code_key(code))
    if profile_id is not None:
        stmt = stmt.where(Promotion.profile_id == profile_id)
    return keyset_page(session, stmt, Promotion.id, after=cursor or None, limit=limit)


# Fields whose ``null`` in a PATCH clears them; on the others ``null`` is ignored.
_NULLABLE = frozenset(
    {
        "code",
        "currency",
        "starts_at",
        "ends_at",
        "channel_ids",
        "usage_limit",
        "usage_limit_per_profile",
    }
)


_TARGETING = frozenset({"applies_to", "target_ids"})


def update_promotion(
    session: Session, promotion_id: str, data: PromotionUpdate, *, caller: Caller | None = None
) -> Promotion:
    """Change the fields sent. The row is locked first, so ``usage_limit`` is compared with a
    ``used_count`` no checkout can raise meanwhile: lowering it below the uses already taken
    is refused (409 ``usage_limit_below_used``). A request that changes nothing writes nothing."""
    require_brand_wide(caller)
    promotion = _find(session, promotion_id, for_update=True)
    changes = {
        field: value
        for field, value in data.model_dump(exclude_unset=True).items()
        if value is not None or field in _NULLABLE
    }
    for field in ("target_ids", "channel_ids"):
        if changes.get(field) is not None:
            changes[field] = _unique(changes[field])
    if changes.get("applies_to") == "all" and "target_ids" not in changes:
        changes["target_ids"] = []  # switching to "all" drops the old targets
    changes = {f: v for f, v in changes.items() if getattr(promotion, f) != v}
    if not changes:
        return promotion
    limit = changes.get("usage_limit", promotion.usage_limit)
    if "usage_limit" in changes and limit is not None and limit < promotion.used_count:
        raise Conflict(
            f"{promotion.used_count} uses are already taken",
            code="usage_limit_below_used",
            errors=[
                FieldError(
                    "body.usage_limit",
                    f"must be at least used_count ({promotion.used_count})",
                    "below_used",
                )
            ],
            extra={"used_count": promotion.used_count},
        )
    for field, value in changes.items():
        setattr(promotion, field, value)
    if "code" in changes:
        promotion.code_key = None if promotion.code is None else loader.code_key(promotion.code)
    _validate(promotion)
    with session.no_autoflush:  # check before the changed row is written
        _check_references(
            session,
            applies_to=promotion.applies_to,
            target_ids=promotion.target_ids if _TARGETING & changes.keys() else (),
            channel_ids=changes.get("channel_ids"),
            profile_id=None,
        )
        if "code" in changes and promotion.code is not None:
            _check_code_free(session, promotion.code, promotion.id)
    promotion.updated_at = clock.now()
    _flush(session, promotion.code)
    _emit(session, "promotion.updated", promotion, changed=sorted(changes))
    return promotion


def issue_code(
    session: Session,
    template_id: str,
    data: IssueCode,
    *,
    caller: Caller | None = None,
    generate: Callable[[], str] = read_aloud_code,
) -> Promotion:
    """A personal, single-use code for one customer, copied from a template promotion.

    The copy keeps the template's discount, targets, minimum, dates and channels; it belongs to
    ``profile_id`` (usable by that customer, or another profile of the same person once
    identities merge), takes one use in total, and is active even when the template is not (a
    template is typically an inactive promotion that exists only to be copied). Its code is
    ``prefix-`` + a read-aloud code (``INSTA-K7Q-M9P``), so a store clerk can type it from a
    phone call. A template that itself belongs to a customer cannot be copied."""
    require_brand_wide(caller)
    template = _find(session, template_id)
    if template.profile_id is not None:
        raise Conflict(
            "a personal promotion cannot be a template",
            code="not_a_template",
            extra={"promotion_id": template.id},
        )
    _check_references(
        session, applies_to="all", target_ids=(), channel_ids=None, profile_id=data.profile_id
    )
    prefix = ""
    if data.prefix:
        prefix = data.prefix if data.prefix[-1] in "-_" else data.prefix + "-"
    for _ in range(ISSUE_ATTEMPTS):
        code = prefix + generate()
        key = loader.code_key(code)
        if session.scalar(select(Promotion.id).where(Promotion.code_key == key)) is None:
            break
    else:
        raise ServiceBusy(
            "could not find a free code; try again",
            code="code_space_exhausted",
            headers={"Retry-After": "1"},
        )
    now = clock.now()
    promotion = Promotion(
        id=new_id("promo"),
        name=template.name,
        code=code,
        code_key=key,
        kind=template.kind,
        value=template.value,
        applies_to=template.applies_to,
        target_ids=list(template.target_ids),
        min_subtotal=template.min_subtotal,
        currency=template.currency,
        starts_at=template.starts_at,
        ends_at=template.ends_at,
        channel_ids=None if template.channel_ids is None else list(template.channel_ids),
        profile_id=data.profile_id,
        usage_limit=1,
        usage_limit_per_profile=None,
        used_count=0,
        active=True,
        created_at=now,
        updated_at=now,
    )
    _validate(promotion)
    session.add(promotion)
    _flush(session, code)
    _emit(session, "promotion.created", promotion, template_id=template.id)
    return promotion
