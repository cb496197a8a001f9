"""Collections: named, hand-curated groups of products (``col_…``).

Every change emits a ``collection.*`` event (aggregate ``collection``) in its transaction:
``created``, ``updated``, ``deleted``, ``product_added``, ``product_removed``."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seamline.catalog.models import Collection, CollectionProduct
from seamline.catalog.schemas import CollectionCreate, CollectionUpdate
from seamline.catalog.service import find_product
from seamline.db.dialect import insert_ignoring_conflict
from seamline.db.lookup import get_or_404, usable_id
from seamline.db.pagination import keyset_page
from seamline.events.outbox import emit
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, NotFound
from seamline.kit.ids import new_id


def _handle_taken(handle: str) -> Conflict:
    return Conflict(
        f"a collection with handle {handle!r} exists",
        code="collection_handle_taken",
        errors=[FieldError("body.handle", "already taken", "taken")],
    )


def _emit(session: Session, collection: Collection, what: str, **extra: str) -> None:
    emit(
        session,
        f"collection.{what}",
        aggregate_type="collection",
        aggregate_id=collection.id,
        payload={"id": collection.id, "handle": collection.handle, "title": collection.title}
        | extra,
    )


def find_collection(session: Session, collection_id: str) -> Collection:
    return get_or_404(
        session, Collection, collection_id, what="collection", code="collection_not_found"
    )


def create_collection(session: Session, data: CollectionCreate) -> Collection:
    """A collection's handle is unique, like a product's."""
    if session.scalar(select(Collection.id).where(Collection.handle == data.handle)):
        raise _handle_taken(data.handle)
    now = clock.now()
    collection = Collection(
        id=new_id("col"), handle=data.handle, title=data.title, created_at=now, updated_at=now
    )
    session.add(collection)
    try:
        session.flush()
    except IntegrityError as exc:
        raise _handle_taken(data.handle) from exc
    _emit(session, collection, "created")
    return collection


def list_collections(
    session: Session, *, cursor: str | None = None, limit: int = 50
) -> tuple[list[Collection], str | None]:
    return keyset_page(
        session, select(Collection), Collection.id, after=cursor or None, limit=limit
    )


def update_collection(session: Session, collection_id: str, data: CollectionUpdate) -> Collection:
    collection = find_collection(session, collection_id)
    changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    changes = {k: v for k, v in changes.items() if getattr(collection, k) != v}
    if "handle" in changes and session.scalar(
        select(Collection.id).where(Collection.handle == changes["handle"])
    ):
        raise _handle_taken(changes["handle"])
    if changes:
        for field, value in changes.items():
            setattr(collection, field, value)
        collection.updated_at = clock.now()
        try:
            session.flush()
        except IntegrityError as exc:
            raise _handle_taken(collection.handle) from exc
        _emit(session, collection, "updated")
    return collection


def delete_collection(session: Session, collection_id: str) -> None:
    """Remove a collection and its memberships; the products stay."""
    collection = find_collection(session, collection_id)
    session.execute(
        delete(CollectionProduct).where(CollectionProduct.collection_id == collection.id)
    )
    _emit(session, collection, "deleted")
    session.delete(collection)
    session.flush()


def add_product(session: Session, collection_id: str, product_id: str) -> None:
    """Put a product in a collection; adding it twice is harmless."""
    collection = find_collection(session, collection_id)
    product = find_product(session, product_id)
    # ON CONFLICT DO NOTHING: two concurrent adds of the same product both succeed.
    added = insert_ignoring_conflict(
        session,
        CollectionProduct,
        {"collection_id": collection.id, "product_id": product.id, "added_at": clock.now()},
        on=["collection_id", "product_id"],
    )
    if added:
        _emit(session, collection, "product_added", product_id=product.id)


def remove_product(session: Session, collection_id: str, product_id: str) -> None:
    collection = find_collection(session, collection_id)
    member = (
        session.get(CollectionProduct, (collection.id, product_id))
        if usable_id(product_id)
        else None
    )
    if member is None:
        raise NotFound("the product is not in that collection", code="membership_not_found")
    session.delete(member)
    session.flush()
    _emit(session, collection, "product_removed", product_id=product_id)
