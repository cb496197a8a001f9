"""What ``loader.promotion_rows`` hands the engine: expired codes still reach it."""

from __future__ import annotations

from datetime import timedelta

from seamline.db.engine import Database
from seamline.kit import clock
from seamline.pricing import loader
from seamline.pricing.common import Line, PricingContext
from seamline.pricing.engine import price_cart
from seamline.pricing.tax import TaxConfig
from tests.pricing.helpers import make_promotion


def test_an_expired_code_is_reported_expired_not_unknown(db: Database) -> None:
    now = clock.now()
    past = now - timedelta(days=1)
    expired_code = make_promotion(
        db, code="OLD10", starts_at=past - timedelta(days=1), ends_at=past
    )
    make_promotion(db, starts_at=past - timedelta(days=1), ends_at=past)  # expired, automatic
    live = make_promotion(db)
    with db.transaction(readonly=True) as session:
        rows = loader.promotion_rows(session, currency="EUR", codes=["old10 "], now=now)
        assert sorted(r.id for r in rows) == sorted([expired_code, live])
        quote = price_cart(
            [Line(line_id="l1", variant_id="v", product_id="p", unit_price=1000, quantity=1)],
            promotions=[loader.to_engine(r) for r in rows],
            tax=TaxConfig(prices_include_tax=False),
            context=PricingContext(currency="EUR", now=now, channel="chn", codes=("old10 ",)),
        )
    assert [(r.code, r.reason) for r in quote.rejected] == [("old10", "expired")]
    assert [a.promotion_id for a in quote.applied] == [live]
