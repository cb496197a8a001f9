"""Catalog routes: resolve the caller, call one service function, return."""

from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
from seamline.catalog import collections, imports, listings, service
from seamline.catalog.schemas import (
    CollectionCreate,
    CollectionOut,
    CollectionUpdate,
    ImportReport,
    ListingOut,
    ListingSet,
    PricesSet,
    ProductCreate,
    ProductOut,
    ProductStatus,
    ProductUpdate,
    VariantCreate,
    VariantMatch,
    VariantOut,
    VariantUpdate,
)
from seamline.kit.errors import FieldError, Unprocessable
from seamline.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

router = APIRouter(tags=["catalog"])

Cursor = Annotated[
    str | None,
    Query(
        max_length=64, pattern=r"^[a-z0-9_]+$", description="`next_cursor` of the previous page."
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
IdFilter = Annotated[str | None, Query(max_length=40, pattern=r"^[a-z0-9_]+$")]
CSV_CONTENT = {"text/csv": {"schema": {"type": "string"}}}


def _with_csv_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    extra = dict(kwargs["openapi_extra"])
    extra["requestBody"] = {"required": True, "content": CSV_CONTENT}
    return {**kwargs, "openapi_extra": extra}


# -- products --------------------------------------------------------------------------------


@router.post("/products", status_code=status.HTTP_201_CREATED, **scoped("catalog:write"))
def create_product(body: ProductCreate, db: DB) -> ProductOut:
    """Create a product with its variants and their prices in one request."""
    with db.transaction() as session:
        return service.create_product(session, body)


@router.get("/products", **scoped("catalog:read"))
def list_products(
    db: DB,
    caller: CurrentCaller,
    status: ProductStatus | None = None,
    collection: IdFilter = None,
    channel: IdFilter = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            pattern=r"^[^\x00]*$",
            description="A name (substring, any case or accent), or an exact SKU or barcode.",
        ),
    ] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[ProductOut]:
    """Products in creation order. Publishable keys see only active products published on a
    channel."""
    with db.transaction(readonly=True) as session:
        rows, next_cursor = service.list_products(
            session,
            caller=caller,
            status=status,
            collection_id=collection,
            channel_id=channel,
            q=q,
            cursor=cursor,
            limit=limit,
        )
        return Page[ProductOut](data=rows, next_cursor=next_cursor)


@router.get("/products/{product_id}", **scoped("catalog:read"))
def get_product(product_id: str, db: DB, caller: CurrentCaller) -> ProductOut:
    with db.transaction(readonly=True) as session:
        return service.get_product(session, product_id, caller=caller)


@router.patch("/products/{product_id}", **scoped("catalog:write"))
def update_product(product_id: str, body: ProductUpdate, db: DB) -> ProductOut:
    with db.transaction() as session:
        return service.update_product(session, product_id, body)


@router.post(
    "/products/{product_id}/variants",
    status_code=status.HTTP_201_CREATED,
    **scoped("catalog:write"),
)
def create_variant(product_id: str, body: VariantCreate, db: DB) -> VariantOut:
    with db.transaction() as session:
        return service.create_variant(session, product_id, body)


@router.put("/products/{product_id}/listings/{channel_id}", **scoped("catalog:write"))
def set_listing(product_id: str, channel_id: str, body: ListingSet, db: DB) -> ListingOut:
    """List the product on a channel, published or not."""
    with db.transaction() as session:
        return listings.set_listing(session, product_id, channel_id, published=body.published)


@router.delete(
    "/products/{product_id}/listings/{channel_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    **scoped("catalog:write"),
)
def remove_listing(product_id: str, channel_id: str, db: DB) -> None:
    """Take the product off the channel."""
    with db.transaction() as session:
        listings.remove_listing(session, product_id, channel_id)


# -- variants --------------------------------------------------------------------------------


@router.get(
    "/variants/lookup",
    responses=problem(404, "No variant has that code"),
    **scoped("catalog:read"),
)
def lookup_variant(
    db: DB,
    caller: CurrentCaller,
    code: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._/-]+$")],
) -> VariantMatch:
    """Find a variant by exact SKU or barcode (a scanner's GTIN at any length)."""
    with db.transaction(readonly=True) as session:
        return service.lookup_variant(session, code, caller=caller)


@router.patch("/variants/{variant_id}", **scoped("catalog:write"))
def update_variant(variant_id: str, body: VariantUpdate, db: DB) -> VariantOut:
    with db.transaction() as session:
        return service.update_variant(session, variant_id, body)


@router.put("/variants/{variant_id}/prices", **scoped("catalog:write"))
def set_prices(variant_id: str, body: PricesSet, db: DB) -> VariantOut:
    """Set the prices of the currencies sent (`null` removes one); one price per currency is
    used on every channel."""
    with db.transaction() as session:
        return service.set_prices(session, variant_id, body)


# -- collections -----------------------------------------------------------------------------


@router.post("/collections", status_code=status.HTTP_201_CREATED, **scoped("catalog:write"))
def create_collection(body: CollectionCreate, db: DB) -> CollectionOut:
    with db.transaction() as session:
        return CollectionOut.model_validate(collections.create_collection(session, body))


@router.get("/collections", **scoped("catalog:read"))
def list_collections(
    db: DB, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[CollectionOut]:
    with db.transaction(readonly=True) as session:
        rows, next_cursor = collections.list_collections(session, cursor=cursor, limit=limit)
        return Page[CollectionOut](
            data=[CollectionOut.model_validate(r) for r in rows], next_cursor=next_cursor
        )


@router.get("/collections/{collection_id}", **scoped("catalog:read"))
def get_collection(collection_id: str, db: DB) -> CollectionOut:
    with db.transaction(readonly=True) as session:
        return CollectionOut.model_validate(collections.find_collection(session, collection_id))


@router.patch("/collections/{collection_id}", **scoped("catalog:write"))
def update_collection(collection_id: str, body: CollectionUpdate, db: DB) -> CollectionOut:
    with db.transaction() as session:
        return CollectionOut.model_validate(
            collections.update_collection(session, collection_id, body)
        )


@router.delete(
    "/collections/{collection_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    **scoped("catalog:write"),
)
def delete_collection(collection_id: str, db: DB) -> None:
    """Delete a collection; its products stay in the catalog."""
    with db.transaction() as session:
        collections.delete_collection(session, collection_id)


@router.put(
    "/collections/{collection_id}/products/{product_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    **scoped("catalog:write"),
)
def add_to_collection(collection_id: str, product_id: str, db: DB) -> None:
    with db.transaction() as session:
        collections.add_product(session, collection_id, product_id)


@router.delete(
    "/collections/{collection_id}/products/{product_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    **scoped("catalog:write"),
)
def remove_from_collection(collection_id: str, product_id: str, db: DB) -> None:
    with db.transaction() as session:
        collections.remove_product(session, collection_id, product_id)


# -- CSV -------------------------------------------------------------------------------------


@router.post("/catalog/imports", **_with_csv_body(scoped("catalog:write")))
async def import_catalog(request: Request, db: DB) -> ImportReport:
    """Import a CSV file (one row per variant; see docs/catalog.md) all or nothing: a bad row
    refuses the whole file with a 422 listing `line.<n>.<column>` problems. Bodies over the
    API's 1 MiB limit are refused with 413; import larger files with the CLI."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unprocessable(
            "the CSV is not UTF-8 text",
            code="csv_unreadable",
            errors=[FieldError("body", f"not UTF-8 at byte {exc.start}", "not_utf8")],
        ) from exc

    def work() -> ImportReport:
        with db.transaction() as session:
            return imports.import_csv(session, text)

    return await run_in_threadpool(work)


@router.get(
    "/catalog/export",
    response_class=Response,
    responses={200: {"content": CSV_CONTENT, "description": "The catalog as CSV"}},
    **scoped("catalog:read"),
)
def export_catalog(db: DB, caller: CurrentCaller) -> Response:
    """The catalog in the import format; publishable keys get only what they may see."""
    out = io.StringIO()
    with db.transaction(readonly=True) as session:
        imports.export_csv(session, out, caller=caller)
    return Response(out.getvalue(), media_type="text/csv")
