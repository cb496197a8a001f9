"""The rules of carts: creating one, its lines, codes and shipping, versions and events.

- A cart belongs to an anonymous id and/or a profile; only secret keys may name a profile.
  A recognised customer has at most one open cart across every device: creating one for a
  profile whose identity cluster already has an open cart returns that cart (``created`` False).
- Every change locks the cart row (``SELECT … FOR UPDATE``; SQLite serialises writers anyway),
  bumps ``version``, records the caller's key in ``updated_by`` and emits a ``cart.*`` event
  whose payload names the customer's ``profile_id`` when it is known. A write may carry the
  version its client saw (``If-Match``); a stale one is 412 ``cart_version_mismatch``.
- Only open carts change (409 ``cart_not_open``); a merged cart names ``merged_into_id``.
- Prices are never stored: readers call ``view.render``, which prices the cart anew.

Checkout locks the cart itself (with its lines, in one statement) and calls
``require_open``, ``require_version``, ``mark_checking_out``, ``reopen`` and
``mark_completed`` (all take the Session first and never commit).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.auth.service import Caller
from seamline.carts import sharing
from seamline.carts.models import Cart
from seamline.carts.schemas import (
    CartCreate,
    CodeAdd,
    ShippingOption,
    ShippingOptions,
    ShippingSet,
)
from seamline.channels.service import channel_kind, get_channel
from seamline.db.dialect import lock_for_transaction
from seamline.db.lookup import get_or_404, not_found, usable_id
from seamline.events.outbox import Pending, emit
from seamline.kit import clock
from seamline.kit.errors import Conflict, FieldError, SeamlineError
from seamline.kit.ids import new_id
from seamline.pricing import Destination, rate_price
from seamline.pricing import models as pricing_models
from seamline.pricing.loader import code_key, shipping_rates

MAX_CODES = 10


class CartVersionMismatch(SeamlineError):
    """``If-Match`` named a version the cart no longer has: someone else changed it."""

    status, title, code = 412, "Precondition failed", "cart_version_mismatch"


def etag(cart: Cart) -> str:
    return f'"{cart.version}"'


def version_matches(if_match: str, version: int) -> bool:
    """``If-Match``: ``*``, or a list of entity tags (``"3"``, ``W/"3"``; bare ``3`` too)."""
    for part in if_match.split(","):
        tag = part.strip()
        if tag == "*":
            return True
        tag = tag.removeprefix("W/").strip('"')
        if tag == str(version):
            return True
    return False


def cluster_lock(session: Session, cluster_id: str) -> None:
    """Serialise creating, adopting and merging the carts of one customer (PostgreSQL)."""
    lock_for_transaction(session, f"carts:cluster:{cluster_id}")


# -- loading ---------------------------------------------------------------------------------


def find_cart(session: Session, cart_id: str, *, for_update: bool = False) -> Cart:
    return get_or_404(
        session, Cart, cart_id, what="cart", code="cart_not_found", for_update=for_update
    )


def require_open(cart: Cart) -> None:
    if cart.status != "open":
        extra: dict[str, Any] = {"status": cart.status}
        if cart.merged_into_id:
            extra["merged_into_id"] = cart.merged_into_id
        raise Conflict(
            f"the cart is {cart.status}; only open carts change"
            + (f" (merged into {cart.merged_into_id})" if cart.merged_into_id else ""),
            code="cart_not_open",
            extra=extra,
        )


def lock_cart(session: Session, cart_id: str, *, if_match: str | None = None) -> Cart:
    """The open cart, its row locked until the transaction ends, at the version expected."""
    cart = find_cart(session, cart_id, for_update=True)
    require_open(cart)
    require_version(cart, if_match)
    return cart


def require_version(cart: Cart, if_match: str | None) -> None:
    """412 when ``If-Match`` (if given) names a version the cart no longer has."""
    if if_match is not None and not version_matches(if_match, cart.version):
        raise CartVersionMismatch(
            f"the cart is at version {cart.version}; reload it and try again",
            headers={"ETag": etag(cart)},
            extra={"version": cart.version},
        )


# -- events ----------------------------------------------------------------------------------


def event_payload(session: Session, cart: Cart) -> dict[str, Any]:
    """What every ``cart.*`` event carries: the customer (``profile_id``, when known — the
    cart's profile, else the profile its anonymous id arrived on) and the channel of origin."""
    payload: dict[str, Any] = {
        "cart_id": cart.id,
        "status": cart.status,
        "version": cart.version,
        "updated_by": cart.updated_by,
        "channel": channel_kind(session, cart.channel_id),
        "channel_id": cart.channel_id,
        "currency": cart.currency,
        "anonymous_id": cart.anonymous_id,
    }
    profile_id = cart.profile_id or sharing.profile_of_anonymous_id(session, cart.anonymous_id)
    if profile_id:
        payload["profile_id"] = profile_id
    return payload


def changed(
    session: Session,
    cart: Cart,
    event_type: str,
    detail: dict[str, Any],
    *,
    key_id: str | None,
    events: list[Pending] | None = None,
) -> None:
    """Record one change: bump the version, note who, emit ``event_type`` — or, given
    ``events``, append it there for the caller to emit with its own (``outbox.emit_rows``)."""
    cart.version += 1
    cart.updated_by = key_id
    cart.updated_at = clock.now()
    payload = {**event_payload(session, cart), **detail}
    if events is not None:
        events.append(Pending(event_type, "cart", cart.id, payload))
        return
    session.flush()
    emit(session, event_type, aggregate_type="cart", aggregate_id=cart.id, payload=payload)


def _key(caller: Caller | None) -> str | None:
    return caller.key_id if caller is not None else None


# -- creating --------------------------------------------------------------------------------


def open_cart_of_cluster(session: Session, cluster_id: str) -> Cart | None:
    """The customer's open cart (a cart of a profile of the cluster), newest change first."""
    profiles = sharing.cluster_profiles(session, cluster_id)
    return session.scalars(
        select(Cart)
        .where(Cart.profile_id.in_(profiles), Cart.status == "open")
        .order_by(Cart.updated_at.desc(), Cart.id)
        .limit(1)
        .with_for_update()
    ).first()


def create_cart(session: Session, data: CartCreate, *, caller: Caller | None) -> tuple[Cart, bool]:
    """A new open cart, or — for a profile whose customer already has one — that cart.

    Returns ``(cart, created)``. A publishable key may not name a profile (403)."""
    if data.profile_id is not None:
        sharing.require_secret(caller, "set profile_id")
    channel = get_channel(session, data.channel_id)
    if not channel.active:
        raise Conflict(f"channel {channel.id} is not active", code="channel_inactive")
    if data.profile_id is not None:
        cluster = sharing.profile_cluster(session, data.profile_id)
        cluster_lock(session, cluster)
        existing = open_cart_of_cluster(session, cluster)
        if existing is not None:
            return existing, False
    now = clock.now()
    cart = Cart(
        id=new_id("crt"),
        share_code=sharing.new_share_code(session, Cart),
        profile_id=data.profile_id,
        anonymous_id=data.anonymous_id,
        channel_id=channel.id,
        currency=data.currency,
        status="open",
        email=data.email,
        codes=[],
        version=1,
        updated_by=_key(caller),
        created_at=now,
        updated_at=now,
    )
    session.add(cart)
    session.flush()
    emit(
        session,
        "cart.created",
        aggregate_type="cart",
        aggregate_id=cart.id,
        payload={**event_payload(session, cart), "share_code": cart.share_code},
    )
    return cart, True


# -- codes -----------------------------------------------------------------------------------


def add_code(
    session: Session,
    cart_id: str,
    data: CodeAdd,
    *,
    caller: Caller | None,
    if_match: str | None = None,
) -> Cart:
    """Keep a code as entered; pricing decides whether it applies (the quote says why not).
    A code already on the cart (in any case or spacing) changes nothing."""
    cart = lock_cart(session, cart_id, if_match=if_match)
    key = code_key(data.code)
    if any(code_key(c) == key for c in cart.codes):
        return cart
    if len(cart.codes) >= MAX_CODES:
        raise Conflict(f"a cart holds at most {MAX_CODES} codes", code="too_many_codes")
    cart.codes = [*cart.codes, data.code]
    changed(
        session,
        cart,
        "cart.codes_changed",
        {"codes": list(cart.codes), "added": data.code},
        key_id=_key(caller),
    )
    return cart


def remove_code(
    session: Session,
    cart_id: str,
    code: str,
    *,
    caller: Caller | None,
    if_match: str | None = None,
) -> Cart:
    cart = lock_cart(session, cart_id, if_match=if_match)
    key = code_key(code)
    kept = [c for c in cart.codes if code_key(c) != key]
    if len(kept) == len(cart.codes):
        raise NotFoundCode(code)
    cart.codes = kept
    changed(
        session,
        cart,
        "cart.codes_changed",
        {"codes": list(cart.codes), "removed": code.strip()},
        key_id=_key(caller),
    )
    return cart


class NotFoundCode(SeamlineError):
    status, title, code = 404, "Not found", "code_not_on_cart"

    def __init__(self, code: str) -> None:
        super().__init__(f"the cart has no code {code.strip()[:64]!r}")


# -- shipping --------------------------------------------------------------------------------


def _usable_rate(session: Session, cart: Cart, rate_id: str, country: str | None) -> None:
    rate = session.get(pricing_models.ShippingRate, rate_id) if usable_id(rate_id) else None
    if rate is None:
        raise not_found("shipping rate", rate_id, "shipping_rate_not_found")
    path = "body.shipping_rate_id"
    if not rate.active or rate.currency != cart.currency:
        raise Conflict(
            f"shipping rate {rate.id} is not offered in {cart.currency}",
            code="shipping_rate_unusable",
            errors=[FieldError(path, "inactive or in another currency", "unusable")],
        )
    if country is not None and rate.countries is not None and country not in rate.countries:
        raise Conflict(
            f"shipping rate {rate.id} does not ship to {country}",
            code="shipping_rate_unusable",
            errors=[FieldError(path, f"does not ship to {country}", "unusable")],
        )


def set_shipping(
    session: Session,
    cart_id: str,
    data: ShippingSet,
    *,
    caller: Caller | None,
    if_match: str | None = None,
) -> Cart:
    """Set the fields sent (address, shipping rate, email); ``null`` clears one."""
    cart = lock_cart(session, cart_id, if_match=if_match)
    sent = data.model_fields_set
    changes: dict[str, Any] = {}
    if "address" in sent:
        address = data.address.model_dump(exclude_none=True) if data.address else None
        if address != cart.shipping_address:
            changes["shipping_address"] = address
    if "shipping_rate_id" in sent and data.shipping_rate_id != cart.shipping_rate_id:
        changes["shipping_rate_id"] = data.shipping_rate_id
    if "email" in sent and data.email != cart.email:
        changes["email"] = data.email
    address = changes.get("shipping_address", cart.shipping_address)
    country = address.get("country") if address else None
    rate_id = changes.get("shipping_rate_id", cart.shipping_rate_id)
    if rate_id is not None and ("shipping_rate_id" in changes or "shipping_address" in changes):
        _usable_rate(session, cart, rate_id, country)
    if not changes:
        return cart
    for field, value in changes.items():
        setattr(cart, field, value)
    changed(
        session,
        cart,
        "cart.shipping_changed",
        {
            # The address itself is personal data: events (and webhooks) carry its country.
            "changed": sorted(changes),
            "country": country,
            "shipping_rate_id": cart.shipping_rate_id,
        },
        key_id=_key(caller),
    )
    return cart


def shipping_options(session: Session, cart_id: str) -> ShippingOptions:
    """Active rates in the cart's currency that can serve its destination and carry its
    shipped lines, each priced for them (``pricing.rate_price``). Without an address, every
    rate that can carry the weight is listed (the country is not known yet)."""
    from seamline.carts.quote import price  # a cycle otherwise

    cart = find_cart(session, cart_id)
    priced = price(session, cart)
    group = next((g for g in priced.quote.groups if g.fulfilment_group == "ship"), None)
    address = cart.shipping_address or {}
    country = address.get("country") if isinstance(address.get("country"), str) else None
    if group is None:
        return ShippingOptions(destination_country=country, weight_grams=0, data=[])
    destination = Destination(country=country) if country else None
    options = []
    for rate in shipping_rates(session, currency=cart.currency):
        if destination is not None and not rate.serves(destination):
            continue
        amount = rate_price(rate, weight_grams=group.weight_grams, merchandise=group.merchandise)
        if amount is None:
            continue
        options.append(
            ShippingOption(
                id=rate.id,
                name=rate.name,
                kind=rate.kind,
                currency=rate.currency,
                price=amount,
                selected=rate.id == cart.shipping_rate_id,
            )
        )
    return ShippingOptions(
        destination_country=country, weight_grams=group.weight_grams, data=options
    )


# -- checkout hooks --------------------------------------------------------------------------


def mark_checking_out(
    session: Session,
    cart: Cart,
    *,
    key_id: str | None = None,
    events: list[Pending] | None = None,
) -> Cart:
    """open → checking_out: the cart stops changing while checkout reserves and pays.
    ``cart`` is locked by the caller; ``events`` as for ``changed``."""
    require_open(cart)
    cart.status = "checking_out"
    changed(session, cart, "cart.checkout_started", {}, key_id=key_id, events=events)
    return cart


def reopen(session: Session, cart: Cart, *, key_id: str | None = None) -> Cart:
    """checking_out → open (the payment failed or the checkout was abandoned). If the
    customer opened another cart meanwhile, this one is merged into that one instead, so the
    customer still has exactly one open cart; the cart returned is the open one."""
    if cart.status != "checking_out":
        return cart
    if cart.profile_id is not None:
        cluster = sharing.profile_cluster(session, cart.profile_id)
        cluster_lock(session, cluster)
        other = open_cart_of_cluster(session, cluster)
        if other is not None and other.id != cart.id:
            from seamline.carts.merge import merge_into  # merge imports this module

            return merge_into(session, other, cart, key_id=key_id, reason="reopened")
    cart.status = "open"
    changed(session, cart, "cart.reopened", {}, key_id=key_id)
    return cart


def mark_completed(
    session: Session,
    cart: Cart,
    *,
    order_id: str,
    key_id: str | None = None,
    events: list[Pending] | None = None,
) -> Cart:
    """The cart became order ``order_id`` (from checking_out, or open for a till sale);
    ``events`` as for ``changed``."""
    if cart.status not in ("open", "checking_out"):
        require_open(cart)
    cart.status = "completed"
    cart.order_id = order_id
    changed(session, cart, "cart.completed", {"order_id": order_id}, key_id=key_id, events=events)
    return cart
