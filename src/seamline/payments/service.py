"""Tenders: plan a split payment, take it outside any transaction, undo it on failure, record
it, refund to the original tenders, apply provider webhooks.

Taking money never happens while a database transaction (and its stock locks) is open: the
provider call can take seconds. Every provider call carries an idempotency key derived from
the checkout and the tender's position, so a retried checkout asks the PSP the same question
and gets the same answer instead of charging twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.kit.errors import FieldError, SeamlineError, Unprocessable
from seamline.kit.ids import new_id
from seamline.payments.models import Payment, Refund
from seamline.payments.providers import (
    AuthorizeRequest,
    PaymentProviderUnavailable,
    PaymentResult,
    RefundRequest,
    VoidRequest,
    get_provider,
)

log = structlog.get_logger("seamline.payments")

# Providers a publishable key (a browser, an app) may use: a till's cash drawer is staff-only.
STOREFRONT_PROVIDERS = frozenset({"test", "stripe"})


@dataclass(frozen=True)
class Tender:
    """One planned tender: who takes how much with which token."""

    position: int
    provider: str
    token: str
    amount: int
    tendered: int | None = None  # cash handed over (the manual provider gives change)

    @property
    def method(self) -> str:
        return self.token if self.provider == "manual" else "card"


def plan(
    specs: Sequence[tuple[str, str, int | None, int | None]], *, total: int, path: str
) -> list[Tender]:
    """Split ``total`` over the tenders ``(provider, token, amount, tendered)``: every tender
    names its amount except possibly the last, which takes what is left; together they must
    cover the total exactly (cash handed over beyond it is change, not an amount)."""
    if not specs:
        raise Unprocessable(
            "give at least one tender",
            code="tenders_required",
            errors=[FieldError(path, "at least one tender", "missing")],
        )
    tenders: list[Tender] = []
    left = total
    for i, (provider, token, amount, tendered) in enumerate(specs):
        last = i == len(specs) - 1
        if amount is None and not last:
            raise Unprocessable(
                "only the last tender may leave its amount out (it takes the rest)",
                code="tender_amount_required",
                errors=[FieldError(f"{path}.{i}.amount", "required", "missing")],
            )
        value = left if amount is None else amount
        if value <= 0 or value > left:
            raise Unprocessable(
                f"tender {i} of {value} does not fit the {left} left to pay",
                code="tenders_do_not_match_total",
                errors=[FieldError(f"{path}.{i}.amount", f"between 1 and {left}", "out_of_range")],
            )
        tenders.append(Tender(i, provider, token, value, tendered))
        left -= value
    if left != 0:
        raise Unprocessable(
            f"the tenders cover {total - left} of {total}",
            code="tenders_do_not_match_total",
            errors=[FieldError(path, f"amounts summing to {total}", "out_of_range")],
        )
    return tenders


def _key(checkout_id: str, position: int, action: str = "pay") -> str:
    return f"{checkout_id}:{position}:{action}"


def take(checkout_id: str, tenders: Sequence[Tender], currency: str) -> list[PaymentResult]:
    """Ask each provider for its tender, in order, stopping at the first that fails (declined
    or failed). Runs outside any transaction. The caller records the results."""
    results: list[PaymentResult] = []
    for tender in tenders:
        metadata = {"checkout_id": checkout_id}
        if tender.tendered is not None:
            metadata["tendered"] = str(tender.tendered)
        try:
            result = get_provider(tender.provider).authorize(
                AuthorizeRequest(
                    amount=tender.amount,
                    currency=currency,
                    token=tender.token,
                    idempotency_key=_key(checkout_id, tender.position),
                    capture=True,
                    metadata=metadata,
                )
            )
        except PaymentProviderUnavailable:
            raise  # unknown outcome: the checkout stays paying; a retry with its key resumes
        except SeamlineError as exc:  # the provider refused the request itself (a bad token)
            result = PaymentResult(
                status="failed",
                provider=tender.provider,
                provider_reference=None,
                amount=tender.amount,
                currency=currency,
                decline_code=exc.code,
                message=exc.detail,
            )
        results.append(result)
        if not (result.succeeded or result.pending):
            break
    return results


def undo(checkout_id: str, tenders: Sequence[Tender], results: Sequence[PaymentResult]) -> None:
    """Give back what earlier tenders took when a later one failed (a split tender is all or
    nothing): refund captured money, void authorizations. Outside any transaction."""
    for tender, result in zip(tenders, results, strict=False):
        if result.provider_reference is None or not (result.succeeded or result.pending):
            continue
        provider = get_provider(tender.provider)
        try:
            if result.status == "captured":
                provider.refund(
                    RefundRequest(
                        provider_reference=result.provider_reference,
                        amount=tender.amount,
                        currency=result.currency,
                        captured_amount=tender.amount,
                        idempotency_key=_key(checkout_id, tender.position, "undo"),
                    )
                )
            else:
                provider.void(
                    VoidRequest(
                        provider_reference=result.provider_reference,
                        amount=tender.amount,
                        currency=result.currency,
                        idempotency_key=_key(checkout_id, tender.position, "undo"),
                    )
                )
        except Exception:  # the checkout still fails; the PSP dashboard shows the leftover
            log.exception("payment_undo_failed", checkout_id=checkout_id, tender=tender.position)


def record(
    session: Session,
    checkout_id: str,
    tenders: Sequence[Tender],
    results: Sequence[PaymentResult],
    *,
    order_id: str | None,
) -> list[Payment]:
    """Payment rows for the tenders that were asked (tokens are never stored: only the PSP's
    reference, the method and the outcome)."""
    payments = []
    for tender, result in zip(tenders, results, strict=False):
        payment = Payment(
            id=new_id("pay"),
            checkout_id=checkout_id,
            order_id=order_id,
            position=tender.position,
            provider=tender.provider,
            method=tender.method,
            provider_reference=result.provider_reference,
            status=result.status,
            currency=result.currency,
            amount=tender.amount,
            captured=tender.amount if result.status == "captured" else 0,
            change_due=result.change_due,
            decline_code=result.decline_code,
            detail={"message": result.message} if result.message else {},
        )
        session.add(payment)
        payments.append(payment)
    session.flush()
    return payments


def refund_order(
    session: Session,
    order_id: str,
    amount: int,
    *,
    reason: str,
    return_id: str | None = None,
    key: str,
) -> list[Refund]:
    """Refund ``amount`` to the order's original tenders, newest tender first (cash given at a
    till last; card payments, which the PSP returns by itself, first), never more than each
    captured. Calls providers inside the caller's transaction: refunds are short, idempotent by
    ``key``, and a failure must roll the refund record back."""
    payments = list(
        session.scalars(
            select(Payment)
            .where(Payment.order_id == order_id, Payment.captured > Payment.refunded)
            .order_by(Payment.position.desc())
            .with_for_update()
        )
    )
    payments.sort(key=lambda p: (p.method == "cash", -p.position))
    left = amount
    refunds = []
    for payment in payments:
        if left == 0:
            break
        part = min(left, payment.captured - payment.refunded)
        assert payment.provider_reference is not None
        result = get_provider(payment.provider).refund(
            RefundRequest(
                provider_reference=payment.provider_reference,
                amount=part,
                currency=payment.currency,
                captured_amount=payment.captured,
                refunded_amount=payment.refunded,
                idempotency_key=f"{key}:{payment.id}",
            )
        )
        if result.status == "failed":
            raise Unprocessable(
                f"the {payment.provider} provider refused the refund",
                code="refund_failed",
                extra={"payment_id": payment.id, "failure_code": result.failure_code},
            )
        payment.refunded += part
        refund = Refund(
            id=new_id("rfd"),
            payment_id=payment.id,
            order_id=order_id,
            return_id=return_id,
            amount=part,
            status=result.status,
            provider_reference=result.provider_reference,
            reason=reason[:200],
        )
        session.add(refund)
        refunds.append(refund)
        left -= part
    if left:
        raise Unprocessable(
            f"{left} more than the order's captured payments can return",
            code="refund_exceeds_payments",
        )
    session.flush()
    return refunds
