"""Provider webhooks applied to orders: an asynchronous payment confirmed (the order becomes
paid) or failed (the order is cancelled: stock back, other tenders refunded).

A webhook is verified by the provider's own signature scheme (401 otherwise), applied at most
once (``payment_webhook_events`` keyed by provider and event id: a replay changes nothing),
and refused with 409 while Seamline does not know the payment yet — a webhook can overtake the
checkout that created the payment; the PSP retries, by which time it is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from seamline.db.dialect import insert_ignoring_conflict
from seamline.kit.errors import Conflict
from seamline.orders import fulfilment
from seamline.orders.models import Order
from seamline.orders.service import emit_order_event, history, refresh_status
from seamline.payments.models import Payment, PaymentWebhookEvent
from seamline.payments.providers import get_provider

log = structlog.get_logger("seamline.payments.webhooks")


class WebhookAck(BaseModel):
    received: bool = True
    duplicate: bool = False
    applied: str | None = None


def apply(session: Session, provider: str, body: bytes, headers: Mapping[str, str]) -> WebhookAck:
    event = get_provider(provider).parse_webhook(body, headers)
    if event.type == "unhandled" or event.provider_reference is None:
        return WebhookAck(applied="ignored")
    payment = session.scalars(
        select(Payment)
        .where(Payment.provider == provider, Payment.provider_reference == event.provider_reference)
        .with_for_update()
    ).first()
    if payment is None:
        raise Conflict(
            "this payment is not recorded yet; retry later", code="payment_not_recorded_yet"
        )
    fresh = insert_ignoring_conflict(
        session,
        PaymentWebhookEvent,
        {"provider": provider, "event_id": event.event_id, "type": event.type},
        on=["provider", "event_id"],
    )
    if not fresh:
        return WebhookAck(duplicate=True)
    if payment.order_id is None:
        # A tender of a checkout that failed (it was undone then): nothing to apply, and a 409
        # would only make the PSP retry for days.
        return WebhookAck(applied="no_order")
    order = session.get(Order, payment.order_id, with_for_update=True)
    assert order is not None
    if event.type == "payment.captured" and payment.status != "captured":
        payment.status, payment.captured = "captured", payment.amount
        order.paid_total += payment.amount
        if order.paid_total >= order.total and order.payment_state == "pending":
            order.payment_state = "paid"
        history(
            session,
            order,
            "payment_confirmed",
            {"payment_id": payment.id, "amount": payment.amount},
            actor=None,
        )
        emit_order_event(session, order, "payment.captured", payment_id=payment.id)
        refresh_status(session, order, actor=None)
        return WebhookAck(applied="captured")
    if event.type == "payment.failed" and payment.status not in ("captured", "failed", "declined"):
        payment.status = "declined" if event.status == "declined" else "failed"
        payment.decline_code = event.decline_code
        history(
            session,
            order,
            "payment_failed",
            {"payment_id": payment.id, "decline_code": event.decline_code},
            actor=None,
        )
        emit_order_event(
            session, order, "payment.failed", payment_id=payment.id, decline_code=event.decline_code
        )
        if order.status != "cancelled":
            fulfilment.cancel(session, order.id, reason="payment failed", caller=None)
        return WebhookAck(applied="failed")
    log.info("payment_webhook_no_change", provider=provider, type=event.type, payment=payment.id)
    return WebhookAck(applied="no_change")
