"""Checkout route: a cart becomes an order on any channel (thin: the rules are in checkout.py).

``Idempotency-Key`` is strongly recommended: a retry with the same key returns the same order
(or the same refusal), and a retry of a checkout interrupted while paying resumes it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from seamline.api.deps import DB, CurrentCaller, IfMatch, scoped
from seamline.api.idempotency import (
    INVALID_KEY,
    INVALID_KEY_DETAIL,
    REPLAY_HEADER,
    self_keyed,
    valid_key,
)
from seamline.api.problems import problem
from seamline.kit.errors import BadRequest
from seamline.kit.ids import new_id
from seamline.orders import checkout as service
from seamline.orders.schemas import CheckoutIn, OrderOut
from seamline.settings import Settings

router = APIRouter(tags=["checkout"])


@router.post(
    "/carts/{cart_id}/checkout",
    status_code=status.HTTP_201_CREATED,
    responses={
        **problem(402, "A tender was declined or failed; nothing was charged or held"),
        **problem(409, "Out of stock, a code used up, or the cart is not ready or not open"),
        **problem(412, "If-Match names a version the cart no longer has"),
    },
    **scoped("checkout:write"),
)
@self_keyed
def checkout(
    cart_id: str,
    body: CheckoutIn,
    request: Request,
    response: Response,
    db: DB,
    caller: CurrentCaller,
    if_match: IfMatch = None,
) -> OrderOut:
    """Reserve the stock, take the tenders, then commit the stock and create the order.

    The ``Idempotency-Key`` header (declared for every write by the API) is the checkout's
    own key: its provider calls are derived from it, and the checkout row it names replays
    the same order or refusal (the API's idempotency middleware lets this route through).
    ``If-Match`` (the cart's ``ETag``) checks out only the cart the buyer saw."""
    settings: Settings = request.app.state.settings
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and not valid_key(idempotency_key):
        raise BadRequest(INVALID_KEY_DETAIL, code=INVALID_KEY)
    order, replayed = service.checkout_replay(
        db,
        cart_id,
        body,
        caller=caller,
        idempotency_key=idempotency_key or new_id("auto"),
        hold_seconds=settings.checkout_hold_seconds,
        if_match=if_match,
    )
    if replayed:  # as the API's idempotency middleware marks the replays it answers
        response.headers[REPLAY_HEADER] = "true"
    return order
