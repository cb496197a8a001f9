"""Promotion usage limits, enforced atomically under concurrency (called by checkout).

A checkout *holds* one use of each promotion its quote applied while the customer pays; the
order *confirms* the uses, an abandoned or failed checkout *releases* them.

``promotions.used_count`` counts held and used units. Taking one is a single conditional
``UPDATE … SET used_count = used_count + 1 WHERE … used_count < usage_limit``: the database
evaluates the condition on the latest committed row under its row lock, so 30 concurrent
checkouts for a code limited to 5 give exactly 5 successes — no read-then-write race, no
``SELECT … FOR UPDATE`` round trip, and the ``within_usage_limit`` CHECK constraint stays a
backstop that never fires. The same row lock, held until the checkout's transaction ends,
serializes the per-customer count that follows, so that count cannot race either.

Promotions are taken in id order, so two checkouts holding the same promotions lock them in
the same order and cannot deadlock. A failed ``hold`` undoes everything it did (a savepoint),
so a caller that catches the error is left with no partial holds.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from seamline.identity.models import Profile
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, NotFound
from seamline.kit.ids import new_id
from seamline.pricing.models import Promotion, PromotionUsage

HELD, USED, RELEASED = "held", "used", "released"
# Where the refused promotion is reported: checkout's request names codes, not promotions,
# so errors point at the promotion by id (``extra.promotion_id``) and at ``promotions.<id>``.
PATH = "promotions"


def _refusal(code: str, detail: str, promotion: Promotion | str, message: str) -> Conflict:
    promotion_id = promotion if isinstance(promotion, str) else promotion.id
    extra: dict[str, object] = {"promotion_id": promotion_id}
    if not isinstance(promotion, str) and promotion.code is not None:
        extra["promotion_code"] = promotion.code
    return Conflict(
        detail,
        code=code,
        errors=[FieldError(f"{PATH}.{promotion_id}", message, code)],
        extra=extra,
    )


def _same_person(session: Session, owner: str, profile_id: str | None) -> bool:
    """Whether ``profile_id`` is the owner or another profile of the same identity cluster
    (the customer signed up on Instagram, then bought in store under a profile merged since)."""
    if profile_id is None:
        return False
    if profile_id == owner:
        return True
    clusters = session.execute(
        select(Profile.id, Profile.cluster_id).where(Profile.id.in_((owner, profile_id)))
    ).all()
    return len(clusters) == 2 and clusters[0].cluster_id == clusters[1].cluster_id


def _cluster(session: Session, profile_id: str | None) -> list[str]:
    """The profiles of the person ``profile_id`` is (itself alone if unknown or unmerged)."""
    if profile_id is None:
        return []
    cluster_id = session.scalar(select(Profile.cluster_id).where(Profile.id == profile_id))
    if cluster_id is None:
        return [profile_id]
    members = set(session.scalars(select(Profile.id).where(Profile.cluster_id == cluster_id)))
    return sorted(members | {profile_id})


def _take(session: Session, promotion_id: str) -> bool:
    """One unit of the limit, atomically; False when none is left (or the promotion is off)."""
    result = session.execute(
        update(Promotion)
        .where(
            Promotion.id == promotion_id,
            Promotion.active.is_(True),
            (Promotion.usage_limit.is_(None)) | (Promotion.used_count < Promotion.usage_limit),
        )
        .values(used_count=Promotion.used_count + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _give_back(session: Session, promotion_id: str) -> None:
    session.execute(
        update(Promotion)
        .where(Promotion.id == promotion_id, Promotion.used_count > 0)
        .values(used_count=Promotion.used_count - 1)
        .execution_options(synchronize_session=False)
    )


def hold(
    session: Session,
    promotion_ids: Sequence[str],
    *,
    checkout_id: str,
    profile_id: str | None,
) -> None:
    """Hold one use of each promotion for ``checkout_id`` (all or nothing).

    Refusals are 409 problems whose ``extra`` names the ``promotion_id``:

    * ``promotion_not_found``/``promotion_inactive`` — it was deleted or switched off since
      the quote;
    * ``promotion_limit_reached`` — every use of ``usage_limit`` is held or used;
    * ``promotion_profile_limit_reached`` — this customer (every profile of their identity
      cluster) already holds or used ``usage_limit_per_profile`` uses;
    * ``promotion_profile_required`` — a per-customer limit cannot be counted for a guest;
    * ``not_your_code`` — a personal code held for another customer.

    Holding again for the same checkout is a no-op for uses already held or used (a retried
    checkout does not take two), and re-takes a released one.
    """
    with session.begin_nested():
        for promotion_id in sorted(set(promotion_ids)):
            _hold_one(session, promotion_id, checkout_id=checkout_id, profile_id=profile_id)


def _hold_one(
    session: Session, promotion_id: str, *, checkout_id: str, profile_id: str | None
) -> None:
    existing = session.scalar(
        select(PromotionUsage)
        .where(
            PromotionUsage.promotion_id == promotion_id,
            PromotionUsage.checkout_id == checkout_id,
        )
        .execution_options(populate_existing=True)
    )
    if existing is not None and existing.status in (HELD, USED):
        return
    promotion = session.get(Promotion, promotion_id, populate_existing=True)
    if promotion is None:
        raise NotFound(
            f"no promotion {promotion_id[:40]!r}",
            code="promotion_not_found",
            extra={"promotion_id": promotion_id[:40]},
        )
    if promotion.profile_id is not None and not _same_person(
        session, promotion.profile_id, profile_id
    ):
        raise _refusal(
            "not_your_code", "this code belongs to another customer", promotion, "not yours"
        )
    if promotion.usage_limit_per_profile is not None and profile_id is None:
        raise _refusal(
            "promotion_profile_required",
            "this promotion is limited per customer: check out as a known customer",
            promotion,
            "needs a customer",
        )
    if not _take(session, promotion_id):
        session.refresh(promotion)
        if not promotion.active:
            raise _refusal(
                "promotion_inactive", "the promotion was switched off", promotion, "inactive"
            )
        raise _refusal(
            "promotion_limit_reached",
            f"the promotion's {promotion.usage_limit} uses are taken",
            promotion,
            "no uses left",
        )
    # The UPDATE above holds the promotion's row lock until the transaction ends, so no other
    # checkout can count (or add) this customer's uses of it meanwhile.
    if promotion.usage_limit_per_profile is not None:
        taken = session.scalar(
            select(func.count())
            .select_from(PromotionUsage)
            .where(
                PromotionUsage.promotion_id == promotion_id,
                PromotionUsage.profile_id.in_(_cluster(session, profile_id)),
                PromotionUsage.status.in_((HELD, USED)),
            )
        )
        if (taken or 0) >= promotion.usage_limit_per_profile:
            raise _refusal(
                "promotion_profile_limit_reached",
                f"this customer already has {promotion.usage_limit_per_profile} use(s)",
                promotion,
                "no uses left for this customer",
            )
    now = clock.now()
    if existing is not None:  # released earlier, taken again
        existing.status = HELD
        existing.profile_id = profile_id
        existing.order_id = None
        existing.updated_at = now
    else:
        session.add(
            PromotionUsage(
                id=new_id("pru"),
                promotion_id=promotion_id,
                checkout_id=checkout_id,
                profile_id=profile_id,
                status=HELD,
                created_at=now,
                updated_at=now,
            )
        )
    session.flush()


def confirm(session: Session, checkout_id: str, order_id: str) -> None:
    """The checkout became ``order_id``: its held uses are used (for good). Idempotent.

    A use released meanwhile (the checkout expired while the payment was still arriving) is
    taken again if the limit allows, else ``promotion_limit_reached`` is raised for checkout
    to decide (the order was paid: honour or refund)."""
    usages = session.scalars(
        select(PromotionUsage)
        .where(PromotionUsage.checkout_id == checkout_id)
        .order_by(PromotionUsage.promotion_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    now = clock.now()
    for usage in usages:
        if usage.status == USED:
            continue
        if usage.status == RELEASED and not _take(session, usage.promotion_id):
            raise _refusal(
                "promotion_limit_reached",
                "the hold was released and the promotion's uses are taken",
                usage.promotion_id,
                "no uses left",
            )
        usage.status = USED
        usage.order_id = order_id
        usage.updated_at = now
    session.flush()


def release(session: Session, checkout_id: str) -> None:
    """The checkout ended without an order: give its held uses back. Idempotent (uses already
    released, and uses confirmed by an order, are left alone)."""
    usages = session.scalars(
        select(PromotionUsage)
        .where(PromotionUsage.checkout_id == checkout_id, PromotionUsage.status == HELD)
        .order_by(PromotionUsage.promotion_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    now = clock.now()
    for usage in usages:
        if usage.status != HELD:  # re-read under the lock
            continue
        usage.status = RELEASED
        usage.updated_at = now
        _give_back(session, usage.promotion_id)
    session.flush()
