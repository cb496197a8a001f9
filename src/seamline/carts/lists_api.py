"""Routes for saved lists (thin: resolve the caller, call one service, return a schema)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
from seamline.carts import lists, view
from seamline.carts.schemas import (
    SHARE_CODE_PATTERN,
    ItemAdd,
    ItemUpdate,
    MovedToCart,
    MoveToCart,
    SavedListCreate,
    SavedListOut,
    SavedListSummary,
)
from seamline.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

router = APIRouter(prefix="/saved-lists", tags=["saved lists"])

ListId = Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
ItemId = Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_]+$")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem(404, "No such channel or profile"),
    **scoped("carts:write"),
)
def create_list(body: SavedListCreate, db: DB, caller: CurrentCaller) -> SavedListOut:
    """Start a list. Only secret keys may name a `profile_id`."""
    with db.transaction() as session:
        return lists.render(session, lists.create_list(session, body, caller=caller))


@router.get("", responses=problem(404, "No such profile"), **scoped("carts:read"))
def list_lists(
    db: DB,
    caller: CurrentCaller,
    profile_id: Annotated[str, Query(max_length=40, pattern=r"^[A-Za-z0-9_]+$")],
    cursor: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[SavedListSummary]:
    """A customer's lists — every profile of the same customer (secret keys)."""
    with db.transaction(readonly=True) as session:
        rows, next_cursor = lists.lists_of_profile(
            session, profile_id, caller=caller, cursor=cursor, limit=limit
        )
        return Page[SavedListSummary](data=rows, next_cursor=next_cursor)


@router.get("/by-code/{code}", **scoped("carts:read"))
def get_list_by_code(
    code: Annotated[str, Path(pattern=SHARE_CODE_PATTERN)], db: DB, caller: CurrentCaller
) -> SavedListOut:
    """Open a list by its share code (secret keys only: short codes can be guessed)."""
    with db.transaction(readonly=True) as session:
        return lists.render(session, lists.get_by_code(session, code, caller=caller))


@router.get("/{list_id}", **scoped("carts:read"))
def get_list(list_id: ListId, db: DB) -> SavedListOut:
    with db.transaction(readonly=True) as session:
        return lists.render(session, lists.find_list(session, list_id))


@router.post(
    "/{list_id}/items",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "Added to an item already listed", "model": SavedListOut}},
    **scoped("carts:write"),
)
def add_item(
    list_id: ListId, body: ItemAdd, db: DB, caller: CurrentCaller, response: Response
) -> SavedListOut:
    """Add a variant by id, or a scanned barcode (`added_via: scan`)."""
    with db.transaction() as session:
        saved, new = lists.add_item(session, list_id, body, caller=caller)
        if not new:
            response.status_code = status.HTTP_200_OK
        return lists.render(session, saved)


@router.patch("/{list_id}/items/{item_id}", **scoped("carts:write"))
def update_item(
    list_id: ListId, item_id: ItemId, body: ItemUpdate, db: DB, caller: CurrentCaller
) -> SavedListOut:
    with db.transaction() as session:
        return lists.render(
            session, lists.update_item(session, list_id, item_id, body, caller=caller)
        )


@router.delete("/{list_id}/items/{item_id}", **scoped("carts:write"))
def remove_item(list_id: ListId, item_id: ItemId, db: DB, caller: CurrentCaller) -> SavedListOut:
    with db.transaction() as session:
        return lists.render(session, lists.remove_item(session, list_id, item_id, caller=caller))


@router.post(
    "/{list_id}/items/{item_id}/move-to-cart",
    responses=problem(412, "If-Match names a version the cart no longer has"),
    **scoped("carts:write"),
)
def move_to_cart(
    list_id: ListId,
    item_id: ItemId,
    body: MoveToCart,
    db: DB,
    caller: CurrentCaller,
    response: Response,
    if_match: Annotated[
        str | None,
        Header(
            max_length=200,
            pattern=r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$",
            description="The cart's version the client last saw.",
        ),
    ] = None,
) -> MovedToCart:
    """Move an item, or part of its quantity, into a cart; the rest stays on the list."""
    with db.transaction() as session:
        saved, cart = lists.move_to_cart(
            session, list_id, item_id, body, caller=caller, if_match=if_match
        )
        cart_out = view.render(session, cart)
        response.headers["ETag"] = f'"{cart_out.version}"'
        return MovedToCart(saved_list=lists.render(session, saved), cart=cart_out)
