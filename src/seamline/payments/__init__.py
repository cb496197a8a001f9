"""Payment providers: one contract (``providers``) for cash at a till, a sandbox PSP and Stripe.

This package moves money and reports outcomes; it owns no tables and no routes. Checkout and
orders record the results and call ``get_provider(name)``. ``stripe_adapter`` needs the optional
``stripe`` extra and is therefore not imported here.
"""

from seamline.payments.providers import (
    AuthorizeRequest,
    CaptureRequest,
    PaymentProvider,
    PaymentResult,
    RefundRequest,
    RefundResult,
    VoidRequest,
    WebhookEvent,
    get_provider,
    register,
)

__all__ = [
    "AuthorizeRequest",
    "CaptureRequest",
    "PaymentProvider",
    "PaymentResult",
    "RefundRequest",
    "RefundResult",
    "VoidRequest",
    "WebhookEvent",
    "get_provider",
    "register",
]
