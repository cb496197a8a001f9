"""The demo brand: `build_demo` seeds Kettle & Kin, replays S1 through the API, checks it."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from sqlalchemy import func, select, update

from seamline.catalog.codes import gtin_check_digit_ok
from seamline.catalog.models import Product, Variant
from seamline.demo import build_demo, people, story
from seamline.demo.catalog import gtin13
from seamline.identity.models import TrackedEvent
from seamline.inventory.models import Location
from seamline.orders.models import Order
from seamline.pricing.models import Promotion
from seamline.runtime import build_runtime
from seamline.settings import Settings

CUSTOMERS = 30


@pytest.fixture(autouse=True)
def _few_customers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(people.CUSTOMERS_ENV, str(CUSTOMERS))


def _build(settings: Settings) -> tuple[bool, str]:
    out = io.StringIO()
    ok = build_demo(settings, console=Console(file=out, width=160))
    return ok, out.getvalue()


def _counts(settings: Settings) -> dict[str, int]:
    rt = build_runtime(settings)
    try:
        with rt.db.transaction(readonly=True) as session:
            return {
                "products": session.scalar(select(func.count()).select_from(Product)) or 0,
                "variants": session.scalar(select(func.count()).select_from(Variant)) or 0,
                "customers": people.seeded_count(session),
                "calls": session.scalar(select(func.count()).select_from(TrackedEvent)) or 0,
                "orders": session.scalar(select(func.count()).select_from(Order)) or 0,
            }
    finally:
        rt.close()


def test_gtin13_carries_the_gs1_check_digit() -> None:
    assert gtin13(1) == "0614141000012"
    assert all(gtin_check_digit_ok(gtin13(n)) for n in range(1, 200))


def test_the_demo_builds_its_brand_and_s1_holds_and_a_rerun_reuses_it(
    settings: Settings,
) -> None:
    ok, output = _build(settings)
    assert ok, output
    assert "✗" not in output
    assert "maya.okafor@example.com" in output
    rt = build_runtime(settings)
    try:
        with rt.db.transaction(readonly=True) as session:
            locations = list(session.scalars(select(Location)))
            assert len(locations) == 4
            assert all(loc.latitude is not None and loc.longitude is not None for loc in locations)
            assert {loc.kind for loc in locations} == {"warehouse", "store"}
            barcodes = list(session.scalars(select(Variant.barcode)))
            assert len(barcodes) == 150
            assert all(b is not None and len(b) == 13 and gtin_check_digit_ok(b) for b in barcodes)
    finally:
        rt.close()
    first = _counts(settings)
    assert first["products"] == 50
    assert first["customers"] == CUSTOMERS
    assert first["orders"] == 1

    again, output = _build(settings)
    assert again, output
    assert "already ran" in output
    assert _counts(settings) == first


def test_the_check_fails_when_the_end_state_does_not_hold(settings: Settings) -> None:
    ok, output = _build(settings)
    assert ok, output
    rt = build_runtime(settings)
    try:
        with rt.db.transaction(readonly=True) as session:
            soho = session.scalar(select(Location.id).where(Location.handle == "soho"))
            assert soho is not None
        email = "maya.okafor@example.com"

        def failed() -> set[str]:
            with rt.db.transaction(readonly=True) as session:
                return {c.name for c in story.check(session, email, soho) if not c.ok}

        assert failed() == set()
        with rt.db.transaction() as session:
            session.execute(update(Order).values(status="cancelled"))
        assert failed() == {"the cart became the order"}
        with rt.db.transaction() as session:
            session.execute(update(Order).values(status="paid"))
            session.execute(
                update(Promotion)
                .where(Promotion.profile_id.is_not(None))
                .values(usage_limit=2, used_count=2)
            )
        assert failed() == {"the personal code was used exactly once"}
        with rt.db.transaction(readonly=True) as session:
            assert story.check(session, "nobody@example.com", soho)[0].ok is False
    finally:
        rt.close()
