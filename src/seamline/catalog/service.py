"""Rules of the catalog: products with their variants, prices and channel listings, and search.

Every change emits an event with ``aggregate_type="product"`` so a consumer sees a product's
events in order (``product.created`` before its ``variant.created`` and ``price.changed``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.catalog import codes
from seamline.catalog.models import CollectionProduct, Listing, Price, Product, Variant
from seamline.catalog.render import prices_of, render, render_variant
from seamline.catalog.schemas import (
    PriceIn,
    PricesSet,
    ProductCreate,
    ProductOut,
    ProductSummary,
    ProductUpdate,
    VariantCreate,
    VariantMatch,
    VariantOut,
    VariantUpdate,
)
from seamline.db.lookup import get_or_404, not_found, usable_id
from seamline.db.pagination import keyset_page
from seamline.events.outbox import emit
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, NotFound
from seamline.kit.ids import new_id

MAX_QUERY_LENGTH = 200


# -- who sees what ---------------------------------------------------------------------------


def storefront_only(caller: Caller | None) -> bool:
    """Publishable keys live in browsers: they see active products published on a channel."""
    return caller is not None and caller.kind == "publishable"


def _visible() -> ColumnElement[bool]:
    published = exists().where(Listing.product_id == Product.id, Listing.published.is_(True))
    return (Product.status == "active") & published


# -- lookups ---------------------------------------------------------------------------------


def find_product(
    session: Session, product_id: str, *, caller: Caller | None = None, for_update: bool = False
) -> Product:
    product = None
    if usable_id(product_id):
        stmt = select(Product).where(Product.id == product_id)
        if storefront_only(caller):
            stmt = stmt.where(_visible())
        if for_update:
            stmt = stmt.with_for_update()
        product = session.scalars(stmt).one_or_none()
    if product is None:
        raise not_found("product", product_id, "product_not_found")
    return product


def find_variant(session: Session, variant_id: str, *, for_update: bool = False) -> Variant:
    return get_or_404(
        session,
        Variant,
        variant_id,
        what="variant",
        code="variant_not_found",
        for_update=for_update,
    )


# -- events ----------------------------------------------------------------------------------


def emit_product_event(
    session: Session, event_type: str, product_id: str, payload: dict[str, Any]
) -> None:
    emit(session, event_type, aggregate_type="product", aggregate_id=product_id, payload=payload)


def _product_snapshot(product: Product) -> dict[str, Any]:
    return {
        "id": product.id,
        "handle": product.handle,
        "title": product.title,
        "status": product.status,
        "tags": product.tags,
    }


def _variant_snapshot(variant: Variant) -> dict[str, Any]:
    return {
        "id": variant.id,
        "product_id": variant.product_id,
        "sku": variant.sku,
        "barcode": variant.barcode,
        "options": variant.options,
        "weight_grams": variant.weight_grams,
    }


# -- conflicts -------------------------------------------------------------------------------


def handle_taken(handle: str, path: str = "body.handle") -> Conflict:
    return Conflict(
        f"a product with handle {handle!r} exists",
        code="product_handle_taken",
        errors=[FieldError(path, "already taken", "taken")],
    )


def sku_taken(sku: str, path: str = "body.sku") -> Conflict:
    return Conflict(
        f"a variant with SKU {sku!r} exists",
        code="sku_taken",
        errors=[FieldError(path, "already taken", "taken")],
    )


def barcode_taken(code: str, path: str = "body.barcode") -> Conflict:
    return Conflict(
        f"a variant with barcode {code!r} exists",
        code="barcode_taken",
        errors=[FieldError(path, "already taken", "taken")],
    )


def _conflict_from(exc: IntegrityError, fallback: Conflict) -> Conflict:
    """Which unique index a concurrent writer won on (SQLite and PostgreSQL word it apart)."""
    message = str(exc.orig)
    for marker, code in (
        ("sku", "sku_taken"),
        ("barcode", "barcode_taken"),
        ("handle", "product_handle_taken"),
    ):
        if marker in message:
            return Conflict(f"lost a race: that {marker} was just taken", code=code)
    return fallback


def _flush(session: Session, fallback: Conflict) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        raise _conflict_from(exc, fallback) from exc


def _check_codes_free(
    session: Session, variants: Iterable[tuple[str, VariantCreate | VariantUpdate, str | None]]
) -> None:
    """Refuse SKUs and barcodes another variant holds: (path prefix, data, own id) triples."""
    seen_skus: dict[str, str] = {}
    seen_codes: dict[str, str] = {}
    for prefix, data, own_id in variants:
        if data.sku is not None:
            if data.sku in seen_skus:
                raise sku_taken(data.sku, f"{prefix}.sku")
            seen_skus[data.sku] = prefix
            holder = session.scalar(select(Variant.id).where(Variant.sku == data.sku))
            if holder is not None and holder != own_id:
                raise sku_taken(data.sku, f"{prefix}.sku")
        if data.barcode is not None:
            # The same GTIN written at another length (a UPC-A as EAN-13) is the same barcode.
            forms = codes.gtin_forms(data.barcode)
            if any(form in seen_codes for form in forms):
                raise barcode_taken(data.barcode, f"{prefix}.barcode")
            seen_codes.update(dict.fromkeys(forms, prefix))
            holders = session.scalars(select(Variant.id).where(Variant.barcode.in_(forms))).all()
            if any(holder != own_id for holder in holders):
                raise barcode_taken(data.barcode, f"{prefix}.barcode")


# -- products --------------------------------------------------------------------------------


def _search_text(title: str, handle: str, tags: list[str]) -> str:
    return codes.search_text(title, handle.replace("-", " "), " ".join(tags))


def _unique_tags(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))


def new_product(session: Session, data: ProductCreate) -> Product:
    """Insert a product and its variants (with prices); emits the created events."""
    handle = data.handle or _free_handle(session, data.title)
    if session.scalar(select(Product.id).where(Product.handle == handle)):
        raise handle_taken(handle)
    _check_codes_free(
        session, ((f"body.variants.{i}", v, None) for i, v in enumerate(data.variants))
    )
    now = clock.now()
    tags = _unique_tags(data.tags or [])
    product = Product(
        id=new_id("prd"),
        title=data.title,
        handle=handle,
        description=data.description or "",
        status=data.status,
        tags=tags,
        media=data.media or [],
        attributes=data.attributes or {},
        search_text=_search_text(data.title, handle, tags),
        created_at=now,
        updated_at=now,
    )
    session.add(product)
    _flush(session, handle_taken(handle))
    emit_product_event(session, "product.created", product.id, _product_snapshot(product))
    for position, variant_data in enumerate(data.variants):
        new_variant(session, product, variant_data, position=position)
    return product


def _free_handle(session: Session, title: str) -> str:
    base = codes.slugify(title, 90) or "product"
    if not session.scalar(select(Product.id).where(Product.handle == base)):
        return base
    return f"{base}-{new_id('x')[-6:]}"


def create_product(session: Session, data: ProductCreate) -> ProductOut:
    """Create a product with its variants and prices in one go; SKUs, barcodes and the handle
    must be free (409 with the field path otherwise)."""
    return render(session, [new_product(session, data)])[0]


def get_product(session: Session, product_id: str, *, caller: Caller | None = None) -> ProductOut:
    return render(session, [find_product(session, product_id, caller=caller)])[0]


def list_products(
    session: Session,
    *,
    caller: Caller | None = None,
    status: str | None = None,
    collection_id: str | None = None,
    channel_id: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[ProductOut], str | None]:
    """Products in id order with filters; ``q`` matches a name (substring of the folded title,
    handle and tags), or a SKU or barcode exactly (through their unique indexes)."""
    stmt = select(Product)
    if storefront_only(caller):
        stmt = stmt.where(_visible())
    if status:
        stmt = stmt.where(Product.status == status)
    if collection_id:
        stmt = stmt.where(
            exists().where(
                CollectionProduct.product_id == Product.id,
                CollectionProduct.collection_id == collection_id,
            )
        )
    if channel_id:
        stmt = stmt.where(
            exists().where(Listing.product_id == Product.id, Listing.channel_id == channel_id)
        )
    if q:
        stmt = stmt.where(_matches(q))
    rows, next_cursor = keyset_page(session, stmt, Product.id, after=cursor or None, limit=limit)
    return render(session, rows), next_cursor


def _matches(q: str) -> ColumnElement[bool]:
    raw = q.strip()[:MAX_QUERY_LENGTH]
    by_code = select(Variant.product_id).where(
        (Variant.sku == raw) | Variant.barcode.in_(codes.gtin_forms(raw))
    )
    folded = codes.fold(raw)
    by_name = Product.search_text.contains(folded, autoescape=True)
    return by_name | Product.id.in_(by_code)


def change_product(session: Session, product: Product, data: ProductUpdate) -> bool:
    """Apply the fields sent (``null`` is ignored); returns whether anything changed. A request
    that changes nothing writes nothing and emits nothing."""
    changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    if "tags" in changes:
        changes["tags"] = _unique_tags(changes["tags"])
    changes = {k: v for k, v in changes.items() if getattr(product, k) != v}
    if "handle" in changes and session.scalar(
        select(Product.id).where(Product.handle == changes["handle"])
    ):
        raise handle_taken(changes["handle"])
    if not changes:
        return False
    for field, value in changes.items():
        setattr(product, field, value)
    product.search_text = _search_text(product.title, product.handle, product.tags)
    product.updated_at = clock.now()
    _flush(session, handle_taken(product.handle))
    emit_product_event(session, "product.updated", product.id, _product_snapshot(product))
    return True


def update_product(session: Session, product_id: str, data: ProductUpdate) -> ProductOut:
    product = find_product(session, product_id, for_update=True)
    change_product(session, product, data)
    return render(session, [product])[0]


# -- variants and prices ---------------------------------------------------------------------


def new_variant(
    session: Session, product: Product, data: VariantCreate, *, position: int | None = None
) -> Variant:
    if position is None:
        _check_codes_free(session, [("body", data, None)])
        position = len(
            list(session.scalars(select(Variant.id).where(Variant.product_id == product.id)))
        )
    now = clock.now()
    variant = Variant(
        id=new_id("var"),
        product_id=product.id,
        sku=data.sku,
        barcode=data.barcode,
        title=data.title or "",
        options=dict(data.options),
        weight_grams=data.weight_grams,
        position=position,
        created_at=now,
        updated_at=now,
    )
    session.add(variant)
    _flush(session, sku_taken(data.sku))
    emit_product_event(session, "variant.created", product.id, _variant_snapshot(variant))
    if data.prices:
        apply_prices(session, variant, dict(data.prices))
    return variant


def create_variant(session: Session, product_id: str, data: VariantCreate) -> VariantOut:
    """Add a variant to a product; its SKU and barcode must be free."""
    product = find_product(session, product_id, for_update=True)
    return render_variant(session, new_variant(session, product, data))


def change_variant(session: Session, variant: Variant, data: VariantUpdate) -> bool:
    """Apply the fields sent; ``null`` clears barcode and weight and is ignored elsewhere."""
    _check_codes_free(session, [("body", data, variant.id)])
    changes = {
        k: v
        for k, v in data.model_dump(exclude_unset=True).items()
        if not (v is None and k in ("sku", "title", "options"))
    }
    changes = {k: v for k, v in changes.items() if getattr(variant, k) != v}
    if not changes:
        return False
    for field, value in changes.items():
        setattr(variant, field, value)
    variant.updated_at = clock.now()
    _flush(session, sku_taken(variant.sku))
    emit_product_event(session, "variant.updated", variant.product_id, _variant_snapshot(variant))
    return True


def update_variant(session: Session, variant_id: str, data: VariantUpdate) -> VariantOut:
    variant = find_variant(session, variant_id, for_update=True)
    change_variant(session, variant, data)
    return render_variant(session, variant)


def apply_prices(session: Session, variant: Variant, wanted: dict[str, PriceIn | None]) -> bool:
    """Set (or with ``None`` remove) prices per currency; emits ``price.changed`` once when any
    differs. Returns whether anything changed."""
    current = {
        p.currency: p for p in session.scalars(select(Price).where(Price.variant_id == variant.id))
    }
    now = clock.now()
    changed: list[str] = []
    for currency, price in sorted(wanted.items()):
        row = current.get(currency)
        if price is None:
            if row is not None:
                session.delete(row)
                changed.append(currency)
            continue
        if row is None:
            session.add(
                Price(
                    variant_id=variant.id,
                    currency=currency,
                    amount=price.amount,
                    compare_at=price.compare_at,
                    updated_at=now,
                )
            )
            changed.append(currency)
        elif (row.amount, row.compare_at) != (price.amount, price.compare_at):
            row.amount, row.compare_at, row.updated_at = price.amount, price.compare_at, now
            changed.append(currency)
    if not changed:
        return False
    session.flush()
    prices = prices_of(session, [variant.id]).get(variant.id, {})
    emit_product_event(
        session,
        "price.changed",
        variant.product_id,
        {
            "variant_id": variant.id,
            "sku": variant.sku,
            "changed": changed,
            "prices": {c: p.model_dump() for c, p in prices.items()},
        },
    )
    return True


def set_prices(session: Session, variant_id: str, data: PricesSet) -> VariantOut:
    """Set prices of the currencies sent; ``null`` removes one. Others stay as they are."""
    variant = find_variant(session, variant_id, for_update=True)
    apply_prices(session, variant, dict(data.prices))
    return render_variant(session, variant)


def lookup_variant(session: Session, code: str, *, caller: Caller | None = None) -> VariantMatch:
    """Find a variant by exact SKU, else by barcode (any GTIN length): one unique-index probe
    each. Storefront keys find only variants of visible products."""
    code = code.strip()
    variant = session.scalars(select(Variant).where(Variant.sku == code)).one_or_none()
    matched = "sku"
    if variant is None:
        matched = "barcode"
        variant = session.scalars(
            select(Variant).where(Variant.barcode.in_(codes.gtin_forms(code))).limit(1)
        ).first()
    product = None
    if variant is not None:
        stmt = select(Product).where(Product.id == variant.product_id)
        if storefront_only(caller):
            stmt = stmt.where(_visible())
        product = session.scalars(stmt).one_or_none()
    if variant is None or product is None:
        raise NotFound("no variant has that SKU or barcode", code="variant_not_found")
    return VariantMatch(
        variant=render_variant(session, variant),
        product=ProductSummary(
            id=product.id,
            title=product.title,
            handle=product.handle,
            status=product.status,
        ),
        matched=matched,
    )
