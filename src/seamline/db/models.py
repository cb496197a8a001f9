"""Imports every table so ``Base.metadata`` is complete (for migrations and the drift check)."""

from seamline.api.idempotency import IdempotencyRecord
from seamline.auth.models import ApiKey
from seamline.channels.models import Channel
from seamline.db.base import Base
from seamline.events.models import Delivery, OutboxEvent, Timer, WebhookAttempt, WebhookEndpoint

metadata = Base.metadata

__all__ = [
    "ApiKey",
    "Channel",
    "Delivery",
    "IdempotencyRecord",
    "OutboxEvent",
    "Timer",
    "WebhookAttempt",
    "WebhookEndpoint",
    "metadata",
]
