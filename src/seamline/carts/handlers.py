"""Event reactions of the carts domain.

``carts.merge``: when identity resolution joins a profile to a cluster (``profile.merged`` —
an anonymous shopper identified themselves, or staff merged two customers), the cluster's
open carts become one (merge.py states the rule). The worker runs this in the transaction
that marks the delivery done, so it happens once in effect; running it again finds a single
open cart and changes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from seamline.carts import merge
from seamline.carts.models import Cart, SavedList
from seamline.events.registry import Event, on, on_many
from seamline.identity.erasure import ERASED, ErasureScope, on_erase

MERGE = "carts.merge"


def _names_a_profile(payload: dict[str, Any]) -> bool:
    profile_id = payload.get("profile_id")
    return isinstance(profile_id, str) and bool(profile_id)


@on("profile.merged", name=MERGE, when=_names_a_profile)
def merge_on_identify(session: Session, event: Event) -> None:
    merge_on_identify_many(session, [event])


@on_many(MERGE)
def merge_on_identify_many(session: Session, events: list[Event]) -> None:
    """``merge_on_identify`` for several events: one query finds the clusters with an open
    cart; only those are locked and merged, one by one in event order."""
    profiles = [e.payload["profile_id"] for e in events if _names_a_profile(e.payload)]
    carrying = merge.with_open_carts(session, profiles)
    for profile_id in profiles:
        if profile_id in carrying:
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
