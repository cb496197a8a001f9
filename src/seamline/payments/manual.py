"""The ``manual`` provider: cash and card-present payments recorded at a till.

The money has already changed hands when the cashier records it (notes in the drawer, or an
approval slip from a stand-alone card terminal), so there is nobody to ask: every authorization
is captured at once, whatever ``capture`` says, and refunds always succeed (the cashier hands the
money back). What this provider adds is bookkeeping a till needs:

- token ``cash``: ``metadata["tendered"]`` (minor units, digits only) is what the customer
  handed over; ``change_due`` is ``tendered - amount``. No ``tendered`` means exact money.
  Less than the amount is refused (``insufficient_tender``), because a sale must never be
  recorded as paid when the drawer is short.
- token ``card_present``: the terminal approved the card on its own; nothing to compute.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from enum import StrEnum

from seamline.kit.errors import FieldError, Unprocessable
from seamline.payments.providers import (
    AuthorizeRequest,
    CaptureRequest,
    InsufficientTender,
    PaymentResult,
    RefundRequest,
    RefundResult,
    UnknownPaymentReference,
    UnknownPaymentToken,
    VoidRequest,
    WebhookEvent,
    WebhooksNotSupported,
    check_capturable,
    check_refundable,
)


class Tender(StrEnum):
    """The manual provider's tokens: how the customer paid at the till."""

    CASH = "cash"
    CARD_PRESENT = "card_present"


_DIGITS = re.compile(r"[0-9]{1,15}")
_REFERENCE = re.compile(r"mpi_[0-9a-f]{32}")


class ManualProvider:
    """The ``manual`` provider; stateless like every provider."""

    name = "manual"

    def authorize(self, request: AuthorizeRequest) -> PaymentResult:
        if request.token not in set(Tender):
            raise UnknownPaymentToken(
                f"the manual provider takes 'cash' or 'card_present', not {request.token!r}"
            )
        change_due = None
        if request.token == Tender.CASH:
            change_due = change_for(request.amount, request.metadata)
        return PaymentResult(
            status="captured",
            provider=self.name,
            provider_reference=_reference(request.idempotency_key),
            amount=request.amount,
            currency=request.currency,
            change_due=change_due,
        )

    def capture(self, request: CaptureRequest) -> PaymentResult:
        """Already captured at the till: confirm it, so callers need no special case."""
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
        """A correction before the sale is closed: the cashier hands the money back."""
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
            provider_reference=_reference("refund:" + request.idempotency_key, prefix="mre"),
            payment_reference=request.provider_reference,
            amount=request.amount,
            currency=request.currency,
        )

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        raise WebhooksNotSupported("the manual provider sends no webhooks")


def change_for(amount: int, metadata: Mapping[str, str]) -> int:
    """Change to hand back for a cash payment of ``amount`` given ``metadata["tendered"]``."""
    raw = metadata.get("tendered")
    if raw is None:
        return 0
    if not _DIGITS.fullmatch(raw.strip()):
        raise Unprocessable(
            "tendered must be a whole number of minor units",
            code="invalid_tendered_amount",
            errors=[FieldError("metadata.tendered", "not a whole number of minor units")],
        )
    tendered = int(raw)
    if tendered < amount:
        raise InsufficientTender(
            f"{tendered} tendered does not cover the amount of {amount}",
            extra={"amount": amount, "tendered": tendered, "short_by": amount - tendered},
        )
    return tendered - amount


def _reference(seed: str, *, prefix: str = "mpi") -> str:
    """Derived from the idempotency key, so a retried request records the same payment."""
    return f"{prefix}_{hashlib.sha256(seed.encode()).hexdigest()[:32]}"


def _check_reference(reference: str) -> None:
    if not _REFERENCE.fullmatch(reference):
        raise UnknownPaymentReference(f"{reference!r} is not a manual payment reference")
