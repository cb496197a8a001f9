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
from seamline.inventory.models import Location, Reservation, StockLevel, StockMovement

metadata = Base.metadata

__all__ = [
    "ApiKey",
    "Channel",
    "Collection",
    "CollectionProduct",
    "Delivery",
    "IdempotencyRecord",
    "Listing",
    "Location",
    "OutboxEvent",
    "Price",
    "Product",
    "Reservation",
    "StockLevel",
    "StockMovement",
    "Timer",
    "Variant",
    "WebhookAttempt",
    "WebhookEndpoint",
    "metadata",
]
