"""Imports every table so ``Base.metadata`` is complete (for migrations and the drift check)."""

from seamline.api.idempotency import IdempotencyRecord
from seamline.auth.models import ApiKey
from seamline.catalog.models import (
    Collection,
    CollectionProduct,
    Listing,
    Price,
    Product,
    Variant,
)
from seamline.channels.models import Channel
from seamline.db.base import Base
from seamline.events.models import Delivery, OutboxEvent, Timer, WebhookAttempt, WebhookEndpoint
from seamline.identity.models import (
    Identifier,
    IdentityLink,
    Profile,
    ProfileMerge,
    ProfileTrait,
    TrackedEvent,
)
from seamline.inventory.models import Location, Reservation, StockLevel, StockMovement

metadata = Base.metadata

__all__ = [
    "ApiKey",
    "Channel",
    "Collection",
    "CollectionProduct",
    "Delivery",
    "IdempotencyRecord",
    "Identifier",
    "IdentityLink",
    "Listing",
    "Location",
    "OutboxEvent",
    "Price",
    "Product",
    "Profile",
    "ProfileMerge",
    "ProfileTrait",
    "Reservation",
    "StockLevel",
    "StockMovement",
    "Timer",
    "TrackedEvent",
    "Variant",
    "WebhookAttempt",
    "WebhookEndpoint",
    "metadata",
]
