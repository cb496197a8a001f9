"""Imports every table so ``Base.metadata`` is complete (for migrations and the drift check)."""

from seamline.api.idempotency import IdempotencyRecord
from seamline.auth.models import ApiKey
from seamline.carts.models import Cart, CartLine, SavedList, SavedListItem
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
from seamline.db.sequences import Counter
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
from seamline.identity.ingest_queue import IngestInbox
from seamline.identity.models import (
    Identifier,
    IdentityLink,
    Profile,
    ProfileMerge,
    ProfileTrait,
    TrackedEvent,
)
from seamline.inventory.models import Location, Reservation, StockLevel, StockMovement
from seamline.orders.models import (
    Checkout,
    FulfilmentGroup,
    Order,
    OrderHistory,
    OrderLine,
    Return,
    ReturnLine,
)
from seamline.payments.models import Payment, PaymentWebhookEvent, Refund
from seamline.pricing.models import Promotion, PromotionUsage, ShippingRate, TaxRate, TaxSettings
from seamline.staff.models import StaffSession, StaffUser

metadata = Base.metadata

__all__ = [
    "ApiKey",
    "Cart",
    "CartLine",
    "Channel",
    "ChannelActivity",
    "Checkout",
    "Collection",
    "CollectionProduct",
    "Consent",
    "ConsentChange",
    "Counter",
    "CustomerOrder",
    "Delivery",
    "DuplicateDecision",
    "ErasedIdentifier",
    "FulfilmentGroup",
    "IdempotencyRecord",
    "Identifier",
    "IdentityLink",
    "IngestInbox",
    "Listing",
    "Location",
    "Order",
    "OrderHistory",
    "OrderLine",
    "OutboxEvent",
    "Payment",
    "PaymentWebhookEvent",
    "Price",
    "PrivacyRequest",
    "Product",
    "Profile",
    "ProfileMerge",
    "ProfileMetric",
    "ProfilePreference",
    "ProfileTrait",
    "Promotion",
    "PromotionUsage",
    "Refund",
    "Reservation",
    "Return",
    "ReturnLine",
    "SavedList",
    "SavedListItem",
    "ShippingRate",
    "StaffSession",
    "StaffUser",
    "StockLevel",
    "StockMovement",
    "TaxRate",
    "TaxSettings",
    "TimelineEntry",
    "Timer",
    "TrackedEvent",
    "Variant",
    "WebhookAttempt",
    "WebhookEndpoint",
    "metadata",
]
