"""Routes for pricing (thin: resolve the caller, call one service, return a schema)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from seamline.pricing import rates_service, service
from seamline.pricing.schemas import (
    CODE_PATTERN,
    IssueCode,
    PromotionCreate,
    PromotionOut,
    PromotionUpdate,
    ShippingRateCreate,
    ShippingRateOut,
    ShippingRateUpdate,
    TaxRateCreate,
    TaxRateOut,
    TaxSettingsIn,
    TaxSettingsOut,
)

router = APIRouter(tags=["pricing"])

Cursor = Annotated[
    str | None,
    Query(
        max_length=64, pattern=r"^[a-z0-9_]+$", description="`next_cursor` of the previous page."
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Reference = Annotated[str | None, Query(max_length=40, pattern=r"^[A-Za-z0-9_.:-]+$")]


# -- promotions ------------------------------------------------------------------------------


@router.post("/promotions", status_code=status.HTTP_201_CREATED, **scoped("pricing:write"))
def create_promotion(body: PromotionCreate, db: DB, caller: CurrentCaller) -> PromotionOut:
    """Create a promotion: automatic (no `code`) or entered as a code at checkout."""
    with db.transaction() as session:
        return PromotionOut.model_validate(service.create_promotion(session, body, caller=caller))


@router.get("/promotions", **scoped("pricing:read"))
def list_promotions(
    db: DB,
    active: bool | None = None,
    code: Annotated[
        str | None,
        Query(pattern=CODE_PATTERN, description="The promotion with this code (any case)."),
    ] = None,
    profile_id: Annotated[Reference, Query(description="Personal codes of this profile.")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[PromotionOut]:
    with db.transaction(readonly=True) as session:
        rows, next_cursor = service.list_promotions(
            session, active=active, code=code, profile_id=profile_id, cursor=cursor, limit=limit
        )
        return Page[PromotionOut](
            data=[PromotionOut.model_validate(r) for r in rows], next_cursor=next_cursor
        )


@router.get("/promotions/{promotion_id}", **scoped("pricing:read"))
def get_promotion(promotion_id: str, db: DB) -> PromotionOut:
    with db.transaction(readonly=True) as session:
        return PromotionOut.model_validate(service.get_promotion(session, promotion_id))


@router.patch("/promotions/{promotion_id}", **scoped("pricing:write"))
def update_promotion(
    promotion_id: str, body: PromotionUpdate, db: DB, caller: CurrentCaller
) -> PromotionOut:
    """Change the fields sent. `usage_limit` never goes below `used_count` (409)."""
    with db.transaction() as session:
        return PromotionOut.model_validate(
            service.update_promotion(session, promotion_id, body, caller=caller)
        )


@router.post(
    "/promotions/{promotion_id}/issue-code",
    status_code=status.HTTP_201_CREATED,
    **scoped("pricing:write"),
)
def issue_code(promotion_id: str, body: IssueCode, db: DB, caller: CurrentCaller) -> PromotionOut:
    """Issue a personal, single-use code for one customer from a template promotion
    ("sign up on Instagram for a 10 % code")."""
    with db.transaction() as session:
        return PromotionOut.model_validate(
            service.issue_code(session, promotion_id, body, caller=caller)
        )


# -- tax -------------------------------------------------------------------------------------


@router.post("/tax-rates", status_code=status.HTTP_201_CREATED, **scoped("pricing:write"))
def create_tax_rate(body: TaxRateCreate, db: DB, caller: CurrentCaller) -> TaxRateOut:
    """Add a tax rate for a country or one of its regions."""
    with db.transaction() as session:
        return TaxRateOut.model_validate(
            rates_service.create_tax_rate(session, body, caller=caller)
        )


@router.get("/tax-rates", **scoped("pricing:read"))
def list_tax_rates(
    db: DB,
    country: Annotated[str | None, Query(pattern=r"^[A-Z]{2}$")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[TaxRateOut]:
    with db.transaction(readonly=True) as session:
        rows, next_cursor = rates_service.list_tax_rates(
            session, country=country, cursor=cursor, limit=limit
        )
        return Page[TaxRateOut](
            data=[TaxRateOut.model_validate(r) for r in rows], next_cursor=next_cursor
        )


@router.delete(
    "/tax-rates/{tax_rate_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    **scoped("pricing:write"),
)
def delete_tax_rate(tax_rate_id: str, db: DB, caller: CurrentCaller) -> None:
    with db.transaction() as session:
        rates_service.delete_tax_rate(session, tax_rate_id, caller=caller)


@router.get("/tax-settings", **scoped("pricing:read"))
def get_tax_settings(db: DB) -> TaxSettingsOut:
    with db.transaction(readonly=True) as session:
        return rates_service.get_tax_settings(session)


@router.put("/tax-settings", **scoped("pricing:write"))
def put_tax_settings(body: TaxSettingsIn, db: DB, caller: CurrentCaller) -> TaxSettingsOut:
    """Whether catalogue prices include tax, and whether shipping is taxed."""
    with db.transaction() as session:
        return rates_service.put_tax_settings(session, body, caller=caller)


# -- shipping rates --------------------------------------------------------------------------


@router.post("/shipping-rates", status_code=status.HTTP_201_CREATED, **scoped("pricing:write"))
def create_shipping_rate(
    body: ShippingRateCreate, db: DB, caller: CurrentCaller
) -> ShippingRateOut:
    """Add a shipping rate: flat, by weight band, or free over a threshold."""
    with db.transaction() as session:
        return ShippingRateOut.of(rates_service.create_shipping_rate(session, body, caller=caller))


@router.get("/shipping-rates", **scoped("pricing:read"))
def list_shipping_rates(
    db: DB,
    active: bool | None = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[ShippingRateOut]:
    with db.transaction(readonly=True) as session:
        rows, next_cursor = rates_service.list_shipping_rates(
            session, active=active, currency=currency, cursor=cursor, limit=limit
        )
        return Page[ShippingRateOut](
            data=[ShippingRateOut.of(r) for r in rows], next_cursor=next_cursor
        )


@router.get("/shipping-rates/{shipping_rate_id}", **scoped("pricing:read"))
def get_shipping_rate(shipping_rate_id: str, db: DB) -> ShippingRateOut:
    with db.transaction(readonly=True) as session:
        return ShippingRateOut.of(rates_service.get_shipping_rate(session, shipping_rate_id))


@router.patch("/shipping-rates/{shipping_rate_id}", **scoped("pricing:write"))
def update_shipping_rate(
    shipping_rate_id: str, body: ShippingRateUpdate, db: DB, caller: CurrentCaller
) -> ShippingRateOut:
    with db.transaction() as session:
        return ShippingRateOut.of(
            rates_service.update_shipping_rate(session, shipping_rate_id, body, caller=caller)
        )


@router.post("/shipping-rates/{shipping_rate_id}/deactivate", **scoped("pricing:write"))
def deactivate_shipping_rate(
    shipping_rate_id: str, db: DB, caller: CurrentCaller
) -> ShippingRateOut:
    """Stop offering a rate (idempotent); reactivate with `PATCH {"active": true}`."""
    with db.transaction() as session:
        return ShippingRateOut.of(
            rates_service.deactivate_shipping_rate(session, shipping_rate_id, caller=caller)
        )
