"""The payment provider contract: what checkout may ask of any PSP, and what it gets back.

A provider turns an opaque *token* (never a card number) into money movement and reports each
outcome as plain frozen values, so checkout and orders never see a PSP's own objects:

- ``authorize(AuthorizeRequest) -> PaymentResult``: reserve (``capture=False``) or take
  (``capture=True``) the amount. A decline is a *result* (``status="declined"``), not an
  exception: it is an ordinary business outcome the customer must be told about. Exceptions are
  kept for requests that are wrong (``card_number_refused``, ``unknown_payment_token``) and for a
  provider that could not be reached (``payment_provider_unavailable``: retry with the *same*
  idempotency key, because the payment may have happened).
- ``capture``, ``void`` and ``refund`` take the provider reference plus the amounts the caller
  has recorded. Providers keep no state between calls, so any process can finish a payment that
  another process started; the checks that need history (refund at most what is left) run on the
  amounts passed in, and the PSP remains the final authority.
- ``status="processing"`` or ``"requires_action"`` means the outcome arrives later by webhook.
  ``parse_webhook(body, headers)`` verifies the provider's signature (``WebhookSignatureInvalid``,
  401) and returns a ``WebhookEvent`` whose ``event_id`` is stable across redeliveries: the
  caller deduplicates on ``(provider, event_id)``.

Every request carries an ``idempotency_key`` that the provider forwards to the PSP, so a retried
call never charges twice. Amounts are integer minor units with an ISO 4217 code, as in
``seamline.kit.money``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Literal, Protocol, runtime_checkable

from seamline.kit.errors import (
    BadRequest,
    Conflict,
    NotFound,
    SeamlineError,
    Unauthenticated,
    Unprocessable,
)
from seamline.kit.money import Money

PaymentStatus = Literal[
    "authorized",  # funds reserved; capture or void later
    "captured",  # funds taken
    "processing",  # the PSP is still working; the outcome arrives by webhook
    "requires_action",  # the customer must act (3-D Secure); the outcome arrives by webhook
    "declined",  # the issuer or PSP said no; ``decline_code`` says why
    "failed",  # a technical failure; ``retryable`` says whether trying again may help
    "voided",  # the authorization was released; no money moved
]
RefundStatus = Literal["succeeded", "pending", "failed"]
WebhookEventType = Literal[
    "payment.authorized",
    "payment.captured",
    "payment.failed",
    "payment.voided",
    "payment.refunded",
    "unhandled",  # a genuine, signed event this layer does not act on: acknowledge and drop it
]

# The decline vocabulary callers may rely on; providers map their own codes onto it. Reasons an
# issuer gives that a shopper should not see (lost/stolen card, suspected fraud) become the
# generic ``card_declined``, as card networks recommend.
DECLINE_CODES = frozenset(
    {
        "card_declined",
        "insufficient_funds",
        "expired_card",
        "incorrect_cvc",
        "authentication_required",
        "processing_error",
    }
)
_UNSUCCESSFUL: frozenset[str] = frozenset({"declined", "failed"})


# -- errors ------------------------------------------------------------------------------------
class WebhookSignatureInvalid(Unauthenticated):
    """The webhook is unsigned, forged, signed with another secret or outside the tolerance."""

    code = "webhook_signature_invalid"


class WebhookPayloadInvalid(BadRequest):
    """The signature matched but the body is not an event this provider understands."""

    code = "webhook_payload_invalid"


class WebhooksNotSupported(NotFound):
    code = "webhooks_not_supported"


class UnknownProvider(Unprocessable):
    code = "unknown_payment_provider"


class UnknownPaymentToken(Unprocessable):
    code = "unknown_payment_token"


class CardNumberRefused(Unprocessable):
    """A raw card number reached the server. Seamline only ever handles PSP tokens: accepting a
    PAN would pull the whole deployment into PCI DSS scope, so it is refused before any use."""

    code = "card_number_refused"


class InsufficientTender(Unprocessable):
    code = "insufficient_tender"


class CaptureExceedsAuthorization(Unprocessable):
    code = "capture_exceeds_authorized"


class RefundExceedsCapture(Unprocessable):
    code = "refund_exceeds_captured"


class UnknownPaymentReference(NotFound):
    code = "payment_reference_not_found"


class PaymentStateConflict(Conflict):
    """The PSP refused the operation in the payment's current state (capture after a void…)."""

    code = "payment_state_conflict"


class PaymentProviderUnavailable(SeamlineError):
    """The PSP could not be reached or failed. The outcome is unknown: retry the same call with
    the same idempotency key, which the PSP deduplicates, rather than starting a new payment."""

    status, title, code = 503, "Payment provider unavailable", "payment_provider_unavailable"


class PaymentProviderMisconfigured(SeamlineError):
    """The PSP rejected Seamline's own credentials; never the caller's fault, so never a 401."""

    status, title, code = 500, "Payment provider misconfigured", "payment_provider_misconfigured"


# -- card numbers ------------------------------------------------------------------------------
_SEPARATORS = re.compile(r"[ \-]")
_PAN_DIGITS = re.compile(r"[0-9]{13,19}")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number satisfies."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def looks_like_card_number(token: str) -> bool:
    """13 to 19 ASCII digits, optionally grouped with spaces or dashes, passing the Luhn check."""
    digits = _SEPARATORS.sub("", token.strip())
    return bool(_PAN_DIGITS.fullmatch(digits)) and luhn_valid(digits)


def refuse_card_number(token: str) -> None:
    """Raise ``CardNumberRefused`` for a PAN; the message never echoes the number."""
    if looks_like_card_number(token):
        raise CardNumberRefused(
            "this looks like a card number; send the token from the payment provider's "
            "client-side SDK instead, card numbers are never accepted"
        )


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer in minor units, got {value!r}")


def _non_negative(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer in minor units, got {value!r}")


def _required(name: str, value: str) -> None:
    if not value or not value.strip():
        raise ValueError(f"{name} is required")


# -- requests ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """Take (``capture=True``) or reserve (``capture=False``) ``amount`` with a PSP token.

    Constructing one with a card number raises ``CardNumberRefused``: a PAN cannot even become a
    request, so no provider, log line or error message downstream can ever hold one.
    """

    amount: int
    currency: str
    token: str
    idempotency_key: str
    capture: bool = True
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        refuse_card_number(self.token)
        _positive("amount", self.amount)
        Money(self.amount, self.currency)  # validates the ISO code
        _required("token", self.token)
        _required("idempotency_key", self.idempotency_key)
        object.__setattr__(self, "metadata", _frozen(self.metadata))

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    """Capture ``amount`` (at most ``authorized_amount``; less is a partial capture)."""

    provider_reference: str
    amount: int
    currency: str
    authorized_amount: int
    idempotency_key: str

    def __post_init__(self) -> None:
        _required("provider_reference", self.provider_reference)
        _positive("amount", self.amount)
        _positive("authorized_amount", self.authorized_amount)
        Money(self.amount, self.currency)
        _required("idempotency_key", self.idempotency_key)


@dataclass(frozen=True, slots=True)
class VoidRequest:
    """Release an authorization of ``amount`` that was never captured."""

    provider_reference: str
    amount: int
    currency: str
    idempotency_key: str

    def __post_init__(self) -> None:
        _required("provider_reference", self.provider_reference)
        _positive("amount", self.amount)
        Money(self.amount, self.currency)
        _required("idempotency_key", self.idempotency_key)


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """Refund ``amount`` of a captured payment.

    ``captured_amount`` and ``refunded_amount`` (refunded before this call) come from the
    caller's own records: providers keep no state, and the same numbers let every provider refuse
    an over-refund the same way before the PSP is asked.
    """

    provider_reference: str
    amount: int
    currency: str
    captured_amount: int
    idempotency_key: str
    refunded_amount: int = 0
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _required("provider_reference", self.provider_reference)
        _positive("amount", self.amount)
        _non_negative("captured_amount", self.captured_amount)
        _non_negative("refunded_amount", self.refunded_amount)
        Money(self.amount, self.currency)
        _required("idempotency_key", self.idempotency_key)
        object.__setattr__(self, "metadata", _frozen(self.metadata))

    @property
    def refundable(self) -> int:
        return max(self.captured_amount - self.refunded_amount, 0)


def check_capturable(request: CaptureRequest) -> None:
    if request.amount > request.authorized_amount:
        raise CaptureExceedsAuthorization(
            f"cannot capture {request.amount}: only {request.authorized_amount} is authorized",
            extra={"authorized_amount": request.authorized_amount},
        )


def check_refundable(request: RefundRequest) -> None:
    if request.amount > request.refundable:
        raise RefundExceedsCapture(
            f"cannot refund {request.amount}: only {request.refundable} of the captured "
            f"{request.captured_amount} is left",
            extra={"refundable_amount": request.refundable},
        )


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PaymentResult:
    """The outcome of authorize, capture or void.

    ``provider_reference`` names the payment at the PSP (``pi_…``, ``tpi_…``) and is what
    capture, void, refund and webhooks refer to; a decline may still carry one. ``amount`` is the
    amount this result concerns (authorized, captured, or declined). ``client_secret`` is set for
    ``requires_action``: the channel hands it to the PSP's client SDK to finish authentication.
    ``change_due`` is set for cash taken at a till.
    """

    status: PaymentStatus
    provider: str
    provider_reference: str | None
    amount: int
    currency: str
    decline_code: str | None = None
    message: str | None = None  # safe to show the shopper
    retryable: bool = False
    client_secret: str | None = None
    change_due: int | None = None

    def __post_init__(self) -> None:
        if (self.status in _UNSUCCESSFUL) != (self.decline_code is not None):
            raise ValueError("decline_code is set exactly when the status is declined or failed")

    @property
    def succeeded(self) -> bool:
        return self.status in ("authorized", "captured")

    @property
    def pending(self) -> bool:
        """The outcome is not known yet; a webhook will say."""
        return self.status in ("processing", "requires_action")


@dataclass(frozen=True, slots=True)
class RefundResult:
    status: RefundStatus
    provider: str
    provider_reference: str | None  # the refund at the PSP (``re_…``)
    payment_reference: str
    amount: int
    currency: str
    failure_code: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One verified provider notification, normalised.

    ``event_id`` is the PSP's own event id, identical on every redelivery of the same event, so
    the caller can drop duplicates. ``status`` is the payment's status after the event
    (``refunded``/``partially_refunded`` for refunds, with ``amount`` the total refunded so far).
    """

    provider: str
    event_id: str
    type: WebhookEventType
    provider_type: str
    provider_reference: str | None
    status: PaymentStatus | Literal["refunded", "partially_refunded"] | None
    amount: int | None
    currency: str | None
    occurred_at: datetime
    decline_code: str | None = None


# -- the protocol and the registry -------------------------------------------------------------
@runtime_checkable
class PaymentProvider(Protocol):
    """What every payment provider implements; see the module docstring for the contract."""

    @property
    def name(self) -> str: ...

    def authorize(self, request: AuthorizeRequest) -> PaymentResult: ...

    def capture(self, request: CaptureRequest) -> PaymentResult: ...

    def void(self, request: VoidRequest) -> PaymentResult: ...

    def refund(self, request: RefundRequest) -> RefundResult: ...

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent: ...


class ProviderRegistry:
    """Providers by name, configured once at start-up and then only read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._providers: dict[str, PaymentProvider] = {}

    def register(self, provider: PaymentProvider, *, replace: bool = False) -> None:
        with self._lock:
            if provider.name in self._providers and not replace:
                raise ValueError(f"payment provider {provider.name!r} is already registered")
            self._providers[provider.name] = provider

    def unregister(self, name: str) -> None:
        with self._lock:
            self._providers.pop(name, None)

    def get(self, name: str) -> PaymentProvider:
        try:
            return self._providers[name]
        except KeyError:
            raise UnknownProvider(
                f"no payment provider named {name!r}",
                extra={"available": sorted(self._providers)},
            ) from None

    def names(self) -> list[str]:
        return sorted(self._providers)


registry = ProviderRegistry()


def register(provider: PaymentProvider, *, replace: bool = False) -> None:
    registry.register(provider, replace=replace)


def get_provider(name: str) -> PaymentProvider:
    """The provider registered under ``name``; ``UnknownProvider`` (422) otherwise."""
    return registry.get(name)


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """HTTP header names are case-insensitive; a plain dict is not, so look both ways."""
    if name in headers:
        return headers[name]
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None
