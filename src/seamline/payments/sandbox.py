"""The ``test`` provider: a stateless sandbox PSP with magic tokens and signed webhooks.

It behaves like a real PSP so checkout can be exercised end to end without one:

==============================  ===========================================================
token                           outcome
==============================  ===========================================================
``tok_test_success``            ``authorized`` (or ``captured`` with ``capture=True``)
``tok_test_decline``            ``declined``, ``card_declined``
``tok_test_insufficient_funds`` ``declined``, ``insufficient_funds``
``tok_test_processing_error``   ``failed``, ``processing_error``, ``retryable=True``
``tok_test_async``              ``processing``; the outcome arrives by webhook
==============================  ===========================================================

Nothing is remembered between calls (any process can capture what another authorized), so
capture, void and refund succeed for any well-formed ``tpi_`` reference and judge amounts only
from what the caller passes in. ``confirmation_webhook`` produces the webhook a real PSP would
send for an asynchronous payment, signed as ``Seamline-Test-Signature: t=<unix>,v1=<hex>``
(HMAC-SHA256 over ``"<t>.<body>"``, the same scheme as Seamline's own outgoing webhooks).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from seamline.events import signing
from seamline.kit import clock
from seamline.payments.providers import (
    AuthorizeRequest,
    CaptureRequest,
    PaymentResult,
    PaymentStatus,
    RefundRequest,
    RefundResult,
    UnknownPaymentReference,
    UnknownPaymentToken,
    VoidRequest,
    WebhookEvent,
    WebhookEventType,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
    check_capturable,
    check_refundable,
    header_value,
)

SIGNATURE_HEADER = "Seamline-Test-Signature"
TOLERANCE_SECONDS = 300


class SandboxToken(StrEnum):
    """The magic tokens; anything else is ``unknown_payment_token``."""

    SUCCESS = "tok_test_success"
    DECLINE = "tok_test_decline"
    INSUFFICIENT_FUNDS = "tok_test_insufficient_funds"
    PROCESSING_ERROR = "tok_test_processing_error"
    ASYNC = "tok_test_async"


# _derived() output: a prefix, then 26 lower-case Crockford base32 characters.
_REFERENCE = re.compile(r"tpi_[0-9a-hjkmnp-tv-z]{26}")
# What a declined shopper may be told; the decline code carries the machine-readable reason.
_DECLINES: dict[str, tuple[Literal["declined", "failed"], str, str, bool]] = {
    SandboxToken.DECLINE: ("declined", "card_declined", "Your card was declined.", False),
    SandboxToken.INSUFFICIENT_FUNDS: (
        "declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
        False,
    ),
    SandboxToken.PROCESSING_ERROR: (
        "failed",
        "processing_error",
        "An error occurred while processing your card. Try again.",
        True,
    ),
}
_OUTCOMES: dict[str, tuple[WebhookEventType, PaymentStatus]] = {
    "authorized": ("payment.authorized", "authorized"),
    "captured": ("payment.captured", "captured"),
    "declined": ("payment.failed", "declined"),
}


class SandboxProvider:
    """The ``test`` provider. ``webhook_secret`` signs and verifies its webhooks."""

    name = "test"

    def __init__(self, webhook_secret: str, *, tolerance: int = TOLERANCE_SECONDS) -> None:
        if not webhook_secret:
            raise ValueError("the sandbox needs a webhook secret")
        self._secret = webhook_secret
        self._tolerance = tolerance

    # -- payments ------------------------------------------------------------------------------
    def authorize(self, request: AuthorizeRequest) -> PaymentResult:
        token = request.token
        if token not in set(SandboxToken):
            raise UnknownPaymentToken(
                f"unknown test token {token!r}",
                extra={"known_tokens": [str(t) for t in SandboxToken]},
            )
        reference = _reference(request.idempotency_key)
        if token in _DECLINES:
            status, code, message, retryable = _DECLINES[token]
            return PaymentResult(
                status=status,
                provider=self.name,
                provider_reference=reference,
                amount=request.amount,
                currency=request.currency,
                decline_code=code,
                message=message,
                retryable=retryable,
            )
        return PaymentResult(
            status=(
                "processing"
                if token == SandboxToken.ASYNC
                else "captured"
                if request.capture
                else "authorized"
            ),
            provider=self.name,
            provider_reference=reference,
            amount=request.amount,
            currency=request.currency,
        )

    def capture(self, request: CaptureRequest) -> PaymentResult:
        _check_reference(request.provider_reference)
        check_capturable(request)
        return PaymentResult(
            status="captured",
            provider=self.name,
            provider_reference=request.provider_reference,
            amount=request.amount,
            currency=request.currency,
        )

    def void(self, request: VoidRequest) -> PaymentResult:
        _check_reference(request.provider_reference)
        return PaymentResult(
            status="voided",
            provider=self.name,
            provider_reference=request.provider_reference,
            amount=request.amount,
            currency=request.currency,
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        _check_reference(request.provider_reference)
        check_refundable(request)
        return RefundResult(
            status="succeeded",
            provider=self.name,
            provider_reference=_derived("tre", request.idempotency_key),
            payment_reference=request.provider_reference,
            amount=request.amount,
            currency=request.currency,
        )

    # -- webhooks ------------------------------------------------------------------------------
    def confirmation_webhook(
        self,
        provider_reference: str,
        *,
        amount: int,
        currency: str,
        outcome: Literal["authorized", "captured", "declined"] = "captured",
        decline_code: str = "card_declined",
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The signed webhook a PSP sends when an asynchronous payment settles.

        The event id is derived from the reference and the outcome, so producing the webhook
        again (a redelivery) yields the same id, as a real PSP's retries do.
        """
        _check_reference(provider_reference)
        event_type, status = _OUTCOMES[outcome]
        signed_at = int(clock.now().timestamp()) if timestamp is None else timestamp
        event = {
            "id": _derived("tev", f"{provider_reference}:{event_type}"),
            "type": event_type,
            "created": signed_at,
            "data": {
                "reference": provider_reference,
                "status": status,
                "amount": amount,
                "currency": currency,
                "decline_code": decline_code if status == "declined" else None,
            },
        }
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
        return body, {SIGNATURE_HEADER: signing.header(body, [self._secret], signed_at)}

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        signature = header_value(headers, SIGNATURE_HEADER)
        if not signature:
            raise WebhookSignatureInvalid(f"the {SIGNATURE_HEADER} header is missing")
        try:
            signing.verify(
                body,
                signature,
                self._secret,
                tolerance=self._tolerance,
                now=clock.now().timestamp(),
            )
        except signing.SignatureError as exc:
            raise WebhookSignatureInvalid(f"webhook signature rejected: {exc}") from None
        return self._event(body)

    def _event(self, body: bytes) -> WebhookEvent:
        try:
            event: Any = json.loads(body)
            data = event["data"]
            event_type = event["type"]
            _, status = next(v for v in _OUTCOMES.values() if v[0] == event_type)
            return WebhookEvent(
                provider=self.name,
                event_id=str(event["id"]),
                type=event_type,
                provider_type=event_type,
                provider_reference=str(data["reference"]),
                status=status,
                amount=int(data["amount"]),
                currency=str(data["currency"]),
                occurred_at=datetime.fromtimestamp(int(event["created"]), UTC),
                decline_code=data.get("decline_code"),
            )
        except (ValueError, KeyError, TypeError, StopIteration) as exc:
            raise WebhookPayloadInvalid(f"not a sandbox payment event: {exc!r}") from None


def _reference(idempotency_key: str) -> str:
    """The ``tpi_`` reference of the payment made under ``idempotency_key``.

    A real PSP answers a retried idempotency key with the payment it already made; the sandbox
    keeps no state, so it derives the reference from the key instead of remembering it.
    """
    return _derived("tpi", idempotency_key)


def _derived(prefix: str, seed: str) -> str:
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:17], "big")
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    chars = []
    for _ in range(26):
        digest, rem = divmod(digest, 32)
        chars.append(alphabet[rem])
    return f"{prefix}_{''.join(chars)}"


def _check_reference(reference: str) -> None:
    if not _REFERENCE.fullmatch(reference):
        raise UnknownPaymentReference(f"{reference!r} is not a test payment reference")
