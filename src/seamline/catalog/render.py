"""Catalog objects as API shapes, loaded a page at a time (a fixed number of queries)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.catalog.models import CollectionProduct, Listing, Price, Product, Variant
from seamline.catalog.schemas import ListingOut, PriceOut, ProductOut, VariantOut


def render(session: Session, products: Sequence[Product]) -> list[ProductOut]:
    """Products with variants, prices, listings and collections: four queries for the page."""
    ids = [p.id for p in products]
    if not ids:
        return []
    variants = list(
        session.scalars(
            select(Variant)
            .where(Variant.product_id.in_(ids))
            .order_by(Variant.product_id, Variant.position, Variant.id)
        )
    )
    prices = prices_of(session, select(Variant.id).where(Variant.product_id.in_(ids)))
    listings: dict[str, list[Listing]] = defaultdict(list)
    for listing in session.scalars(
        select(Listing).where(Listing.product_id.in_(ids)).order_by(Listing.channel_id)
    ):
        listings[listing.product_id].append(listing)
    collections: dict[str, list[str]] = defaultdict(list)
    for cid, pid in session.execute(
        select(CollectionProduct.collection_id, CollectionProduct.product_id)
        .where(CollectionProduct.product_id.in_(ids))
        .order_by(CollectionProduct.collection_id)
    ):
        collections[pid].append(cid)
    by_product: dict[str, list[VariantOut]] = defaultdict(list)
    for v in variants:
        by_product[v.product_id].append(_variant_out(v, prices.get(v.id, {})))
    return [
        ProductOut(
            id=p.id,
            title=p.title,
            handle=p.handle,
            description=p.description,
            status=p.status,
            tags=p.tags,
            media=p.media,
            attributes=p.attributes,
            variants=by_product[p.id],
            listings=[listing_out(x) for x in listings[p.id]],
            collection_ids=collections[p.id],
            created_at=p.created_at,
            updated_at=p.updated_at,
        )
        for p in products
    ]


def prices_of(session: Session, variant_ids: Any) -> dict[str, dict[str, PriceOut]]:
    out: dict[str, dict[str, PriceOut]] = defaultdict(dict)
    for price in session.scalars(
        select(Price).where(Price.variant_id.in_(variant_ids)).order_by(Price.currency)
    ):
        out[price.variant_id][price.currency] = PriceOut(
            amount=price.amount, compare_at=price.compare_at
        )
    return out


def _variant_out(variant: Variant, prices: dict[str, PriceOut]) -> VariantOut:
    return VariantOut(
        id=variant.id,
        product_id=variant.product_id,
        sku=variant.sku,
        barcode=variant.barcode,
        title=variant.title,
        options=variant.options,
        weight_grams=variant.weight_grams,
        prices=prices,
        created_at=variant.created_at,
        updated_at=variant.updated_at,
    )


def render_variant(session: Session, variant: Variant) -> VariantOut:
    return _variant_out(variant, prices_of(session, [variant.id]).get(variant.id, {}))


def listing_out(listing: Listing) -> ListingOut:
    return ListingOut(
        product_id=listing.product_id,
        channel_id=listing.channel_id,
        published=listing.published,
        published_at=listing.published_at,
        updated_at=listing.updated_at,
    )
