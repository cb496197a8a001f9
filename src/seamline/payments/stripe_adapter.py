"""The ``stripe`` provider: PaymentIntents through the official SDK (the ``stripe`` extra).

One PaymentIntent per authorization, created and confirmed in one call with the token as its
``payment_method`` (a ``pm_…`` from Stripe.js or a mobile SDK; card numbers never reach us).
``capture=False`` uses ``capture_method="manual"``; capture, void (``cancel``) and refunds then
address the intent by id, so nothing is remembered here between calls.

Stripe raises a ``CardError`` for a declined confirmation; that is translated back into a
``declined``/``failed`` result (a decline is an outcome, not an error), with the intent id taken
from the error body. Every other SDK error becomes a typed Seamline error. Webhooks are verified
with the SDK's own ``WebhookSignature.verify_header`` (``Stripe-Signature``, HMAC-SHA256 with the
endpoint's ``whsec_`` secret, 5-minute tolerance).

The HTTP client is injectable (``http_client=``, any ``stripe.HTTPClient``): tests replay
recorded responses through it, and deployments may choose their own transport.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import stripe

from seamline.kit.errors import Conflict, SeamlineError, Unprocessable
from seamline.payments.providers import (
    AuthorizeRequest,
    CaptureRequest,
    PaymentProviderMisconfigured,
    PaymentProviderUnavailable,
    PaymentResult,
    PaymentStateConflict,
    PaymentStatus,
    RefundExceedsCapture,
    RefundRequest,
    RefundResult,
    RefundStatus,
    UnknownPaymentReference,
    UnknownPaymentToken,
    VoidRequest,
    WebhookEvent,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
    check_capturable,
    check_refundable,
    header_value,
)

if TYPE_CHECKING:
    from stripe.params import PaymentIntentCreateParams

SIGNATURE_HEADER = "Stripe-Signature"
TOLERANCE_SECONDS = 300

# Stripe expects amounts in minor units like Seamline, except where its unit differs from the
# ISO 4217 exponent: ISK has no minor unit in ISO (and in Babel, which Seamline uses), but
# Stripe kept it two-decimal for backwards compatibility and wants whole krónur as multiples of
# 100. Three-decimal currencies need a trailing zero, which Stripe itself reports.
_STRIPE_FACTOR = {"ISK": 100}
# Issuer reasons that mean "try again shortly" rather than "this card will not pay".
_RETRYABLE_DECLINES = frozenset(
    {"processing_error", "try_again_later", "reenter_transaction", "issuer_not_available"}
)
_STATE_CONFLICTS = frozenset(
    {
        "payment_intent_unexpected_state",
        "charge_already_captured",
        "charge_already_refunded",
        "charge_disputed",
        "charge_expired_for_capture",
    }
)
Outcome = tuple[Literal["declined", "failed"], str, bool]


def to_stripe_amount(amount: int, currency: str) -> int:
    return amount * _STRIPE_FACTOR.get(currency.upper(), 1)


def from_stripe_amount(amount: int, currency: str) -> int:
    return amount // _STRIPE_FACTOR.get(currency.upper(), 1)


def decline_outcome(code: str | None, decline_code: str | None) -> Outcome:
    """Map Stripe's ``code``/``decline_code`` pair onto Seamline's decline vocabulary.

    Stripe reports most issuer declines as ``code="card_declined"`` with the reason in
    ``decline_code``; a few reasons arrive as the ``code`` itself (``expired_card``).
    """
    reasons = {c for c in (code, decline_code) if c}
    if reasons & _RETRYABLE_DECLINES:
        return "failed", "processing_error", True
    for reason in ("insufficient_funds", "expired_card", "incorrect_cvc"):
        if reason in reasons:
            return "declined", reason, False
    if "authentication_required" in reasons:
        return "declined", "authentication_required", False
    # Lost, stolen, fraudulent, do_not_honor, generic_decline…: all "card declined" to the
    # shopper, as Stripe recommends.
    return "declined", "card_declined", False


class StripeProvider:
    """The ``stripe`` provider.

    ``return_url`` is where redirect-based payment methods send the shopper back; without one,
    confirmation is limited to methods that need no redirect (cards, wallets), which is what a
    server-side confirm can finish.
    """

    name = "stripe"

    def __init__(
        self,
        api_key: str,
        *,
        webhook_secret: str,
        http_client: stripe.HTTPClient | None = None,
        return_url: str | None = None,
        max_network_retries: int = 2,
        tolerance: int = TOLERANCE_SECONDS,
    ) -> None:
        if not webhook_secret:
            raise ValueError("a Stripe webhook signing secret (whsec_…) is required")
        self._client = stripe.StripeClient(
            api_key, http_client=http_client, max_network_retries=max_network_retries
        )
        self._webhook_secret = webhook_secret
        self._return_url = return_url
        self._tolerance = tolerance

    # -- payments ------------------------------------------------------------------------------
    def authorize(self, request: AuthorizeRequest) -> PaymentResult:
        params: PaymentIntentCreateParams = {
            "amount": to_stripe_amount(request.amount, request.currency),
            "currency": request.currency.lower(),
            "payment_method": request.token,
            "confirm": True,
            "capture_method": "automatic" if request.capture else "manual",
            "metadata": dict(request.metadata),
        }
        if self._return_url:
            params["return_url"] = self._return_url
        else:
            params["automatic_payment_methods"] = {"enabled": True, "allow_redirects": "never"}
        try:
            intent = self._client.v1.payment_intents.create(
                params, {"idempotency_key": request.idempotency_key}
            )
        except stripe.CardError as exc:
            return self._declined(exc, request)
        except stripe.StripeError as exc:
            raise _translate(exc, token=request.token) from None
        return self._result(intent)

    def capture(self, request: CaptureRequest) -> PaymentResult:
        check_capturable(request)
        try:
            intent = self._client.v1.payment_intents.capture(
                request.provider_reference,
                {"amount_to_capture": to_stripe_amount(request.amount, request.currency)},
                {"idempotency_key": request.idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _translate(exc) from None
        return self._result(intent)

    def void(self, request: VoidRequest) -> PaymentResult:
        try:
            intent = self._client.v1.payment_intents.cancel(
                request.provider_reference, None, {"idempotency_key": request.idempotency_key}
            )
        except stripe.StripeError as exc:
            raise _translate(exc) from None
        return self._result(intent)

    def refund(self, request: RefundRequest) -> RefundResult:
        check_refundable(request)
        try:
            refund = self._client.v1.refunds.create(
                {
                    "payment_intent": request.provider_reference,
                    "amount": to_stripe_amount(request.amount, request.currency),
                    "metadata": dict(request.metadata),
                    **({"reason": request.reason} if request.reason else {}),
                },
                {"idempotency_key": request.idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _translate(exc, refund=True) from None
        currency = refund.currency.upper()
        status: RefundStatus = (
            "succeeded"
            if refund.status == "succeeded"
            else "failed"
            if refund.status in ("failed", "canceled")
            else "pending"
        )
        return RefundResult(
            status=status,
            provider=self.name,
            provider_reference=refund.id,
            payment_reference=request.provider_reference,
            amount=from_stripe_amount(refund.amount, currency),
            currency=currency,
            failure_code=refund.failure_reason if status == "failed" else None,
        )

    def _result(self, intent: stripe.PaymentIntent) -> PaymentResult:
        currency = intent.currency.upper()

        def result(status: PaymentStatus, amount: int, **extra: Any) -> PaymentResult:
            return PaymentResult(
                status=status,
                provider=self.name,
                provider_reference=intent.id,
                amount=from_stripe_amount(amount, currency),
                currency=currency,
                **extra,
            )

        match intent.status:
            case "succeeded":
                return result("captured", intent.amount_received)
            case "requires_capture":
                return result("authorized", intent.amount_capturable)
            case "processing":
                return result("processing", intent.amount)
            case "requires_action":
                return result("requires_action", intent.amount, client_secret=intent.client_secret)
            case "canceled":
                return result("voided", intent.amount)
            case "requires_payment_method":
                error = intent.last_payment_error
                status, code, retryable = decline_outcome(
                    error.code if error else None, error.decline_code if error else None
                )
                return result(
                    status,
                    intent.amount,
                    decline_code=code,
                    retryable=retryable,
                    message=error.message if error else None,
                )
            case _:  # requires_confirmation: cannot follow a confirm=True create
                return result(
                    "failed", intent.amount, decline_code="processing_error", retryable=True
                )

    def _declined(self, exc: stripe.CardError, request: AuthorizeRequest) -> PaymentResult:
        body = _error_body(exc)
        status, code, retryable = decline_outcome(body.get("code"), body.get("decline_code"))
        intent = body.get("payment_intent")
        return PaymentResult(
            status=status,
            provider=self.name,
            provider_reference=intent.get("id") if isinstance(intent, dict) else None,
            amount=request.amount,
            currency=request.currency,
            decline_code=code,
            message=body.get("message"),
            retryable=retryable,
        )

    # -- webhooks ------------------------------------------------------------------------------
    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        signature = header_value(headers, SIGNATURE_HEADER)
        try:
            # Stripe signs the text of the body. Decode it here: older SDKs (13.x) format
            # bytes as "b'…'" and never match.
            payload = body.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                payload, signature, self._webhook_secret, self._tolerance
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            raise WebhookSignatureInvalid("the Stripe-Signature header does not verify") from None
        try:
            return _event(self.name, json.loads(payload))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WebhookPayloadInvalid(f"not a Stripe event: {exc!r}") from None


def _event(provider: str, event: Any) -> WebhookEvent:
    if event.get("object") != "event":
        raise ValueError("object is not 'event'")
    obj = event["data"]["object"]
    event_type = str(event["type"])
    base: dict[str, Any] = {
        "provider": provider,
        "event_id": str(event["id"]),
        "provider_type": event_type,
        "occurred_at": datetime.fromtimestamp(int(event["created"]), UTC),
    }
    currency = str(obj.get("currency", "")).upper() or None

    def amount(field: str) -> int:
        return from_stripe_amount(int(obj[field]), currency or "")

    match event_type:
        case "payment_intent.succeeded":
            return WebhookEvent(
                **base,
                type="payment.captured",
                provider_reference=obj["id"],
                status="captured",
                amount=amount("amount_received"),
                currency=currency,
            )
        case "payment_intent.amount_capturable_updated":
            return WebhookEvent(
                **base,
                type="payment.authorized",
                provider_reference=obj["id"],
                status="authorized",
                amount=amount("amount_capturable"),
                currency=currency,
            )
        case "payment_intent.payment_failed":
            error = obj.get("last_payment_error") or {}
            status, code, _ = decline_outcome(error.get("code"), error.get("decline_code"))
            return WebhookEvent(
                **base,
                type="payment.failed",
                provider_reference=obj["id"],
                status=status,
                amount=amount("amount"),
                currency=currency,
                decline_code=code,
            )
        case "payment_intent.canceled":
            return WebhookEvent(
                **base,
                type="payment.voided",
                provider_reference=obj["id"],
                status="voided",
                amount=amount("amount"),
                currency=currency,
            )
        case "charge.refunded":
            intent = obj.get("payment_intent")
            return WebhookEvent(
                **base,
                type="payment.refunded",
                provider_reference=intent if isinstance(intent, str) else obj["id"],
                status="refunded" if obj.get("refunded") else "partially_refunded",
                amount=amount("amount_refunded"),
                currency=currency,
            )
    return WebhookEvent(
        **base,
        type="unhandled",
        provider_reference=None,
        status=None,
        amount=None,
        currency=None,
    )


def _error_body(exc: stripe.StripeError) -> dict[str, Any]:
    body = exc.json_body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return dict(body["error"])
    return {}


def _translate(
    exc: stripe.StripeError, *, token: str | None = None, refund: bool = False
) -> SeamlineError:
    """A typed Seamline error for an SDK error; Stripe's codes survive as ``provider_code``."""
    body = _error_body(exc)
    code = body.get("code") or exc.code
    extra = {"provider_code": code} if code else {}
    if isinstance(exc, stripe.InvalidRequestError):
        if code == "resource_missing":
            if token is not None and body.get("param") == "payment_method":
                return UnknownPaymentToken("Stripe does not know this payment method", extra=extra)
            return UnknownPaymentReference("Stripe has no such payment", extra=extra)
        if code in _STATE_CONFLICTS:
            return PaymentStateConflict(
                body.get("message") or "not allowed in the payment's current state", extra=extra
            )
        if refund and code == "amount_too_large":
            return RefundExceedsCapture("the refund exceeds what is left to refund", extra=extra)
        return Unprocessable(
            "Stripe refused the request", code="payment_request_invalid", extra=extra
        )
    if isinstance(exc, stripe.IdempotencyError):
        return Conflict(
            "this idempotency key was used for a different request",
            code="idempotency_key_reused",
        )
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return PaymentProviderMisconfigured("Stripe rejected the configured API key")
    if isinstance(exc, stripe.CardError):  # a card error outside authorize (rare)
        return PaymentStateConflict(
            body.get("message") or "the card was declined", code="card_declined", extra=extra
        )
    return PaymentProviderUnavailable(
        "Stripe could not be reached or failed; retry with the same idempotency key",
        headers={"Retry-After": "2"},
    )
