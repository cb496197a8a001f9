"""Channel listings: which channels sell a product, and whether it is published there."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from seamline.catalog.models import Listing
from seamline.catalog.render import listing_out
from seamline.catalog.schemas import ListingOut
from seamline.catalog.service import emit_product_event, find_product
from seamline.channels.service import get_channel
from seamline.db.lookup import usable_id
from seamline.kit import clock
from seamline.kit.errors import NotFound

# -- channel listings ------------------------------------------------------------------------


def set_listing(
    session: Session, product_id: str, channel_id: str, *, published: bool
) -> ListingOut:
    """List a product on a channel (or change its publish state); ``published_at`` records when
    it was last published."""
    product = find_product(session, product_id, for_update=True)
    channel = get_channel(session, channel_id)
    listing = session.get(Listing, (product.id, channel.id))
    now = clock.now()
    if listing is None:
        listing = Listing(
            product_id=product.id,
            channel_id=channel.id,
            published=published,
            published_at=now if published else None,
            updated_at=now,
        )
        session.add(listing)
    elif listing.published == published:
        return listing_out(listing)
    else:
        listing.published = published
        listing.published_at = now if published else listing.published_at
        listing.updated_at = now
    session.flush()
    emit_product_event(
        session, "listing.changed", product.id, {**_listing_payload(listing), "listed": True}
    )
    return listing_out(listing)


def remove_listing(session: Session, product_id: str, channel_id: str) -> None:
    """Take a product off a channel altogether."""
    product = find_product(session, product_id, for_update=True)
    listing = session.get(Listing, (product.id, channel_id)) if usable_id(channel_id) else None
    if listing is None:
        raise NotFound("the product is not listed on that channel", code="listing_not_found")
    payload = {**_listing_payload(listing), "published": False, "listed": False}
    session.delete(listing)
    session.flush()
    emit_product_event(session, "listing.changed", product.id, payload)


def _listing_payload(listing: Listing) -> dict[str, Any]:
    return {
        "product_id": listing.product_id,
        "channel_id": listing.channel_id,
        "published": listing.published,
        "published_at": listing.published_at.isoformat() if listing.published_at else None,
    }
