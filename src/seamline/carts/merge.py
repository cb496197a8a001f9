"""Cart merge: when an anonymous shopper becomes known, their carts become one.

The rule (docs/carts.md):

- lines move from the source cart to the target; a line for the same variant and the same
  fulfilment (and pick-up store) keeps the **larger** quantity, not the sum — the same person
  adding the same item on two devices almost always means one item, and a customer who really
  wants two can say so, while a doubled order is a return;
- codes are united (compared as pricing compares them; the target's first);
- the target keeps its email, address and shipping rate, taking the source's where it has none;
- the source becomes ``merged`` with ``merged_into_id``; one ``cart.merged`` event names both
  carts (and both profiles, so both timelines show it).

On identify (``profile.merged`` — handlers.py) every open cart of the customer's cluster is
merged into one: their profile's cart when there is one, else the most recently changed
anonymous cart, which is adopted (its ``profile_id`` set to the cluster's canonical profile).
Running it again finds one open cart and does nothing, so a replayed event is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session, aliased

from seamline.auth.service import Caller
from seamline.carts import service, sharing
from seamline.carts.models import Cart
from seamline.carts.view import cart_lines
from seamline.db import bulk
from seamline.identity.models import Identifier, Profile
from seamline.identity.normalize import ANONYMOUS_ID
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError
from seamline.pricing.loader import code_key


def _united(first: list[str], second: list[str]) -> list[str]:
    out: list[str] = []
    keys: set[str] = set()
    for code in (*first, *second):
        key = code_key(code)
        if key and key not in keys:
            keys.add(key)
            out.append(code)
    return out[: service.MAX_CODES]


def merge_into(
    session: Session, target: Cart, source: Cart, *, key_id: str | None, reason: str
) -> Cart:
    """Merge open ``source`` into open ``target`` (both locked by the caller)."""
    source_lines = cart_lines(session, source.id)
    target_lines = cart_lines(session, target.id)
    by_key = {(ln.variant_id, ln.fulfilment, ln.pickup_location_id): ln for ln in target_lines}
    now = clock.now()
    moved, kept = 0, 0
    for line in source_lines:
        same = by_key.get((line.variant_id, line.fulfilment, line.pickup_location_id))
        if same is None:
            line.cart_id = target.id
            line.updated_at = now
            moved += 1
        else:
            if line.quantity > same.quantity:
                same.quantity = line.quantity
                same.updated_at = now
            session.delete(line)
            kept += 1
    target.codes = _united(list(target.codes), list(source.codes))
    target.email = target.email or source.email
    if target.shipping_address is None and source.shipping_address is not None:
        target.shipping_address = source.shipping_address
        target.shipping_rate_id = target.shipping_rate_id or source.shipping_rate_id
    target.anonymous_id = target.anonymous_id or source.anonymous_id
    source.status = "merged"
    source.merged_into_id = target.id
    source.version += 1
    source.updated_by = key_id
    source.updated_at = now
    session.flush()
    source_profile = source.profile_id or sharing.profile_of_anonymous_id(
        session, source.anonymous_id
    )
    detail = {
        "source_cart_id": source.id,
        "lines_moved": moved,
        "lines_joined": kept,
        "reason": reason,
        "codes": list(target.codes),
    }
    if source_profile:
        detail["profile_ids"] = [source_profile]
    service.changed(session, target, "cart.merged", detail, key_id=key_id)
    return target


def _lock_pair(session: Session, first_id: str, second_id: str) -> tuple[Cart, Cart]:
    """Lock two carts in id order (two merges of the same pair never deadlock)."""
    carts = {}
    for cart_id in sorted({first_id, second_id}):
        carts[cart_id] = service.find_cart(session, cart_id, for_update=True)
    return carts[first_id], carts[second_id]


def merge_carts(
    session: Session,
    target_id: str,
    source_id: str,
    *,
    caller: Caller | None,
    if_match: str | None = None,
) -> Cart:
    """Staff merge (``POST /carts/{id}/merge``): secret keys only; both carts open."""
    sharing.require_secret(caller, "merge carts")
    if target_id == source_id:
        raise Conflict(
            "a cart cannot be merged into itself",
            code="same_cart",
            errors=[FieldError("body.source_cart_id", "the target cart itself", "same_cart")],
        )
    target, source = _lock_pair(session, target_id, source_id)
    service.require_open(source)
    target = service.lock_cart(session, target.id, if_match=if_match)
    if (
        target.profile_id is not None
        and source.profile_id is not None
        and sharing.profile_cluster(session, target.profile_id)
        != sharing.profile_cluster(session, source.profile_id)
    ):
        raise Conflict(
            "the carts belong to two different customers",
            code="different_customers",
            errors=[FieldError("body.source_cart_id", "another customer's cart", "other_owner")],
        )
    return merge_into(
        session, target, source, key_id=caller.key_id if caller else None, reason="staff"
    )


def merge_cluster(session: Session, cluster_id: str, *, key_id: str | None = None) -> Cart | None:
    """Make the customer's open carts one (see the module docstring); returns it, if any."""
    service.cluster_lock(session, cluster_id)
    carts = list(
        session.scalars(
            select(Cart)
            .where(
                sharing.owned_by_cluster(session, Cart, cluster_id),
                Cart.status == "open",
            )
            .order_by(Cart.id)
            .with_for_update()
        )
    )
    if not carts:
        return None
    owned = [c for c in carts if c.profile_id is not None]
    if owned:
        owned.sort(key=lambda c: (c.profile_id != cluster_id, -c.updated_at.timestamp(), c.id))
        target = owned[0]
    else:
        target = max(carts, key=lambda c: (c.updated_at, c.id))
        target.profile_id = cluster_id
        service.changed(
            session,
            target,
            "cart.adopted",
            {"anonymous_id": target.anonymous_id, "profile_id": cluster_id},
            key_id=key_id,
        )
    for other in carts:
        if other.id != target.id:
            merge_into(session, target, other, key_id=key_id, reason="identified")
    return target


def with_open_carts(session: Session, profile_ids: Sequence[str]) -> set[str]:
    """Those of ``profile_ids`` whose cluster has an open cart (its profiles', or one of an
    anonymous id a profile of it holds, as ``sharing.owned_by_cluster`` counts them): one
    query for any number, so ``profile.merged`` events of shoppers without a cart — most of
    them, for visitors identified through the event API — cost no more than that."""
    if not profile_ids:
        return set()
    member = aliased(Profile)
    own = (
        select(Cart.id)
        .join(member, member.id == Cart.profile_id)
        .where(member.cluster_id == Profile.cluster_id, Cart.status == "open")
    )
    anonymous = (
        select(Cart.id)
        .join(Identifier, Identifier.value == Cart.anonymous_id)
        .join(member, member.id == Identifier.profile_id)
        .where(
            member.cluster_id == Profile.cluster_id,
            Identifier.kind == ANONYMOUS_ID,
            Cart.profile_id.is_(None),
            Cart.status == "open",
        )
    )
    found = session.scalars(
        select(Profile.id).where(
            bulk.among(session, Profile.id, sorted(set(profile_ids))),
            or_(exists(own), exists(anonymous)),
        )
    )
    return set(found)


def merge_on_identify(session: Session, profile_id: str) -> Cart | None:
    """The reaction to ``profile.merged``: merge the carts of the profile's cluster now."""
    cluster = session.scalar(select(Profile.cluster_id).where(Profile.id == profile_id))
    if cluster is None:
        return None
    return merge_cluster(session, cluster)
