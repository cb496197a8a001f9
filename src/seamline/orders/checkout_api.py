"""Checkout route: a cart becomes an order on any channel (thin: the rules are in checkout.py).

``Idempotency-Key`` is strongly recommended: a retry with the same key returns the same order
(or the same refusal), and a retry of a checkout interrupted while paying resumes it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
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
    },
    **scoped("checkout:write"),
)
def checkout(
    cart_id: str, body: CheckoutIn, request: Request, db: DB, caller: CurrentCaller
) -> OrderOut:
    """Reserve the stock, take the tenders, then commit the stock and create the order.

    The ``Idempotency-Key`` header (declared for every write by the API) is also the
    checkout's own key: its provider calls are derived from it."""
    settings: Settings = request.app.state.settings
    idempotency_key = request.headers.get("idempotency-key")
    return service.checkout(
        db,
        cart_id,
        body,
        caller=caller,
        idempotency_key=idempotency_key or new_id("auto"),
        hold_seconds=settings.checkout_hold_seconds,
    )
