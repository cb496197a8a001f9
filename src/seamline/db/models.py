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
from seamline.identity.customer_models import (
    ChannelActivity,
    Consent,
    ConsentChange,
    CustomerOrder,
    DuplicateDecision,
    ErasedIdentifier,
    PrivacyRequest,
    ProfileMetric,
    ProfilePreference,
    TimelineEntry,
)
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
    "ChannelActivity",
    "Collection",
    "CollectionProduct",
    "Consent",
    "ConsentChange",
    "CustomerOrder",
    "Delivery",
    "DuplicateDecision",
    "ErasedIdentifier",
    "IdempotencyRecord",
    "Identifier",
    "IdentityLink",
    "Listing",
    "Location",
    "OutboxEvent",
    "Price",
    "PrivacyRequest",
    "Product",
    "Profile",
    "ProfileMerge",
    "ProfileMetric",
    "ProfilePreference",
    "ProfileTrait",
    "Reservation",
    "StockLevel",
    "StockMovement",
    "TimelineEntry",
    "Timer",
    "TrackedEvent",
    "Variant",
    "WebhookAttempt",
    "WebhookEndpoint",
    "metadata",
]
