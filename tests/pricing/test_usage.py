"""Promotion usage limits: hold, confirm, release — and a real race on PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from seamline.db.engine import Database
from seamline.kit.errors import Conflict, NotFound, SeamlineError
from seamline.pricing import usage
from seamline.pricing.models import Promotion, PromotionUsage
from tests.pricing.helpers import make_profile, make_promotion


def used_count(db: Database, promotion_id: str) -> int:
    with db.transaction(readonly=True) as session:
        promotion = session.get(Promotion, promotion_id)
        assert promotion is not None
        return promotion.used_count


def statuses(db: Database, checkout_id: str) -> dict[str, str]:
    with db.transaction(readonly=True) as session:
        rows = session.scalars(
            select(PromotionUsage).where(PromotionUsage.checkout_id == checkout_id)
        )
        return {r.promotion_id: r.status for r in rows}


def hold(db: Database, ids: list[str], checkout_id: str, profile_id: str | None = None) -> None:
    with db.transaction() as session:
        usage.hold(session, ids, checkout_id=checkout_id, profile_id=profile_id)


def refusal(db: Database, ids: list[str], checkout_id: str, profile_id: str | None = None) -> Any:
    with pytest.raises(SeamlineError) as raised:
        hold(db, ids, checkout_id, profile_id)
    return raised.value


def test_hold_confirm_release(db: Database) -> None:
    a = make_promotion(db, usage_limit=2)
    b = make_promotion(db)  # no limit: still counted
    hold(db, [b, a, a], "chk_1")
    assert (used_count(db, a), used_count(db, b)) == (1, 1)
    assert statuses(db, "chk_1") == {a: "held", b: "held"}
    hold(db, [a, b], "chk_1")  # a retried checkout takes nothing more
    assert used_count(db, a) == 1
    with db.transaction() as session:
        usage.confirm(session, "chk_1", "ord_1")
        usage.confirm(session, "chk_1", "ord_1")  # idempotent
    assert statuses(db, "chk_1") == {a: "used", b: "used"}
    with db.transaction(readonly=True) as session:
        rows = session.scalars(select(PromotionUsage.order_id)).all()
        assert set(rows) == {"ord_1"}
    with db.transaction() as session:
        usage.release(session, "chk_1")  # a used checkout keeps its uses
    assert used_count(db, a) == 1
    hold(db, [a], "chk_2")
    assert used_count(db, a) == 2
    problem = refusal(db, [a], "chk_3")
    assert isinstance(problem, Conflict)
    assert problem.code == "promotion_limit_reached"
    assert problem.extra["promotion_id"] == a
    assert [e.path for e in problem.errors] == [f"promotions.{a}"]
    with db.transaction() as session:
        usage.release(session, "chk_2")
    assert used_count(db, a) == 1
    assert statuses(db, "chk_2") == {a: "released"}
    with db.transaction() as session:
        usage.release(session, "chk_2")  # idempotent: nothing is given back twice
        usage.release(session, "chk_never")
    assert used_count(db, a) == 1
    hold(db, [a], "chk_3")  # the released use is free again
    assert used_count(db, a) == 2


def test_hold_is_all_or_nothing(db: Database) -> None:
    free = make_promotion(db)
    full = make_promotion(db, usage_limit=1)
    hold(db, [full], "chk_0")
    # ``free`` sorts first and is taken before ``full`` refuses; the savepoint undoes it even
    # when the caller catches the error and commits.
    with db.transaction() as session, pytest.raises(Conflict):
        usage.hold(session, [free, full], checkout_id="chk_1", profile_id=None)
    assert used_count(db, free) == 0
    assert statuses(db, "chk_1") == {}


def test_per_profile_limit_counts_the_identity_cluster(db: Database) -> None:
    promotion = make_promotion(db, usage_limit_per_profile=1)
    alice = make_profile(db)
    alice_in_store = make_profile(db, cluster_id=alice)
    bob = make_profile(db)
    hold(db, [promotion], "chk_1", alice)
    problem = refusal(db, [promotion], "chk_2", alice)
    assert problem.code == "promotion_profile_limit_reached"
    problem = refusal(db, [promotion], "chk_3", alice_in_store)
    assert problem.code == "promotion_profile_limit_reached"
    assert used_count(db, promotion) == 1  # refusals give their unit back
    hold(db, [promotion], "chk_4", bob)
    with db.transaction() as session:
        usage.release(session, "chk_1")
    hold(db, [promotion], "chk_5", alice_in_store)
    problem = refusal(db, [promotion], "chk_6", None)
    assert problem.code == "promotion_profile_required"


def test_personal_codes_belong_to_their_person(db: Database) -> None:
    owner = make_profile(db)
    same_person = make_profile(db, cluster_id=owner)
    stranger = make_profile(db)
    code = make_promotion(db, code="INSTA-K7Q-M9P", profile_id=owner, usage_limit=1)
    for who in (stranger, None, "prf_unknown"):
        problem = refusal(db, [code], f"chk_{who}", who)
        assert problem.code == "not_your_code"
        assert problem.status == 409
    hold(db, [code], "chk_ok", same_person)
    assert refusal(db, [code], "chk_again", owner).code == "promotion_limit_reached"


def test_inactive_and_missing_promotions(db: Database) -> None:
    off = make_promotion(db, active=False)
    assert refusal(db, [off], "chk_1").code == "promotion_inactive"
    problem = refusal(db, ["promo_nope"], "chk_2")
    assert isinstance(problem, NotFound)
    assert problem.code == "promotion_not_found"


def test_confirm_after_release_retakes_the_use(db: Database) -> None:
    promotion = make_promotion(db, usage_limit=1)
    hold(db, [promotion], "chk_1")
    with db.transaction() as session:
        usage.release(session, "chk_1")
    with db.transaction() as session:
        usage.confirm(session, "chk_1", "ord_1")
    assert used_count(db, promotion) == 1
    assert statuses(db, "chk_1") == {promotion: "used"}
    # released, and meanwhile someone else took the only use: confirm says so
    other = make_promotion(db, usage_limit=1)
    hold(db, [other], "chk_2")
    with db.transaction() as session:
        usage.release(session, "chk_2")
    hold(db, [other], "chk_3")
    with pytest.raises(Conflict) as raised, db.transaction() as session:
        usage.confirm(session, "chk_2", "ord_2")
    assert raised.value.code == "promotion_limit_reached"


@pytest.mark.postgres_only
def test_thirty_checkouts_race_for_five_uses(db: Database) -> None:
    promotion = make_promotion(db, code="FIVE", usage_limit=5)
    buyers = 30
    start = threading.Barrier(buyers)

    def checkout(i: int) -> str:
        start.wait()
        try:
            with db.transaction() as session:
                usage.hold(session, [promotion], checkout_id=f"chk_{i}", profile_id=None)
        except SeamlineError as exc:
            return exc.code
        return "held"

    with ThreadPoolExecutor(max_workers=buyers) as pool:
        results = list(pool.map(checkout, range(buyers)))
    assert results.count("held") == 5, results
    assert results.count("promotion_limit_reached") == buyers - 5, results
    assert used_count(db, promotion) == 5
    with db.transaction(readonly=True) as session:
        held = session.scalars(
            select(PromotionUsage).where(PromotionUsage.promotion_id == promotion)
        ).all()
        assert len(held) == 5
        assert {u.status for u in held} == {"held"}


@pytest.mark.postgres_only
def test_one_customer_racing_themselves_gets_one_use(db: Database) -> None:
    promotion = make_promotion(db, usage_limit_per_profile=1)
    profile = make_profile(db)
    tabs = 10
    start = threading.Barrier(tabs)

    def checkout(i: int) -> str:
        start.wait()
        try:
            with db.transaction() as session:
                usage.hold(session, [promotion], checkout_id=f"chk_{i}", profile_id=profile)
        except SeamlineError as exc:
            return exc.code
        return "held"

    with ThreadPoolExecutor(max_workers=tabs) as pool:
        results = list(pool.map(checkout, range(tabs)))
    assert results.count("held") == 1, results
    assert used_count(db, promotion) == 1
