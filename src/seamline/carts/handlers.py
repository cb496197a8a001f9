"""Event reactions of the carts domain.

``carts.merge``: when identity resolution joins a profile to a cluster (``profile.merged`` —
an anonymous shopper identified themselves, or staff merged two customers), the cluster's
open carts become one (merge.py states the rule). The worker runs this in the transaction
that marks the delivery done, so it happens once in effect; running it again finds a single
open cart and changes nothing.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from seamline.carts import merge
from seamline.carts.models import Cart, SavedList
from seamline.events.registry import Event, on
from seamline.identity.erasure import ERASED, ErasureScope, on_erase


@on("profile.merged", name="carts.merge")
def merge_on_identify(session: Session, event: Event) -> None:
    profile_id = event.payload.get("profile_id")
    if isinstance(profile_id, str) and profile_id:
        merge.merge_on_identify(session, profile_id)


@on_erase("carts")
def erase_cart_personal_data(session: Session, scope: ErasureScope) -> dict[str, int]:
    """An erased customer's carts and saved lists keep their lines; the email, the address and
    the anonymous ids (which are erased identifiers) go."""
    erased_ids = sorted(scope.redactor.values)
    carts = list(
        session.scalars(
            select(Cart)
            .where(or_(Cart.profile_id.in_(scope.profile_ids), Cart.anonymous_id.in_(erased_ids)))
            .with_for_update()
        )
    )
    for cart in carts:
        cart.email, cart.shipping_address = None, None
        if cart.anonymous_id is not None:
            cart.anonymous_id = ERASED
    lists = list(
        session.scalars(
            select(SavedList).where(
                or_(
                    SavedList.profile_id.in_(scope.profile_ids),
                    SavedList.anonymous_id.in_(erased_ids),
                )
            )
        )
    )
    for saved in lists:
        saved.name = scope.redactor.text(saved.name)
        if saved.anonymous_id is not None:
            saved.anonymous_id = ERASED
    return {"carts": len(carts), "saved_lists": len(lists)}
