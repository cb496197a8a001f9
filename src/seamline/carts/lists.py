"""Saved lists (S8): a wishlist or shopping list that follows its owner, built by scanning in a
store, shareable by code with staff, and bought in parts (an item, or some of its quantity,
moves to a cart; the rest stays on the list).

Ownership mirrors carts: an anonymous id and/or a profile; only secret keys may name a
profile, look a list up by its share code or list a customer's lists. Every change locks the
list row and emits a ``saved_list.*`` event with the customer's ``profile_id`` when known.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.carts import lines, service, sharing
from seamline.carts.models import Cart, SavedList, SavedListItem
from seamline.carts.schemas import (
    ItemAdd,
    ItemUpdate,
    MoveToCart,
    SavedListCreate,
    SavedListItemOut,
    SavedListOut,
    SavedListSummary,
)
from seamline.carts.view import titles
from seamline.catalog import service as catalog
from seamline.channels.service import get_channel
from seamline.db.lookup import get_or_404, not_found, usable_id
from seamline.db.pagination import keyset_page
from seamline.events.outbox import emit
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, Unprocessable
from seamline.kit.ids import new_id

MAX_ITEMS = 500
MAX_QUANTITY = 999


def find_list(session: Session, list_id: str, *, for_update: bool = False) -> SavedList:
    return get_or_404(
        session,
        SavedList,
        list_id,
        what="saved list",
        code="saved_list_not_found",
        for_update=for_update,
    )


def items_of(session: Session, list_id: str) -> list[SavedListItem]:
    return list(
        session.scalars(
            select(SavedListItem)
            .where(SavedListItem.list_id == list_id)
            .order_by(SavedListItem.added_at, SavedListItem.id)
        )
    )


def render(session: Session, saved: SavedList) -> SavedListOut:
    items = items_of(session, saved.id)
    names = titles(session, [i.variant_id for i in items])
    return SavedListOut(
        id=saved.id,
        share_code=saved.share_code,
        name=saved.name,
        profile_id=saved.profile_id,
        anonymous_id=saved.anonymous_id,
        channel_id=saved.channel_id,
        created_at=saved.created_at,
        updated_at=saved.updated_at,
        items=[
            SavedListItemOut(
                id=i.id,
                variant_id=i.variant_id,
                sku=names.get(i.variant_id, ("", ""))[0],
                title=names.get(i.variant_id, ("", ""))[1],
                quantity=i.quantity,
                note=i.note,
                added_via=i.added_via,
                added_at=i.added_at,
            )
            for i in items
        ],
    )


def _emit(session: Session, saved: SavedList, event_type: str, detail: dict[str, Any]) -> None:
    saved.updated_at = clock.now()
    session.flush()
    payload: dict[str, Any] = {
        "list_id": saved.id,
        "channel_id": saved.channel_id,
        "anonymous_id": saved.anonymous_id,
        **detail,
    }
    profile_id = saved.profile_id or sharing.profile_of_anonymous_id(session, saved.anonymous_id)
    if profile_id:
        payload["profile_id"] = profile_id
    emit(session, event_type, aggregate_type="saved_list", aggregate_id=saved.id, payload=payload)


def create_list(session: Session, data: SavedListCreate, *, caller: Caller | None) -> SavedList:
    if data.profile_id is not None:
        sharing.require_secret(caller, "set profile_id")
        sharing.profile_cluster(session, data.profile_id)
    if data.channel_id is not None:
        get_channel(session, data.channel_id)
    now = clock.now()
    saved = SavedList(
        id=new_id("lst"),
        share_code=sharing.new_share_code(session, SavedList),
        name=data.name,
        profile_id=data.profile_id,
        anonymous_id=data.anonymous_id,
        channel_id=data.channel_id,
        created_at=now,
        updated_at=now,
    )
    session.add(saved)
    session.flush()
    _emit(session, saved, "saved_list.created", {"name": saved.name})
    return saved


def get_by_code(session: Session, code: str, *, caller: Caller | None) -> SavedList:
    sharing.require_secret(caller, "look lists up by share code")
    saved = session.scalars(
        select(SavedList).where(SavedList.share_code == sharing.canonical_code(code))
    ).first()
    if saved is None:
        raise not_found("saved list with code", code, "saved_list_not_found")
    return saved


def lists_of_profile(
    session: Session,
    profile_id: str,
    *,
    caller: Caller | None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[SavedListSummary], str | None]:
    """Every list of the customer (the whole identity cluster), oldest first."""
    sharing.require_secret(caller, "list a customer's lists")
    cluster = sharing.profile_cluster(session, profile_id)
    stmt = select(SavedList).where(sharing.owned_by_cluster(session, SavedList, cluster))
    rows, next_cursor = keyset_page(session, stmt, SavedList.id, after=cursor, limit=limit)
    counts: dict[str, int] = {}
    if rows:
        counts = {
            list_id: int(n)
            for list_id, n in session.execute(
                select(SavedListItem.list_id, func.count())
                .where(SavedListItem.list_id.in_([r.id for r in rows]))
                .group_by(SavedListItem.list_id)
            )
        }
    return [
        SavedListSummary(
            id=r.id,
            share_code=r.share_code,
            name=r.name,
            profile_id=r.profile_id,
            anonymous_id=r.anonymous_id,
            channel_id=r.channel_id,
            item_count=counts.get(r.id, 0),
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
        for r in rows
    ], next_cursor


def _item_detail(item: SavedListItem) -> dict[str, Any]:
    return {
        "item_id": item.id,
        "variant_id": item.variant_id,
        "quantity": item.quantity,
        "added_via": item.added_via,
    }


def add_item(
    session: Session, list_id: str, data: ItemAdd, *, caller: Caller | None
) -> tuple[SavedList, bool]:
    """Add a variant (by id, or scanned: ``added_via: scan``); a variant already on the list
    gets the quantity added. Returns ``(list, new_item)``."""
    saved = find_list(session, list_id, for_update=True)
    if data.barcode is not None:
        variant_id = catalog.lookup_variant(session, data.barcode, caller=caller).variant.id
        via = "scan"
    else:
        assert data.variant_id is not None
        variant_id = catalog.find_variant(session, data.variant_id).id
        via = "api"
    item = session.scalars(
        select(SavedListItem).where(
            SavedListItem.list_id == saved.id, SavedListItem.variant_id == variant_id
        )
    ).first()
    if item is not None:
        total = item.quantity + data.quantity
        if total > MAX_QUANTITY:
            raise Unprocessable(
                f"an item holds at most {MAX_QUANTITY} units",
                code="item_quantity_exceeded",
                errors=[FieldError("body.quantity", f"at most {MAX_QUANTITY}", "too_big")],
            )
        item.quantity = total
        if data.note:
            item.note = data.note
        session.flush()
        _emit(session, saved, "saved_list.item_changed", _item_detail(item))
        return saved, False
    count = session.scalar(select(func.count()).where(SavedListItem.list_id == saved.id)) or 0
    if count >= MAX_ITEMS:
        raise Conflict(f"a list holds at most {MAX_ITEMS} items", code="too_many_items")
    item = SavedListItem(
        id=new_id("sli"),
        list_id=saved.id,
        variant_id=variant_id,
        quantity=data.quantity,
        note=data.note,
        added_via=via,
        added_at=clock.now(),
    )
    session.add(item)
    session.flush()
    _emit(session, saved, "saved_list.item_added", _item_detail(item))
    return saved, True


def _find_item(session: Session, saved: SavedList, item_id: str) -> SavedListItem:
    item = session.get(SavedListItem, item_id) if usable_id(item_id) else None
    if item is None or item.list_id != saved.id:
        raise not_found("saved list item", item_id, "saved_list_item_not_found")
    return item


def update_item(
    session: Session, list_id: str, item_id: str, data: ItemUpdate, *, caller: Caller | None
) -> SavedList:
    saved = find_list(session, list_id, for_update=True)
    item = _find_item(session, saved, item_id)
    touched = False
    if data.quantity is not None and data.quantity != item.quantity:
        item.quantity = data.quantity
        touched = True
    if data.note is not None and data.note != item.note:
        item.note = data.note
        touched = True
    if touched:
        session.flush()
        _emit(session, saved, "saved_list.item_changed", _item_detail(item))
    return saved


def remove_item(
    session: Session, list_id: str, item_id: str, *, caller: Caller | None
) -> SavedList:
    saved = find_list(session, list_id, for_update=True)
    item = _find_item(session, saved, item_id)
    detail = _item_detail(item)
    session.delete(item)
    session.flush()
    _emit(session, saved, "saved_list.item_removed", detail)
    return saved


def move_to_cart(
    session: Session,
    list_id: str,
    item_id: str,
    data: MoveToCart,
    *,
    caller: Caller | None,
    if_match: str | None = None,
) -> tuple[SavedList, Cart]:
    """Put an item (or ``quantity`` of it) into a cart; the rest stays on the list. The cart
    takes it like any added line (same variant and fulfilment: quantities add; pick-up is
    checked against the store's stock)."""
    saved = find_list(session, list_id, for_update=True)
    item = _find_item(session, saved, item_id)
    quantity = data.quantity if data.quantity is not None else item.quantity
    if quantity > item.quantity:
        raise Unprocessable(
            f"the item has {item.quantity}, not {quantity}",
            code="more_than_listed",
            errors=[FieldError("body.quantity", f"at most {item.quantity}", "too_big")],
        )
    cart = service.lock_cart(session, data.cart_id, if_match=if_match)
    lines.put_line(
        session,
        cart,
        variant_id=item.variant_id,
        quantity=quantity,
        fulfilment=data.fulfilment,
        pickup_location_id=data.pickup_location_id,
        caller=caller,
    )
    detail = {**_item_detail(item), "moved": quantity, "cart_id": cart.id}
    if quantity == item.quantity:
        session.delete(item)
        detail["quantity"] = 0
    else:
        item.quantity -= quantity
        detail["quantity"] = item.quantity
    session.flush()
    _emit(session, saved, "saved_list.item_moved_to_cart", detail)
    return saved, cart
