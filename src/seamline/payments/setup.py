"""Which payment providers a process offers, from settings: ``manual`` always, the ``test``
sandbox except in production (or as ``SEAMLINE_TEST_PAYMENTS`` says), Stripe when its keys are
set (``SEAMLINE_STRIPE_API_KEY``, ``SEAMLINE_STRIPE_WEBHOOK_SECRET``, extra ``stripe``)."""

from __future__ import annotations

import hashlib
import hmac

from seamline.payments.manual import ManualProvider
from seamline.payments.providers import register, registry
from seamline.payments.sandbox import SandboxProvider
from seamline.settings import Settings


def test_webhook_secret(settings: Settings) -> str:
    """The sandbox's webhook secret: configured, or derived from the deployment's secret key."""
    if settings.test_payments_webhook_secret:
        return settings.test_payments_webhook_secret
    key = settings.resolved_secret_key.encode()
    return "whsec_test_" + hmac.new(key, b"payments:test-webhooks", hashlib.sha256).hexdigest()


def configure(settings: Settings) -> None:
    register(ManualProvider(), replace=True)
    enabled = settings.test_payments
    if enabled is None:
        enabled = settings.environment != "production"
    if enabled:
        register(SandboxProvider(test_webhook_secret(settings)), replace=True)
    elif "test" in registry.names():
        registry.unregister("test")
    if settings.stripe_api_key and settings.stripe_webhook_secret:
        from seamline.payments.stripe_adapter import StripeProvider

        register(
            StripeProvider(settings.stripe_api_key, webhook_secret=settings.stripe_webhook_secret),
            replace=True,
        )
