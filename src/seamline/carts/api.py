"""Routes for carts (thin: resolve the caller, call one service, return a schema).

Every cart response carries ``ETag: "<version>"``; writes accept ``If-Match`` (412 on a stale
version). The rules are in docs/carts.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from seamline.api.deps import DB, CurrentCaller, IfMatch, scoped
from seamline.api.problems import problem
from seamline.carts import lines, merge, service, sharing, view
from seamline.carts.models import Cart
from seamline.carts.schemas import (
    EMAIL_PATTERN,
    SHARE_CODE_PATTERN,
    CartCreate,
    CartOut,
    CartStatus,
    CartSummary,
    CodeAdd,
    LineAdd,
    LineUpdate,
    MergeRequest,
    ShippingOptions,
    ShippingSet,
)
from seamline.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

router = APIRouter(prefix="/carts", tags=["carts"])

CartId = Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
LineId = Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=64, pattern=r"^[a-z0-9_]+$", description="`next_cursor` of the previous page."
    ),
]
STALE = problem(412, "If-Match names a version the cart no longer has")
CART_HEADERS: dict[int | str, dict[str, Any]] = {
    200: {"headers": {"ETag": {"description": "The cart's version", "schema": {"type": "string"}}}}
}


def _out(response: Response, cart: CartOut) -> CartOut:
    response.headers["ETag"] = f'"{cart.version}"'
    return cart


def _render(session: Any, response: Response, cart: Cart) -> CartOut:
    return _out(response, view.render(session, cart))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "The customer's open cart, which already existed", "model": CartOut},
        **problem(404, "No such channel or profile"),
    },
    **scoped("carts:write"),
)
def create_cart(body: CartCreate, db: DB, caller: CurrentCaller, response: Response) -> CartOut:
    """Open a cart. A profile's customer has one open cart on every device: asking again
    returns it (200). Only secret keys may name a `profile_id`."""
    with db.transaction() as session:
        cart, created = service.create_cart(session, body, caller=caller)
        if not created:
            response.status_code = status.HTTP_200_OK
        return _render(session, response, cart)


@router.get(
    "",
    responses=problem(404, "No such profile"),
    **scoped("carts:read"),
)
def list_carts(
    db: DB,
    caller: CurrentCaller,
    profile_id: Annotated[str | None, Query(max_length=40, pattern=r"^[A-Za-z0-9_]+$")] = None,
    email: Annotated[str | None, Query(max_length=320, pattern=EMAIL_PATTERN)] = None,
    status: CartStatus | None = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[CartSummary]:
    """A customer's carts (secret keys): by profile — every profile of the same customer —
    or by email. Give at least one."""
    with db.transaction(readonly=True) as session:
        rows, next_cursor = sharing.carts_of_customer(
            session,
            caller=caller,
            profile_id=profile_id,
            email=email,
            status=status,
            cursor=cursor,
            limit=limit,
        )
        return Page[CartSummary](data=view.summaries(session, rows), next_cursor=next_cursor)


@router.get("/by-code/{code}", responses=CART_HEADERS, **scoped("carts:read"))
def get_cart_by_code(
    code: Annotated[str, Path(pattern=SHARE_CODE_PATTERN)],
    db: DB,
    caller: CurrentCaller,
    response: Response,
) -> CartOut:
    """Open a cart by the code the shopper reads out (`K7Q-M2P`, any case or spacing).
    Secret keys only: short codes can be guessed."""
    with db.transaction(readonly=True) as session:
        return _render(session, response, sharing.cart_by_code(session, code, caller=caller))


@router.get("/{cart_id}", responses=CART_HEADERS, **scoped("carts:read"))
def get_cart(cart_id: CartId, db: DB, response: Response) -> CartOut:
    """The cart, priced now on the server."""
    with db.transaction(readonly=True) as session:
        return _render(session, response, service.find_cart(session, cart_id))


@router.post(
    "/{cart_id}/lines",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "Added to an existing line", "model": CartOut}, **STALE},
    **scoped("carts:write"),
)
def add_line(
    cart_id: CartId,
    body: LineAdd,
    db: DB,
    caller: CurrentCaller,
    response: Response,
    if_match: IfMatch = None,
) -> CartOut:
    """Add a variant (by id or barcode) to ship or to pick up; the same variant and
    fulfilment again adds to that line (200)."""
    with db.transaction() as session:
        cart, new = lines.add_line(session, cart_id, body, caller=caller, if_match=if_match)
        if not new:
            response.status_code = status.HTTP_200_OK
        return _render(session, response, cart)


@router.patch("/{cart_id}/lines/{line_id}", responses=STALE, **scoped("carts:write"))
def update_line(
    cart_id: CartId,
    line_id: LineId,
    body: LineUpdate,
    db: DB,
    caller: CurrentCaller,
    response: Response,
    if_match: IfMatch = None,
) -> CartOut:
    with db.transaction() as session:
        cart = lines.update_line(session, cart_id, line_id, body, caller=caller, if_match=if_match)
        return _render(session, response, cart)


@router.delete("/{cart_id}/lines/{line_id}", responses=STALE, **scoped("carts:write"))
def remove_line(
    cart_id: CartId,
    line_id: LineId,
    db: DB,
    caller: CurrentCaller,
    response: Response,
    if_match: IfMatch = None,
) -> CartOut:
    with db.transaction() as session:
        cart = lines.remove_line(session, cart_id, line_id, caller=caller, if_match=if_match)
        return _render(session, response, cart)


@router.post("/{cart_id}/codes", responses=STALE, **scoped("carts:write"))
def add_code(
    cart_id: CartId,
    body: CodeAdd,
    db: DB,
    caller: CurrentCaller,
    response: Response,
    if_match: IfMatch = None,
) -> CartOut:
    """Enter a discount code; the quote shows whether it applied, or why not."""
    with db.transaction() as session:
        cart = service.add_code(session, cart_id, body, caller=caller, if_match=if_match)
        return _render(session, response, cart)


@router.delete("/{cart_id}/codes/{code}", responses=STALE, **scoped("carts:write"))
def remove_code(
    cart_id: CartId,
    code: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f-\x9f/]+$")],
    db: DB,
    caller: CurrentCaller,
    response: Response,
    if_match: IfMatch = None,
) -> CartOut:
    with db.transaction() as session:
        cart = service.remove_code(session, cart_id, code, caller=caller, if_match=if_match)
        return _render(session, response, cart)


@router.patch("/{cart_id}/shipping", responses=STALE, **scoped("carts:write"))
def set_shipping(
    cart_id: CartId,
    body: ShippingSet,
    db: DB,
    caller: CurrentCaller,
    response: Response,
    if_match: IfMatch = None,
) -> CartOut:
    """Set the shipping address, the shipping rate and/or the email (`null` clears one)."""
    with db.transaction() as session:
        cart = service.set_shipping(session, cart_id, body, caller=caller, if_match=if_match)
        return _render(session, response, cart)


@router.get("/{cart_id}/shipping-options", **scoped("carts:read"))
def shipping_options(cart_id: CartId, db: DB) -> ShippingOptions:
    """Shipping rates that can take this cart's shipped lines to its address, priced."""
    with db.transaction(readonly=True) as session:
        return service.shipping_options(session, cart_id)


@router.post("/{cart_id}/merge", responses=STALE, **scoped("carts:write"))
def merge_carts(
    cart_id: CartId,
    body: MergeRequest,
    db: DB,
    caller: CurrentCaller,
    response: Response,
    if_match: IfMatch = None,
) -> CartOut:
    """Staff (secret keys): merge another open cart into this one (larger quantity wins)."""
    with db.transaction() as session:
        cart = merge.merge_carts(
            session, cart_id, body.source_cart_id, caller=caller, if_match=if_match
        )
        return _render(session, response, cart)
